/**
 * OPC UA benchmark: the agent monitors N variables of the simulator (its own
 * process, `simulate --opcua-scale N`), each changing once a second, in one
 * subscription, end to end into zerobus-local. Per N (10,000 and 50,000):
 * subscription setup time, changes made by the server vs records received and
 * acked per second, agent CPU share of one core and RSS. Then the simulator
 * stops publishing, the agent drains, and the rows that reached the stand-in are
 * counted per address: the scale variables step by exactly +1 per change, so
 * every value missing between the first and the last one seen is a lost change
 * (`missing`, 0 when every change was delivered). Never asserts.
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
  standInTableFile,
} from "./bench_kit.ts";

/** Options of one benchmark run: the section options, and optionally one size. */
export interface BenchOpcuaOptions extends BenchSectionOptions {
  /** Monitored items; absent: 10,000 then 50,000. */
  items?: number;
}

const WARM_UP_S = 3;
/** How long the agent may take to deliver its backlog once publishing stopped. */
const DRAIN_TIMEOUT_S = 300;
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
    queue_size: 10
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

/**
 * Waits until the agent has nothing left to deliver: every spooled record
 * acked (or dead-lettered), the spool empty, and no new record for 2 s. Returns
 * the seconds from `t0` (when publishing stopped) until it was so (the 2 s of
 * quiet not counted), or NaN after `DRAIN_TIMEOUT_S`.
 */
async function drained(api: string, t0: number): Promise<number> {
  let received = -1;
  let quietSince = t0;
  let settledAt: number | undefined;
  while (performance.now() - t0 < DRAIN_TIMEOUT_S * 1000) {
    const m = await json(`${api}/api/metrics`).catch(() => undefined);
    const now = performance.now();
    if (m) {
      const b = m.bridge;
      if (b.records_received !== received) [received, quietSince] = [b.records_received, now];
      const settled = b.records_acked + b.dead_letters >= b.records_enqueued &&
        m.backpressure?.spool_records === 0;
      settledAt = !settled ? undefined : quietSince > (settledAt ?? 0) ? now : settledAt;
      if (settledAt !== undefined && now - quietSince >= 2000) return (settledAt - t0) / 1000;
    }
    await sleep(250);
  }
  return NaN;
}

/**
 * Calls `onLine(text, start, end)` for each line of a file, read in 1 MB
 * chunks: the file is never held whole, and lines are not copied out.
 */
async function forEachLine(
  path: string,
  onLine: (text: string, start: number, end: number) => void,
): Promise<void> {
  const file = await Deno.open(path);
  try {
    const decoder = new TextDecoder();
    const buf = new Uint8Array(1 << 20);
    let rest = "";
    for (let n = await file.read(buf); n !== null; n = await file.read(buf)) {
      const text = rest + decoder.decode(buf.subarray(0, n), { stream: true });
      let start = 0;
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
        if (nl > start) onLine(text, start, nl);
        start = nl + 1;
      }
      rest = text.slice(start);
    }
    rest += decoder.decode();
    if (rest !== "") onLine(rest, 0, rest.length);
  } finally {
    file.close();
  }
}

const VALUE_KEY = '"value_num":';
const ADDRESS_KEY = '"address":"';

/**
 * The `address` and `value_num` of one JSON row, found by their keys (a key
 * inside the escaped `metadata` text cannot match); the row is parsed whole
 * only when that fails. `value` is null for a row without a number.
 */
function addressAndValue(
  text: string,
  start: number,
  end: number,
): { address: string; value: number | null } {
  const v = text.indexOf(VALUE_KEY, start);
  const a = text.indexOf(ADDRESS_KEY, start);
  const aEnd = a < 0 ? -1 : text.indexOf('"', a + ADDRESS_KEY.length);
  if (v >= 0 && v < end && aEnd >= 0 && aEnd < end) {
    const address = text.slice(a + ADDRESS_KEY.length, aEnd);
    if (!address.includes("\\")) {
      const from = v + VALUE_KEY.length;
      let to = from;
      while (to < end && text[to] !== "," && text[to] !== "}") to++;
      const value = Number(text.slice(from, to));
      return { address, value: Number.isFinite(value) ? value : null };
    }
  }
  const row = JSON.parse(text.slice(start, end));
  return {
    address: String(row.address),
    value: typeof row.value_num === "number" ? row.value_num : null,
  };
}

/** Per address: the lowest and highest value seen, rows, and whether values ever failed to rise. */
interface AddressTrack {
  min: number;
  max: number;
  rows: number;
  last: number;
  disordered: boolean;
}

/**
 * Counts the rows of one stand-in table against the values the scale
 * variables took (+1 per change): per address, every value from the first to
 * the last one seen is expected. Rows of an address whose values ever failed
 * to rise (a resend, or out of order) are read again into a set to count
 * distinct values; the usual case needs one pass and no per-value memory.
 */
async function countDelivered(path: string, items: number) {
  const t0 = performance.now();
  const tracks = new Map<string, AddressTrack>();
  let rowsRead = 0;
  let withoutValue = 0;
  await forEachLine(path, (text, start, end) => {
    rowsRead++;
    const { address, value } = addressAndValue(text, start, end);
    if (value === null) {
      withoutValue++;
      return;
    }
    const t = tracks.get(address);
    if (!t) {
      tracks.set(address, { min: value, max: value, rows: 1, last: value, disordered: false });
      return;
    }
    if (value <= t.last) t.disordered = true;
    if (value < t.min) t.min = value;
    if (value > t.max) t.max = value;
    t.last = value;
    t.rows++;
  });
  const distinct = new Map<string, Set<number>>();
  for (const [address, t] of tracks) if (t.disordered) distinct.set(address, new Set());
  if (distinct.size > 0) {
    await forEachLine(path, (text, start, end) => {
      const { address, value } = addressAndValue(text, start, end);
      if (value !== null) distinct.get(address)?.add(value);
    });
  }
  let expected = 0;
  let delivered = 0;
  let withValue = 0;
  let withGaps = 0;
  for (const [address, t] of tracks) {
    const got = distinct.get(address)?.size ?? t.rows;
    expected += t.max - t.min + 1;
    delivered += got;
    withValue += t.rows;
    if (got < t.max - t.min + 1) withGaps++;
  }
  return {
    changes_expected: expected,
    records_delivered: delivered,
    missing: expected - delivered,
    duplicates: withValue - delivered,
    addresses_seen: tracks.size,
    addresses_with_gaps: withGaps,
    addresses_never_delivered: Math.max(0, items - tracks.size),
    rows_in_table: rowsRead,
    rows_without_value: withoutValue,
    count_s: Math.round((performance.now() - t0) / 100) / 10,
  };
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
      const received = m1.bridge.records_received - m0.bridge.records_received;
      const acked = m1.bridge.records_acked - m0.bridge.records_acked;
      const rates = {
        items,
        monitored_items: detail.monitored_items,
        setup_s: Math.round(untilMonitored * 10) / 10,
        subscription_setup_ms: detail.subscription_setup_ms,
        create_monitored_items_calls: detail.create_monitored_items_calls,
        server_changes_per_s: Math.round((s1 - s0) / dt),
        received_per_s: Math.round(received / dt),
        acked_per_s: Math.round(acked / dt),
        agent_cpu_share: Math.round(((cpuSeconds(agent.pid) - c0) / dt) * 100) / 100,
        simulator_cpu_share: Math.round(((cpuSeconds(sim.pid) - sc0) / dt) * 100) / 100,
        agent_rss_mb: rssMb(agent.pid, "VmRSS"),
        agent_peak_rss_mb: rssPeakMb(agent.pid),
        spool_backlog: m1.backpressure?.spool_records,
      };
      o.log(
        `opcua ${items}: server ${rates.server_changes_per_s} changes/s, received ${rates.received_per_s}/s, ` +
          `acked ${rates.acked_per_s}/s, agent cpu ${rates.agent_cpu_share}` +
          ` of a core, rss ${rates.agent_rss_mb} MB (peak ${rates.agent_peak_rss_mb})`,
      );
      const stoppedAt = performance.now();
      await sim.stop(); // publishing stops; what the agent holds must still arrive
      const drainS = await drained(api, stoppedAt);
      const delivery = await countDelivered(
        standInTableFile(o.standIn, `bench.opcua.items_${items}`),
        items,
      );
      const out = {
        ...rates,
        drain_s: Number.isNaN(drainS) ? null : Math.round(drainS * 10) / 10,
        ...delivery,
        every_change_delivered: delivery.missing === 0 && delivery.addresses_never_delivered === 0,
      };
      o.log(
        `opcua ${items}: drained in ${out.drain_s ?? `more than ${DRAIN_TIMEOUT_S}`} s; ` +
          `${delivery.changes_expected} changes expected, ${delivery.records_delivered} delivered, ` +
          `${delivery.missing} missing (${delivery.addresses_with_gaps} addresses with gaps), ` +
          `${delivery.duplicates} duplicates, ` +
          `${delivery.addresses_never_delivered} addresses never delivered ` +
          `(${delivery.rows_in_table} rows read in ${delivery.count_s} s)`,
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
