/**
 * Pipeline counters, kept as plain numbers on the hot path and exposed two
 * ways: `/api/metrics` in the original description's JSON shape, and
 * `/metrics` in Prometheus text format through prom-client (read at scrape).
 */
import client from "prom-client";

/** Counters of the data path (the `bridge` block of `/api/metrics`). */
export interface BridgeCounters {
  records_received: number;
  records_normalized: number;
  records_enqueued: number;
  records_dropped: number;
  batches_sent: number;
  records_acked: number;
  reconnections: number;
  dead_letters: number;
}

/** A fresh set of zeroed counters. */
export function newBridgeCounters(): BridgeCounters {
  return {
    records_received: 0,
    records_normalized: 0,
    records_enqueued: 0,
    records_dropped: 0,
    batches_sent: 0,
    records_acked: 0,
    reconnections: 0,
    dead_letters: 0,
  };
}

/** What the Prometheus registry reads at each scrape. */
export interface MetricsSource {
  bridge: BridgeCounters;
  spool(): { bytes: number; records: number; max_bytes: number; dead_letters: number };
  sources(): Record<
    string,
    { state: string; records: number; restarts: number; counters: { incomplete_paths: number } }
  >;
  targets(): Record<
    string,
    {
      records_acked: number;
      requests_sent: number;
      reconnections: number;
      inflight_requests: number;
      p99_latency_ms: number | null;
      breaker: string;
    }
  >;
  droppedByReason(): Record<string, number>;
}

/** Builds a prom-client registry whose values are read from `src` at scrape time. */
export function createRegistry(src: MetricsSource): client.Registry {
  const registry = new client.Registry();
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const b = src.bridge;
  counter(
    "otedge_records_received_total",
    "Readings received from sources",
    () => b.records_received,
  );
  counter("otedge_records_normalized_total", "Records normalized", () => b.records_normalized);
  counter(
    "otedge_records_spooled_total",
    "Records committed to the durable spool",
    () => b.records_enqueued,
  );
  counter(
    "otedge_records_acked_total",
    "Records acknowledged durable by Zerobus",
    () => b.records_acked,
  );
  counter("otedge_batches_sent_total", "Batch requests sent to Zerobus", () => b.batches_sent);
  counter("otedge_stream_reconnections_total", "Zerobus streams reopened", () => b.reconnections);
  counter(
    "otedge_dead_letters_total",
    "Items stored in the dead-letter store",
    () => b.dead_letters,
  );
  new client.Counter({
    name: "otedge_records_dropped_total",
    help: "Records dropped, by reason",
    labelNames: ["reason"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(src.droppedByReason())) this.inc({ reason }, n);
    },
  });
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    read: (g: client.Gauge) => void,
  ) =>
    new client.Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        read(this);
      },
    });
  gauge("otedge_spool_bytes", "Bytes held in the spool", [], (g) => g.set(src.spool().bytes));
  gauge("otedge_spool_records", "Records held in the spool", [], (g) => g.set(src.spool().records));
  gauge("otedge_spool_max_bytes", "Spool byte cap", [], (g) => g.set(src.spool().max_bytes));
  gauge("otedge_source_up", "1 when the source is connected", ["source"], (g) => {
    for (const [name, s] of Object.entries(src.sources())) {
      g.set({ source: name }, s.state === "connected" ? 1 : 0);
    }
  });
  gauge("otedge_source_records", "Readings received per source", ["source"], (g) => {
    for (const [name, s] of Object.entries(src.sources())) g.set({ source: name }, s.records);
  });
  gauge(
    "otedge_source_incomplete_paths",
    "Records whose ISA-95 path lacked context (placeholder used), per source",
    ["source"],
    (g) => {
      for (const [name, s] of Object.entries(src.sources())) {
        g.set({ source: name }, s.counters.incomplete_paths);
      }
    },
  );
  gauge("otedge_source_restarts", "Worker restarts per source", ["source"], (g) => {
    for (const [name, s] of Object.entries(src.sources())) g.set({ source: name }, s.restarts);
  });
  gauge("otedge_target_records_acked", "Records acknowledged per target table", ["table"], (g) => {
    for (const [t, s] of Object.entries(src.targets())) g.set({ table: t }, s.records_acked);
  });
  gauge(
    "otedge_target_inflight_requests",
    "Requests awaiting ack per target table",
    ["table"],
    (g) => {
      for (const [t, s] of Object.entries(src.targets())) g.set({ table: t }, s.inflight_requests);
    },
  );
  gauge("otedge_target_p99_latency_seconds", "p99 ingest-to-durable-ack latency per target", [
    "table",
  ], (g) => {
    for (const [t, s] of Object.entries(src.targets())) {
      if (s.p99_latency_ms !== null) g.set({ table: t }, s.p99_latency_ms / 1000);
    }
  });
  gauge(
    "otedge_target_breaker_open",
    "1 when the target's circuit breaker is open",
    ["table"],
    (g) => {
      for (const [t, s] of Object.entries(src.targets())) {
        g.set(
          { table: t },
          s.breaker === "open" ? 1 : 0,
        );
      }
    },
  );
  client.collectDefaultMetrics({ register: registry, prefix: "otedge_process_" });
  return registry;
}
