/**
 * The full setup of an OPC UA source: finds the endpoint with the configured
 * security and checks trust and login (`security.ts`), connects, creates a
 * session, reads the server's operation limits, resolves the configured
 * nodes or discovers Variables (`nodes.ts`), reads their units and, unless
 * polling, subscribes.
 */
import type { ClientSession } from "node-opcua";
import {
  addUnits,
  DEFAULT_DISCOVERY,
  discover,
  type Discovered,
  namespacesOf,
  type NodeSpec,
  type OperationLimits,
  operationLimits,
  resolveExplicit,
} from "./nodes.ts";
import { opcuaPkiDir } from "./pki.ts";
import {
  checkLogin,
  checkServerCertificate,
  offeredEndpoints,
  openAgentPki,
  pickEndpoint,
  sessionErrorText,
  userIdentity,
} from "./security.ts";
import { openClient } from "./client.ts";
import { count, reportUnresolved, setUnknown, type SourceRun } from "./state.ts";
import { subscribe } from "./subscription.ts";
import type { TargetNode } from "./values.ts";

/** Sets everything up anew on a new session; gives the nodes read from then on. */
export async function setUp(run: SourceRun): Promise<TargetNode[]> {
  const { cfg, kit, detail } = run;
  const agent = run.pki ??= await openAgentPki(opcuaPkiDir(run.dataDir));
  const offered = await offeredEndpoints(cfg.endpoint, agent, (d) => (run.client = d));
  const endpoint = pickEndpoint(offered, cfg);
  checkLogin(endpoint, cfg);
  const secure = cfg.security_mode !== "None";
  if (secure) await checkServerCertificate(agent, endpoint.serverCertificate, cfg, kit);
  const identity = await userIdentity(cfg);
  run.serverCertificate = secure ? endpoint.serverCertificate : undefined;
  const c = await openClient(run, agent);
  const s = await c.createSession(identity).catch((e) => {
    throw new Error(sessionErrorText(e, cfg));
  });
  run.session = s;
  forgetNodes(run);
  const limits = run.limits = await limitsOf(run, s);
  const nodes = run.nodes = await selectNodes(run, s, limits);
  if (!cfg.polling_mode) await subscribe(run, s, nodes, limits, true);
  detail.nodes = nodes.length;
  count(run, "full_setups");
  return nodes;
}

/** Forgets the nodes of the previous setup (unknown, gone, monitored). */
function forgetNodes(run: SourceRun): void {
  setUnknown(run, []);
  run.nodes = [];
  run.items = new Map();
  run.gone.clear();
  run.detail.nodes_gone = 0;
  run.setUpAnew = false;
  run.rediscover = false;
}

/**
 * The server's operation limits; a too-large answer (BadTooManyOperations,
 * BadRequestTooLarge, BadResponseTooLarge) shrinks them (and says so).
 */
async function limitsOf(run: SourceRun, s: ClientSession): Promise<OperationLimits> {
  const { kit, detail } = run;
  const limits = await operationLimits(s);
  for (const [service, batch] of Object.entries(limits)) {
    batch.onShrink = (from: number, to: number, answer: string) => {
      const msg = `server answered ${answer} to ${from} ${service} operations ` +
        `in one call; retrying with ${to} and keeping that size (the server accepts less ` +
        "than it advertises; nothing to do unless it keeps shrinking, then raise its limits)";
      kit.log("warning", "opcua batch too large", { service, from, to, answer });
      if (run.stopped) return;
      run.errorShown = true;
      kit.status("error", msg, detail);
    };
  }
  detail.max_nodes_per_read = limits.read.size;
  detail.max_monitored_items_per_call = limits.monitoredItems.size;
  return limits;
}

/** The configured nodes, or those discovered; reports the unknown ones and reads units. */
async function selectNodes(
  run: SourceRun,
  s: ClientSession,
  limits: OperationLimits,
): Promise<TargetNode[]> {
  const { cfg } = run;
  const namespaces = await namespacesOf(s);
  run.namespaces = namespaces;
  run.detail.namespaces = namespaces.length;
  const nodes = cfg.nodes && cfg.nodes.length > 0
    ? await resolveConfigured(run, s, namespaces, cfg.nodes.slice(0, cfg.variable_limit), limits)
    : await discoverNodes(run, s, namespaces, limits);
  run.withRange = await addUnits(s, nodes, limits);
  return nodes;
}

/** The configured nodes `explicit`; reports those the server does not know. */
async function resolveConfigured(
  run: SourceRun,
  s: ClientSession,
  namespaces: string[],
  explicit: readonly NodeSpec[],
  limits: OperationLimits,
): Promise<TargetNode[]> {
  const res = await resolveExplicit(s, namespaces, explicit, limits);
  reportUnresolved(run, res.unresolved);
  return res.nodes;
}

/**
 * Discovery as configured on `s`; notes whether it is to be tried again
 * (problems, or fewer Variables than before: an address space still loading).
 */
export async function discoverAgain(
  run: SourceRun,
  s: ClientSession,
  namespaces: string[],
  limits: OperationLimits,
): Promise<Discovered> {
  const { cfg } = run;
  const d = cfg.discovery;
  const found = await discover(s, namespaces, {
    ...DEFAULT_DISCOVERY,
    ...(d && { roots: d.roots, maxDepth: d.max_depth, include: d.include, exclude: d.exclude }),
    limit: cfg.variable_limit,
  }, limits);
  const n = found.nodes.length;
  // The same smaller count three times in a row: those Variables are gone for good.
  const last = run.discoveredLast;
  last.times = n === last.count ? last.times + 1 : 1;
  last.count = n;
  if (last.times >= 3 && n > 0) run.discoveredMost = n;
  run.rediscover = !found.truncated &&
    (found.problems.length > 0 || n === 0 || n < run.discoveredMost);
  run.discoveredMost = Math.max(run.discoveredMost, n);
  run.detail.discovery_retry = run.rediscover;
  run.discoveryProblems = found.problems.length > 0
    ? `${found.problems.join("; ")} (discovery is tried again)`
    : undefined;
  return found;
}

/** The Variables below the discovery roots (up to `variable_limit`); reports problems. */
async function discoverNodes(
  run: SourceRun,
  s: ClientSession,
  namespaces: string[],
  limits: OperationLimits,
): Promise<TargetNode[]> {
  const { cfg, kit, detail } = run;
  const found = await discoverAgain(run, s, namespaces, limits);
  for (const p of found.problems) kit.log("warning", "opcua discovery", { problem: p });
  if (found.problems.length > 0) kit.status("error", found.problems.join("; "), detail);
  if (found.truncated) {
    kit.log("warning", "opcua discovery stopped at variable_limit", {
      variable_limit: cfg.variable_limit,
    });
  }
  return found.nodes;
}
