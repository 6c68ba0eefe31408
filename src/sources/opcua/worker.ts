/**
 * OPC UA source Worker (node-opcua client, security None in this version):
 * connects, creates a session, resolves the configured NodeIds (or discovers
 * Variables below Objects up to `variable_limit`), reads engineering units
 * once, then either monitors every node in one subscription (items created in
 * batches) or reads them all in one batched Read per poll on a fixed schedule.
 * node-opcua repairs a lost connection and its session/subscription itself;
 * a failed first connect is retried here with backoff and jitter.
 */
import {
  AttributeIds,
  type ClientSession,
  type ClientSubscription,
  type DataValue,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  TimestampsToReturn,
  UserTokenType,
} from "node-opcua";
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { addUnits, discover, namespacesOf, resolveExplicit, type UnresolvedNode } from "./nodes.ts";
import type { OpcuaSourceConfig } from "./schema.ts";
import { backoffMs, nextPollAt } from "./timing.ts";
import { readingOf, type TargetNode } from "./values.ts";

/** Monitored items per CreateMonitoredItems call. */
const ITEMS_PER_CALL = 500;
/** Server capability: most nodes in one Read call (0 = no limit). */
const MAX_NODES_PER_READ = "i=11705";
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
  let certs: OPCUACertificateManager | undefined;
  let wake: () => void = () => {};
  let done: Promise<void> = Promise.resolve();

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  function newClient(): OPCUAClient {
    certs ??= new OPCUACertificateManager({
      rootFolder: `${dataDir}/opcua/${cfg.name}/pki`,
      automaticallyAcceptUnknownCertificate: false,
    });
    const c = OPCUAClient.create({
      applicationName: "otedge",
      clientName: cfg.name,
      securityMode: MessageSecurityMode[cfg.security_mode],
      securityPolicy: SecurityPolicy[cfg.security_policy],
      endpointMustExist: false,
      keepSessionAlive: true,
      requestedSessionTimeout: 60_000,
      // One retry on the first connect (then this worker backs off); repairs after a
      // lost connection retry forever inside node-opcua.
      connectionStrategy: { initialDelay: 1000, maxDelay: 30_000, maxRetry: 1 },
      clientCertificateManager: certs,
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

  async function selectNodes(s: ClientSession): Promise<TargetNode[]> {
    const namespaces = await namespacesOf(s);
    let nodes: TargetNode[];
    if (cfg.nodes && cfg.nodes.length > 0) {
      const res = await resolveExplicit(s, namespaces, cfg.nodes.slice(0, cfg.variable_limit));
      reportUnresolved(res.unresolved);
      nodes = res.nodes;
    } else {
      nodes = await discover(s, namespaces, cfg.variable_limit);
    }
    await addUnits(s, nodes);
    return nodes;
  }

  async function subscribe(s: ClientSession, nodes: TargetNode[]): Promise<void> {
    const sub = await s.createSubscription2({
      requestedPublishingInterval: cfg.publishing_interval_ms ?? 1000,
      requestedLifetimeCount: 60,
      requestedMaxKeepAliveCount: 10,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 1,
    });
    subscription = sub;
    let monitored = 0;
    for (let off = 0; off < nodes.length && !stopped; off += ITEMS_PER_CALL) {
      const part = nodes.slice(off, off + ITEMS_PER_CALL);
      const group = await sub.monitorItems(
        part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value })),
        {
          samplingInterval: cfg.sampling_interval_ms ?? cfg.publishing_interval_ms ?? 1000,
          discardOldest: true,
          queueSize: 10,
        },
        TimestampsToReturn.Both,
      );
      group.on("changed", (_item, dv: DataValue, index: number) => {
        if (!stopped) kit.emit(readingOf(part[index], dv));
      });
      group.monitoredItems.forEach((item, i) => {
        if (item.statusCode.isGood()) monitored++;
        else {
          reportUnresolved([{
            address: part[i].address,
            error: item.statusCode.toString(),
            code: item.statusCode.value,
          }]);
        }
      });
    }
    detail.monitored_items = monitored;
  }

  async function maxNodesPerRead(s: ClientSession): Promise<number> {
    try {
      const dv = await s.read({ nodeId: MAX_NODES_PER_READ, attributeId: AttributeIds.Value });
      const n = Number(dv.value?.value ?? 0);
      return dv.statusCode.isGood() && n > 0 ? n : Infinity;
    } catch {
      return Infinity;
    }
  }

  async function poll(s: ClientSession, nodes: TargetNode[]): Promise<void> {
    const perRead = Math.min(await maxNodesPerRead(s), 10_000);
    const interval = cfg.polling_interval_ms;
    const start = performance.now();
    let failing = false;
    while (!stopped) {
      await kit.waitForCredit();
      if (stopped) return;
      try {
        for (let off = 0; off < nodes.length && !stopped; off += perRead) {
          const part = nodes.slice(off, off + perRead);
          const dvs = await s.read(
            part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value })),
            0,
          );
          dvs.forEach((dv, i) => kit.emit(readingOf(part[i], dv)));
        }
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

  async function connectOnce(): Promise<TargetNode[]> {
    const c = newClient();
    client = c;
    await c.connect(cfg.endpoint);
    const s = await c.createSession(
      cfg.username
        ? { type: UserTokenType.UserName, userName: cfg.username, password: cfg.password ?? "" }
        : undefined,
    );
    session = s;
    const nodes = await selectNodes(s);
    detail.nodes = nodes.length;
    if (!cfg.polling_mode) await subscribe(s, nodes);
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
      if (stopped) return;
      if (attempt > 0) kit.counters.reconnects++;
      kit.status("connected", undefined, detail);
      if (cfg.polling_mode) await poll(session!, nodes);
      return;
    }
  }

  return {
    start() {
      if (cfg.security_mode !== "None") {
        kit.status(
          "error",
          `security_mode ${cfg.security_mode} is not supported yet; only None`,
          detail,
        );
        return;
      }
      done = loop().catch((e) => kit.status("error", `opcua source failed: ${errorText(e)}`));
    },
    async stop() {
      stopped = true;
      wake();
      await release();
      await done;
      await certs?.dispose();
    },
  };
}

runSourceWorker((source, kit, dataDir) =>
  opcuaDriver(source as unknown as OpcuaSourceConfig, kit, dataDir)
);
