/** Shared helpers of the integration tests: processes, ports, stand-in files. */
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { type SelfProcess, spawnSelf } from "../src/self.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";
import { type RecordBatch, SourceHost } from "../src/sources/host.ts";

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes (then throws with `what`). */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  what: string,
  timeoutMs = 30_000,
): Promise<Exclude<T, undefined | null | false>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as Exclude<T, undefined | null | false>;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** A stand-in started as its own process. */
export interface StandIn {
  proc: SelfProcess;
  endpoint: string;
  workspaceUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** Starts `zerobus-local` in a separate process on free ports. */
export async function startStandIn(dataDir: string, extraArgs: string[] = []): Promise<StandIn> {
  const proc = await spawnSelf(
    ["zerobus-local", "--port", "0", "--http-port", "0", "--data-dir", dataDir, ...extraArgs],
    "ready",
  );
  const r = proc.ready as { endpoint: string; workspace_url: string };
  return {
    proc,
    endpoint: r.endpoint,
    workspaceUrl: r.workspace_url,
    dataDir,
    stop: () => proc.stop(),
  };
}

/** Runs `body` with a stand-in process (started with `args`) in a temp folder; cleans both up. */
export async function withStandIn(
  args: string[],
  body: (dir: string, standIn: StandIn) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "otedge-e2e-" });
  const standIn = await startStandIn(dir, args);
  try {
    await body(dir, standIn);
  } finally {
    await standIn.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rows the stand-in wrote, per table, parsed. */
export async function readTables(dataDir: string): Promise<Map<string, Record<string, unknown>[]>> {
  const out = new Map<string, Record<string, unknown>[]>();
  const dir = `${dataDir}/zerobus-local`;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.endsWith(".jsonl")) continue;
      const text = await Deno.readTextFile(`${dir}/${e.name}`);
      const rows = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
      out.set(e.name.replace(/\.jsonl$/, ""), rows);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

/** Distinct record ids over all tables. */
export function distinctIds(tables: Map<string, Record<string, unknown>[]>): Set<string> {
  const ids = new Set<string>();
  for (const rows of tables.values()) for (const r of rows) ids.add(r.record_id as string);
  return ids;
}

/**
 * Checks that, per source and tag, the generator's `metadata.seq` values form
 * 0..k without holes. Returns the problems found (empty when complete).
 */
export function seqHoles(rows: Record<string, unknown>[]): string[] {
  const seen = new Map<string, Set<number>>();
  for (const r of rows) {
    const key = `${r.source_name}/${r.tag_name}`;
    const seq = JSON.parse(r.metadata as string).seq as number;
    let s = seen.get(key);
    if (!s) seen.set(key, s = new Set());
    s.add(seq);
  }
  const problems: string[] = [];
  for (const [key, s] of seen) {
    const max = Math.max(...s);
    if (s.size !== max + 1) problems.push(`${key}: ${max + 1 - s.size} missing below seq ${max}`);
  }
  return problems;
}

/** A config for an agent writing to a stand-in, as YAML text. */
export function agentConfigYaml(o: {
  dataDir: string;
  port: number;
  standIn: StandIn;
  sources: string;
  sourceTargets?: string;
  extra?: string;
}): string {
  return `connector:
  name: test-agent
  data_dir: ${JSON.stringify(o.dataDir)}
  log_level: warning
http:
  host: 127.0.0.1
  port: ${o.port}
sources:
${o.sources}
zerobus:
  enabled: true
  workspace_host: ${o.standIn.workspaceUrl}
  zerobus_endpoint: ${o.standIn.endpoint}
  default_target: { catalog: main, schema: iot_data, table: sensor_readings }
  source_targets:
${o.sourceTargets ?? "    {}"}
  auth: { client_id: local-client, client_secret: local-secret }
${o.extra ?? ""}`;
}

/** A row the stand-in or a source produced, parsed. */
export type Row = Record<string, unknown>;

/** One source running in its real Worker under a real SourceHost, without spool or sink. */
export interface HostedSource {
  rows: Row[];
  host: SourceHost;
  dataDir: string;
  stop(): Promise<void>;
}

/**
 * Runs the first source of a config (YAML) under a SourceHost; its records
 * land, parsed, in `rows`. `workerUrl` overrides the catalog (e.g. for a
 * protocol whose Worker is not registered).
 */
export async function runSourceUnderHost(
  yaml: string,
  opts: { workerUrl?: (protocol: string) => URL | undefined } = {},
): Promise<HostedSource> {
  const res = loadConfigText(yaml, { env: {} });
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const rows: Row[] = [];
  const dec = new TextDecoder();
  const dataDir = await Deno.makeTempDir();
  const host = new SourceHost(
    (_src, batch: RecordBatch) => {
      for (const r of splitRows(batch.rows)) rows.push(JSON.parse(dec.decode(r)));
      return Promise.resolve(true);
    },
    () => {},
    createLogger("error", "test", () => {}),
    {
      dataDir,
      normalization: res.config.normalization,
      maxRows: 100,
      recordType: () => "json",
      workerUrl: opts.workerUrl,
    },
  );
  await host.start(res.config.sources[0] as never);
  return {
    rows,
    host,
    dataDir,
    async stop() {
      await host.stopAll();
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** The newest row per address among `rows` from index `from` on. */
export function latestByAddress(rows: Row[], from = 0): Map<string, Row> {
  const out = new Map<string, Row>();
  for (const r of rows.slice(from)) out.set(r.address as string, r);
  return out;
}

/**
 * A config with one OPC UA source `ua` on `endpoint`, publishing and sampling
 * every 100 ms, followed by `extra` (YAML lines of the source entry, indented 4).
 */
export function opcuaSourceYaml(endpoint: string, extra: string): string {
  return `sources:
  - name: ua
    protocol: opcua
    endpoint: ${endpoint}
    publishing_interval_ms: 100
    sampling_interval_ms: 100
${extra}`;
}
