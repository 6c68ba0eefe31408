/**
 * OPC UA source Worker (node-opcua client): picks the endpoint with the
 * configured security and checks the server's certificate (`security.ts`),
 * connects, creates a session, resolves the configured nodes (NodeIds, browse
 * paths) or discovers Variables below the discovery roots up to
 * `variable_limit`, reads engineering units once, then either monitors every
 * node in one subscription or reads them all on a fixed schedule, in calls
 * split by the server's operation limits (`acquire.ts`).
 *
 * The source owns its reconnect loop (node-opcua's own repair is off): a lost
 * or silent link (`liveness.ts`) closes the client but keeps the session and
 * subscription; the next attempt, after a backoff of 1 s doubling to 30 s
 * with jitter, cut short when the server, seen gone, answers an OPC UA Hello
 * again, activates that session on a new secure channel and fetches what the
 * subscription sent meanwhile (`resume.ts`), or moves the subscription to a
 * new session; when the server knows neither (restart) or renumbered its
 * namespaces, it builds everything again — session, namespace indices,
 * nodes, subscription. A subscription that goes silent while the session
 * answers is rebuilt in place.
 */
import {
  AttributeIds,
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
import { nextTick, reconnectDelayMs } from "../schedule.ts";
import { readingOf, type TargetNode } from "./values.ts";
import {
  KEEPALIVE_TARGET_MS,
  LinkWatch,
  serverAnswers,
  SILENCE_MS,
  TICK_MS,
  TRANSPORT_TIMEOUT_MS,
  WATCHDOG_PERIODS,
} from "./liveness.ts";
import { subscriptionParameters, unknownNodesText } from "./staying.ts";
import {
  followSequence,
  holdPublishing,
  renewSession,
  republishMissed,
  sameNamespaces,
  subscriptionUnknown,
  transferSubscription,
} from "./resume.ts";

/** How long stop() waits for each of the close calls. */
const CLOSE_TIMEOUT_MS = 2000;
/** How often a reconnect wait checks whether the server answers a Hello again. */
const HELLO_PROBE_MS = 1000;
/** A connection that lasted this long is followed by an immediate reconnect. */
const STABLE_MS = 30_000;
/** Server/ServerStatus/CurrentTime: what the link probe reads. */
const SERVER_TIME = "i=2258";
/** Unknown node ids shown in the status. */
const UNKNOWN_SHOWN = 5;

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves `p`, or undefined after `ms` (errors are swallowed). */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) => (t = setTimeout(() => r(undefined), ms)));
  return Promise.race([p.catch(() => undefined), timeout]).finally(() => clearTimeout(t));
}

/** A session (and its subscription) kept over a link loss. */
interface Kept {
  session: ClientSession;
  subscription?: ClientSubscription;
  nodes: TargetNode[];
  /** The NamespaceArray the nodes were resolved with. */
  namespaces: string[];
  /** Monitored items of the subscription. */
  monitored: number;
  /** Attempts that activated the session but then failed. */
  failures: number;
}

/** Attempts that activate a kept session but fail afterwards before it is given up. */
const RESUME_FAILURES = 3;

function opcuaDriver(cfg: OpcuaSourceConfig, kit: SourceKit, dataDir: string): SourceDriver {
  const mode = cfg.polling_mode ? "polling" : "subscription";
  const detail: Record<string, unknown> = {
    security_mode: cfg.security_mode,
    security_policy: cfg.security_policy,
    mode,
    monitored_items: 0,
    nodes: 0,
    unknown_nodes: 0,
    unknown_node_ids: [],
    reconnects: 0,
    subscription_rebuilds: 0,
    full_setups: 0,
    sessions_reactivated: 0,
    subscriptions_transferred: 0,
    subscriptions_recreated: 0,
    notifications_republished: 0,
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
  /** Nodes the server does not know (this connect). */
  let unknown: UnresolvedNode[] = [];
  let watch: LinkWatch | undefined;
  /** When the subscription last sent data or a keep-alive (performance.now()). */
  let subscriptionHeard = 0;
  let keepAliveMs = 0;
  let rebuilding = false;
  /** Set while connected: ends the connection with the reason. */
  let lost: (reason: string) => void = () => {};
  /** The server was seen gone since the last connect or early retry (a restart is under way). */
  let serverGoneSeen = false;
  let done: Promise<void> = Promise.resolve();
  /** The NamespaceArray the nodes were resolved with. */
  let namespacesInUse: string[] = [];
  /** The server certificate of the endpoint in use (secure modes). */
  let serverCertificate: Buffer | undefined;
  /** The session (and subscription) kept over a link loss, to be resumed on the next connect. */
  let kept: Kept | undefined;

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
      requestedSessionTimeout: 60_000,
      // No repair inside node-opcua: this worker reconnects (and re-resolves everything).
      connectionStrategy: { initialDelay: 1000, maxDelay: 2000, maxRetry: 0 },
      // A link loss keeps the session: disconnect() leaves it to be activated again.
      keepPendingSessionsOnDisconnect: true,
      transportTimeout: TRANSPORT_TIMEOUT_MS,
      clientCertificateManager: agent.certs,
    });
    // Only the current client may end the connection (a released one may still report).
    c.on("connection_lost", () => {
      if (client === c) {
        lost(`connection to ${cfg.endpoint} lost (server stopped or link cut); reconnecting`);
      }
    });
    c.on("close", (err?: Error | null) => {
      if (err && client === c) {
        lost(`connection to ${cfg.endpoint} closed (${err.message}); reconnecting`);
      }
    });
    return c;
  }

  /** Emits a bad reading for each node the server does not know, and counts them. */
  function reportUnresolved(list: UnresolvedNode[]): void {
    if (list.length === 0) return;
    unknown = [...unknown, ...list];
    detail.unknown_nodes = unknown.length;
    detail.unknown_node_ids = unknown.slice(0, UNKNOWN_SHOWN).map((u) => u.address);
    kit.log("warning", "opcua nodes not resolved", {
      count: list.length,
      first: list.slice(0, UNKNOWN_SHOWN).map((u) => `${u.address}: ${u.error}`),
    });
    for (const u of list) {
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

  /** What the `connected` status says besides the state (warnings), if anything. */
  function connectedNote(): string | undefined {
    const notes = [unknownNodesText(unknown, UNKNOWN_SHOWN), deadbandWarning].filter(Boolean);
    return notes.length > 0 ? notes.join("; ") : undefined;
  }

  /** The server's operation limits; a BadTooManyOperations answer shrinks them (and says so). */
  async function limitsOf(s: ClientSession): Promise<OperationLimits> {
    const limits = await operationLimits(s);
    for (const [service, batch] of Object.entries(limits)) {
      batch.onShrink = (from: number, to: number) => {
        const msg = `server answered BadTooManyOperations to ${from} ${service} operations ` +
          `in one call; retrying with ${to} and keeping that size (the server accepts less ` +
          "than it advertises; nothing to do unless it keeps shrinking, then raise its limits)";
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
    namespacesInUse = namespaces;
    detail.namespaces = namespaces.length;
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

  /** Data or a keep-alive from the subscription. */
  function subscriptionAlive(): void {
    subscriptionHeard = performance.now();
    watch?.heard();
  }

  /** Creates the subscription and its monitored items; `first` reports refused items. */
  async function subscribe(
    s: ClientSession,
    nodes: TargetNode[],
    limits: OperationLimits,
    first: boolean,
  ): Promise<void> {
    const t0 = performance.now();
    const sub = await s.createSubscription2(
      subscriptionParameters(cfg.publishing_interval_ms ?? 1000, KEEPALIVE_TARGET_MS),
    );
    subscription = sub;
    followSequence(sub);
    keepAliveMs = sub.publishingInterval * sub.maxKeepAliveCount;
    detail.keep_alive_ms = keepAliveMs;
    subscriptionHeard = performance.now();
    sub.on("keepalive", () => subscription === sub && subscriptionAlive());
    const res = await monitorNodes(sub, nodes, cfg, withRange, limits.monitoredItems, (n, dv) => {
      if (subscription === sub) subscriptionAlive();
      if (!stopped) kit.emit(readingOf(n, dv));
    });
    if (first) reportUnresolved(res.refused);
    detail.monitored_items = res.monitored;
    detail.create_monitored_items_calls = res.calls;
    detail.max_monitored_items_per_call = limits.monitoredItems.size;
    detail.subscription_setup_ms = Math.round(performance.now() - t0);
    if (first && res.withoutRange.length > 0) {
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

  /**
   * The watchdog: a subscription without data or keep-alive for
   * WATCHDOG_PERIODS keep-alive periods, on a session that still answers, is
   * deleted and created again with the same nodes.
   */
  async function checkSubscription(w: LinkWatch, nodes: TargetNode[]): Promise<void> {
    const sub = subscription, s = session;
    if (!sub || !s || !limits || rebuilding || stopped) return;
    const silent = performance.now() - subscriptionHeard;
    if (silent < WATCHDOG_PERIODS * keepAliveMs + TICK_MS || w.silentMs >= SILENCE_MS) return;
    rebuilding = true;
    const seconds = Math.round(silent / 1000);
    kit.log("warning", "opcua subscription silent; rebuilding it", { silent_s: seconds });
    subscription = undefined;
    try {
      await within(sub.terminate(), CLOSE_TIMEOUT_MS);
      await subscribe(s, nodes, limits, false);
      detail.subscription_rebuilds = (detail.subscription_rebuilds as number) + 1;
      if (!stopped) {
        kit.status(
          "connected",
          `the subscription sent neither data nor keep-alive for ${seconds} s; rebuilt it`,
          detail,
        );
      }
    } catch (e) {
      w.dead(`rebuilding the silent subscription failed: ${errorText(e)}`);
    } finally {
      rebuilding = false;
    }
  }

  /** Reads every node on the polling schedule while `w` says the link is alive. */
  async function poll(
    s: ClientSession,
    nodes: TargetNode[],
    limits: OperationLimits,
    w: LinkWatch,
  ) {
    const interval = cfg.polling_interval_ms;
    const start = performance.now();
    let failing = false;
    while (!stopped && w.alive) {
      await kit.waitForCredit();
      if (stopped || !w.alive) return;
      try {
        const dvs = await readValues(s, nodes, limits.read);
        if (!w.alive) return;
        w.heard();
        if (!stopped) dvs.forEach((dv, i) => kit.emit(readingOf(nodes[i], dv)));
        detail.max_nodes_per_read = limits.read.size;
        if (failing) kit.status("connected", connectedNote(), detail);
        failing = false;
      } catch (e) {
        if (!failing && !stopped && w.alive) {
          kit.status("error", `read failed: ${errorText(e)}`, detail);
        }
        failing = true;
      }
      await sleep(nextTick(start, interval, performance.now()) - performance.now());
    }
  }

  /** Watches the connection until it is lost (or the source stops); gives the reason. */
  async function supervise(nodes: TargetNode[]): Promise<string> {
    const s = session!;
    const ended = new Promise<string>((resolve) => {
      lost = (reason) => {
        lost = () => {};
        wake();
        resolve(reason);
      };
    });
    const w = new LinkWatch(
      () => s.read({ nodeId: SERVER_TIME, attributeId: AttributeIds.Value }),
      (reason) => lost(reason),
      (w) => void checkSubscription(w, nodes),
    );
    watch = w;
    w.start();
    if (cfg.polling_mode) void poll(s, nodes, limits!, w);
    const reason = await ended;
    w.dead(reason);
    return reason;
  }

  /** Closes subscription, session and client; `graceful` false skips the subscription's goodbye. */
  async function release(graceful = true): Promise<void> {
    const sub = subscription, s = session, c = client;
    subscription = undefined;
    session = undefined;
    client = undefined;
    if (graceful && sub) await within(sub.terminate(), CLOSE_TIMEOUT_MS);
    // A session kept for the next connect stays open on the server; any other is closed
    // (disconnect() leaves sessions open, see newClient).
    if (s && s !== kept?.session) await within(s.close(), CLOSE_TIMEOUT_MS);
    if (c) await within(c.disconnect(), CLOSE_TIMEOUT_MS);
  }

  /**
   * The full setup: finds the endpoint with the configured security, checks
   * trust and login, connects, creates a session, resolves the nodes and
   * subscribes.
   */
  async function setUp(): Promise<TargetNode[]> {
    const agent = pki ??= await openAgentPki(opcuaPkiDir(dataDir));
    const offered = await offeredEndpoints(cfg.endpoint, agent, (d) => (client = d));
    const endpoint = pickEndpoint(offered, cfg);
    checkLogin(endpoint, cfg);
    const secure = cfg.security_mode !== "None";
    if (secure) await checkServerCertificate(agent, endpoint.serverCertificate, cfg, kit);
    const identity = await userIdentity(cfg);
    serverCertificate = secure ? endpoint.serverCertificate : undefined;
    const c = newClient(agent, serverCertificate);
    client = c;
    await c.connect(cfg.endpoint).catch((e) => {
      throw new Error(connectErrorText(e, agent, cfg.endpoint));
    });
    const s = await c.createSession(identity).catch((e) => {
      throw new Error(sessionErrorText(e, cfg));
    });
    session = s;
    unknown = [];
    detail.unknown_nodes = 0;
    detail.unknown_node_ids = [];
    limits = await limitsOf(s);
    const nodes = await selectNodes(s, limits);
    detail.nodes = nodes.length;
    if (!cfg.polling_mode) await subscribe(s, nodes, limits, true);
    detail.full_setups = (detail.full_setups as number) + 1;
    return nodes;
  }

  /** Holds the session (and subscription) of a lost link for the next connect. */
  function keep(nodes: TargetNode[]): void {
    if (!session || stopped) return;
    if (subscription) holdPublishing(session, true);
    kept = {
      session,
      subscription,
      nodes,
      namespaces: namespacesInUse,
      monitored: detail.monitored_items as number,
      failures: 0,
    };
  }

  const count = (key: string, n = 1) => (detail[key] = (detail[key] as number) + n);

  /**
   * Connects on a new secure channel and activates the kept session there;
   * undefined when the server no longer knows it (restarted, timed out) or
   * renumbered its namespaces: then the full setup follows. Throws when the
   * server cannot be reached (the session stays kept for the next attempt).
   */
  async function resume(k: Kept): Promise<TargetNode[] | undefined> {
    const c = newClient(pki!, serverCertificate);
    client = c;
    await c.connect(cfg.endpoint).catch((e) => {
      throw new Error(connectErrorText(e, pki!, cfg.endpoint));
    });
    try {
      await c.reactivateSession(k.session);
    } catch (e) {
      kept = undefined;
      kit.log("info", "opcua session not activated again", { reason: errorText(e) });
      return k.subscription ? await transfer(k, k.subscription) : await forget();
    }
    session = k.session;
    subscription = k.subscription;
    kept = undefined;
    try {
      if (!await sameNamespacesAs(k)) return undefined;
      count("sessions_reactivated");
      if (k.subscription) await resumeSubscription(k.session, k.subscription, k);
    } catch (e) {
      // The link failed again (most likely): keep the session for the next attempts.
      if (++k.failures < RESUME_FAILURES) {
        kept = k;
        if (k.subscription) holdPublishing(k.session, true);
      }
      throw e;
    }
    kit.log("info", "opcua session resumed", { endpoint: cfg.endpoint });
    return k.nodes;
  }

  /** Lets the kept session go (and whatever is attached to the client); undefined. */
  async function forget(): Promise<undefined> {
    kit.log("info", "opcua session and subscription not kept; setting up anew", {});
    await release(true);
    return undefined;
  }

  /** False (after letting the session go) when the server's NamespaceArray changed. */
  async function sameNamespacesAs(k: Kept): Promise<boolean> {
    const namespaces = await namespacesOf(k.session);
    if (sameNamespaces(namespaces, k.namespaces)) return true;
    kit.log("info", "opcua namespaces changed; setting up anew", { namespaces: namespaces.length });
    await release(true);
    return false;
  }

  /**
   * The server refused the kept session: a new session for the same session
   * object, and the subscription moved to it if the server still has it;
   * undefined (full setup) when it does not.
   */
  async function transfer(k: Kept, sub: ClientSubscription): Promise<TargetNode[] | undefined> {
    try {
      await renewSession(client!, k.session, await userIdentity(cfg));
    } catch (e) {
      kit.log("info", "opcua new session for the transfer failed", { reason: errorText(e) });
      return await forget();
    }
    session = k.session;
    subscription = sub;
    if (!await transferSubscription(k.session, sub).catch(() => false)) return await forget();
    if (!await sameNamespacesAs(k)) return undefined;
    count("subscriptions_transferred");
    await resumeSubscription(k.session, sub, k);
    kit.log("info", "opcua subscription transferred to a new session", { endpoint: cfg.endpoint });
    return k.nodes;
  }

  /**
   * Fetches what the subscription sent while the link was down (Republish),
   * then lets it publish again; a subscription the server dropped is created
   * again on the same session (what it queued is lost then).
   */
  async function resumeSubscription(s: ClientSession, sub: ClientSubscription, k: Kept) {
    try {
      count("notifications_republished", await republishMissed(s, sub));
      holdPublishing(s, false);
      subscriptionHeard = performance.now();
      detail.monitored_items = k.monitored;
    } catch (e) {
      if (!subscriptionUnknown(e)) throw e;
      kit.log("warning", "opcua subscription gone on the server; creating it again", {
        reason: errorText(e),
      });
      holdPublishing(s, false);
      subscription = undefined;
      await within(sub.terminate(), CLOSE_TIMEOUT_MS);
      await subscribe(s, k.nodes, limits!, false);
      count("subscriptions_recreated");
    }
  }

  /** Resumes the kept session if there is one, else (or when that fails) sets up anew. */
  async function connectOnce(): Promise<TargetNode[]> {
    const nodes = kept ? await resume(kept) : undefined;
    return nodes ?? await setUp();
  }

  /**
   * Waits before the next connect attempt: the backoff of `attempt`, cut short
   * once the server's port, seen closed, accepts connections again.
   */
  async function pauseBeforeRetry(attempt: number, failure: string): Promise<void> {
    if (/connection refused|no answer from|lost|closed/i.test(failure)) serverGoneSeen = true;
    const until = performance.now() + reconnectDelayMs(attempt);
    while (!stopped && performance.now() < until) {
      await sleep(Math.min(HELLO_PROBE_MS, until - performance.now()));
      if (stopped || performance.now() >= until) return;
      const answers = await serverAnswers(cfg.endpoint);
      if (!answers) serverGoneSeen = true;
      else if (serverGoneSeen) {
        serverGoneSeen = false;
        kit.log("info", "opcua server answers again; reconnecting now", {
          endpoint: cfg.endpoint,
        });
        return;
      }
    }
  }

  async function loop(): Promise<void> {
    let connectedBefore = false;
    let shortLived = 0;
    for (let attempt = 0; !stopped; attempt++) {
      if (!connectedBefore) kit.status("connecting", undefined, detail);
      let nodes: TargetNode[];
      try {
        nodes = await connectOnce();
      } catch (e) {
        await release(false);
        if (stopped) return;
        const text = `connect to ${cfg.endpoint} failed: ${errorText(e)}`;
        kit.log("warning", "opcua connect failed", { endpoint: cfg.endpoint, error: text });
        kit.status(connectedBefore ? "disconnected" : "error", text, detail);
        await pauseBeforeRetry(attempt, text);
        continue;
      }
      if (stopped) return await release(); // stop() came while connecting
      if (connectedBefore) {
        kit.counters.reconnects++;
        detail.reconnects = kit.counters.reconnects;
      }
      connectedBefore = true;
      serverGoneSeen = false;
      attempt = -1;
      kit.status("connected", connectedNote(), detail);
      const connectedAt = performance.now();
      const reason = await supervise(nodes);
      if (stopped) return;
      kit.log("warning", "opcua connection lost; reconnecting", { reason });
      keep(nodes);
      detail.monitored_items = 0;
      kit.status("disconnected", reason, detail);
      await release(false);
      // Reconnect at once after a connection that lasted; back off when they keep dropping.
      if (performance.now() - connectedAt >= STABLE_MS) shortLived = 0;
      else await pauseBeforeRetry(shortLived++, reason);
    }
  }

  return {
    start() {
      done = loop().catch((e) => kit.status("error", `opcua source failed: ${errorText(e)}`));
    },
    async stop() {
      stopped = true;
      kept = undefined;
      lost("stopped");
      watch?.stop();
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
