/**
 * Modbus benchmark: the agent (its own process) polls 10,000 holding registers
 * over 4 unit ids at 1 Hz from the simulator's Modbus TCP server (in this
 * process) into zerobus-local, and reports poll cycle times (p50/p99/max from
 * the source's status), records/s acked, late and missed polls, the agent's
 * CPU share of one core and its peak RSS. Never asserts.
 *
 * `benchModbus` is what `scripts/bench.ts` calls; run alone
 * (`deno run -A scripts/bench_modbus.ts [--duration 20]`) it starts its own
 * stand-in and prints one JSON line on stdout (progress on stderr).
 */
import { startModbusSimulator } from "../src/simulator/modbus_server.ts";
import { spawnSelf } from "../src/self.ts";
import { cpuSeconds, freePort, rssPeakMb, runSectionAlone, sleep } from "./bench_kit.ts";

/** Registers polled, unit ids they are spread over, and the poll interval. */
export const BENCH_REGISTERS = 10_000;
export const BENCH_UNITS = [1, 2, 3, 4];
export const BENCH_INTERVAL_MS = 1000;

/** The register map: blocks of 125 uint16 registers (one read each) per unit id. */
function registersYaml(): string {
  const perUnit = BENCH_REGISTERS / BENCH_UNITS.length;
  const lines: string[] = [];
  for (const unit of BENCH_UNITS) {
    for (let a = 0; a < perUnit; a += 125) {
      const count = Math.min(125, perUnit - a);
      lines.push(
        `      - { address: ${a}, count: ${count}, type: holding, unit_id: ${unit}, name: u${unit}_r${a} }`,
      );
    }
  }
  return lines.join("\n");
}

function agentYaml(o: {
  dataDir: string;
  httpPort: number;
  modbusPort: number;
  standIn: { endpoint: string; workspace_url: string };
}): string {
  return `connector: { name: bench-modbus, data_dir: ${
    JSON.stringify(o.dataDir)
  }, log_level: warning }
http: { host: 127.0.0.1, port: ${o.httpPort} }
sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${o.modbusPort}
    site: s
    area: a
    line: l
    equipment: e
    polling_interval_ms: ${BENCH_INTERVAL_MS}
    timeout_ms: 1000
    max_gap: 0
    registers:
${registersYaml()}
zerobus:
  enabled: true
  workspace_host: ${o.standIn.workspace_url}
  zerobus_endpoint: ${o.standIn.endpoint}
  default_target: { catalog: bench, schema: modbus, table: rows }
  auth: { client_id: local-client, client_secret: local-secret }
backpressure: { disk_spool: { max_size_mb: 4000 } }
`;
}

/** The poll figures of the source's (only) group, from `/api/status`. */
async function pollFigures(url: string): Promise<Record<string, unknown>> {
  const status = await (await fetch(`${url}/api/status`)).json();
  const detail = status.sources?.plc?.detail ?? {};
  return { ...(detail.poll_groups?.[0] ?? {}), malformed_frames: detail.malformed_frames };
}

/**
 * Runs the Modbus benchmark for `durationS` seconds (after a 3 s warm-up)
 * against the stand-in; temp files go under `root`.
 */
export async function benchModbus(opts: {
  root: string;
  standIn: { endpoint: string; workspace_url: string };
  durationS: number;
  log: (msg: string) => void;
}): Promise<Record<string, unknown>> {
  const modbusPort = freePort();
  const sim = await startModbusSimulator({
    port: modbusPort,
    layout: { units: BENCH_UNITS, tableSize: BENCH_REGISTERS / BENCH_UNITS.length },
  });
  const dataDir = `${opts.root}/modbus_agent`;
  const httpPort = freePort();
  const cfg = `${dataDir}.yaml`;
  await Deno.writeTextFile(
    cfg,
    agentYaml({ dataDir, httpPort, modbusPort, standIn: opts.standIn }),
  );
  const url = `http://127.0.0.1:${httpPort}`;
  opts.log(
    `modbus: ${BENCH_REGISTERS} holding registers over ${BENCH_UNITS.length} unit ids at ` +
      `${1000 / BENCH_INTERVAL_MS} Hz, ${opts.durationS} s`,
  );
  let agent;
  try {
    agent = await spawnSelf(["run", "--config", cfg], "ready");
    const metrics = async () => await (await fetch(`${url}/api/metrics`)).json();
    await sleep(3000); // warm-up: connect, first polls, token
    const m0 = await metrics();
    const p0 = await pollFigures(url);
    const c0 = cpuSeconds(agent.pid);
    const r0 = sim.requests;
    const t0 = performance.now();
    await sleep(opts.durationS * 1000);
    const m1 = await metrics();
    const dt = (performance.now() - t0) / 1000;
    const c1 = cpuSeconds(agent.pid);
    const p1 = await pollFigures(url);
    const n = (v: unknown) => (typeof v === "number" ? v : 0);
    const result = {
      registers: BENCH_REGISTERS,
      unit_ids: BENCH_UNITS.length,
      interval_ms: BENCH_INTERVAL_MS,
      duration_s: Math.round(dt * 10) / 10,
      records_per_s_acked: Math.round((m1.bridge.records_acked - m0.bridge.records_acked) / dt),
      requests_per_s_served: Math.round((sim.requests - r0) / dt),
      polls: n(p1.polls) - n(p0.polls),
      polls_late: n(p1.late) - n(p0.late),
      polls_missed: n(p1.missed) - n(p0.missed),
      cycle_ms_p50: p1.cycle_ms_p50,
      cycle_ms_p99: p1.cycle_ms_p99,
      cycle_ms_max: p1.cycle_ms_max,
      malformed_frames: p1.malformed_frames,
      agent_cpu_share_of_one_core: Math.round(((c1 - c0) / dt) * 1000) / 1000,
      agent_peak_rss_mb: rssPeakMb(agent.pid),
      spool_backlog_records: m1.backpressure.spool_records,
      cores: navigator.hardwareConcurrency,
    };
    opts.log(
      `modbus: cycle p50 ${result.cycle_ms_p50} ms, p99 ${result.cycle_ms_p99} ms, max ${result.cycle_ms_max} ms; ` +
        `${result.records_per_s_acked} records/s acked; late ${result.polls_late}, missed ` +
        `${result.polls_missed} of ${result.polls} polls; cpu ${result.agent_cpu_share_of_one_core} ` +
        `cores; peak RSS ${result.agent_peak_rss_mb} MB`,
    );
    return result;
  } finally {
    await agent?.stop();
    await sim.stop();
  }
}

if (import.meta.main) await runSectionAlone("modbus", benchModbus);
