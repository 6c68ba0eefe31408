/**
 * OPC UA source Worker (node-opcua client): picks the endpoint with the
 * configured security and checks the server's certificate (`security.ts`),
 * connects, creates a session, resolves the configured NodeIds (or discovers
 * Variables below the discovery roots up to `variable_limit`), reads engineering
 * units once, then either monitors every node in one subscription or reads them
 * all on a fixed schedule, in calls split by the server's operation limits
 * (`acquire.ts`).
 * node-opcua repairs a lost connection and its session/subscription itself;
 * a failed first connect is retried here with backoff and jitter.
 */
import {
  type ClientSession,
  type ClientSubscription,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
} from "node-opcua";
import { Buffer } from "node:buffer";
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import {
  addUnits,
  DEFAULT_DISCOVERY,
  discover,
  namespacesOf,
  type OperationLimits,
  operationLimits,
  resolveExplicit,
  type UnresolvedNode,
} from "./nodes.ts";
import { monitorNodes, readValues } from "./acquire.ts";
import type { OpcuaSourceConfig } from "./schema.ts";
import { opcuaPkiDir } from "./pki.ts";
import {
  type AgentPki,
  checkLogin,
  checkServerCertificate,
  connectErrorText,
  offeredEndpoints,
  openAgentPki,
  pickEndpoint,
  sessionErrorText,
  userIdentity,
} from "./security.ts";
import { backoffMs, nextPollAt } from "./timing.ts";
import { readingOf, type TargetNode } from "./values.ts";

/** How long stop() waits for each of the close calls. */
const CLOSE_TIMEOUT_MS = 2000;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves `p`, or undefined after `ms` (errors are swallowed). */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) => (t = setTimeout(() => r(undefined), ms)));
  return Promise.race([p.catch(() => undefined), timeout]).finally(() => clearTimeout(t));
}

function opcuaDriver(cfg: OpcuaSourceConfig, kit: SourceKit, dataDir: string): SourceDriver {
  const mode = cfg.polling_mode ? "polling" : "subscription";
  const detail: Record<string, unknown> = {
    security_mode: cfg.security_mode,
    security_policy: cfg.security_policy,
    mode,
    monitored_items: 0,
    nodes: 0,
  };
  let stopped = false;
  let client: OPCUAClient | undefined;
  let session: ClientSession | undefined;
  let subscription: ClientSubscription | undefined;
  let pki: AgentPki | undefined;
  let wake: () => void = () => {};
  let limits: OperationLimits | undefined;
  /** NodeIds with an EURange property (for a percent deadband). */
  let withRange: ReadonlySet<string> = new Set();
  let deadbandWarning: string | undefined;
  let done: Promise<void> = Promise.resolve();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  function newClient(agent: AgentPki, serverCertificate?: Buffer): OPCUAClient {
    const c = OPCUAClient.create({
      applicationName: "otedge",
      applicationUri: agent.applicationUri,
      clientName: cfg.name,
      serverCertificate,
      securityMode: MessageSecurityMode[cfg.security_mode],
      securityPolicy: SecurityPolicy[cfg.security_policy],
      endpointMustExist: false,
      keepSessionAlive: true,
      requestedSessionTimeout: 60_000,
      // One retry on the first connect (then this worker backs off); repairs after a
      // lost connection retry forever inside node-opcua.
      connectionStrategy: { initialDelay: 1000, maxDelay: 30_000, maxRetry: 1 },
      clientCertificateManager: agent.certs,
    });
    c.on("connection_lost", () => {
      if (!stopped) kit.status("disconnected", `connection to ${cfg.endpoint} lost`, detail);
    });
    c.on("connection_reestablished", () => {
      if (stopped) return;
      kit.counters.reconnects++;
      kit.status("connected", undefined, detail);
    });
    return c;
  }

  /** Emits a bad reading for each node the server does not know. */
  function reportUnresolved(list: UnresolvedNode[]): void {
    for (const u of list) {
      kit.log("warning", "opcua node not resolved", { address: u.address, error: u.error });
      kit.emit({
        address: u.address,
        tag_name: u.address,
        value: null,
        quality_code: u.code,
        event_time: Date.now() * 1000,
        metadata: { error: u.error },
      });
    }
  }

  /** The server's operation limits; a BadTooManyOperations answer shrinks them (and says so). */
  async function limitsOf(s: ClientSession): Promise<OperationLimits> {
    const limits = await operationLimits(s);
    for (const [service, batch] of Object.entries(limits)) {
      batch.onShrink = (from: number, to: number) => {
        const msg = `server answered BadTooManyOperations to ${from} ${service} operations ` +
          `in one call; retrying with ${to} (lower the server's load or raise its limits)`;
        kit.log("warning", "opcua batch too large", { service, from, to });
        if (!stopped) kit.status("error", msg, detail);
      };
    }
    detail.max_nodes_per_read = limits.read.size;
    detail.max_monitored_items_per_call = limits.monitoredItems.size;
    return limits;
  }

  async function selectNodes(s: ClientSession, limits: OperationLimits): Promise<TargetNode[]> {
    const namespaces = await namespacesOf(s);
    let nodes: TargetNode[];
    if (cfg.nodes && cfg.nodes.length > 0) {
      const explicit = cfg.nodes.slice(0, cfg.variable_limit);
      const res = await resolveExplicit(s, namespaces, explicit, limits);
      reportUnresolved(res.unresolved);
      nodes = res.nodes;
    } else {
      const d = cfg.discovery;
      const found = await discover(s, namespaces, {
        ...DEFAULT_DISCOVERY,
        ...(d && { roots: d.roots, maxDepth: d.max_depth, include: d.include, exclude: d.exclude }),
        limit: cfg.variable_limit,
      }, limits);
      for (const p of found.problems) kit.log("warning", "opcua discovery", { problem: p });
      if (found.problems.length > 0) kit.status("error", found.problems.join("; "), detail);
      if (found.truncated) {
        kit.log("warning", "opcua discovery stopped at variable_limit", {
          variable_limit: cfg.variable_limit,
        });
      }
      nodes = found.nodes;
    }
    withRange = await addUnits(s, nodes, limits);
    return nodes;
  }

  async function subscribe(s: ClientSession, nodes: TargetNode[], limits: OperationLimits) {
    const t0 = performance.now();
    const sub = await s.createSubscription2({
      requestedPublishingInterval: cfg.publishing_interval_ms ?? 1000,
      requestedLifetimeCount: 60,
      requestedMaxKeepAliveCount: 10,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 1,
    });
    subscription = sub;
    const res = await monitorNodes(sub, nodes, cfg, withRange, limits.monitoredItems, (n, dv) => {
      if (!stopped) kit.emit(readingOf(n, dv));
    });
    reportUnresolved(res.refused);
    detail.monitored_items = res.monitored;
    detail.create_monitored_items_calls = res.calls;
    detail.max_monitored_items_per_call = limits.monitoredItems.size;
    detail.subscription_setup_ms = Math.round(performance.now() - t0);
    if (res.withoutRange.length > 0) {
      const list = res.withoutRange.slice(0, 3).map((n) => n.address).join(", ");
      const msg = `deadband_type percent needs an EURange; ${res.withoutRange.length} node(s) ` +
        `have none and are monitored without a deadband (e.g. ${list}); use deadband_type ` +
        "absolute for them";
      kit.log("warning", "opcua percent deadband without EURange", {
        nodes: res.withoutRange.length,
      });
      detail.without_eurange = res.withoutRange.length;
      deadbandWarning = msg;
    }
  }

  async function poll(s: ClientSession, nodes: TargetNode[], limits: OperationLimits) {
    const interval = cfg.polling_interval_ms;
    const start = performance.now();
    let failing = false;
    while (!stopped) {
      await kit.waitForCredit();
      if (stopped) return;
      try {
        const dvs = await readValues(s, nodes, limits.read);
        if (!stopped) dvs.forEach((dv, i) => kit.emit(readingOf(nodes[i], dv)));
        detail.max_nodes_per_read = limits.read.size;
        if (failing) kit.status("connected", undefined, detail);
        failing = false;
      } catch (e) {
        if (!failing && !stopped) kit.status("error", `read failed: ${errorText(e)}`, detail);
        failing = true;
      }
      await sleep(nextPollAt(start, interval, performance.now()) - performance.now());
    }
  }

  async function release(): Promise<void> {
    const sub = subscription, s = session, c = client;
    subscription = undefined;
    session = undefined;
    client = undefined;
    if (sub) await within(sub.terminate(), CLOSE_TIMEOUT_MS);
    if (s) await within(s.close(), CLOSE_TIMEOUT_MS);
    if (c) await within(c.disconnect(), CLOSE_TIMEOUT_MS);
  }

  /** Finds the endpoint with the configured security, checks trust and login, then connects. */
  async function connectOnce(): Promise<TargetNode[]> {
    const agent = pki ??= await openAgentPki(opcuaPkiDir(dataDir));
    const offered = await offeredEndpoints(cfg.endpoint, agent, (d) => (client = d));
    const endpoint = pickEndpoint(offered, cfg);
    checkLogin(endpoint, cfg);
    const secure = cfg.security_mode !== "None";
    if (secure) await checkServerCertificate(agent, endpoint.serverCertificate, cfg, kit);
    const identity = await userIdentity(cfg);
    const c = newClient(agent, secure ? endpoint.serverCertificate : undefined);
    client = c;
    await c.connect(cfg.endpoint).catch((e) => {
      throw new Error(connectErrorText(e, agent));
    });
    const s = await c.createSession(identity).catch((e) => {
      throw new Error(sessionErrorText(e, cfg));
    });
    session = s;
    limits = await limitsOf(s);
    const nodes = await selectNodes(s, limits);
    detail.nodes = nodes.length;
    if (!cfg.polling_mode) await subscribe(s, nodes, limits);
    return nodes;
  }

  async function loop(): Promise<void> {
    for (let attempt = 0; !stopped; attempt++) {
      kit.status("connecting", undefined, detail);
      let nodes: TargetNode[];
      try {
        nodes = await connectOnce();
      } catch (e) {
        await release();
        if (stopped) return;
        kit.status("error", `connect to ${cfg.endpoint} failed: ${errorText(e)}`, detail);
        await sleep(backoffMs(attempt));
        continue;
      }
      if (stopped) return await release(); // stop() came while connecting
      if (attempt > 0) kit.counters.reconnects++;
      kit.status("connected", deadbandWarning, detail);
      if (cfg.polling_mode) await poll(session!, nodes, limits!);
      return;
    }
  }

  return {
    start() {
      done = loop().catch((e) => kit.status("error", `opcua source failed: ${errorText(e)}`));
    },
    async stop() {
      stopped = true;
      wake();
      await release();
      await done;
      await pki?.certs.dispose();
    },
  };
}

runSourceWorker((source, kit, dataDir) =>
  opcuaDriver(source as unknown as OpcuaSourceConfig, kit, dataDir)
);
