/**
 * OPC UA source Worker (node-opcua client): picks the endpoint with the
 * configured security and checks the server's certificate (`security.ts`),
 * connects, creates a session, resolves the configured nodes (NodeIds, browse
 * paths) or discovers Variables below the discovery roots up to
 * `variable_limit`, reads engineering units once (`setup.ts`), then either
 * monitors every node in one subscription (`subscription.ts`) or reads them
 * all on a fixed schedule (`supervise.ts`), in calls split by the server's
 * operation limits (`acquire.ts`).
 *
 * The source owns its reconnect loop (node-opcua's own repair is off): a lost
 * or silent link (`liveness.ts`) closes the client but keeps the session and
 * subscription; the next attempt, after a backoff of 1 s doubling to 30 s
 * with jitter, cut short when the server, seen gone, answers an OPC UA Hello
 * again, activates that session on a new secure channel and fetches what the
 * subscription sent meanwhile, or moves the subscription to a new session
 * (`reuse.ts`, `resume.ts`); when the server knows neither (restart) or
 * renumbered its namespaces, it builds everything again — session, namespace
 * indices, nodes, subscription. A subscription that goes silent while the
 * session answers is rebuilt in place. Nodes the server does not know (yet)
 * are resolved again on the live session (`recover.ts`); when most items turn
 * BadNodeIdUnknown at once, everything is built again as after a restart.
 *
 * This module holds the Worker entry, the status detail and the retry loop;
 * the state the modules share is a `SourceRun` (`state.ts`).
 */
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import type { OpcuaSourceConfig } from "./schema.ts";
import { reconnectDelayMs } from "../schedule.ts";
import { serverAnswers } from "./liveness.ts";
import type { TargetNode } from "./values.ts";
import { connectedNote, type Detail, errorText, sleep, type SourceRun } from "./state.ts";
import { release } from "./client.ts";
import { setUp } from "./setup.ts";
import { keep, resume } from "./reuse.ts";
import { supervise } from "./supervise.ts";

/** How often a reconnect wait checks whether the server answers a Hello again. */
const HELLO_PROBE_MS = 1000;
/** A connection that lasted this long is followed by an immediate reconnect. */
const STABLE_MS = 30_000;

/** The status detail of a source before its first connect. */
function initialDetail(cfg: OpcuaSourceConfig): Detail {
  return {
    security_mode: cfg.security_mode,
    security_policy: cfg.security_policy,
    mode: cfg.polling_mode ? "polling" : "subscription",
    monitored_items: 0,
    nodes: 0,
    unknown_nodes: 0,
    unknown_node_ids: [],
    nodes_turned_unknown: 0,
    nodes_recovered: 0,
    node_storms: 0,
    reconnects: 0,
    subscription_rebuilds: 0,
    full_setups: 0,
    sessions_reactivated: 0,
    subscriptions_transferred: 0,
    subscriptions_recreated: 0,
    notifications_republished: 0,
  };
}

/** A source run before its first connect. */
function newRun(cfg: OpcuaSourceConfig, kit: SourceKit, dataDir: string): SourceRun {
  return {
    cfg,
    kit,
    dataDir,
    detail: initialDetail(cfg),
    stopped: false,
    withRange: new Set(),
    namespaces: [],
    unknown: [],
    nodes: [],
    items: new Map(),
    known: new WeakSet(),
    gone: new Set(),
    rediscover: false,
    discoveredMost: 0,
    discoveredLast: { count: -1, times: 0 },
    setUpAnew: false,
    errorShown: false,
    subscriptionHeard: 0,
    keepAliveMs: 0,
    rebuilding: false,
    lost: () => {},
    wake: () => {},
  };
}

/** Resumes the kept session if there is one, else (or when that fails) sets up anew. */
async function connectOnce(run: SourceRun): Promise<TargetNode[]> {
  const nodes = run.kept ? await resume(run, run.kept) : undefined;
  return nodes ?? await setUp(run);
}

/** The wait before a reconnect attempt, cut short when a server seen gone answers again. */
class RetryPause {
  /** The server was seen gone since the last connect or early retry (a restart is under way). */
  #serverGoneSeen = false;

  constructor(private readonly run: SourceRun) {}

  /** A connect succeeded: whether the server was gone is no longer known. */
  connected(): void {
    this.#serverGoneSeen = false;
  }

  /**
   * Waits the backoff of `attempt`, cut short once the server's port, seen
   * closed, accepts connections again.
   */
  async wait(attempt: number, failure: string): Promise<void> {
    const run = this.run;
    if (/connection refused|no answer from|lost|closed/i.test(failure)) this.#serverGoneSeen = true;
    const until = performance.now() + reconnectDelayMs(attempt);
    while (!run.stopped && performance.now() < until) {
      await sleep(run, Math.min(HELLO_PROBE_MS, until - performance.now()));
      if (run.stopped || performance.now() >= until) return;
      const answers = await serverAnswers(run.cfg.endpoint);
      if (!answers) this.#serverGoneSeen = true;
      else if (this.#serverGoneSeen) {
        this.#serverGoneSeen = false;
        run.kit.log("info", "opcua server answers again; reconnecting now", {
          endpoint: run.cfg.endpoint,
        });
        return;
      }
    }
  }
}

/** Connects, acquires until the link is lost, and reconnects, until the source stops. */
async function loop(run: SourceRun): Promise<void> {
  const { cfg, kit, detail } = run;
  const pause = new RetryPause(run);
  let connectedBefore = false;
  let shortLived = 0;
  for (let attempt = 0; !run.stopped; attempt++) {
    if (!connectedBefore) kit.status("connecting", undefined, detail);
    let nodes: TargetNode[];
    try {
      nodes = await connectOnce(run);
    } catch (e) {
      await release(run, false);
      if (run.stopped) return;
      const text = `connect to ${cfg.endpoint} failed: ${errorText(e)}`;
      kit.log("warning", "opcua connect failed", { endpoint: cfg.endpoint, error: text });
      kit.status(connectedBefore ? "disconnected" : "error", text, detail);
      await pause.wait(attempt, text);
      continue;
    }
    if (run.stopped) return await release(run); // stop() came while connecting
    if (connectedBefore) {
      kit.counters.reconnects++;
      detail.reconnects = kit.counters.reconnects;
    }
    connectedBefore = true;
    pause.connected();
    attempt = -1;
    kit.status("connected", connectedNote(run), detail);
    const connectedAt = performance.now();
    const reason = await supervise(run, nodes);
    if (run.stopped) return;
    kit.log("warning", "opcua connection lost; reconnecting", { reason });
    // After a BadNodeIdUnknown storm nothing is kept: the next connect sets up anew.
    if (!run.setUpAnew) keep(run, nodes);
    detail.monitored_items = 0;
    kit.status("disconnected", reason, detail);
    await release(run, false);
    // Reconnect at once after a connection that lasted; back off when they keep dropping.
    if (performance.now() - connectedAt >= STABLE_MS) shortLived = 0;
    else await pause.wait(shortLived++, reason);
  }
}

/** The OPC UA source: the retry loop on start, every connection released on stop. */
function opcuaDriver(cfg: OpcuaSourceConfig, kit: SourceKit, dataDir: string): SourceDriver {
  const run = newRun(cfg, kit, dataDir);
  let done: Promise<void> = Promise.resolve();
  return {
    start() {
      done = loop(run).catch((e) => kit.status("error", `opcua source failed: ${errorText(e)}`));
    },
    async stop() {
      run.stopped = true;
      run.kept = undefined;
      run.lost("stopped");
      run.watch?.stop();
      run.wake();
      await release(run);
      await done;
      await run.pki?.certs.dispose();
    },
  };
}

runSourceWorker((source, kit, dataDir) =>
  opcuaDriver(source as unknown as OpcuaSourceConfig, kit, dataDir)
);
