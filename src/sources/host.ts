/**
 * Runs each source in its own Worker: starts, stops and reconfigures one
 * source without touching the others, restarts a Worker that dies with
 * exponential backoff and jitter (1 s to 30 s), and keeps per-source status.
 */
import type { Logger } from "../log.ts";
import type { NormalizeSettings } from "../normalize/normalize.ts";
import { workerUrlOf } from "./catalog.ts";
import type { FromWorker, SourceCounters, SourceState, ToWorker } from "./worker_protocol.ts";

/** The keys of a source entry the host reads; the Worker gets the whole entry. */
export interface HostedSourceConfig {
  name: string;
  protocol: string;
  endpoint: string;
  enabled: boolean;
}

/** What the host shows per source in `/api/status`. */
export interface SourceStatus {
  name: string;
  protocol: string;
  endpoint: string;
  enabled: boolean;
  state: SourceState;
  last_error: string | null;
  last_error_time: string | null;
  last_data_time: string | null;
  records: number;
  batches: number;
  restarts: number;
  counters: SourceCounters;
  detail: Record<string, unknown>;
}

/** A batch of normalized records from a Worker: framed JSON rows. */
export interface RecordBatch {
  rows: Uint8Array;
  count: number;
  firstIngestMs: number;
}

/** Where a Worker's batches go: resolves true once they are committed, false when dropped. */
export type BatchHandler = (source: HostedSourceConfig, batch: RecordBatch) => Promise<boolean>;

/** What every Worker is started with besides its source entry. */
export interface HostSettings {
  dataDir: string;
  normalization: NormalizeSettings;
  /** Rows per batch at most (the sink's batch size). */
  maxRows: number;
  /** Row encoding of a source's records (its target table's `record_type`). */
  recordType: (source: string) => "json" | "proto";
  /** Worker module of a protocol; defaults to the source catalog (tests plug in their own). */
  workerUrl?: (protocol: string) => URL | undefined;
}

/**
 * Where a Worker's dead letters go. A returned promise tells when the dead
 * letter is stored (a Worker that waits for it, e.g. to ack a message, goes on then).
 */
export type DeadLetterHandler = (
  source: string,
  reason: string,
  item: string,
  detail?: Record<string, unknown>,
) => unknown;

/** Batches a Worker may have unanswered before it pauses. */
export const WORKER_MAX_INFLIGHT = 128;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;

interface Slot {
  config: HostedSourceConfig & Record<string, unknown>;
  worker?: Worker;
  status: SourceStatus;
  backoffMs: number;
  restartTimer?: ReturnType<typeof setTimeout>;
  startedAt: number;
  stopping?: Promise<void>;
  onStopped?: () => void;
}

/** Supervises the source Workers. */
export class SourceHost {
  readonly #slots = new Map<string, Slot>();

  constructor(
    private readonly onBatch: BatchHandler,
    private readonly onDeadLetter: DeadLetterHandler,
    private readonly log: Logger,
    private readonly settings: HostSettings,
  ) {}

  /** Starts a source (or records it as disabled). Replaces a running source of the same name. */
  async start(config: HostedSourceConfig & Record<string, unknown>): Promise<void> {
    if (this.#slots.has(config.name)) await this.stop(config.name);
    const slot: Slot = {
      config,
      backoffMs: BACKOFF_MIN_MS,
      startedAt: 0,
      status: {
        name: config.name,
        protocol: config.protocol,
        endpoint: config.endpoint,
        enabled: config.enabled,
        state: "stopped",
        last_error: null,
        last_error_time: null,
        last_data_time: null,
        records: 0,
        batches: 0,
        restarts: 0,
        counters: { errors: 0, reconnects: 0, incomplete_paths: 0 },
        detail: {},
      },
    };
    this.#slots.set(config.name, slot);
    if (config.enabled) this.#spawn(slot);
  }

  #spawn(slot: Slot): void {
    const url = (this.settings.workerUrl ?? workerUrlOf)(slot.config.protocol);
    if (!url) {
      this.#fail(
        slot,
        `protocol '${slot.config.protocol}' has no source implementation in this version; disable the source or upgrade`,
        false,
      );
      return;
    }
    slot.startedAt = Date.now();
    slot.status.state = "starting";
    let worker: Worker;
    try {
      worker = new Worker(url, { type: "module", name: `source:${slot.config.name}` });
    } catch (e) {
      this.#fail(slot, `cannot start the worker: ${(e as Error).message}`, true);
      return;
    }
    slot.worker = worker;
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.#onMessage(slot, worker, e.data);
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (slot.worker !== worker) return;
      worker.terminate();
      slot.worker = undefined;
      this.#fail(slot, `source worker crashed: ${e.message}`, true);
    };
    const start: ToWorker = {
      type: "start",
      source: slot.config,
      dataDir: this.settings.dataDir,
      maxInflight: WORKER_MAX_INFLIGHT,
      normalization: this.settings.normalization,
      maxRows: this.settings.maxRows,
      recordType: this.settings.recordType(slot.config.name),
    };
    worker.postMessage(start);
  }

  #onMessage(slot: Slot, worker: Worker, msg: FromWorker): void {
    const st = slot.status;
    switch (msg.type) {
      case "records":
        st.records += msg.count;
        st.batches++;
        st.counters.incomplete_paths = msg.incompletePaths;
        st.last_data_time = new Date().toISOString();
        this.onBatch(slot.config, msg).then(
          (stored) =>
            worker.postMessage(
              { type: "committed", batchId: msg.batchId, dropped: !stored } satisfies ToWorker,
            ),
          (e) => {
            this.log.error("a batch of records was not stored; the source was told", {
              source: slot.config.name,
              error: String(e),
            });
            worker.postMessage(
              { type: "committed", batchId: msg.batchId, dropped: true } satisfies ToWorker,
            );
          },
        );
        break;
      case "status":
        st.state = msg.state;
        if (msg.counters) st.counters = msg.counters;
        if (msg.detail) st.detail = { ...st.detail, ...msg.detail };
        if (msg.error) {
          st.last_error = msg.error;
          st.last_error_time = new Date().toISOString();
          this.log.warning("source error", { source: slot.config.name, error: msg.error });
        }
        if (msg.state === "connected" && Date.now() - slot.startedAt > HEALTHY_AFTER_MS) {
          slot.backoffMs = BACKOFF_MIN_MS;
        }
        break;
      case "dead_letter": {
        st.counters = msg.counters;
        const stored = this.onDeadLetter(slot.config.name, msg.reason, msg.item, msg.detail);
        const id = msg.id;
        if (id !== undefined) {
          // To the Worker that sent it (a restarted one counts its ids anew).
          const done = () =>
            worker.postMessage({ type: "dead_letter_stored", id } satisfies ToWorker);
          Promise.resolve(stored).then(done, done);
        }
        break;
      }
      case "log":
        this.log[msg.level](msg.msg, { source: slot.config.name, ...msg.fields });
        break;
      case "stopped":
        slot.onStopped?.();
        break;
    }
  }

  #fail(slot: Slot, error: string, retry: boolean): void {
    const st = slot.status;
    st.state = "error";
    st.last_error = error;
    st.last_error_time = new Date().toISOString();
    this.log.error("source failed", {
      source: slot.config.name,
      error,
      retry_in_ms: retry ? slot.backoffMs : null,
    });
    if (!retry || slot.stopping) return;
    if (Date.now() - slot.startedAt > HEALTHY_AFTER_MS) slot.backoffMs = BACKOFF_MIN_MS;
    const wait = slot.backoffMs / 2 + Math.random() * slot.backoffMs / 2;
    slot.backoffMs = Math.min(BACKOFF_MAX_MS, slot.backoffMs * 2);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.#slots.get(slot.config.name) !== slot || slot.stopping) return;
      st.restarts++;
      this.#spawn(slot);
    }, wait);
  }

  /** Stops one source: asks its Worker to stop (its last batch is still handled), then ends it. */
  stop(name: string, timeoutMs = 5000): Promise<void> {
    const slot = this.#slots.get(name);
    if (!slot) return Promise.resolve();
    slot.stopping ??= (async () => {
      clearTimeout(slot.restartTimer);
      const worker = slot.worker;
      if (worker) {
        const stopped = new Promise<void>((r) => (slot.onStopped = r));
        worker.postMessage({ type: "stop" } satisfies ToWorker);
        let t: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([stopped, new Promise<void>((r) => (t = setTimeout(r, timeoutMs)))]);
        clearTimeout(t);
        worker.terminate();
        slot.worker = undefined;
      }
      slot.status.state = "stopped";
      this.#slots.delete(name);
    })();
    return slot.stopping;
  }

  /** Stops every source. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#slots.keys()].map((n) => this.stop(n)));
  }

  /** Status of every source, by name. */
  status(): Record<string, SourceStatus> {
    const out: Record<string, SourceStatus> = {};
    for (const [name, slot] of this.#slots) out[name] = { ...slot.status };
    return out;
  }

  /** Names of the hosted sources. */
  names(): string[] {
    return [...this.#slots.keys()];
  }
}
