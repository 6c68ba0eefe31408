/**
 * The agent: sources (Workers) → normalization → durable spool → Zerobus sink,
 * with status and counters for the API. One instance per `run`.
 */
import {
  type AgentConfig,
  type SourceConfig,
  tableFullName,
  type TargetConfig,
  targetFor,
} from "./config/schema.ts";
import type { Logger } from "./log.ts";
import { type BridgeCounters, newBridgeCounters } from "./metrics.ts";
import { type SinkOptions, ZerobusSink } from "./sinks/zerobus/sink.ts";
import type { TableRef } from "./sinks/zerobus/token.ts";
import type { RecordTypeName } from "./sinks/zerobus/wire.ts";
import { Spool } from "./spool/spool.ts";
import { type HostedSourceConfig, type RecordBatch, SourceHost } from "./sources/host.ts";

/** Lane of records whose source has no target table configured. */
export const NO_TARGET = "__no_target__";

/**
 * The spool lane of a table and row encoding: `catalog.schema.table`, plus
 * `#proto` for PROTO rows, so rows spooled before a change of
 * `zerobus.record_type` are still sent with the encoding they were made in.
 */
export function laneName(t: TableRef, recordType: RecordTypeName): string {
  return `${tableFullName(t)}${recordType === "proto" ? "#proto" : ""}`;
}

/** The table and encoding of a lane name; undefined for names that are not lanes of a table. */
export function parseLaneName(
  lane: string,
): { table: TableRef; recordType: RecordTypeName } | undefined {
  const [name, suffix, ...more] = lane.split("#");
  const [catalog, schema, table, ...rest] = name.split(".");
  if (
    !table || rest.length > 0 || more.length > 0 || (suffix !== undefined && suffix !== "proto")
  ) return undefined;
  return { table: { catalog, schema, table }, recordType: suffix === "proto" ? "proto" : "json" };
}

/** Options for tests and the benchmark. */
export interface AgentOptions {
  /** Override of sink timings (tests use short backoffs). */
  sink?: Partial<SinkOptions>;
}

/** The running agent. */
export class Agent {
  readonly bridge: BridgeCounters = newBridgeCounters();
  readonly dropped: Record<string, number> = {};
  readonly startedAt = new Date();
  readonly host: SourceHost;
  sink?: ZerobusSink;
  #laneOf = new Map<string, string>();
  #stopping = false;

  private constructor(readonly config: AgentConfig, readonly spool: Spool, readonly log: Logger) {
    this.host = new SourceHost(
      (src, readings) => this.#onBatch(src, readings),
      (source, reason, item, detail) => this.deadLetter(source, reason, item, detail),
      log.child("sources"),
      {
        dataDir: config.connector.data_dir,
        normalization: config.normalization,
        maxRows: config.zerobus.batch.max_records,
        recordType: (source) => {
          const t = targetFor(config, source);
          return t ? this.#encodingOf(t) : config.zerobus.record_type;
        },
      },
    );
  }

  /** Opens the spool, starts the sink and every enabled source. */
  static async start(config: AgentConfig, log: Logger, opts: AgentOptions = {}): Promise<Agent> {
    const bp = config.backpressure;
    const spoolPath = bp.disk_spool.enabled
      ? `${config.connector.data_dir}/spool/spool.sqlite3`
      : ":memory:";
    if (!bp.disk_spool.enabled) {
      log.warning(
        "backpressure.disk_spool.enabled is false: the spool is in memory and records are lost on restart",
      );
    }
    let spool: Spool;
    try {
      spool = await Spool.open({
        path: spoolPath,
        maxBytes: bp.disk_spool.max_size_mb * 1024 * 1024,
        maxRecords: bp.disk_spool.max_records,
        maxRowsPerSegment: config.zerobus.batch.max_records,
      });
    } catch (e) {
      throw new Error(
        `cannot open the spool at ${spoolPath}: ${(e as Error).message}; ` +
          "set connector.data_dir (or CONNECTOR_DATA_DIR) to a writable folder with free space",
      );
    }
    if (spool.recoveredFrom) {
      log.error("the spool file was not a database; it was moved aside and a new spool started", {
        kept_as: spool.recoveredFrom,
        what_to_do: "keep the moved file for inspection; no records in it can be sent",
      });
    }
    const recovered = spool.stats();
    if (recovered.records > 0) {
      log.info("spool holds unacknowledged records from the last run; they are resent", {
        records: recovered.records,
        bytes: recovered.bytes,
      });
    }
    const agent = new Agent(config, spool, log);
    agent.#startSink(opts);
    for (const s of config.sources) await agent.startSource(s);
    return agent;
  }

  #startSink(opts: AgentOptions): void {
    const zb = this.config.zerobus;
    if (!zb.enabled) {
      this.log.warning(
        "zerobus.enabled is false: records are kept in the spool until it is enabled",
      );
      return;
    }
    const endpoint = zb.zerobus_endpoint ?? zb.workspace_host!;
    this.sink = new ZerobusSink(
      {
        endpoint,
        workspaceUrl: zb.workspace_host ?? endpoint,
        clientId: zb.auth.client_id ?? "",
        clientSecret: zb.auth.client_secret ?? "",
        maxRecords: zb.batch.max_records,
        maxBytes: zb.batch.max_bytes,
        lingerMs: zb.batch.linger_ms,
        streamsPerTarget: zb.streams_per_target,
        maxInflight: zb.max_inflight_requests,
        ackTimeoutMs: zb.ack_timeout_s * 1000,
        ...opts.sink,
      },
      this.spool,
      (e) => {
        if (e.kind === "acked") {
          this.bridge.records_acked += e.records;
          this.bridge.batches_sent += e.requests;
        } else if (e.kind === "dead_letter") {
          this.bridge.dead_letters += e.records;
        } else {
          this.bridge.reconnections++;
          this.log.warning("zerobus stream problem", { target: e.target, error: e.message });
        }
      },
    );
    const tables = [zb.default_target, ...Object.values(zb.source_targets)];
    for (const t of tables) {
      if (t) this.sink.addTarget(laneName(t, this.#encodingOf(t)), t, this.#encodingOf(t));
    }
    // Lanes recovered from the spool keep their table and row encoding.
    for (const lane of this.spool.lanes.keys()) {
      const parsed = parseLaneName(lane);
      if (parsed) this.sink.addTarget(lane, parsed.table, parsed.recordType);
    }
  }

  /** Row encoding of a target table: its own `record_type`, else `zerobus.record_type`. */
  #encodingOf(t: TargetConfig): RecordTypeName {
    return t.record_type ?? this.config.zerobus.record_type;
  }

  /** Starts (or restarts with new settings) one source. */
  async startSource(s: SourceConfig): Promise<void> {
    const target = targetFor(this.config, s.name);
    this.#laneOf.set(
      s.name,
      target ? laneName(target, this.#encodingOf(target)) : NO_TARGET,
    );
    if (!target) {
      this.log.warning(
        "source has no target table: set zerobus.default_target or zerobus.source_targets",
        {
          source: s.name,
        },
      );
    }
    await this.host.start(s as unknown as HostedSourceConfig & Record<string, unknown>);
  }

  /** Stores one batch from a source Worker; false when it was dropped (and counted). */
  async #onBatch(src: HostedSourceConfig, batch: RecordBatch): Promise<boolean> {
    const n = batch.count;
    this.bridge.records_received += n;
    this.bridge.records_normalized += n; // normalized by the source's Worker
    const lane = this.#laneOf.get(src.name) ?? NO_TARGET;
    if (lane === NO_TARGET) {
      this.#countDrop("no_target", n);
      return false;
    }
    if (this.spool.isFull() && !(await this.#makeRoom(n, batch.rows.length))) return false;
    try {
      await this.spool.appendFramed(lane, batch.rows, n, batch.firstIngestMs);
    } catch (e) {
      this.#countDrop("spool_error", n);
      this.log.error("records could not be stored in the spool", {
        source: src.name,
        error: String(e),
      });
      return false;
    }
    this.bridge.records_enqueued += n;
    return true;
  }

  /** Applies `backpressure.on_full`; false when the batch is dropped. */
  async #makeRoom(n: number, bytes: number): Promise<boolean> {
    const policy = this.config.backpressure.on_full;
    if (policy === "block") {
      await this.spool.waitForSpace();
      return !this.#stopping || !this.spool.isFull();
    }
    if (policy === "drop_oldest") {
      await this.spool.dropOldest(n, bytes, (k) => this.#countDrop("spool_full_oldest", k));
      if (!this.spool.isFull()) return true;
    }
    this.#countDrop("spool_full", n);
    return false;
  }

  #countDrop(reason: string, n: number): void {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + n;
    this.bridge.records_dropped += n;
  }

  /**
   * Stores an undeliverable item in the dead-letter store; resolves once it is
   * stored or its failure is logged (never rejects).
   */
  deadLetter(
    source: string,
    reason: string,
    item: string,
    detail?: Record<string, unknown>,
  ): Promise<void> {
    this.bridge.dead_letters++;
    return this.spool.deadLetter({ source, reason, item, detail }).catch((e) =>
      this.log.error("dead-letter store failed", { source, reason, error: String(e) })
    );
  }

  /** Stops sources, commits what they sent, lets the sink drain briefly, closes the spool. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    await this.host.stopAll();
    await this.spool.flush();
    await this.sink?.stop(graceMs);
    await this.spool.close();
  }

  /** The `/api/status` document. */
  status() {
    const sources = this.host.status();
    for (const [name, s] of Object.entries(sources)) {
      (s as unknown as Record<string, unknown>).target = this.#laneOf.get(name) ?? null;
    }
    return {
      status: "running",
      connector: this.config.connector.name,
      started_at: this.startedAt.toISOString(),
      uptime_s: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      zerobus_enabled: this.config.zerobus.enabled,
      zerobus_connected: this.sink?.connected() ?? false,
      circuit_breaker_state: this.sink?.breakerState() ?? "closed",
      sources,
      targets: this.sink?.targetStats() ?? {},
      spool: this.spool.stats(),
    };
  }

  /** The `/api/metrics` document, in the original description's shape. */
  metrics() {
    const sources = this.host.status();
    const clients: Record<string, unknown> = {};
    for (const [name, s] of Object.entries(sources)) {
      clients[name] = {
        protocol: s.protocol,
        state: s.state,
        records: s.records,
        restarts: s.restarts,
        errors: s.counters.errors,
      };
    }
    const sp = this.spool.stats();
    return {
      bridge: { ...this.bridge },
      backpressure: {
        policy: this.config.backpressure.on_full,
        spool_records: sp.records,
        spool_bytes: sp.bytes,
        spool_max_bytes: sp.max_bytes,
        spool_max_records: sp.max_records,
        spool_full: sp.full,
        dropped: { ...this.dropped },
        dead_letters: sp.dead_letters,
      },
      zerobus_targets: this.sink?.targetStats() ?? {},
      clients,
    };
  }
}
