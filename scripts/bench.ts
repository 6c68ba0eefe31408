/**
 * `deno task bench`: throughput, latency and memory of the whole pipeline.
 *
 * 1. limit: a bare gRPC client pushes pre-built 1000-row batches straight
 *    into zerobus-local (a separate process) — the ceiling of this machine.
 * 2. agent: the generator at full speed through normalization, the durable
 *    spool and the Zerobus client into the same stand-in (agent in its own
 *    process; records/s from its acked counter, peak RSS from /proc).
 * 3. latency: the same at 10,000 records/s; p50/p99 from append to durable ack.
 * 4. normalization alone (reading to JSON row, as a source Worker does it), one core,
 *    with rules and a quality mapping: steady state (tags cached, JSON and proto
 *    rows) and first pass (every record a new tag).
 * 5. per protocol (`bench_<protocol>.ts`): the agent against the simulator's servers.
 *
 * `--only core,modbus,...` picks sections. Prints progress on stderr and one
 * final JSON line on stdout. Never asserts.
 */
import { connectGrpc } from "../src/http2/grpc_client.ts";
import { parseArgs } from "node:util";
import { spawnSelf } from "../src/self.ts";
import {
  appendRow,
  decodeResponse,
  encodeBatchRequest,
  encodeCreateStream,
  EPHEMERAL_STREAM_PATH,
} from "../src/sinks/zerobus/wire.ts";
import { createNormalizer, type SourceInfo } from "../src/normalize/normalize.ts";
import type { Rule } from "../src/normalize/rules.ts";
import type { QualityTable } from "../src/normalize/quality.ts";
import type { Reading } from "../src/sources/worker_protocol.ts";
import { createGeneratorModel } from "../src/sources/generator/models.ts";
import { recordIdFactory } from "../src/record.ts";
import { cpuSeconds, freePort, machineLine, rssPeakMb, type StandInAddress } from "./bench_kit.ts";
import { benchModbus } from "./bench_modbus.ts";
import { benchMqtt } from "./bench_mqtt.ts";
import { benchOpcua } from "./bench_opcua.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string" },
    "latency-duration": { type: "string" },
    tags: { type: "string" },
    only: { type: "string" },
  },
});
/** Sections to run: core (generator pipeline, latency, normalization), modbus, mqtt, opcua. */
const SECTIONS = new Set((values.only ?? "core,modbus,mqtt,opcua").split(","));
const DURATION_S = Number(values.duration ?? 20);
const LATENCY_S = Number(values["latency-duration"] ?? 15);
const TAGS = Number(values.tags ?? 1000);
const log = (msg: string) => console.error(`[bench] ${msg}`);

/** Realistic rows: normalized generator records as the agent would spool them. */
function benchParts() {
  const normalize = createNormalizer({
    enabled: true,
    path_template: "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
    missing_placeholder: "unassigned",
  });
  const next = createGeneratorModel({
    tags: TAGS,
    recordsPerS: 0,
    models: ["sine", "ramp", "random_walk", "step"],
    prefix: "tag",
  });
  return { normalize, next };
}

function sampleRows(n: number): string[] {
  const { normalize, next } = benchParts();
  const id = recordIdFactory();
  const src = {
    name: "bench",
    protocol: "generator",
    endpoint: "generator://bench",
    context: { site: "s", area: "a", line: "l", equipment: "e" },
  };
  return Array.from({ length: n }, () => {
    const now = Date.now() * 1000;
    return JSON.stringify({ record_id: id(), ...normalize(src, next(now), now) });
  });
}

async function token(workspaceUrl: string): Promise<string> {
  const res = await fetch(`${workspaceUrl}/oidc/v1/token`, {
    method: "POST",
    headers: {
      authorization: `Basic ${btoa("local-client:local-secret")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      scope: "all-apis",
      resource: "api://databricks/workspaces/127/zerobusDirectWriteApi",
      authorization_details: JSON.stringify([{
        type: "unity_catalog_privileges",
        privileges: ["SELECT", "MODIFY"],
        object_type: "TABLE",
        object_full_path: "bench.limit.rows",
      }]),
    }),
  });
  const body = await res.json();
  if (!body.access_token) throw new Error(`stand-in refused a token: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** Bare client: pre-built batches, window of 64 requests, for `seconds`. */
async function measureLimit(
  endpoint: string,
  workspaceUrl: string,
  seconds: number,
): Promise<number> {
  const rows = sampleRows(1000);
  const seg = new Uint8Array(2_000_000);
  let off = 0;
  for (const r of rows) off = appendRow(seg, off, r);
  const batch = seg.slice(0, off);
  const channel = connectGrpc(endpoint);
  let acked = -1;
  let failed: string | undefined;
  let wake = () => {};
  const call = channel.call(EPHEMERAL_STREAM_PATH, {
    authorization: `Bearer ${await token(workspaceUrl)}`,
    "x-databricks-zerobus-table-name": "bench.limit.rows",
  }, {
    onMessage: (b) => {
      const r = decodeResponse(b);
      if (r.kind === "ack") acked = r.upTo;
      wake();
    },
    onStatus: (s) => {
      if (s.code !== 0) failed = `${s.code} ${s.details}`;
      wake();
    },
  });
  call.write(encodeCreateStream("bench.limit.rows", "json"));
  const end = performance.now() + seconds * 1000;
  let startAcked = -1;
  let t0 = 0;
  let sent = 0;
  const warm = performance.now() + 2000;
  while (performance.now() < end) {
    if (failed) throw new Error(`limit stream failed: ${failed}`);
    if (t0 === 0 && performance.now() > warm) {
      t0 = performance.now();
      startAcked = acked;
    }
    if (sent - acked > 64) {
      await new Promise<void>((r) => (wake = r));
      continue;
    }
    if (!call.write(encodeBatchRequest(sent++, "json", [batch]))) await call.drained();
  }
  const rate = ((acked - startAcked) * 1000) / ((performance.now() - t0) / 1000);
  call.cancel();
  await channel.close();
  return rate;
}

async function runAgent(
  standIn: { endpoint: string; workspace_url: string },
  dataDir: string,
  recordsPerS: number,
  seconds: number,
) {
  const port = freePort();
  const cfg = `${dataDir}.yaml`;
  await Deno.writeTextFile(
    cfg,
    `connector: { name: bench, data_dir: ${JSON.stringify(dataDir)}, log_level: warning }
http: { host: 127.0.0.1, port: ${port} }
sources:
  - { name: gen, protocol: generator, site: s, area: a, line: l, equipment: e, tags: ${TAGS}, records_per_s: ${recordsPerS} }
zerobus:
  enabled: true
  workspace_host: ${standIn.workspace_url}
  zerobus_endpoint: ${standIn.endpoint}
  default_target: { catalog: bench, schema: agent, table: rows_${recordsPerS} }
  auth: { client_id: local-client, client_secret: local-secret }
backpressure: { disk_spool: { max_size_mb: 4000 } }
`,
  );
  const agent = await spawnSelf(["run", "--config", cfg], "ready");
  const metrics = async () => await (await fetch(`http://127.0.0.1:${port}/api/metrics`)).json();
  try {
    await new Promise((r) => setTimeout(r, 3000)); // warm-up
    const m0 = await metrics();
    const c0 = cpuSeconds(agent.pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const m1 = await metrics();
    const dt = (performance.now() - t0) / 1000;
    const c1 = cpuSeconds(agent.pid);
    const target = Object.values(m1.zerobus_targets)[0] as {
      p50_latency_ms: number;
      p99_latency_ms: number;
    };
    return {
      acked_per_s: (m1.bridge.records_acked - m0.bridge.records_acked) / dt,
      spooled_per_s: (m1.bridge.records_enqueued - m0.bridge.records_enqueued) / dt,
      p50: target?.p50_latency_ms,
      p99: target?.p99_latency_ms,
      rss: rssPeakMb(agent.pid),
      cpu_share: (c1 - c0) / dt,
      backlog: m1.backpressure.spool_records,
    };
  } finally {
    await agent.stop();
  }
}

/** Normalization rules as a plant would write them: browse-path globs and address regexes with captures. */
const BENCH_RULES: Rule[] = [
  {
    match: { protocol: "opcua", browse_path: "Objects/*/*/*/*/*" },
    set: { site: "$1", area: "$2", line: "$3", equipment: "$4", tag_name: "$5" },
  },
  {
    match: {
      protocol: "mqtt",
      address: "^(?<site>[^/]+)/(?<line>[^/]+)/(?<equipment>[^/]+)/(?<tag>[^/]+)$",
    },
    set: { site: "$<site>", line: "$<line>", equipment: "$<equipment>", tag_name: "$<tag>" },
  },
  { match: { protocol: "mqtt", address: "/(temp|oil_temp)[^/]*$" }, set: { unit: "°C" } },
  {
    match: { protocol: "modbus", address: "^(\\d+)/holding/(\\d+)$" },
    set: { equipment: "unit_$1" },
  },
];

/** Native codes per unified quality, as `normalization.quality_mapping` configures them. */
const BENCH_QUALITY: QualityTable = {
  opcua: {
    good: [0],
    uncertain: [0x40000000, 0x408f0000],
    bad: [0x80000000, 0x80310000, 0x808a0000],
  },
  mqtt: { good: [0], uncertain: [1], bad: [2] },
};

const SIGNALS = [
  { name: "Temperature", unit: "°C", topic: "temp" },
  { name: "HydraulicPressure", unit: "bar", topic: "hydraulic_pressure" },
  { name: "MotorSpeed", unit: "rpm", topic: "motor_speed" },
  { name: "CoolantFlow", unit: "m3/h", topic: "coolant_flow" },
  { name: "VibrationX", unit: "mm/s", topic: "vibration_x" },
];
const SITES = ["Columbus", "Dayton", "Toledo", "Akron"];
const OPCUA_CODES = [0x408f0000, 0x80310000];
const BENCH_SOURCES = {
  opcua: {
    name: "press-ua",
    protocol: "opcua",
    endpoint: "opc.tcp://127.0.0.1:4840",
    context: { area: "Press Shop" },
  },
  mqtt: {
    name: "press-mqtt",
    protocol: "mqtt",
    endpoint: "mqtt://127.0.0.1:1883",
    context: { area: "press_shop" },
  },
};

/**
 * Reading `i` of `tags` distinct tags: even tags OPC-UA (browse path, StatusCode),
 * odd tags MQTT (topic); 1 in 50 readings uncertain or bad.
 */
function benchReading(i: number, tags: number): { source: SourceInfo; reading: Reading } {
  const tag = i % tags;
  const sig = SIGNALS[tag % SIGNALS.length];
  const site = SITES[Math.floor(tag / SIGNALS.length) % SITES.length];
  const machine = Math.floor(tag / (SIGNALS.length * SITES.length));
  const line = `Line-${(machine % 8) + 1}`;
  const offNominal = Math.floor(i / 2) % 50 === 49;
  const value = Math.round(Math.sin(i) * 1000) / 10 + 50;
  const event_time = 1_764_000_000_000_000 + i * 1000;
  if (tag % 2 === 0) {
    return {
      source: BENCH_SOURCES.opcua,
      reading: {
        address: `ns=2;s=${site}.${line}.Press${machine}.${sig.name}`,
        tag_name: sig.name,
        browse_path: `Objects/${site}/Press Shop/${line}/Press ${machine}/${sig.name}`,
        unit: sig.unit,
        value,
        event_time,
        quality_code: offNominal ? OPCUA_CODES[Math.floor(i / 100) % 2] : 0,
      },
    };
  }
  const topic = `${site.toLowerCase()}/line${(machine % 8) + 1}/press${machine}/${sig.topic}`;
  return {
    source: BENCH_SOURCES.mqtt,
    reading: {
      address: topic,
      tag_name: sig.topic,
      value,
      event_time,
      quality_code: offNominal ? 2 : 0,
    },
  };
}

function benchNormalizer() {
  return createNormalizer({
    enabled: true,
    path_template: "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
    missing_placeholder: "unassigned",
    rules: BENCH_RULES,
    quality_mapping: BENCH_QUALITY,
  });
}

/** Records/s of `pass` (normalizes some records, returns how many), repeated for at least `seconds`. */
function rateOf(pass: () => number, seconds: number): number {
  let n = 0;
  let spent = 0;
  while (spent < seconds * 1000) {
    const t0 = performance.now();
    n += pass();
    spent += performance.now() - t0;
  }
  return n / (spent / 1000);
}

const FIRST_PASS_TAGS = 200_000;

/**
 * Normalization alone, one core, with rules and a quality mapping: steady state
 * (TAGS tags, cached) to JSON rows and to proto rows, and first pass (every
 * record a new tag: rules, sanitizing and the path template run per record).
 */
function benchNormalization() {
  const id = recordIdFactory();
  const steady = Array.from({ length: 10_000 }, (_, i) => benchReading(i, TAGS));
  const normalize = benchNormalizer();
  for (const r of [steady[98], steady[99]]) {
    const row = JSON.parse(normalize.row(r.source, r.reading, 1, id()));
    log(`normalization: e.g. ${r.reading.address} -> ${row.tag_path} (${row.quality})`);
  }
  const json = rateOf(() => {
    for (const r of steady) normalize.row(r.source, r.reading, 1, id());
    return steady.length;
  }, 2);
  const proto = rateOf(() => {
    for (const r of steady) normalize.protoRow(r.source, r.reading, 1, id());
    return steady.length;
  }, 2);
  const fresh = Array.from({ length: FIRST_PASS_TAGS }, (_, i) => benchReading(i, FIRST_PASS_TAGS));
  const firstPass = rateOf(() => {
    const once = benchNormalizer(); // an empty tag cache: every record is a new tag
    for (const r of fresh) once.row(r.source, r.reading, 1, id());
    return fresh.length;
  }, 2);
  return { json, proto, firstPass };
}

/** The generator pipeline: the limit, the agent at full speed and at 10,000/s, normalization alone. */
async function benchCore(root: string, si: { endpoint: string; workspace_url: string }) {
  log(`limit: bare client, pre-built 1000-row batches, ${DURATION_S} s`);
  const limit = await measureLimit(si.endpoint, si.workspace_url, DURATION_S);
  log(`limit: ${Math.round(limit)} records/s`);
  log(`agent: generator at full speed, ${TAGS} tags, spool on, ${DURATION_S} s`);
  const full = await runAgent(si, `${root}/agent_full`, 0, DURATION_S);
  log(
    `agent: ${Math.round(full.acked_per_s)} records/s acked, ${
      Math.round(full.spooled_per_s)
    } spooled, peak RSS ${full.rss} MB, cpu ${full.cpu_share.toFixed(2)} cores`,
  );
  log(`latency: generator at 10,000 records/s, ${LATENCY_S} s`);
  const lat = await runAgent(si, `${root}/agent_10k`, 10_000, LATENCY_S);
  log(`latency: p50 ${lat.p50} ms, p99 ${lat.p99} ms, cpu ${lat.cpu_share.toFixed(2)} cores`);
  const norm = benchNormalization();
  log(
    `normalization alone, one core, ${BENCH_RULES.length} rules + quality mapping: ` +
      `${Math.round(norm.json)} records/s to JSON (${TAGS} tags cached), ` +
      `${Math.round(norm.proto)} to proto, ${Math.round(norm.firstPass)} first pass ` +
      `(${FIRST_PASS_TAGS} new tags)`,
  );
  return {
    records_per_s: Math.round(full.acked_per_s),
    limit_records_per_s: Math.round(limit),
    ratio: Math.round((full.acked_per_s / limit) * 100) / 100,
    p50_latency_ms: lat.p50,
    p99_latency_ms: lat.p99,
    peak_rss_mb: full.rss,
    agent_cpu_cores_at_full_speed: Math.round(full.cpu_share * 100) / 100,
    agent_cpu_cores_at_10k: Math.round(lat.cpu_share * 100) / 100,
    normalize_records_per_s: Math.round(norm.json),
    normalize_proto_records_per_s: Math.round(norm.proto),
    normalize_first_pass_records_per_s: Math.round(norm.firstPass),
    normalize_first_pass_tags: FIRST_PASS_TAGS,
    normalize_rules: BENCH_RULES.length,
    spool: "on",
    tags: TAGS,
  };
}

const root = await Deno.makeTempDir({ prefix: "otedge-bench-" });
const standIn = await spawnSelf(
  ["zerobus-local", "--port", "0", "--http-port", "0", "--data-dir", `${root}/standin`],
  "ready",
);
const si = { ...standIn.ready, pid: standIn.pid } as StandInAddress;
try {
  log(machineLine());
  const results: Record<string, unknown> = {
    cores: navigator.hardwareConcurrency,
    duration_s: DURATION_S,
  };
  const common = { root, standIn: si, durationS: DURATION_S, log };
  if (SECTIONS.has("core")) results.core = await benchCore(root, si);
  if (SECTIONS.has("modbus")) results.modbus = await benchModbus(common);
  if (SECTIONS.has("mqtt")) results.mqtt = await benchMqtt(common);
  if (SECTIONS.has("opcua")) results.opcua = await benchOpcua(common);
  console.log(JSON.stringify(results));
} finally {
  await standIn.stop();
  await Deno.remove(root, { recursive: true });
}
