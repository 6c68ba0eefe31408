/**
 * MQTT benchmark: how fast QoS 1 messages go from Mosquitto through the agent
 * (MQTT source, spool, Zerobus client) into the stand-in, with nothing lost.
 *
 * 1. limit: a bare QoS 1 subscriber (`bench_mqtt_subscriber.ts`, its own
 *    process; acks at once, no spool) fed by a fast QoS 1 publisher (this
 *    process) through the same Mosquitto.
 * 2. json: the agent (its own process, persistent session, QoS 1) reading JSON
 *    messages, one record each.
 * 3. sparkplug: the same with Sparkplug B DDATA of 10 metrics (NBIRTH/DBIRTH first).
 * 4. serial: the json run with `receive_maximum: 1` (one message per spool commit, as
 *    before acks were pipelined), for comparison, at most 5 s.
 *
 * In two layouts (see `benchMqtt`): split (publisher and Mosquitto on CPU 0,
 * the subscriber side on the other CPUs; all four runs) and shared (every
 * process on every core; 1 and 2 only).
 *
 * For 2 and 3 the publisher runs for `durationS` as fast as the agent keeps up
 * (its lead over the agent's spool is capped); then every published message
 * must be in the stand-in's table: messages/s = published / time until the last
 * one is there. Reports agent CPU (cores) and peak RSS, and what else used the
 * machine meanwhile (broker, this process as publisher, all cores busy, from
 * /proc). Never asserts.
 *
 * Alone: `deno run --allow-all scripts/bench_mqtt.ts [--duration 20]` starts its
 * own zerobus-local and prints one JSON line on stdout.
 */
import mqtt, { type MqttClient } from "mqtt";
import { get } from "sparkplug-payload";
import { spawnSelf } from "../src/self.ts";
import {
  type BenchSectionOptions,
  cpuSeconds,
  freePort,
  pinCpus,
  rssPeakMb,
  runSectionAlone,
  sleep,
  type StandInAddress,
} from "./bench_kit.ts";

/** Options of `benchMqtt`. */
export type BenchMqttOptions = BenchSectionOptions;

const WINDOW = 1000; // publishes awaiting the broker's PUBACK
const MAX_LEAD = 20_000; // messages published ahead of the agent's spool
const DRAIN_TIMEOUT_MS = 120_000;
const SP_METRICS = 10;

/** A Mosquitto broker of the benchmark. */
interface Broker {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts Mosquitto on a free 127.0.0.1 port (no queue cap for offline sessions). */
async function startBroker(root: string): Promise<Broker> {
  const bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
    .find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
  if (!bin) throw new Error("mosquitto is not installed (apt-get install mosquitto)");
  const port = freePort();
  const conf = `${root}/mosquitto.conf`;
  const lines = [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false"];
  lines.push("max_queued_messages 0", "max_inflight_messages 1000");
  if (Deno.uid() === 0) lines.push("user root");
  await Deno.writeTextFile(conf, lines.join("\n") + "\n");
  const child = new Deno.Command(bin, { args: ["-c", conf], stdout: "null", stderr: "null" })
    .spawn();
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await sleep(100);
    }
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/**
 * Publishes `next(i)` messages at QoS 1 with up to WINDOW awaiting their
 * PUBACK, while `mayGo()` allows, until `untilMs`. Returns how many were published.
 */
async function publishFast(
  pub: MqttClient,
  next: (i: number) => { topic: string; payload: Uint8Array | string },
  untilMs: number,
  mayGo: (published: number) => boolean = () => true,
): Promise<number> {
  let sent = 0;
  let acked = 0;
  let failed: Error | undefined;
  let wake = () => {};
  while (performance.now() < untilMs) {
    if (failed) throw failed;
    if (sent - acked >= WINDOW || !mayGo(sent)) {
      await Promise.race([new Promise<void>((r) => wake = r), sleep(20)]);
      continue;
    }
    const m = next(sent++);
    pub.publish(m.topic, m.payload as never, { qos: 1 }, (err) => {
      if (err) failed = err;
      acked++;
      wake();
    });
  }
  while (acked < sent && !failed) await sleep(10);
  return sent;
}

/**
 * Messages/s Mosquitto delivers to a bare MQTT 5 QoS 1 subscriber (its own
 * process, placed on `cpus` when given) from a fast QoS 1 publisher (this
 * process), after a 1 s warm-up.
 */
async function measureLimit(url: string, seconds: number, cpus?: string): Promise<number> {
  const script = new URL("./bench_mqtt_subscriber.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, url, "limit/#"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    if (cpus) await pinCpus(child.pid, cpus);
    let received = -1;
    const reading = (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const lines = buf.split("\n");
        buf = lines.pop()!;
        for (const line of lines) {
          received = (JSON.parse(line) as { received?: number }).received ?? 0;
        }
      }
    })();
    const deadline = Date.now() + 20_000;
    while (received < 0) {
      if (Date.now() > deadline) throw new Error("the bare subscriber did not subscribe");
      await sleep(20);
    }
    const pub = await mqtt.connectAsync(url, { clientId: "bench_limit_pub", reconnectPeriod: 0 });
    const payload = JSON.stringify({ value: 21.5, unit: "degC" });
    const t0 = performance.now();
    let startCount = 0;
    let tStart = t0;
    setTimeout(() => {
      startCount = received;
      tStart = performance.now();
    }, 1000); // 1 s warm-up
    const published = await publishFast(
      pub,
      (i) => ({ topic: `limit/line1/tag${i % 100}`, payload }),
      t0 + seconds * 1000,
    );
    const tEnd = performance.now();
    const endCount = received;
    await pub.endAsync();
    // Every message must arrive (as for the agent), else the figure means nothing.
    const drain = Date.now() + 30_000;
    while (received < published && Date.now() < drain) await sleep(50);
    if (received < published) {
      throw new Error(`the bare subscriber got ${received} of ${published} messages`);
    }
    child.kill("SIGTERM");
    await reading;
    return (endCount - startCount) / ((tEnd - tStart) / 1000);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }
}

/** Rows of `table` in the stand-in (its `GET /tables`). */
async function tableRows(standIn: StandInAddress, table: string): Promise<number> {
  const res = await fetch(`${standIn.workspace_url}/tables`);
  const body = await res.json() as { tables: Record<string, { rows: number }> };
  return body.tables[table]?.rows ?? 0;
}

/** A running agent with one MQTT source. */
interface Agent {
  pid: number;
  metrics(): Promise<{ bridge: { records_enqueued: number; records_acked: number } }>;
  stop(): Promise<void>;
}

async function startAgent(
  o: BenchMqttOptions,
  name: string,
  source: string,
  table: string,
  cpus?: string,
): Promise<Agent> {
  const port = freePort();
  const dataDir = `${o.root}/agent_${name}`;
  const cfg = `${dataDir}.yaml`;
  const [catalog, schema, tbl] = table.split(".");
  await Deno.writeTextFile(
    cfg,
    `connector: { name: bench_mqtt, data_dir: ${JSON.stringify(dataDir)}, log_level: warning }
http: { host: 127.0.0.1, port: ${port} }
sources:
${source}
zerobus:
  enabled: true
  workspace_host: ${o.standIn.workspace_url}
  zerobus_endpoint: ${o.standIn.endpoint}
  default_target: { catalog: ${catalog}, schema: ${schema}, table: ${tbl} }
  auth: { client_id: local-client, client_secret: local-secret }
backpressure: { disk_spool: { max_size_mb: 4000 } }
`,
  );
  const proc = await spawnSelf(["run", "--config", cfg], "ready");
  if (cpus) await pinCpus(proc.pid, cpus);
  const api = async (path: string) => await (await fetch(`http://127.0.0.1:${port}${path}`)).json();
  const deadline = Date.now() + 20_000;
  while ((await api("/api/status")).sources?.[name]?.state !== "connected") {
    if (Date.now() > deadline) throw new Error(`the agent's source ${name} did not connect`);
    await sleep(100);
  }
  return { pid: proc.pid, metrics: () => api("/api/metrics"), stop: () => proc.stop() };
}

/** What one agent run measured. */
interface AgentRun {
  messages_per_s: number;
  records_per_s: number;
  published: number;
  records_expected: number;
  records_in_table: number;
  lost: number;
  agent_cpu_cores: number;
  agent_peak_rss_mb: number;
  /** The agent's CPU by thread: `deno` main thread (spool, sink), `worker-N` the source. */
  agent_threads_cpu_cores: Record<string, number>;
  /** Mosquitto's CPU meanwhile. */
  broker_cpu_cores: number;
  /** The Zerobus stand-in (our cloud end, on this machine here) meanwhile. */
  stand_in_cpu_cores: number;
  /** This process (the publisher) meanwhile. */
  publisher_cpu_cores: number;
  /** Cores busy on the whole machine meanwhile (of navigator.hardwareConcurrency). */
  machine_busy_cores: number;
  /** Most records published but not yet in the agent's spool, seen every 200 ms. */
  backlog_peak_records: number;
  /** Times the publisher waited because the agent was MAX_LEAD behind (0: it kept up). */
  publisher_waits_for_agent: number;
}

/** CPU seconds every core of the machine spent busy so far (/proc/stat), NaN when unreadable. */
function machineBusySeconds(): number {
  try {
    const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100;
  } catch {
    return NaN;
  }
}

const cores = (seconds: number, dt: number) => Math.round(seconds / dt * 100) / 100;

/**
 * CPU seconds of a process by thread name (Linux `comm`: `deno` is the main
 * thread, `worker-N` a source Worker, V8 helpers and tokio threads by theirs).
 */
function threadSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const dir = `/proc/${pid}/task/${t.name}`;
        const comm = Deno.readTextFileSync(`${dir}/comm`).trim();
        const f = Deno.readTextFileSync(`${dir}/stat`).split(") ")[1].split(" ");
        out.set(comm, (out.get(comm) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
      } catch { /* the thread ended */ }
    }
  } catch { /* not Linux, or the process ended */ }
  return out;
}

/** Cores by thread name between two `threadSeconds` readings, busiest first. */
function threadCores(
  before: Map<string, number>,
  after: Map<string, number>,
  dt: number,
): Record<string, number> {
  const used = [...after].map(([k, v]) => [k, cores(v - (before.get(k) ?? 0), dt)] as const);
  return Object.fromEntries(used.filter(([, c]) => c >= 0.01).sort((a, b) => b[1] - a[1]));
}

/**
 * Publishes for `seconds` (capped lead over the agent's spool), then waits until
 * `recordsPerMessage` × published + `extraRecords` rows are in the table.
 */
async function measureAgent(
  o: BenchMqttOptions,
  brokerPid: number,
  agent: Agent,
  pub: MqttClient,
  table: string,
  next: (i: number) => { topic: string; payload: Uint8Array | string },
  recordsPerMessage: number,
  extraRecords: number,
  seconds = o.durationS,
  maxLead = MAX_LEAD,
): Promise<AgentRun> {
  let spooled = 0;
  let sent = 0;
  let backlogPeak = 0;
  let waits = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      spooled = (await agent.metrics()).bridge.records_enqueued;
      backlogPeak = Math.max(backlogPeak, sent * recordsPerMessage + extraRecords - spooled);
      await sleep(200);
    }
  })();
  const c0 = cpuSeconds(agent.pid);
  const th0 = threadSeconds(agent.pid);
  const [b0, s0, p0] = [cpuSeconds(brokerPid), cpuSeconds(o.standIn.pid), cpuSeconds(Deno.pid)];
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const published = await publishFast(
    pub,
    next,
    t0 + seconds * 1000,
    (n) => {
      sent = n;
      const go = n * recordsPerMessage - spooled < maxLead * recordsPerMessage;
      if (!go) waits++;
      return go;
    },
  );
  polling = false;
  await poller;
  const expected = published * recordsPerMessage + extraRecords;
  let rows = 0;
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while ((rows = await tableRows(o.standIn, table)) < expected && Date.now() < deadline) {
    await sleep(50);
  }
  const dt = (performance.now() - t0) / 1000;
  const cpu = (cpuSeconds(agent.pid) - c0) / dt;
  const threads = threadCores(th0, threadSeconds(agent.pid), dt);
  const broker = cores(cpuSeconds(brokerPid) - b0, dt);
  const standIn = cores(cpuSeconds(o.standIn.pid) - s0, dt);
  const publisher = cores(cpuSeconds(Deno.pid) - p0, dt);
  const machine = cores(machineBusySeconds() - m0, dt);
  return {
    messages_per_s: Math.round(published / dt),
    records_per_s: Math.round(published * recordsPerMessage / dt),
    published,
    records_expected: expected,
    records_in_table: rows,
    lost: Math.max(0, expected - rows),
    agent_cpu_cores: Math.round(cpu * 100) / 100,
    agent_peak_rss_mb: rssPeakMb(agent.pid),
    agent_threads_cpu_cores: threads,
    broker_cpu_cores: broker,
    stand_in_cpu_cores: standIn,
    publisher_cpu_cores: publisher,
    machine_busy_cores: machine,
    backlog_peak_records: backlogPeak,
    publisher_waits_for_agent: waits,
  };
}

/** Runs the agent on JSON messages (one record each); `receiveMaximum` 1 = one commit each. */
async function benchJson(
  o: BenchMqttOptions,
  broker: Broker,
  run: string,
  cpus?: string,
  receiveMaximum?: number,
): Promise<AgentRun> {
  const name = receiveMaximum === undefined ? "json" : `json_rm${receiveMaximum}`;
  const table = `bench.mqtt.${name}_${run}`;
  const clientId = `bench_${name}_${run}`;
  const rm = receiveMaximum === undefined ? "" : `receive_maximum: ${receiveMaximum}, `;
  const agent = await startAgent(
    o,
    "mqtt_json",
    `  - { name: mqtt_json, protocol: mqtt, endpoint: "${broker.url}", topics: ["${name}/#"], qos: 1, ${rm}client_id: ${clientId}, site: s, area: a, line: l, equipment: e }`,
    table,
    cpus,
  );
  const pub = await mqtt.connectAsync(broker.url, {
    clientId: "bench_json_pub",
    reconnectPeriod: 0,
  });
  const serial = receiveMaximum !== undefined;
  try {
    return await measureAgent(
      o,
      broker.pid,
      agent,
      pub,
      table,
      (i) => ({ topic: `${name}/line1/tag${i % 100}`, payload: `{"value":${i},"unit":"degC"}` }),
      1,
      0,
      serial ? Math.min(5, o.durationS) : o.durationS,
      serial ? 200 : MAX_LEAD,
    );
  } finally {
    await pub.endAsync();
    await agent.stop();
  }
}

const sp = get("spBv1.0")!;

/** Sparkplug payloads of the benchmark's edge node (10 Double metrics on one device). */
function sparkplugMessages() {
  const names = Array.from({ length: SP_METRICS }, (_, k) => `Motor/M${k}`);
  const node = "spBv1.0/Bench/NBIRTH/Edge1";
  const birth = [
    {
      topic: node,
      payload: sp.encodePayload({
        timestamp: Date.now(),
        seq: 0,
        metrics: [{ name: "bdSeq", type: "Int64", value: 0 }] as never,
      }),
    },
    {
      topic: "spBv1.0/Bench/DBIRTH/Edge1/Press",
      payload: sp.encodePayload({
        timestamp: Date.now(),
        seq: 1,
        metrics: names.map((name, k) => ({
          name,
          alias: k + 1,
          type: "Double",
          value: 0,
        })) as never,
      }),
    },
  ];
  const data = (i: number) => ({
    topic: "spBv1.0/Bench/DDATA/Edge1/Press",
    payload: sp.encodePayload({
      timestamp: Date.now(),
      seq: (i + 2) & 0xff,
      metrics: names.map((_, k) => ({
        alias: k + 1,
        type: "Double",
        value: i * SP_METRICS + k,
      })) as never,
    }),
  });
  return { birth, data, birthRecords: 1 + SP_METRICS };
}

/** Runs the agent on Sparkplug DDATA with 10 metrics per message. */
async function benchSparkplug(
  o: BenchMqttOptions,
  broker: Broker,
  run: string,
  cpus?: string,
): Promise<AgentRun> {
  const table = `bench.mqtt.sparkplug_${run}`;
  const agent = await startAgent(
    o,
    "mqtt_sparkplug",
    `  - { name: mqtt_sparkplug, protocol: mqtt, endpoint: "${broker.url}", topics: ["spBv1.0/Bench/#"], qos: 1, client_id: bench_sp_${run} }`,
    table,
    cpus,
  );
  const pub = await mqtt.connectAsync(broker.url, { clientId: "bench_sp_pub", reconnectPeriod: 0 });
  try {
    const m = sparkplugMessages();
    for (const b of m.birth) await pub.publishAsync(b.topic, b.payload as never, { qos: 1 });
    return await measureAgent(
      o,
      broker.pid,
      agent,
      pub,
      table,
      m.data,
      SP_METRICS,
      m.birthRecords,
    );
  } finally {
    await pub.endAsync();
    await agent.stop();
  }
}

/** Where the benchmark's processes run: see `benchMqtt`. */
interface Layout {
  /** The publisher (this process) and Mosquitto. */
  load?: string;
  /** The subscriber: the bare one or the agent, and the stand-in. */
  subscriber?: string;
}

/** CPU lists of the split layout (`0` and `1-(n-1)`), undefined with one core or no taskset. */
async function splitLayout(): Promise<Layout | undefined> {
  const n = navigator.hardwareConcurrency;
  if (n < 2 || !(await pinCpus(Deno.pid, `0-${n - 1}`))) return undefined;
  return { load: "0", subscriber: n === 2 ? "1" : `1-${n - 1}` };
}

/** Places this process, the broker and the stand-in for `layout` (all CPUs when not given). */
async function place(o: BenchMqttOptions, broker: Broker, layout: Layout): Promise<void> {
  const all = `0-${navigator.hardwareConcurrency - 1}`;
  await pinCpus(Deno.pid, layout.load ?? all);
  await pinCpus(broker.pid, layout.load ?? all);
  await pinCpus(o.standIn.pid, layout.subscriber ?? all);
}

/**
 * Runs the measurements against a new Mosquitto and the given stand-in;
 * returns the figures (also logged through `log`).
 *
 * The target is "the agent keeps up with what Mosquitto delivers to one
 * subscriber". With every process free to use every core, the agent's run
 * also measures how much CPU the agent and the stand-in (the cloud's part,
 * here on the same machine) take away from the publisher and the broker, so
 * the ratio falls below 1 on a small machine even when the agent drains its
 * broker session as fast as it is filled. The split layout (when there are 2+
 * cores and `taskset`) separates the load from what is measured: the
 * publisher and Mosquitto on CPU 0, the subscriber on the others — the bare
 * subscriber for the limit, the agent with the stand-in for the agent's runs.
 * Both layouts are reported; the ratio of the split one is the target's.
 */
export async function benchMqtt(o: BenchMqttOptions): Promise<Record<string, unknown>> {
  const broker = await startBroker(o.root);
  const run = String(Date.now());
  const split = await splitLayout();
  try {
    const results: Record<string, unknown> = {};
    if (split) {
      await place(o, broker, split);
      const where =
        `publisher and Mosquitto on CPU ${split.load}, subscriber on ${split.subscriber}`;
      o.log(`mqtt split layout: ${where}`);
      Object.assign(results, await measureLayout(o, broker, `${run}s`, split, true));
      results.layout = `split: ${where} (the agent with the stand-in)`;
      await place(o, broker, {});
    }
    o.log("mqtt shared layout: every process on every core");
    const shared = await measureLayout(o, broker, run, {}, !split);
    if (split) results.shared_layout = shared;
    else Object.assign(results, shared, { layout: "shared: every process on every core" });
    return { ...results, duration_s: o.durationS, cores: navigator.hardwareConcurrency };
  } finally {
    if (split) await place(o, broker, {});
    await broker.stop();
  }
}

/**
 * The limit and the agent's JSON run in one layout; with `all`, also the
 * Sparkplug run and the one-commit-per-message run.
 */
async function measureLayout(
  o: BenchMqttOptions,
  broker: Broker,
  run: string,
  layout: Layout,
  all: boolean,
): Promise<Record<string, unknown>> {
  o.log(`mqtt limit: bare QoS 1 subscriber, fast QoS 1 publisher, ${o.durationS} s`);
  const limit = await measureLimit(broker.url, o.durationS, layout.subscriber);
  o.log(`mqtt limit: ${Math.round(limit)} messages/s`);
  o.log(`mqtt json: agent, QoS 1, persistent session, ${o.durationS} s of publishing`);
  const json = await benchJson(o, broker, run, layout.subscriber);
  o.log(`mqtt json: ${JSON.stringify(json)}`);
  const out: Record<string, unknown> = {
    mqtt_limit_messages_per_s: Math.round(limit),
    mqtt_json: json,
    mqtt_json_ratio: Math.round((json.messages_per_s / limit) * 100) / 100,
  };
  if (!all) return out;
  o.log(`mqtt sparkplug: DDATA with ${SP_METRICS} metrics, QoS 1, ${o.durationS} s`);
  out.mqtt_sparkplug = await benchSparkplug(o, broker, run, layout.subscriber);
  o.log(`mqtt sparkplug: ${JSON.stringify(out.mqtt_sparkplug)}`);
  o.log("mqtt serial: the json run with receive_maximum 1 (one spool commit per message)");
  out.mqtt_json_one_commit_per_message = await benchJson(o, broker, run, layout.subscriber, 1);
  o.log(`mqtt serial: ${JSON.stringify(out.mqtt_json_one_commit_per_message)}`);
  return out;
}

if (import.meta.main) await runSectionAlone("mqtt", benchMqtt);
