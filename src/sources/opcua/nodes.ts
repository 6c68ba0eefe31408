/**
 * Node selection: explicit NodeIds (with `nsu=<uri>;` resolved against the
 * server's NamespaceArray on every connect), node entries with a NodeId or a
 * browse path (TranslateBrowsePathsToNodeIds) and per-tag context, or a breadth-first browse of
 * Variables below configured roots (depth, include/exclude globs, a limit);
 * then browse names, browse paths and engineering units. Every Browse and
 * Read is split by the server's operation limits and shrinks further when the
 * server still answers BadTooManyOperations.
 */
import { globToRegExp } from "../../normalize/rules.ts";
import {
  AttributeIds,
  BrowseDirection,
  type BrowseResult,
  type ClientSession,
  NodeClassMask,
  NodeId,
  resolveNodeId,
  type StatusCode,
  StatusCodes,
} from "node-opcua";
import type { TargetNode } from "./values.ts";
import type { OpcuaNodeEntry } from "./schema.ts";
import { errorText } from "./state.ts";

/** Operations per call when the server does not advertise a limit. */
export const DEFAULT_OPERATIONS_PER_CALL = 1000;
/** Deepest level the browse-path lookups of explicit nodes go to. */
const MAX_PATH_DEPTH = 16;
const OBJECTS_FOLDER = "i=85";
const NAMESPACE_ARRAY = "i=2255";
const HAS_PROPERTY = "ns=0;i=46";
const HIERARCHICAL_REFERENCES = "ns=0;i=33";
/**
 * Server/ServerCapabilities/OperationLimits: MaxNodesPerRead, MaxNodesPerBrowse,
 * MaxMonitoredItemsPerCall, MaxNodesPerTranslateBrowsePathsToNodeIds.
 */
const LIMIT_NODES = ["i=11705", "i=11710", "i=11714", "i=11712"];

/** A batch size that callers share and that shrinks when the server refuses a batch. */
export interface BatchSize {
  size: number;
  /**
   * Called when a too-large answer (BadTooManyOperations, BadRequestTooLarge,
   * BadResponseTooLarge: `answer`) halves the size.
   */
  onShrink?: (from: number, to: number, answer: string) => void;
}

/** How many operations one call may carry, per service. */
export interface OperationLimits {
  read: BatchSize;
  browse: BatchSize;
  monitoredItems: BatchSize;
  translate: BatchSize;
}

/**
 * The server's operation limits (Server/ServerCapabilities/OperationLimits);
 * a limit that is absent, 0 or unreadable becomes `fallback`.
 */
export async function operationLimits(
  session: ClientSession,
  fallback = DEFAULT_OPERATIONS_PER_CALL,
): Promise<OperationLimits> {
  let values: number[] = [];
  try {
    const dvs = await session.read(
      LIMIT_NODES.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
    );
    values = dvs.map((dv) => (dv.statusCode.isGood() ? Number(dv.value?.value ?? 0) : 0));
  } catch { /* an old server without the nodes: fallback */ }
  const pick = (i: number) => ({ size: values[i] > 0 ? values[i] : fallback });
  return { read: pick(0), browse: pick(1), monitoredItems: pick(2), translate: pick(3) };
}

/** The service faults that mean "fewer operations per call". */
const TOO_LARGE = ["BadTooManyOperations", "BadRequestTooLarge", "BadResponseTooLarge"] as const;

/**
 * The name of the answer when a service call failed because the call was too
 * large (BadTooManyOperations, BadRequestTooLarge, BadResponseTooLarge: the
 * server may advertise large operation limits but a small message size);
 * undefined for other errors.
 */
export function tooLargeAnswer(e: unknown): string | undefined {
  const result = (e as { response?: { responseHeader?: { serviceResult?: StatusCode } } })
    ?.response?.responseHeader?.serviceResult;
  const text = errorText(e);
  return TOO_LARGE.find((name) =>
    result?.value === StatusCodes[name].value || text.includes(name.slice(3))
  );
}

/**
 * Calls `call` on consecutive parts of `items` of at most `batch.size`, in
 * order, and concatenates the results. On a too-large answer
 * (`tooLargeAnswer`) the size is halved (kept for later calls) and the same
 * part is retried; other errors propagate.
 */
export async function inBatches<T, R>(
  items: readonly T[],
  batch: BatchSize,
  call: (part: T[]) => Promise<R[]>,
): Promise<R[]> {
  const out: R[] = [];
  let off = 0;
  while (off < items.length) {
    const part = items.slice(off, off + Math.max(1, batch.size));
    try {
      out.push(...await call(part));
      off += part.length;
    } catch (e) {
      const answer = tooLargeAnswer(e);
      if (!answer || part.length <= 1) throw e;
      const to = Math.max(1, Math.floor(part.length / 2));
      batch.onShrink?.(batch.size, to, answer);
      batch.size = to;
    }
  }
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
  if (nodeId.namespace === 0) return text.replace(/^ns=0;/, "");
  const uri = namespaces[nodeId.namespace];
  return uri ? text.replace(/^ns=\d+;/, `nsu=${uri};`) : text;
}

async function browseAll(
  session: ClientSession,
  nodeIds: readonly string[],
  direction: BrowseDirection,
  nodeClassMask: number,
  batch: BatchSize,
): Promise<BrowseResult[]> {
  const results = await inBatches(nodeIds, batch, (part) =>
    session.browse(part.map((nodeId) => ({
      nodeId,
      browseDirection: direction,
      referenceTypeId: "HierarchicalReferences",
      includeSubtypes: true,
      nodeClassMask,
      resultMask: 63,
    }))));
  for (const r of results) {
    let cp = r.continuationPoint;
    while (cp && cp.length > 0) {
      const next = await session.browseNext(cp, false);
      r.references = [...(r.references ?? []), ...(next.references ?? [])];
      cp = next.continuationPoint;
    }
  }
  return results;
}

/** Where and how deep discovery browses, and what it keeps. */
export interface DiscoveryOptions {
  roots: readonly string[];
  maxDepth: number;
  include: readonly string[];
  exclude: readonly string[];
  limit: number;
}

/** Discovery when the source has no `discovery` key. */
export const DEFAULT_DISCOVERY: Omit<DiscoveryOptions, "limit"> = {
  roots: ["Objects"],
  maxDepth: 16,
  include: [],
  exclude: [],
};

/** What discovery found, and what it could not use. */
export interface Discovered {
  nodes: TargetNode[];
  /** Roots that are not on the server, with the reason. */
  problems: string[];
  /** True when `limit` stopped the browse early. */
  truncated: boolean;
}

/**
 * A browse-path glob (`*` one segment, `**` any number, `?` one character) as
 * a test on full browse paths (`Objects/...`). A glob that does not start with
 * `Objects` or `**` is matched against the path below Objects.
 */
export function browsePathMatcher(glob: string): (path: string) => boolean {
  const rx = globToRegExp(glob);
  const full = glob.startsWith("Objects") || glob.startsWith("**");
  return full ? (p) => rx.test(p) : (p) => rx.test(p.replace(/^Objects\//, ""));
}

interface Folder {
  nodeId: string;
  path: string;
  depth: number;
}

/** Resolves discovery roots (NodeIds or `Objects/...` browse paths) to folders. */
async function resolveRoots(
  session: ClientSession,
  namespaces: readonly string[],
  roots: readonly string[],
  limits: OperationLimits,
): Promise<{ folders: Folder[]; problems: string[] }> {
  const folders: Folder[] = [];
  const problems: string[] = [];
  const byId: TargetNode[] = [];
  for (const root of roots) {
    if (root === "Objects" || root.startsWith("Objects/")) {
      const nodeId = await followPath(session, root.split("/").slice(1), limits);
      if (nodeId) folders.push({ nodeId, path: root, depth: 0 });
      else problems.push(`discovery root ${root} is not on the server`);
      continue;
    }
    try {
      const nodeId = resolveNodeId(resolveNamespace(root, namespaces)).toString();
      byId.push({ nodeId, address: root, tagName: root });
    } catch (e) {
      problems.push(`discovery root ${root}: ${e instanceof Error ? e.message : e}`);
    }
  }
  const found = await readBrowseNames(session, byId, limits);
  for (const u of found.unresolved) problems.push(`discovery root ${u.address}: ${u.error}`);
  await addBrowsePaths(session, found.nodes, limits);
  for (const n of found.nodes) {
    const path = n.nodeId === "ns=0;i=85" || n.nodeId === OBJECTS_FOLDER ? "Objects" : n.browsePath;
    folders.push({ nodeId: n.nodeId, path: path ?? n.tagName, depth: 0 });
  }
  return { folders, problems };
}

/** The NodeId at `Objects/<names...>`, following hierarchical references by browse name. */
async function followPath(
  session: ClientSession,
  names: string[],
  limits: OperationLimits,
): Promise<string | undefined> {
  let at = OBJECTS_FOLDER;
  for (const name of names) {
    const [r] = await browseAll(session, [at], BrowseDirection.Forward, 0, limits.browse);
    const ref = r.references?.find((x) => x.browseName.name === name);
    if (!ref) return undefined;
    at = ref.nodeId.toString();
  }
  return at;
}

/**
 * Breadth-first discovery of Variables below the roots, level by level in
 * batched Browse calls: at most `limit`, folders down to `maxDepth` levels,
 * skipping properties and the namespace-0 objects directly below Objects (the
 * Server object). Variables are not browsed into. A folder or variable whose
 * browse path matches an `exclude` glob is skipped (a folder also when
 * `<path>/` matches, so `.../Diagnostics/**` prunes the folder itself); with
 * `include` globs a variable must match one.
 */
export async function discover(
  session: ClientSession,
  namespaces: readonly string[],
  opts: DiscoveryOptions,
  limits: OperationLimits,
): Promise<Discovered> {
  const include = opts.include.map(browsePathMatcher);
  const exclude = opts.exclude.map(browsePathMatcher);
  const excluded = (p: string) => exclude.some((m) => m(p));
  const wanted = (p: string) => !excluded(p) && (include.length === 0 || include.some((m) => m(p)));
  const { folders, problems } = await resolveRoots(session, namespaces, opts.roots, limits);
  const nodes: TargetNode[] = [];
  const seen = new Set<string>(folders.map((f) => f.nodeId));
  let level = folders;
  while (level.length > 0 && nodes.length < opts.limit) {
    const results = await browseAll(
      session,
      level.map((f) => f.nodeId),
      BrowseDirection.Forward,
      NodeClassMask.Object | NodeClassMask.Variable,
      limits.browse,
    );
    const next: Folder[] = [];
    level.forEach((folder, i) => {
      for (const ref of results[i].references ?? []) {
        if (nodes.length >= opts.limit) return;
        const id = ref.nodeId;
        if (ref.referenceTypeId.toString() === HAS_PROPERTY) continue;
        if (id.namespace === 0 && folder.nodeId === OBJECTS_FOLDER) continue;
        const key = id.toString();
        if (seen.has(key)) continue;
        seen.add(key);
        const name = ref.browseName.name ?? key;
        const path = `${folder.path}/${name}`;
        if (ref.nodeClass === 2 /* Variable */) {
          if (wanted(path)) {
            nodes.push({
              nodeId: key,
              address: addressOf(id, namespaces),
              tagName: name,
              browsePath: path,
            });
          }
        } else if (folder.depth < opts.maxDepth && !excluded(path) && !excluded(`${path}/`)) {
          next.push({ nodeId: key, path, depth: folder.depth + 1 });
        }
      }
    });
    level = next;
  }
  return { nodes, problems, truncated: nodes.length >= opts.limit && level.length > 0 };
}

/** An explicit node that could not be resolved, and why. */
export interface UnresolvedNode {
  address: string;
  error: string;
  code: number;
  /** The node as it was known (a discovered node, an item that turned unknown). */
  node?: TargetNode;
}

/** Reads the BrowseName of each candidate; the ones the server does not know are unresolved. */
export async function readBrowseNames(
  session: ClientSession,
  candidates: TargetNode[],
  limits: OperationLimits,
): Promise<{ nodes: TargetNode[]; unresolved: UnresolvedNode[] }> {
  const nodes: TargetNode[] = [];
  const unresolved: UnresolvedNode[] = [];
  const dvs = await inBatches(
    candidates,
    limits.read,
    (part) =>
      session.read(part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.BrowseName }))),
  );
  candidates.forEach((n, i) => {
    const status: StatusCode = dvs[i].statusCode;
    if (status.isGood()) {
      n.browseName = (dvs[i].value.value as { name?: string }).name ?? n.address;
      n.tagName = n.name ?? n.browseName;
      nodes.push(n);
    } else {
      unresolved.push({
        address: n.address,
        error: status.toString(),
        code: status.value,
        node: n,
      });
    }
  });
  return { nodes, unresolved };
}

/** A configured node: a NodeId or an entry with a NodeId or a browse path. */
export type NodeSpec = string | OpcuaNodeEntry;

/** What an entry's readings carry besides the value: name, unit, signal type, context. */
function extrasOf(spec: NodeSpec): Partial<TargetNode> {
  if (typeof spec === "string") return {};
  const context = Object.fromEntries(
    (["site", "area", "line", "equipment"] as const)
      .filter((k) => spec[k] !== undefined).map((k) => [k, spec[k]]),
  );
  return {
    ...(spec.name !== undefined && { name: spec.name }),
    ...(spec.unit !== undefined && { unit: spec.unit }),
    ...(spec.signal_type !== undefined && { signalType: spec.signal_type }),
    ...(Object.keys(context).length > 0 && { context }),
  };
}

/**
 * Explicit nodes: resolves namespaces and browse paths, checks the nodes
 * exist, reads browse names and paths. Entries the server does not know are
 * returned as unresolved; the others go on.
 */
export async function resolveExplicit(
  session: ClientSession,
  namespaces: readonly string[],
  specs: readonly NodeSpec[],
  limits: OperationLimits,
): Promise<{ nodes: TargetNode[]; unresolved: UnresolvedNode[] }> {
  const unresolved: UnresolvedNode[] = [];
  const candidates: TargetNode[] = [];
  const byPath: Array<
    { spec: OpcuaNodeEntry & { browse_path: string }; extras: Partial<TargetNode> }
  > = [];
  for (const spec of specs) {
    const address = typeof spec === "string" ? spec : spec.node_id;
    if (address === undefined) {
      byPath.push({
        spec: spec as OpcuaNodeEntry & { browse_path: string },
        extras: extrasOf(spec),
      });
      continue;
    }
    try {
      const nodeId = resolveNodeId(resolveNamespace(address, namespaces)).toString();
      candidates.push({ nodeId, address, tagName: address, ...extrasOf(spec) });
    } catch (e) {
      unresolved.push({
        address,
        error: errorText(e),
        code: StatusCodes.BadNodeIdInvalid.value,
      });
    }
  }
  const paths = byPath.length === 0
    ? []
    : await translatePaths(session, namespaces, byPath.map((p) => p.spec), limits).catch((e) =>
      byPath.map(() => `TranslateBrowsePathsToNodeIds failed: ${errorText(e)}`)
    );
  byPath.forEach((p, i) => {
    const found = paths[i];
    if (typeof found === "string") {
      unresolved.push({
        address: p.spec.browse_path,
        error: found,
        code: StatusCodes.BadNoMatch.value,
      });
    } else {
      candidates.push({
        nodeId: found.toString(),
        address: addressOf(found, namespaces),
        tagName: p.spec.browse_path,
        browsePath: p.spec.browse_path,
        ...p.extras,
      });
    }
  });
  const found = await readBrowseNames(session, candidates, limits);
  await addBrowsePaths(session, found.nodes.filter((n) => n.browsePath === undefined), limits);
  const position = new Map<string, number>();
  specs.forEach((spec, i) => {
    const address = typeof spec === "string" ? spec : spec.node_id ?? spec.browse_path!;
    if (!position.has(address)) position.set(address, i);
  });
  const all = [...unresolved, ...found.unresolved];
  all.sort((a, b) => (position.get(a.address) ?? 0) - (position.get(b.address) ?? 0));
  return { nodes: found.nodes, unresolved: all };
}

/**
 * Namespace indices a browse path's names are looked up in, in order: its
 * `namespace`, else `hint` (where an earlier path matched) first, then the
 * application namespaces (2, 3, ...), the server's own (1) and OPC UA's (0).
 */
function pathNamespaces(
  spec: OpcuaNodeEntry,
  namespaces: readonly string[],
  hint?: number,
): number[] | string {
  if (spec.namespace !== undefined) {
    const index = namespaces.indexOf(spec.namespace);
    return index < 0 ? `namespace ${spec.namespace} is not on the server` : [index];
  }
  const order = [...namespaces.keys()].slice(2).concat(namespaces.length > 1 ? [1, 0] : [0]);
  return hint === undefined ? order : [hint, ...order.filter((i) => i !== hint)];
}

type PathSpec = OpcuaNodeEntry & { browse_path: string };
interface PathTry {
  at: number;
  ns: number;
  names: string[];
}

/** One TranslateBrowsePathsToNodeIds pass over `tries`, batched; the NodeId found per try. */
async function translateTries(
  session: ClientSession,
  tries: PathTry[],
  limits: OperationLimits,
): Promise<Array<NodeId | undefined>> {
  const results = await inBatches(
    tries,
    limits.translate,
    (part) =>
      session.translateBrowsePath(part.map((t) => ({
        startingNode: OBJECTS_FOLDER,
        relativePath: {
          elements: t.names.map((name) => ({
            referenceTypeId: HIERARCHICAL_REFERENCES,
            isInverse: false,
            includeSubtypes: true,
            targetName: { namespaceIndex: t.ns, name },
          })),
        },
      }))),
  );
  return results.map((r) => {
    const id = r.statusCode.isGood() ? r.targets?.[0]?.targetId : undefined;
    return id ? new NodeId(id.identifierType, id.value, id.namespace) : undefined;
  });
}

/**
 * Resolves `Objects/<name>/...` browse paths with TranslateBrowsePathsToNodeIds
 * (calls of at most `limits.translate` paths). A path without `namespace` is
 * tried namespace by namespace (`pathNamespaces`): the first such path in all
 * of them at once, the others in passes with the namespace that path matched
 * first, so a server with one application namespace needs one pass. Gives the
 * NodeId per path, or the reason it was not found.
 */
export async function translatePaths(
  session: ClientSession,
  namespaces: readonly string[],
  specs: readonly PathSpec[],
  limits: OperationLimits,
): Promise<Array<NodeId | string>> {
  const out: Array<NodeId | string> = specs.map(() => "BadNoMatch (no node at this browse path)");
  const names = specs.map((spec) => spec.browse_path.split("/").slice(1));
  const pilot = specs.findIndex((spec) => spec.namespace === undefined);
  let hint: number | undefined;
  if (pilot >= 0) {
    const order = pathNamespaces(specs[pilot], namespaces) as number[];
    const found = await translateTries(
      session,
      order.map((ns) => ({ at: pilot, ns, names: names[pilot] })),
      limits,
    );
    const i = found.findIndex((id) => id !== undefined);
    if (i >= 0) [hint, out[pilot]] = [order[i], found[i]!];
  }
  const candidates = specs.map((spec, at) =>
    at === pilot ? [] : pathNamespaces(spec, namespaces, hint)
  );
  candidates.forEach((c, at) => typeof c === "string" && (out[at] = c));
  for (let pass = 0;; pass++) {
    const tries: PathTry[] = [];
    candidates.forEach((c, at) => {
      if (typeof c !== "string" && pass < c.length && typeof out[at] === "string") {
        tries.push({ at, ns: c[pass], names: names[at] });
      }
    });
    if (tries.length === 0) return out;
    const found = await translateTries(session, tries, limits);
    tries.forEach((t, i) => found[i] && (out[t.at] = found[i]!));
  }
}

/** Fills `browsePath` by walking inverse hierarchical references up to Objects. */
async function addBrowsePaths(
  session: ClientSession,
  nodes: TargetNode[],
  limits: OperationLimits,
): Promise<void> {
  const work = nodes.map((n) => ({ node: n, at: n.nodeId, parts: [n.browseName ?? n.tagName] }));
  let open = work;
  for (let depth = 0; depth < MAX_PATH_DEPTH && open.length > 0; depth++) {
    const results = await browseAll(
      session,
      open.map((w) => w.at),
      BrowseDirection.Inverse,
      0,
      limits.browse,
    );
    const next: typeof open = [];
    open.forEach((w, i) => {
      const ref = results[i].references?.[0];
      if (!ref) return;
      const id = ref.nodeId.toString();
      if (id === "ns=0;i=85" || id === OBJECTS_FOLDER) {
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

/**
 * Reads each node's `EngineeringUnits` property once and sets `unit` (its
 * display name). Returns the NodeIds of the nodes that have an `EURange`
 * property (what a percent deadband needs).
 */
export async function addUnits(
  session: ClientSession,
  nodes: TargetNode[],
  limits: OperationLimits,
): Promise<Set<string>> {
  const props = await browseAll(
    session,
    nodes.map((n) => n.nodeId),
    BrowseDirection.Forward,
    NodeClassMask.Variable,
    limits.browse,
  );
  const withUnit: Array<{ node: TargetNode; prop: string }> = [];
  const withRange = new Set<string>();
  nodes.forEach((node, i) => {
    const std = (props[i].references ?? []).filter((r) => r.browseName.namespaceIndex === 0);
    const unit = std.find((r) => r.browseName.name === "EngineeringUnits");
    if (unit) withUnit.push({ node, prop: unit.nodeId.toString() });
    if (std.some((r) => r.browseName.name === "EURange")) withRange.add(node.nodeId);
  });
  const dvs = await inBatches(
    withUnit,
    limits.read,
    (part) => session.read(part.map((w) => ({ nodeId: w.prop, attributeId: AttributeIds.Value }))),
  );
  withUnit.forEach((w, i) => {
    const eu = dvs[i].value?.value as
      | { displayName?: { text?: string | null }; description?: { text?: string | null } }
      | null;
    const text = eu?.displayName?.text || eu?.description?.text;
    if (text) w.node.unit ??= text;
  });
  return withRange;
}
