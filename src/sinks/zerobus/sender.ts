/**
 * One target table's sender: takes committed segments from the spool lane,
 * ships them as `ingest_record_batch` requests over one or more Zerobus
 * streams, and deletes them from the spool when the server's cumulative acks
 * say they are durable.
 *
 * Recovery is "new stream, resend everything unacked" (at-least-once; rows
 * keep their record_id). A `CloseStreamSignal` stops sending on that stream,
 * waits for outstanding acks up to its duration, then rotates to a new stream.
 */
import * as grpc from "@grpc/grpc-js";
import type { Lane, Segment, Spool } from "../../spool/spool.ts";
import { type TableRef, TokenError, type TokenProvider } from "./token.ts";
import {
  decodeResponse,
  encodeBatchRequest,
  encodeCreateStream,
  EPHEMERAL_STREAM_PATH,
  type RecordTypeName,
} from "./wire.ts";

/** gRPC codes a retry cannot fix. */
const NOT_RETRYABLE = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.UNAUTHENTICATED,
  grpc.status.PERMISSION_DENIED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.NOT_FOUND,
]);

/** Settings of one target's sender. */
export interface SenderOptions {
  table: TableRef;
  recordType: RecordTypeName;
  maxRecords: number;
  maxBytes: number;
  lingerMs: number;
  streams: number;
  maxInflight: number;
  ackTimeoutMs: number;
  /** Backoff between failed attempts, retryable errors. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Wait after an error a retry cannot fix (the data stays in the spool). */
  fatalRetryMs?: number;
  sdkName?: string;
}

/** Circuit breaker state of a target. */
export type BreakerState = "closed" | "open" | "half_open";

/** A failure of a stream, with whether a plain retry may help. */
export class StreamError extends Error {
  constructor(message: string, readonly retryable: boolean, readonly code?: number) {
    super(message);
  }
}

/** Delivery figures of a target. */
export interface SenderStats {
  table: string;
  state: "idle" | "connecting" | "streaming" | "backoff" | "error" | "stopped";
  breaker: BreakerState;
  stream_ids: string[];
  requests_sent: number;
  records_sent: number;
  records_acked: number;
  inflight_requests: number;
  reconnections: number;
  close_signals: number;
  consecutive_failures: number;
  last_error: string | null;
  last_error_time: string | null;
  last_ack_time: string | null;
}

interface Inflight {
  offset: number;
  segments: Segment[];
  records: number;
}

/** Ring buffer of (latency, weight) samples for percentiles. */
export class LatencySampler {
  #lat = new Float64Array(4096);
  #w = new Float64Array(4096);
  #n = 0;

  /** Adds a latency in ms observed for `weight` records. */
  add(ms: number, weight: number): void {
    const i = this.#n++ % this.#lat.length;
    this.#lat[i] = ms;
    this.#w[i] = weight;
  }

  /** Weighted percentile (0..1) of the kept samples, or null when none. */
  percentile(p: number): number | null {
    const n = Math.min(this.#n, this.#lat.length);
    if (n === 0) return null;
    const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => this.#lat[a] - this.#lat[b]);
    let total = 0;
    for (let i = 0; i < n; i++) total += this.#w[i];
    let acc = 0;
    for (const i of idx) {
      acc += this.#w[i];
      if (acc >= p * total) return this.#lat[i];
    }
    return this.#lat[idx[n - 1]];
  }

  /** Forgets every sample. */
  reset(): void {
    this.#n = 0;
  }
}

function jitter(ms: number): number {
  return ms / 2 + Math.random() * ms / 2;
}

/** Sends one target's lane to Zerobus until stopped. */
export class TargetSender {
  readonly latency = new LatencySampler();
  readonly stats: SenderStats;
  #stopped = false;
  #wakeStop: Array<() => void> = [];
  #loops: Promise<void>[] = [];
  #streamIds = new Map<number, string>();
  #calls = new Set<grpc.ClientDuplexStream<Uint8Array, Uint8Array>>();
  readonly #lane: Lane;
  readonly #fullName: string;

  constructor(
    private readonly client: grpc.Client,
    private readonly spool: Spool,
    readonly target: string,
    private readonly tokens: TokenProvider,
    private readonly opts: SenderOptions,
    private readonly onEvent: (
      e: { kind: "acked"; records: number; requests: number } | {
        kind: "error";
        message: string;
      },
    ) => void = () => {},
  ) {
    this.#lane = spool.lane(target);
    this.#fullName = `${opts.table.catalog}.${opts.table.schema}.${opts.table.table}`;
    this.stats = {
      table: this.#fullName,
      state: "idle",
      breaker: "closed",
      stream_ids: [],
      requests_sent: 0,
      records_sent: 0,
      records_acked: 0,
      inflight_requests: 0,
      reconnections: 0,
      close_signals: 0,
      consecutive_failures: 0,
      last_error: null,
      last_error_time: null,
      last_ack_time: null,
    };
  }

  /** Starts the stream loops. */
  start(): void {
    for (let i = 0; i < this.opts.streams; i++) this.#loops.push(this.#streamLoop(i));
  }

  /** Stops sending: waits up to `graceMs` for outstanding acks, then cancels streams. */
  async stop(graceMs = 5000): Promise<void> {
    this.#stopped = true;
    for (const w of this.#wakeStop.splice(0)) w();
    const timer = setTimeout(() => this.#calls.forEach((c) => c.cancel()), graceMs);
    await Promise.allSettled(this.#loops);
    clearTimeout(timer);
    this.stats.state = "stopped";
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#wakeStop.push(done);
    });
  }

  async #streamLoop(index: number): Promise<void> {
    let backoff = this.opts.backoffMinMs ?? 1000;
    const maxBackoff = this.opts.backoffMaxMs ?? 30_000;
    while (!this.#stopped) {
      let progressed = false;
      try {
        this.stats.state = "connecting";
        if (this.stats.breaker === "open") this.stats.breaker = "half_open";
        progressed = await this.#runStream(index);
        this.stats.consecutive_failures = 0;
        this.stats.breaker = "closed";
        backoff = this.opts.backoffMinMs ?? 1000;
      } catch (e) {
        const err = e instanceof StreamError || e instanceof TokenError
          ? e
          : new StreamError(String((e as Error)?.message ?? e), true);
        if (e instanceof StreamError && e.code === grpc.status.UNAUTHENTICATED) {
          this.tokens.invalidate();
        }
        this.stats.consecutive_failures++;
        this.stats.last_error = `${this.#fullName}: ${err.message}`;
        this.stats.last_error_time = new Date().toISOString();
        this.onEvent({ kind: "error", message: this.stats.last_error });
        if (this.stats.consecutive_failures >= 3) this.stats.breaker = "open";
        if (this.#stopped) break;
        const retryable = err instanceof StreamError || err instanceof TokenError
          ? err.retryable
          : true;
        this.stats.state = retryable ? "backoff" : "error";
        const wait = retryable ? jitter(backoff) : (this.opts.fatalRetryMs ?? 60_000);
        if (!progressed) backoff = Math.min(maxBackoff, backoff * 2);
        await this.#sleep(wait);
      }
      if (!this.#stopped) this.stats.reconnections++;
    }
    this.#streamIds.delete(index);
    this.stats.stream_ids = [...this.#streamIds.values()];
  }

  /**
   * Runs one gRPC stream until it ends. Resolves on a clean rotation (close
   * signal or stop); throws StreamError on failure. Unacked segments always go
   * back to the lane. Returns whether any request was acknowledged.
   */
  async #runStream(index: number): Promise<boolean> {
    const token = await this.tokens.get();
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${token}`);
    md.set("x-databricks-zerobus-table-name", this.#fullName);
    md.set("x-zerobus-sdk", this.opts.sdkName ?? "otedge/0.1");
    const call = this.client.makeBidiStreamRequest<Uint8Array, Uint8Array>(
      EPHEMERAL_STREAM_PATH,
      (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
      (b: Buffer) => b,
      md,
    );
    this.#calls.add(call);
    const inflight: Inflight[] = [];
    let offset = 0;
    let acked = false;
    let closing = undefined as number | undefined; // deadline (ms) after a CloseStreamSignal
    let ended = undefined as StreamError | "ok" | undefined;
    const outcome = () => ended; // read through a call: set by event handlers
    let created: (id: string) => void = () => {};
    const createdP = new Promise<string>((r) => (created = r));
    let wake: () => void = () => {};
    const wakeUp = () => wake();
    let lastAck = Date.now();

    call.on("data", (buf: Buffer) => {
      const r = decodeResponse(buf);
      if (r.kind === "created") created(r.streamId);
      else if (r.kind === "ack") {
        lastAck = Date.now();
        let records = 0;
        let requests = 0;
        const done: Segment[] = [];
        while (inflight.length > 0 && inflight[0].offset <= r.upTo) {
          const f = inflight.shift()!;
          done.push(...f.segments);
          records += f.records;
          requests++;
        }
        if (requests > 0) {
          acked = true;
          const now = Date.now();
          for (const s of done) this.latency.add(now - s.firstMs, s.count);
          this.stats.records_acked += records;
          this.stats.last_ack_time = new Date(now).toISOString();
          this.stats.inflight_requests -= requests;
          this.spool.ack(done).catch((e) =>
            this.onEvent({ kind: "error", message: `spool delete failed: ${e}` })
          );
          this.onEvent({ kind: "acked", records, requests });
        }
        wakeUp();
      } else if (r.kind === "close") {
        this.stats.close_signals++;
        closing = Date.now() + Math.min(r.durationMs || 0, 30_000);
        wakeUp();
      }
    });
    call.on("error", (e: grpc.ServiceError) => {
      ended = new StreamError(
        `stream failed: ${grpc.status[e.code] ?? e.code}: ${e.details || e.message}${hint(e.code)}`,
        !NOT_RETRYABLE.has(e.code),
        e.code,
      );
      created("");
      wakeUp();
    });
    call.on("end", () => {
      ended ??= "ok";
      created("");
      wakeUp();
    });

    const giveBack = () => {
      const segs = inflight.flatMap((f) => f.segments);
      this.stats.inflight_requests -= inflight.length;
      inflight.length = 0;
      this.#lane.putBack(segs);
    };

    try {
      call.write(encodeCreateStream(this.#fullName, this.opts.recordType));
      const timeout = setTimeout(() => created(""), 30_000);
      const streamId = await createdP;
      clearTimeout(timeout);
      const early = outcome();
      if (early instanceof StreamError) throw early;
      if (!streamId) {
        throw new StreamError(
          early
            ? "stream ended before create_stream was answered"
            : "no answer to create_stream within 30 s",
          true,
        );
      }
      this.#streamIds.set(index, streamId);
      this.stats.stream_ids = [...this.#streamIds.values()];
      this.stats.state = "streaming";

      while (true) {
        const end = outcome();
        if (end instanceof StreamError) throw end;
        if (end === "ok") {
          if (inflight.length > 0) {
            throw new StreamError("server ended the stream with requests unacked", true);
          }
          return acked;
        }
        const draining = this.#stopped || closing !== undefined;
        if (draining) {
          if (inflight.length === 0 || (closing !== undefined && Date.now() > closing)) break;
          await this.#waitEvent((w) => (wake = w), 100);
          continue;
        }
        if (inflight.length > 0 && Date.now() - lastAck > this.opts.ackTimeoutMs) {
          throw new StreamError(`no durability ack for ${this.opts.ackTimeoutMs / 1000} s`, true);
        }
        if (inflight.length >= this.opts.maxInflight) {
          await this.#waitEvent((w) => (wake = w), 100);
          continue;
        }
        const segs = await this.#lane.take(this.opts.maxRecords, this.opts.maxBytes);
        if (segs.length === 0) {
          await Promise.race([
            this.#lane.waitForData(200),
            this.#waitEvent((w) => (wake = w), 200),
          ]);
          continue;
        }
        let records = 0;
        for (const s of segs) records += s.count;
        if (inflight.length === 0) lastAck = Date.now();
        inflight.push({ offset, segments: segs, records });
        this.stats.inflight_requests++;
        const ok = call.write(
          encodeBatchRequest(offset++, this.opts.recordType, segs.map((s) => s.rows)),
        );
        this.stats.requests_sent++;
        this.stats.records_sent += records;
        if (!ok) {
          // Wait for the transport to drain (or for an ack, close or failure).
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off("drain", done);
              resolve();
            };
            call.once("drain", done);
            wake = done;
          });
        }
      }
      call.end();
      // Wait briefly for the server to finish the call; unacked data goes back.
      await this.#waitEvent((w) => (wake = w), 2000, () => ended !== undefined);
      giveBack();
      return acked;
    } catch (e) {
      call.cancel();
      giveBack();
      throw e;
    } finally {
      this.#calls.delete(call);
      this.#streamIds.delete(index);
      this.stats.stream_ids = [...this.#streamIds.values()];
    }
  }

  #waitEvent(setWake: (w: () => void) => void, ms: number, until?: () => boolean): Promise<void> {
    if (until?.()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        if (!until || until()) resolve();
        else setWake(done);
      };
      const t = setTimeout(() => resolve(), ms);
      setWake(done);
      this.#wakeStop.push(done);
    });
  }
}

function hint(code: number): string {
  switch (code) {
    case grpc.status.UNAUTHENTICATED:
      return " (the token was refused: check zerobus.auth)";
    case grpc.status.PERMISSION_DENIED:
      return " (grant the service principal MODIFY and SELECT on the table)";
    case grpc.status.NOT_FOUND:
    case grpc.status.INVALID_ARGUMENT:
      return " (check that the target table exists and matches the record schema: see `otedge schema`)";
    case grpc.status.UNAVAILABLE:
      return " (the server is unavailable; the agent retries)";
    default:
      return "";
  }
}
