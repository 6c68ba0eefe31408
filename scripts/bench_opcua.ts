/**
 * OPC UA benchmark: the agent monitors N variables of the simulator (its own
 * process, `simulate --opcua-scale N`), each changing once a second, in one
 * subscription, end to end into zerobus-local. Per N (10,000 and 50,000):
 * subscription setup time, changes made by the server vs records received and
 * acked, agent CPU share of one core and RSS. Never asserts.
 *
 * Alone: `deno run -A scripts/bench_opcua.ts [--duration 20]` (starts its own
 * zerobus-local; `BENCH_OPCUA_ITEMS=N` runs one size only); `benchOpcua()` is
 * what `scripts/bench.ts` calls.
 */
import { type SelfProcess, spawnSelf } from "../src/self.ts";
import {
  type BenchSectionOptions,
  cpuSeconds,
  freePort,
  rssMb,
  rssPeakMb,
  runSectionAlone,
  sleep,
} from "./bench_kit.ts";

/** Options of one benchmark run: the section options, and optionally one size. */
export interface BenchOpcuaOptions extends BenchSectionOptions {
  /** Monitored items; absent: 10,000 then 50,000. */
  items?: number;
}

const WARM_UP_S = 3;
/**
 * The subscription's publishing interval. node-opcua's server sends at most
 * 1000 notifications per message and a few messages per publishing cycle, so
 * a short interval carries 50,000 changes/s in small messages (large ones cost
 * the agent memory: its Worker's heap holds each decoded message).
 */
const PUBLISHING_INTERVAL_MS = 250;

const json = async (url: string) => await (await fetch(url)).json();

/** The simulator's count of values its scale variables took. */
async function serverChanges(simUrl: string): Promise<number> {
  const h = await json(`${simUrl}/health`);
  const ua = h.servers.find((s: { protocol: string }) => s.protocol === "opcua");
  return ua.scale_changes as number;
}

async function startAgent(
  o: BenchOpcuaOptions,
  items: number,
  endpoint: string,
): Promise<{ agent: SelfProcess; api: string }> {
  const port = freePort();
  const dataDir = `${o.root}/opcua_${items}`;
  const cfg = `${dataDir}.yaml`;
  await Deno.writeTextFile(
    cfg,
    `connector: { name: bench-opcua, data_dir: ${JSON.stringify(dataDir)}, log_level: warning }
http: { host: 127.0.0.1, port: ${port} }
sources:
  - name: ua
    protocol: opcua
    endpoint: ${endpoint}
    site: s
    area: a
    line: l
    equipment: e
    publishing_interval_ms: ${PUBLISHING_INTERVAL_MS}
    sampling_interval_ms: 0
    queue_size: 2
    variable_limit: ${items}
    discovery: { roots: [Objects/Scale] }
zerobus:
  enabled: true
  workspace_host: ${o.standIn.workspace_url}
  zerobus_endpoint: ${o.standIn.endpoint}
  default_target: { catalog: bench, schema: opcua, table: items_${items} }
  auth: { client_id: local-client, client_secret: local-secret }
backpressure: { disk_spool: { max_size_mb: 4000 } }
`,
  );
  const agent = await spawnSelf(["run", "--config", cfg], "ready");
  return { agent, api: `http://127.0.0.1:${port}` };
}

/** Waits until the source monitors `items` nodes; returns its status. */
async function subscribed(api: string, items: number, timeoutS: number) {
  const deadline = performance.now() + timeoutS * 1000;
  let last: Record<string, unknown> | undefined;
  while (performance.now() < deadline) {
    const st = await json(`${api}/api/status`).catch(() => undefined);
    last = st?.sources?.ua;
    const detail = last?.detail as Record<string, number> | undefined;
    if (detail && detail.monitored_items >= items) return last!;
    await sleep(100);
  }
  throw new Error(`no subscription of ${items} items after ${timeoutS} s: ${JSON.stringify(last)}`);
}

/** One size: simulator and agent started, subscription timed, then `durationS` measured. */
async function benchSize(o: BenchOpcuaOptions, items: number): Promise<Record<string, unknown>> {
  const sim = await spawnSelf(
    [
      "simulate",
      ...["--port", "0", "--modbus-port", "0", "--mqtt-port", "0", "--opcua-port", "0"],
      ...["--opcua-scale", String(items)],
    ],
    "ready",
    { timeoutMs: 120_000 },
  );
  const simReady = sim.ready as { url: string; opcua_endpoint: string };
  try {
    const t0 = performance.now();
    const { agent, api } = await startAgent(o, items, simReady.opcua_endpoint);
    try {
      const st = await subscribed(api, items, 180);
      const untilMonitored = (performance.now() - t0) / 1000;
      const detail = st.detail as Record<string, number>;
      o.log(
        `opcua ${items}: ${detail.monitored_items} items monitored ${
          untilMonitored.toFixed(1)
        } s after the agent started (subscription ${detail.subscription_setup_ms} ms, ` +
          `${detail.create_monitored_items_calls} CreateMonitoredItems calls)`,
      );
      await sleep(WARM_UP_S * 1000);
      const [m0, s0] = [await json(`${api}/api/metrics`), await serverChanges(simReady.url)];
      const c0 = cpuSeconds(agent.pid), sc0 = cpuSeconds(sim.pid), w0 = performance.now();
      await sleep(o.durationS * 1000);
      const [m1, s1] = [await json(`${api}/api/metrics`), await serverChanges(simReady.url)];
      const dt = (performance.now() - w0) / 1000;
      const changed = s1 - s0;
      const received = m1.bridge.records_received - m0.bridge.records_received;
      const acked = m1.bridge.records_acked - m0.bridge.records_acked;
      const out = {
        items,
        monitored_items: detail.monitored_items,
        setup_s: Math.round(untilMonitored * 10) / 10,
        subscription_setup_ms: detail.subscription_setup_ms,
        create_monitored_items_calls: detail.create_monitored_items_calls,
        server_changes_per_s: Math.round(changed / dt),
        received_per_s: Math.round(received / dt),
        acked_per_s: Math.round(acked / dt),
        delivered_ratio: Math.round((acked / changed) * 1000) / 1000,
        agent_cpu_share: Math.round(((cpuSeconds(agent.pid) - c0) / dt) * 100) / 100,
        simulator_cpu_share: Math.round(((cpuSeconds(sim.pid) - sc0) / dt) * 100) / 100,
        agent_rss_mb: rssMb(agent.pid, "VmRSS"),
        agent_peak_rss_mb: rssPeakMb(agent.pid),
        spool_backlog: m1.backpressure?.spool_records,
      };
      o.log(
        `opcua ${items}: server ${out.server_changes_per_s} changes/s, received ${out.received_per_s}/s, ` +
          `acked ${out.acked_per_s}/s (ratio ${out.delivered_ratio}), agent cpu ${out.agent_cpu_share}` +
          ` of a core, rss ${out.agent_rss_mb} MB (peak ${out.agent_peak_rss_mb})`,
      );
      return out;
    } finally {
      await agent.stop();
    }
  } finally {
    await sim.stop();
  }
}

/**
 * The OPC UA benchmark: per size (`items`, else 10,000 and 50,000), the
 * figures of `benchSize`, keyed `opcua_<items>`.
 */
export async function benchOpcua(opts: BenchOpcuaOptions): Promise<Record<string, unknown>> {
  const sizes = opts.items ? [opts.items] : [10_000, 50_000];
  const out: Record<string, unknown> = {};
  for (const items of sizes) {
    try {
      out[`opcua_${items}`] = await benchSize(opts, items);
    } catch (e) {
      opts.log(`opcua ${items}: failed: ${(e as Error).message}`);
      out[`opcua_${items}`] = { items, error: (e as Error).message };
    }
  }
  return out;
}

if (import.meta.main) {
  const items = Number(Deno.env.get("BENCH_OPCUA_ITEMS") ?? 0) || undefined;
  await runSectionAlone("opcua", (o) => benchOpcua({ ...o, items }));
}
