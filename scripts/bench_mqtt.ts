/**
 * MQTT benchmark: how fast QoS 1 messages go from Mosquitto through the agent
 * (MQTT source, spool, Zerobus client) into the stand-in, with nothing lost.
 *
 * 1. json: a fast QoS 1 publisher (this process) sends JSON messages (one
 *    record each) through Mosquitto to two subscribers at once: the agent
 *    (its own process, MQTT 5 persistent session, QoS 1) and a bare
 *    subscriber (`bench_mqtt_subscriber.ts`, its own process, same protocol
 *    version and receive window, acks at once, keeps nothing). The bare
 *    subscriber's rate is the limit, "what Mosquitto delivers to one
 *    subscriber", measured in the same run under the same load; the agent
 *    keeps up when it has every message in the stand-in's table as soon.
 * 2. sparkplug: the agent alone on Sparkplug B DDATA of 10 metrics
 *    (NBIRTH/DBIRTH first), the publisher's lead over the agent's spool capped.
 * 3. serial: the json run with `receive_maximum: 1` (one message per spool
 *    commit, as before acks were pipelined), for comparison, at most 5 s.
 *
 * Rates are messages published / time from the first publish until the last
 * one is in (the bare subscriber's count; the agent: rows in the stand-in's
 * table). Reports the agent's CPU by thread and peak RSS, and what the
 * broker, the bare subscriber, the stand-in, the publisher and the whole
 * machine used meanwhile (from /proc). Never asserts.
 *
 * Alone: `deno run --allow-all scripts/bench_mqtt.ts [--duration 20]` starts its
 * own zerobus-local and prints one JSON line on stdout.
 */
import mqtt, { type MqttClient } from "mqtt";
import { get } from "sparkplug-payload";
import { PARENT_ENV, spawnSelf } from "../src/self.ts";
import {
  type BenchSectionOptions,
  cpuSeconds,
  freePort,
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
 * PUBACK, while `mayGo()` allows, until `untilMs` or `max` messages. Returns
 * how many were published.
 */
async function publishFast(
  pub: MqttClient,
  next: (i: number) => { topic: string; payload: Uint8Array | string },
  untilMs: number,
  mayGo: (published: number) => boolean = () => true,
  max = Infinity,
): Promise<number> {
  let sent = 0;
  let acked = 0;
  let failed: Error | undefined;
  let wake = () => {};
  while (performance.now() < untilMs && sent < max) {
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

/** The bare subscriber process and the messages it received so far. */
interface BareSubscriber {
  pid: number;
  received(): number;
  /** Date.now() when the latest message arrived. */
  lastAt(): number;
  stop(): Promise<void>;
}

/**
 * Starts `bench_mqtt_subscriber.ts` on `filter` (a persistent session with a
 * `clientId`); resolves once it is subscribed, or at once with `ready` false
 * (a session that has its subscription gets its messages before the SUBACK).
 */
async function startBareSubscriber(
  url: string,
  filter: string,
  clientId?: string,
  ready = true,
): Promise<BareSubscriber> {
  const script = new URL("./bench_mqtt_subscriber.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", script, url, filter, ...(clientId ? [clientId] : [])],
    env: { ...Deno.env.toObject(), [PARENT_ENV]: String(Deno.pid) },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let received = 0;
  let lastAt = 0;
  let subscribed = false;
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const line of lines) {
        const m = JSON.parse(line) as { received?: number; at?: number; event?: string };
        if (m.event === "ready") subscribed = true;
        else [received, lastAt] = [m.received ?? received, m.at ?? lastAt];
      }
    }
  })();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
    await reading;
  };
  const deadline = Date.now() + 20_000;
  while (ready && !subscribed) {
    if (Date.now() > deadline) {
      await stop();
      throw new Error("the bare subscriber did not subscribe");
    }
    await sleep(20);
  }
  return { pid: child.pid, received: () => received, lastAt: () => lastAt, stop };
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
  /** The bare subscriber of the same run (json only). */
  bare_subscriber?: {
    /** Messages/s: published / time until it had them all (the limit). */
    messages_per_s: number;
    cpu_cores: number;
    /** Seconds after the bare subscriber had every message, the agent had every row. */
    agent_later_s: number;
  };
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
 * Publishes for `seconds`, then waits until `recordsPerMessage` × published +
 * `extraRecords` rows are in the table. With a bare subscriber in the same
 * run the publisher goes as fast as it can (Mosquitto queues what a
 * subscriber has not taken yet); without one its lead over the agent's spool
 * is capped at `maxLead` messages.
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
  opts: { seconds?: number; maxLead?: number; bare?: BareSubscriber } = {},
): Promise<AgentRun> {
  const { seconds = o.durationS, maxLead = MAX_LEAD, bare } = opts;
  let spooled = 0;
  let sent = 0;
  let backlogPeak = 0;
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
  const bare0 = bare ? cpuSeconds(bare.pid) : 0;
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const t0Epoch = Date.now();
  const published = await publishFast(pub, next, t0 + seconds * 1000, (n) => {
    sent = n;
    return bare !== undefined || n * recordsPerMessage - spooled < maxLead * recordsPerMessage;
  });
  const expected = published * recordsPerMessage + extraRecords;
  let rows = 0;
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  // The agent is done when we see its last row (up to a round late: against the agent).
  while ((rows = await tableRows(o.standIn, table)) < expected && Date.now() <= deadline) {
    await sleep(20);
  }
  const dt = (performance.now() - t0) / 1000;
  // The bare subscriber is done when it had its last message, by its own clock.
  while (bare && bare.received() < published && Date.now() <= deadline) await sleep(20);
  const bareDt = bare ? (bare.lastAt() - t0Epoch) / 1000 : NaN;
  polling = false;
  await poller;
  const cpu = (cpuSeconds(agent.pid) - c0) / dt;
  return {
    messages_per_s: Math.round(published / dt),
    records_per_s: Math.round(published * recordsPerMessage / dt),
    published,
    records_expected: expected,
    records_in_table: rows,
    lost: Math.max(0, expected - rows),
    agent_cpu_cores: Math.round(cpu * 100) / 100,
    agent_peak_rss_mb: rssPeakMb(agent.pid),
    agent_threads_cpu_cores: threadCores(th0, threadSeconds(agent.pid), dt),
    broker_cpu_cores: cores(cpuSeconds(brokerPid) - b0, dt),
    stand_in_cpu_cores: cores(cpuSeconds(o.standIn.pid) - s0, dt),
    publisher_cpu_cores: cores(cpuSeconds(Deno.pid) - p0, dt),
    machine_busy_cores: cores(machineBusySeconds() - m0, dt),
    backlog_peak_records: backlogPeak,
    bare_subscriber: bare && {
      messages_per_s: Math.round(published / bareDt),
      cpu_cores: cores(cpuSeconds(bare.pid) - bare0, dt),
      agent_later_s: Math.round((dt - bareDt) * 100) / 100,
    },
  };
}

/**
 * Runs the agent on JSON messages (one record each) with a bare subscriber in
 * the same run; `receiveMaximum` 1 = one commit each, the agent alone, 5 s.
 */
async function benchJson(
  o: BenchMqttOptions,
  broker: Broker,
  run: string,
  receiveMaximum?: number,
): Promise<AgentRun> {
  const name = receiveMaximum === undefined ? "json" : `json_rm${receiveMaximum}`;
  const table = `bench.mqtt.${name}_${run}`;
  const rm = receiveMaximum === undefined ? "" : `receive_maximum: ${receiveMaximum}, `;
  const agent = await startAgent(
    o,
    "mqtt_json",
    `  - { name: mqtt_json, protocol: mqtt, endpoint: "${broker.url}", topics: ["${name}/#"], qos: 1, ${rm}client_id: bench_${name}_${run}, site: s, area: a, line: l, equipment: e }`,
    table,
  );
  const serial = receiveMaximum !== undefined;
  const bare = serial ? undefined : await startBareSubscriber(broker.url, `${name}/#`);
  const pub = await mqtt.connectAsync(broker.url, {
    clientId: "bench_json_pub",
    reconnectPeriod: 0,
  });
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
      serial ? { seconds: Math.min(5, o.durationS), maxLead: 200 } : { bare },
    );
  } finally {
    await pub.endAsync();
    await bare?.stop();
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
async function benchSparkplug(o: BenchMqttOptions, broker: Broker, run: string): Promise<AgentRun> {
  const table = `bench.mqtt.sparkplug_${run}`;
  const agent = await startAgent(
    o,
    "mqtt_sparkplug",
    `  - { name: mqtt_sparkplug, protocol: mqtt, endpoint: "${broker.url}", topics: ["spBv1.0/Bench/#"], qos: 1, client_id: bench_sp_${run} }`,
    table,
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

/** Messages/s while a subscriber empties a backlog Mosquitto kept for it. */
interface DrainRun {
  backlog: number;
  agent_messages_per_s: number;
  agent_cpu_cores: number;
  /** By thread, as in the json run. */
  agent_threads_cpu_cores: Record<string, number>;
  /** The stand-in while the agent drained. */
  stand_in_cpu_cores: number;
  bare_subscriber_messages_per_s: number;
  bare_subscriber_cpu_cores: number;
}

/**
 * How fast each subscriber can take messages when the publisher is not
 * competing for the machine: both subscribe (persistent sessions) and stop,
 * `count` JSON messages are published, then each starts again alone and takes
 * its backlog; the rate counts from the first message it has to the last.
 */
async function benchDrain(
  o: BenchMqttOptions,
  broker: Broker,
  run: string,
  count: number,
): Promise<DrainRun> {
  const table = `bench.mqtt.drain_${run}`;
  const source =
    `  - { name: mqtt_json, protocol: mqtt, endpoint: "${broker.url}", topics: ["drain/#"], qos: 1, client_id: bench_drain_${run}, site: s, area: a, line: l, equipment: e }`;
  const bareId = `bench_drain_bare_${run}`;
  await (await startAgent(o, "mqtt_json", source, table)).stop();
  await (await startBareSubscriber(broker.url, "drain/#", bareId)).stop();
  const pub = await mqtt.connectAsync(broker.url, {
    clientId: "bench_drain_pub",
    reconnectPeriod: 0,
  });
  await publishFast(
    pub,
    (i) => ({
      topic: `drain/line1/tag${i % 100}`,
      payload: `{"value":${i},"unit":"degC"}`,
    }),
    Infinity,
    undefined,
    count,
  );
  await pub.endAsync();
  const agent = await startAgent(o, "mqtt_json", source, table);
  const agentRate = await drainRate(() => tableRows(o.standIn, table), count, agent.pid, [
    o.standIn.pid,
  ]);
  await agent.stop();
  const bare = await startBareSubscriber(broker.url, "drain/#", bareId, false);
  const bareRate = await drainRate(() => Promise.resolve(bare.received()), count, bare.pid);
  await bare.stop();
  return {
    backlog: count,
    agent_messages_per_s: agentRate.rate,
    agent_cpu_cores: agentRate.cores,
    agent_threads_cpu_cores: agentRate.threads,
    stand_in_cpu_cores: agentRate.others[0],
    bare_subscriber_messages_per_s: bareRate.rate,
    bare_subscriber_cpu_cores: bareRate.cores,
  };
}

/**
 * Rate and CPU of `pid` (in all, by thread, and of the `others` processes)
 * from the first count above 0 until `count` (counted every 20 ms).
 */
async function drainRate(
  counted: () => Promise<number>,
  count: number,
  pid: number,
  others: number[] = [],
): Promise<{ rate: number; cores: number; threads: Record<string, number>; others: number[] }> {
  let n = 0;
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while ((n = await counted()) === 0 && Date.now() < deadline) await sleep(20);
  const [first, t0, c0, th0] = [n, performance.now(), cpuSeconds(pid), threadSeconds(pid)];
  const o0 = others.map(cpuSeconds);
  while ((n = await counted()) < count && Date.now() < deadline) await sleep(20);
  if (n < count) throw new Error(`drain: ${n} of ${count} messages arrived`);
  const dt = (performance.now() - t0) / 1000;
  return {
    rate: Math.round((count - first) / dt),
    cores: cores(cpuSeconds(pid) - c0, dt),
    threads: threadCores(th0, threadSeconds(pid), dt),
    others: others.map((p, i) => cores(cpuSeconds(p) - o0[i], dt)),
  };
}

/**
 * Runs the measurements against a new Mosquitto and the given stand-in;
 * returns the figures (also logged through `log`).
 */
export async function benchMqtt(o: BenchMqttOptions): Promise<Record<string, unknown>> {
  const broker = await startBroker(o.root);
  const run = String(Date.now());
  try {
    o.log(
      `mqtt json: agent and a bare subscriber in the same run, QoS 1, ${o.durationS} s of publishing`,
    );
    const json = await benchJson(o, broker, run);
    o.log(`mqtt json: ${JSON.stringify(json)}`);
    o.log(`mqtt sparkplug: DDATA with ${SP_METRICS} metrics, QoS 1, ${o.durationS} s`);
    const spark = await benchSparkplug(o, broker, run);
    o.log(`mqtt sparkplug: ${JSON.stringify(spark)}`);
    o.log("mqtt serial: the json run with receive_maximum 1 (one spool commit per message)");
    const serial = await benchJson(o, broker, run, 1);
    o.log(`mqtt serial: ${JSON.stringify(serial)}`);
    const backlog = Math.max(20_000, json.published);
    o.log(
      `mqtt drain: the agent, then the bare subscriber alone, each on a ${backlog}-message backlog`,
    );
    const drain = await benchDrain(o, broker, run, backlog);
    o.log(`mqtt drain: ${JSON.stringify(drain)}`);
    const limit = json.bare_subscriber!.messages_per_s;
    return {
      mqtt_limit_messages_per_s: limit,
      mqtt_json: json,
      mqtt_json_ratio: Math.round((json.messages_per_s / limit) * 1000) / 1000,
      mqtt_sparkplug: spark,
      mqtt_json_one_commit_per_message: serial,
      mqtt_drain: drain,
      duration_s: o.durationS,
      cores: navigator.hardwareConcurrency,
    };
  } finally {
    await broker.stop();
  }
}

if (import.meta.main) await runSectionAlone("mqtt", benchMqtt);
