/**
 * Worker side of the source protocol, shared by every source type:
 * normalization and row encoding of readings, batching (up to
 * BATCH_MAX_READINGS rows, BATCH_MAX_BYTES or BATCH_MAX_DELAY_MS), credit-based
 * flow control, status and dead-letter messages, and start/stop plumbing.
 */
import {
  createNormalizer,
  type Normalizer,
  type NormalizeSettings,
  type SourceInfo,
} from "../normalize/normalize.ts";
import { recordIdFactory } from "../record.ts";
import { appendRow } from "../sinks/zerobus/wire.ts";
import {
  BATCH_MAX_BYTES,
  BATCH_MAX_DELAY_MS,
  BATCH_MAX_READINGS,
  type FromWorker,
  type Reading,
  type SourceCounters,
  type SourceState,
  type ToWorker,
} from "./worker_protocol.ts";

/** A running source: what a protocol's worker module implements. */
export interface SourceDriver {
  /** Connects and starts acquisition; may return before the first value. */
  start(): Promise<void> | void;
  /** Stops acquisition and releases every connection. */
  stop(): Promise<void> | void;
}

/** Settings of a kit, from the Worker's `start` message. */
export interface KitOptions {
  source: SourceInfo;
  normalization: NormalizeSettings;
  maxInflight: number;
  maxRows: number;
  recordType: "json" | "proto";
}

/** The source identity normalization needs, from a source config entry. */
export function sourceInfoOf(source: Record<string, unknown>): SourceInfo {
  const str = (k: string) => (typeof source[k] === "string" ? (source[k] as string) : undefined);
  return {
    name: String(source.name),
    protocol: String(source.protocol),
    endpoint: str("endpoint") ?? `${source.protocol}://${source.name}`,
    context: {
      site: str("site"),
      area: str("area"),
      line: str("line"),
      equipment: str("equipment"),
    },
  };
}

/** What a driver uses to hand readings and status to the main thread. */
export class SourceKit {
  readonly counters: SourceCounters = {
    errors: 0,
    reconnects: 0,
    incomplete_paths: 0,
  };
  #normalize: Normalizer;
  #nextId = recordIdFactory();
  #buf = new Uint8Array(BATCH_MAX_BYTES);
  #off = 0;
  #count = 0;
  #firstMs = 0;
  #batchId = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inflight = new Map<number, (stored: boolean) => void>();
  #currentWaiters: Array<(stored: boolean) => void> = [];
  /** The promise `whenCommitted` gives for the batch being filled (one per batch). */
  #currentCommit: Promise<boolean> | undefined;
  #creditWaiters: Array<() => void> = [];
  #closed = false;
  #deadLetterIds = 0;
  #deadLetterWaiters = new Map<number, () => void>();

  constructor(
    readonly opts: KitOptions,
    private readonly post: (m: FromWorker, transfer?: Transferable[]) => void,
  ) {
    this.#normalize = createNormalizer(opts.normalization);
  }

  /** Normalizes one reading and adds its row to the current batch. */
  emit(reading: Reading): void {
    if (this.#closed) return;
    const nowMs = Date.now();
    const row = this.opts.recordType === "proto"
      ? this.#normalize.protoRow(this.opts.source, reading, nowMs * 1000, this.#nextId())
      : this.#normalize.row(this.opts.source, reading, nowMs * 1000, this.#nextId());
    let off = appendRow(this.#buf, this.#off, row);
    if (off < 0) {
      this.flush();
      off = appendRow(this.#buf, 0, row);
      if (off < 0) {
        const text = typeof row === "string"
          ? row
          : JSON.stringify(this.#normalize(this.opts.source, reading, nowMs * 1000));
        this.deadLetter(
          `record of ${row.length} bytes or more exceeds the ${BATCH_MAX_BYTES}-byte row limit`,
          text.slice(0, 2000),
        );
        return;
      }
    }
    if (this.#count === 0) this.#firstMs = nowMs;
    this.#off = off;
    this.#count++;
    if (this.#count >= this.opts.maxRows) this.flush();
    else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), BATCH_MAX_DELAY_MS);
    }
  }

  /** Posts the current batch now (no-op when empty). */
  flush(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#count === 0) return;
    const batchId = ++this.#batchId;
    const waiters = this.#currentWaiters;
    this.#currentWaiters = [];
    this.#currentCommit = undefined;
    this.#inflight.set(batchId, (stored) => waiters.forEach((w) => w(stored)));
    const rows = this.#buf.slice(0, this.#off);
    this.counters.incomplete_paths = this.#normalize.incompletePaths.get(this.opts.source.name) ??
      0;
    this.post({
      type: "records",
      batchId,
      rows,
      count: this.#count,
      firstIngestMs: this.#firstMs,
      incompletePaths: this.counters.incomplete_paths,
    }, [rows.buffer]);
    this.#off = 0;
    this.#count = 0;
  }

  /**
   * Resolves once everything emitted so far has been answered: true when it is
   * committed to the spool, false when it was dropped (full-spool policy, spool
   * failure). A source that acknowledges upstream (MQTT) acks only on true.
   */
  whenCommitted(): Promise<boolean> {
    if (this.#count > 0) {
      return this.#currentCommit ??= new Promise((resolve) => this.#currentWaiters.push(resolve));
    }
    if (this.#inflight.size === 0) return Promise.resolve(true);
    const last = Math.max(...this.#inflight.keys());
    return new Promise((resolve) => {
      const prev = this.#inflight.get(last)!;
      this.#inflight.set(last, (stored) => {
        prev(stored);
        resolve(stored);
      });
    });
  }

  /** True while the main thread accepts more batches. */
  hasCredit(): boolean {
    return this.#inflight.size < this.opts.maxInflight;
  }

  /** Resolves once a batch may be posted (credit available). */
  waitForCredit(): Promise<void> {
    if (this.hasCredit()) return Promise.resolve();
    return new Promise((resolve) => this.#creditWaiters.push(resolve));
  }

  /** Reports connection state and optional details (security mode, item counts, ...). */
  status(state: SourceState, error?: string, detail?: Record<string, unknown>): void {
    if (state === "error") this.counters.errors++;
    this.post({ type: "status", state, error, detail, counters: { ...this.counters } });
  }

  /** Sends an item no parser can read to the dead-letter store, with the reason. */
  deadLetter(reason: string, item: string, detail?: Record<string, unknown>): void {
    this.post({ type: "dead_letter", reason, item, detail, counters: { ...this.counters } });
  }

  /**
   * The same, and resolves once the main thread has stored it (or logged why
   * it could not), so a message is acknowledged only after its dead letter is safe.
   */
  deadLetterStored(reason: string, item: string, detail?: Record<string, unknown>): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const id = ++this.#deadLetterIds;
    const stored = new Promise<void>((resolve) => this.#deadLetterWaiters.set(id, resolve));
    this.post({ type: "dead_letter", reason, item, detail, id, counters: { ...this.counters } });
    return stored;
  }

  /** Handles a `dead_letter_stored` message from the main thread. */
  deadLetterDone(id: number): void {
    this.#deadLetterWaiters.get(id)?.();
    this.#deadLetterWaiters.delete(id);
  }

  /** Logs through the main thread's logger. */
  log(
    level: "debug" | "info" | "warning" | "error",
    msg: string,
    fields?: Record<string, unknown>,
  ) {
    this.post({ type: "log", level, msg, fields });
  }

  /** Handles a `committed` message from the main thread. */
  committed(batchId: number, dropped = false): void {
    const done = this.#inflight.get(batchId);
    if (!done) return;
    this.#inflight.delete(batchId);
    done(!dropped);
    while (this.hasCredit() && this.#creditWaiters.length > 0) this.#creditWaiters.shift()!();
  }

  /** Stops accepting readings; pending waiters are released. */
  close(): void {
    this.flush();
    this.#closed = true;
    for (const w of this.#creditWaiters.splice(0)) w();
    // Not released: what waits for them (an MQTT ack) is not sent; the broker redelivers.
    this.#deadLetterWaiters.clear();
  }

  /** True after close(). */
  get closed(): boolean {
    return this.#closed;
  }
}

/**
 * Runs a source Worker: waits for `start`, builds the driver, answers `stop`.
 * Call once at the top level of a protocol's worker module.
 */
export function runSourceWorker(
  makeDriver: (source: Record<string, unknown>, kit: SourceKit, dataDir: string) => SourceDriver,
): void {
  const scope = self as unknown as {
    postMessage(m: FromWorker, transfer?: Transferable[]): void;
    onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  };
  let kit: SourceKit | undefined;
  let driver: SourceDriver | undefined;
  scope.onmessage = async (e: MessageEvent<ToWorker>) => {
    const msg = e.data;
    if (msg.type === "start") {
      kit = new SourceKit({
        source: sourceInfoOf(msg.source),
        normalization: msg.normalization,
        maxInflight: msg.maxInflight,
        maxRows: Math.max(1, Math.min(BATCH_MAX_READINGS, msg.maxRows)),
        recordType: msg.recordType,
      }, (m, transfer) => scope.postMessage(m, transfer));
      kit.status("starting");
      driver = makeDriver(msg.source, kit, msg.dataDir);
      await driver.start();
    } else if (msg.type === "committed") {
      kit?.committed(msg.batchId, msg.dropped);
    } else if (msg.type === "dead_letter_stored") {
      kit?.deadLetterDone(msg.id);
    } else if (msg.type === "stop") {
      try {
        // Ask the driver to stop, then release the kit (a driver waiting for
        // credit wakes up and sees it is stopping), then wait for the driver.
        const stopping = driver?.stop();
        kit?.close();
        await stopping;
      } finally {
        kit?.status("stopped");
        scope.postMessage({ type: "stopped" });
      }
    }
  };
}
