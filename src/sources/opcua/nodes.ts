/**
 * Node selection: explicit NodeIds (with `nsu=<uri>;` resolved against the
 * server's NamespaceArray on every connect) or a depth-first browse of
 * Variables below Objects; then browse names, browse paths and engineering
 * units, all read in batched Browse and Read calls.
 */
import {
  AttributeIds,
  BrowseDirection,
  type BrowseResult,
  type ClientSession,
  NodeClassMask,
  type NodeId,
  resolveNodeId,
  type StatusCode,
  StatusCodes,
} from "node-opcua";
import type { TargetNode } from "./values.ts";

/** Operations per Browse or Read call during node resolution. */
const CHUNK = 500;
/** Deepest folder level the discovery and path lookups go to. */
const MAX_DEPTH = 16;
const OBJECTS_FOLDER = "i=85";
const NAMESPACE_ARRAY = "i=2255";
const HAS_PROPERTY = "ns=0;i=46";

function chunks<T>(list: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** The server's namespace URIs, by index. */
export async function namespacesOf(session: ClientSession): Promise<string[]> {
  const dv = await session.read({ nodeId: NAMESPACE_ARRAY, attributeId: AttributeIds.Value });
  return (dv.value?.value as string[] | null) ?? [];
}

/** `nsu=<uri>;rest` → `ns=<index>;rest` for this server; other forms unchanged. */
export function resolveNamespace(id: string, namespaces: readonly string[]): string {
  const m = /^nsu=([^;]+);(.+)$/.exec(id);
  if (!m) return id;
  const index = namespaces.indexOf(m[1]);
  if (index < 0) throw new Error(`namespace ${m[1]} is not on the server`);
  return index === 0 ? m[2] : `ns=${index};${m[2]}`;
}

/** `ns=<index>;rest` → `nsu=<uri>;rest` (namespace 0 stays bare). */
export function addressOf(nodeId: NodeId, namespaces: readonly string[]): string {
  const text = nodeId.toString();
  if (nodeId.namespace === 0) return text;
  const uri = namespaces[nodeId.namespace];
  return uri ? text.replace(/^ns=\d+;/, `nsu=${uri};`) : text;
}

async function browseAll(
  session: ClientSession,
  nodeIds: readonly string[],
  direction: BrowseDirection,
  nodeClassMask: number,
): Promise<BrowseResult[]> {
  const out: BrowseResult[] = [];
  for (const part of chunks(nodeIds)) {
    const results = await session.browse(part.map((nodeId) => ({
      nodeId,
      browseDirection: direction,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      nodeClassMask,
      resultMask: 63,
    })));
    for (const r of results) {
      let cp = r.continuationPoint;
      while (cp && cp.length > 0) {
        const next = await session.browseNext(cp, false);
        r.references = [...(r.references ?? []), ...(next.references ?? [])];
        cp = next.continuationPoint;
      }
      out.push(r);
    }
  }
  return out;
}

/**
 * Depth-first discovery of Variables below Objects, at most `limit`, skipping
 * namespace 0 (the Server object and other standard nodes) and properties.
 */
export async function discover(
  session: ClientSession,
  namespaces: readonly string[],
  limit: number,
): Promise<TargetNode[]> {
  const found: TargetNode[] = [];
  const seen = new Set<string>([OBJECTS_FOLDER]);
  async function visit(nodeId: string, path: string, depth: number): Promise<void> {
    const [result] = await browseAll(
      session,
      [nodeId],
      BrowseDirection.Forward,
      NodeClassMask.Object | NodeClassMask.Variable,
    );
    for (const ref of result.references ?? []) {
      if (found.length >= limit) return;
      const id = ref.nodeId;
      if (id.namespace === 0 || ref.referenceTypeId.toString() === HAS_PROPERTY) continue;
      const key = id.toString();
      if (seen.has(key)) continue;
      seen.add(key);
      const name = ref.browseName.name ?? key;
      const childPath = `${path}/${name}`;
      if (ref.nodeClass === 2 /* Variable */) {
        found.push({
          nodeId: key,
          address: addressOf(id, namespaces),
          tagName: name,
          browsePath: childPath,
        });
      } else if (depth < MAX_DEPTH) {
        await visit(key, childPath, depth + 1);
      }
    }
  }
  await visit(OBJECTS_FOLDER, "Objects", 0);
  return found;
}

/** An explicit node that could not be resolved, and why. */
export interface UnresolvedNode {
  address: string;
  error: string;
  code: number;
}

/** Explicit NodeIds: resolves namespaces, checks they exist, reads browse names and paths. */
export async function resolveExplicit(
  session: ClientSession,
  namespaces: readonly string[],
  ids: readonly string[],
): Promise<{ nodes: TargetNode[]; unresolved: UnresolvedNode[] }> {
  const nodes: TargetNode[] = [];
  const unresolved: UnresolvedNode[] = [];
  const candidates: TargetNode[] = [];
  for (const address of ids) {
    try {
      const nodeId = resolveNodeId(resolveNamespace(address, namespaces)).toString();
      candidates.push({ nodeId, address, tagName: address });
    } catch (e) {
      unresolved.push({
        address,
        error: e instanceof Error ? e.message : String(e),
        code: StatusCodes.BadNodeIdInvalid.value,
      });
    }
  }
  for (const part of chunks(candidates)) {
    const dvs = await session.read(
      part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.BrowseName })),
    );
    part.forEach((n, i) => {
      const status: StatusCode = dvs[i].statusCode;
      if (status.isGood()) {
        n.tagName = (dvs[i].value.value as { name?: string }).name ?? n.address;
        nodes.push(n);
      } else {
        unresolved.push({ address: n.address, error: status.toString(), code: status.value });
      }
    });
  }
  await addBrowsePaths(session, nodes);
  return { nodes, unresolved };
}

/** Fills `browsePath` by walking inverse hierarchical references up to Objects. */
async function addBrowsePaths(session: ClientSession, nodes: TargetNode[]): Promise<void> {
  const work = nodes.map((n) => ({ node: n, at: n.nodeId, parts: [n.tagName] }));
  let open = work;
  for (let depth = 0; depth < MAX_DEPTH && open.length > 0; depth++) {
    const results = await browseAll(
      session,
      open.map((w) => w.at),
      BrowseDirection.Inverse,
      0,
    );
    const next: typeof open = [];
    open.forEach((w, i) => {
      const ref = results[i].references?.[0];
      if (!ref) return;
      const id = ref.nodeId.toString();
      if (id === "ns=0;i=85" || id === "i=85") {
        w.node.browsePath = ["Objects", ...w.parts].join("/");
        return;
      }
      w.parts.unshift(ref.browseName.name ?? id);
      w.at = id;
      next.push(w);
    });
    open = next;
  }
}

/** Reads each node's `EngineeringUnits` property once and sets `unit` (its display name). */
export async function addUnits(session: ClientSession, nodes: TargetNode[]): Promise<void> {
  const props = await browseAll(
    session,
    nodes.map((n) => n.nodeId),
    BrowseDirection.Forward,
    NodeClassMask.Variable,
  );
  const withUnit: Array<{ node: TargetNode; prop: string }> = [];
  nodes.forEach((node, i) => {
    const ref = props[i].references?.find((r) =>
      r.browseName.name === "EngineeringUnits" && r.browseName.namespaceIndex === 0
    );
    if (ref) withUnit.push({ node, prop: ref.nodeId.toString() });
  });
  for (const part of chunks(withUnit)) {
    const dvs = await session.read(
      part.map((w) => ({ nodeId: w.prop, attributeId: AttributeIds.Value })),
    );
    part.forEach((w, i) => {
      const eu = dvs[i].value?.value as
        | { displayName?: { text?: string | null }; description?: { text?: string | null } }
        | null;
      const text = eu?.displayName?.text || eu?.description?.text;
      if (text) w.node.unit = text;
    });
  }
}
