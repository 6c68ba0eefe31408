/**
 * Nodes the server does not know (yet), while connected: configured nodes
 * the setup left unresolved, items CreateMonitoredItems refused, discovery
 * that found problems or fewer Variables than before, and items whose values
 * turn BadNodeIdUnknown/BadNodeIdInvalid after having been known (a program
 * download, an address space that loads after the server accepts sessions).
 * They are resolved again on the live session on a backoff (5 s doubling to
 * 60 s, back to 5 s after a success) and added to the subscription or the
 * polling list. When most items turn unknown at once (a storm), the
 * connection ends for a full setup, as after a server restart.
 */
import { type ClientSession, StatusCodes } from "node-opcua";
import { unmonitor } from "./acquire.ts";
import type { LinkWatch } from "./liveness.ts";
import { addUnits, type NodeSpec, readBrowseNames, resolveExplicit } from "./nodes.ts";
import type { UnresolvedNode } from "./nodes.ts";
import { discoverAgain } from "./setup.ts";
import { connectedNote, count, errorText, setUnknown, type SourceRun } from "./state.ts";
import { monitorMore } from "./subscription.ts";
import type { TargetNode } from "./values.ts";

/** The first wait before resolving again, and the longest. */
const FIRST_MS = 5000, MAX_MS = 60_000;
/** How often the recovery loop looks whether there is work and the link is alive. */
const STEP_MS = 250;
/** Share of the items that, turning unknown at once, means a storm (full setup). */
const STORM_SHARE = 0.5;
/** The statuses of a node the server does not know. */
const GONE = new Set<number>([
  StatusCodes.BadNodeIdUnknown.value,
  StatusCodes.BadNodeIdInvalid.value,
]);

/**
 * Follows the status `code` of a value of `node`: an item that turns
 * BadNodeIdUnknown/BadNodeIdInvalid after having been known is counted and
 * created again later; when more than half of the items turn unknown, the
 * connection ends for a full setup.
 */
export function noteStatus(run: SourceRun, node: TargetNode, code: number): void {
  if (!GONE.has(code)) {
    run.known.add(node);
    return;
  }
  if (!run.known.has(node) || run.gone.has(node) || run.setUpAnew) return;
  run.known.delete(node);
  run.gone.add(node);
  count(run, "nodes_turned_unknown");
  run.detail.nodes_gone = run.gone.size;
  const total = run.nodes.length;
  if (run.gone.size >= 2 && run.gone.size > total * STORM_SHARE) storm(run, total);
  // else: the recovery loop shows the new counts once per step, not once per node.
}

/** Sends the status with the current detail (counts of unknown and gone nodes). */
function showStatus(run: SourceRun): void {
  if (!run.stopped) run.kit.status("connected", connectedNote(run), run.detail);
}

/** Most items turned unknown at once: ends the connection; the next connect sets up anew. */
function storm(run: SourceRun, total: number): void {
  const reason = `${run.gone.size} of ${total} items turned BadNodeIdUnknown at once ` +
    "(the server restarted or reloaded its address space); reading the namespaces and " +
    "resolving every node again";
  run.kit.log("warning", "opcua BadNodeIdUnknown storm; setting up anew", {
    gone: run.gone.size,
    items: total,
  });
  count(run, "node_storms");
  run.setUpAnew = true;
  run.lost(reason);
}

/** True while some nodes wait to be resolved again. */
function pending(run: SourceRun): boolean {
  return run.unknown.length > 0 || run.gone.size > 0 || run.rediscover;
}

/**
 * While `w` says the link is alive: resolves the unknown nodes again on the
 * backoff and adds those found to the acquisition.
 */
export async function recover(run: SourceRun, s: ClientSession, w: LinkWatch): Promise<void> {
  let delay = FIRST_MS;
  let due = performance.now() + delay;
  let goneSeen = run.gone.size;
  while (!run.stopped && w.alive && !run.setUpAnew) {
    await new Promise((r) => setTimeout(r, STEP_MS));
    if (run.gone.size > goneSeen && !run.setUpAnew) {
      // Newly gone items: shown once, and tried soon whatever the backoff had reached.
      showStatus(run);
      [delay, due] = [FIRST_MS, Math.min(due, performance.now() + FIRST_MS)];
    }
    goneSeen = run.gone.size;
    if (!pending(run)) {
      [delay, due] = [FIRST_MS, performance.now() + FIRST_MS];
      continue;
    }
    if (performance.now() < due || run.rebuilding || !w.alive || run.stopped) continue;
    let back = 0;
    // One at a time: the subscription watchdog does not rebuild during a round.
    run.rebuilding = true;
    try {
      back = await recoverOnce(run, s);
    } catch (e) {
      run.kit.log("debug", "opcua resolving unknown nodes failed", { error: errorText(e) });
    } finally {
      run.rebuilding = false;
    }
    delay = back > 0 ? FIRST_MS : Math.min(delay * 2, MAX_MS);
    due = performance.now() + delay;
  }
}

/** One round: gone items out, unknown ones resolved, found ones in; gives how many came back. */
async function recoverOnce(run: SourceRun, s: ClientSession): Promise<number> {
  const before = run.unknown.length;
  await dropGone(run, s);
  const { found, still } = await resolveAgain(run, s, run.unknown);
  const fresh = run.rediscover ? await rediscovered(run, s, found) : [];
  const { added, refused } = await monitorFound(run, s, [...found, ...fresh]);
  if (run.stopped || run.setUpAnew) return 0;
  run.nodes.push(...added);
  setUnknown(run, [...still, ...refused]);
  run.detail.nodes = run.nodes.length;
  if (added.length === 0) {
    if (run.unknown.length !== before) showStatus(run);
    return 0;
  }
  count(run, "nodes_recovered", added.length);
  run.kit.log("info", "opcua nodes recovered", {
    count: added.length,
    still_unknown: run.unknown.length,
  });
  run.errorShown = false;
  showStatus(run);
  return added.length;
}

/**
 * Takes the items that turned unknown out of the acquisition (their
 * monitored items deleted) and adds them to the unknown nodes.
 */
async function dropGone(run: SourceRun, s: ClientSession): Promise<void> {
  if (run.gone.size === 0) return;
  const gone = [...run.gone].filter((n) => run.nodes.includes(n));
  run.gone.clear();
  run.detail.nodes_gone = 0;
  for (const n of gone) run.nodes.splice(run.nodes.indexOf(n), 1);
  const items = gone.flatMap((n) => run.items.get(n) ?? []);
  for (const n of gone) run.items.delete(n);
  run.detail.monitored_items = run.items.size;
  setUnknown(run, [
    ...run.unknown,
    ...gone.map((node) => ({
      address: node.address,
      error: "BadNodeIdUnknown (the node went away on the server)",
      code: StatusCodes.BadNodeIdUnknown.value,
      node,
    })),
  ]);
  if (items.length > 0 && run.subscription) {
    await unmonitor(s, run.subscription, items, run.limits!.monitoredItems).catch(() => {});
  }
}

/** The configured entry an unknown node came from, if any. */
function specOf(run: SourceRun, u: UnresolvedNode): NodeSpec | undefined {
  const configured = run.cfg.nodes?.slice(0, run.cfg.variable_limit) ?? [];
  const path = u.node?.browsePath;
  return configured.find((spec) =>
    typeof spec === "string"
      ? spec === u.address
      : spec.node_id !== undefined
      ? spec.node_id === u.address
      : spec.browse_path === u.address || spec.browse_path === path
  );
}

/**
 * Resolves the unknown nodes again: configured ones from their entries
 * (browse paths looked up anew), discovered ones by their NodeIds.
 */
async function resolveAgain(
  run: SourceRun,
  s: ClientSession,
  list: UnresolvedNode[],
): Promise<{ found: TargetNode[]; still: UnresolvedNode[] }> {
  const specs: NodeSpec[] = [], direct: TargetNode[] = [], rest: UnresolvedNode[] = [];
  for (const u of list) {
    const spec = specOf(run, u);
    if (spec !== undefined) specs.push(spec);
    else if (u.node) direct.push(u.node);
    else rest.push(u);
  }
  const none = { nodes: [], unresolved: [] };
  const a = specs.length > 0 ? await resolveExplicit(s, run.namespaces, specs, run.limits!) : none;
  const b = direct.length > 0 ? await readBrowseNames(s, direct, run.limits!) : none;
  return { found: [...a.nodes, ...b.nodes], still: [...a.unresolved, ...b.unresolved, ...rest] };
}

/** Discovery again: the Variables it finds that are not read or waiting yet. */
async function rediscovered(
  run: SourceRun,
  s: ClientSession,
  found: TargetNode[],
): Promise<TargetNode[]> {
  const d = await discoverAgain(run, s, run.namespaces, run.limits!);
  const have = new Set([...run.nodes, ...found].map((n) => n.nodeId));
  for (const u of run.unknown) if (u.node) have.add(u.node.nodeId);
  const room = Math.max(0, run.cfg.variable_limit - run.nodes.length - found.length);
  return d.nodes.filter((n) => !have.has(n.nodeId)).slice(0, room);
}

/** Reads the units of `found` and adds them to the subscription (or the polling list). */
async function monitorFound(
  run: SourceRun,
  s: ClientSession,
  found: TargetNode[],
): Promise<{ added: TargetNode[]; refused: UnresolvedNode[] }> {
  if (found.length === 0) return { added: [], refused: [] };
  const ranged = await addUnits(s, found, run.limits!);
  run.withRange = new Set([...run.withRange, ...ranged]);
  if (run.cfg.polling_mode) return { added: found, refused: [] };
  if (!run.subscription) {
    // The subscription is being rebuilt: the next round adds them.
    const code = StatusCodes.BadNodeIdUnknown.value;
    const later = found.map((node) => ({
      address: node.address,
      error: "not monitored yet",
      code,
      node,
    }));
    return { added: [], refused: later };
  }
  const res = await monitorMore(run, found);
  return { added: [...res.items.keys()], refused: res.refused };
}
