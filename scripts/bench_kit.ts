/**
 * Small helpers the benchmarks share: ports, a process's CPU time and peak RSS
 * from /proc, and running one section alone with its own stand-in.
 */
import { parseArgs } from "node:util";
import { spawnSelf } from "../src/self.ts";

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

/** Resident memory of a process in MB (`VmHWM`: the peak, `VmRSS`: now), NaN when unreadable. */
export function rssMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

/** Peak resident memory of a process in MB, NaN when unreadable. */
export function rssPeakMb(pid: number): number {
  return rssMb(pid, "VmHWM");
}

/** User + system CPU seconds a process used so far (Linux, 100 ticks/s), NaN when unreadable. */
export function cpuSeconds(pid: number): number {
  try {
    const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Where the stand-in listens (from its `ready` line). */
export interface StandInAddress {
  endpoint: string;
  workspace_url: string;
  /** The stand-in's process id (its CPU is reported where the machine is shared). */
  pid: number;
  /** Its `--data-dir`: rows land in `<data_dir>/zerobus-local/<catalog>.<schema>.<table>.jsonl`. */
  data_dir: string;
}

/** The JSON-lines file where the stand-in writes the rows of `table` (`catalog.schema.table`). */
export function standInTableFile(standIn: StandInAddress, table: string): string {
  return `${standIn.data_dir}/zerobus-local/${table}.jsonl`;
}

/** What every protocol section of the benchmark gets from `scripts/bench.ts`. */
export interface BenchSectionOptions {
  /** A scratch folder for configs and data. */
  root: string;
  standIn: StandInAddress;
  durationS: number;
  log: (msg: string) => void;
}

/** The machine in one line, for the log. */
export function machineLine(): string {
  return `machine: ${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}, deno ${Deno.version.deno}`;
}

/**
 * Runs one benchmark section on its own (`deno run -A scripts/bench_<x>.ts
 * [--duration N]`): starts zerobus-local, runs the section, prints its JSON
 * line on stdout and stops the stand-in.
 */
export async function runSectionAlone(
  name: string,
  section: (o: BenchSectionOptions) => Promise<Record<string, unknown>>,
): Promise<void> {
  const { values } = parseArgs({ args: Deno.args, options: { duration: { type: "string" } } });
  const log = (msg: string) => console.error(`[bench-${name}] ${msg}`);
  const root = await Deno.makeTempDir({ prefix: `otedge-bench-${name}-` });
  const standIn = await spawnSelf(
    ["zerobus-local", "--port", "0", "--http-port", "0", "--data-dir", `${root}/standin`],
    "ready",
  );
  try {
    log(machineLine());
    const result = await section({
      root,
      standIn: { ...standIn.ready, pid: standIn.pid } as unknown as StandInAddress,
      durationS: Number(values.duration ?? 20),
      log,
    });
    console.log(JSON.stringify(result));
  } finally {
    await standIn.stop();
    await Deno.remove(root, { recursive: true });
  }
}
