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
import type { Lane, Segment, Spool } from "../../spool/spool.ts";
import { GrpcStatus, statusName } from "../../http2/status.ts";
import { recordDescriptorProto } from "../../record_proto.ts";
import type { BidiCall, CallStatus, GrpcChannel } from "./channel.ts";
import { Isolation, type IsolationActions, type IsolationUnit } from "./isolation.ts";
import { type TableRef, TokenError, type TokenProvider } from "./token.ts";
import {
  appendRow,
  decodeResponse,
  encodeBatchRequest,
  encodeCreateStream,
  EPHEMERAL_STREAM_PATH,
  type RecordTypeName,
  varintSize,
} from "./wire.ts";

const Code = GrpcStatus;

/** gRPC codes a retry cannot fix. */
const NOT_RETRYABLE: ReadonlySet<number> = new Set([
  Code.INVALID_ARGUMENT,
  Code.UNAUTHENTICATED,
  Code.PERMISSION_DENIED,
  Code.OUT_OF_RANGE,
  Code.UNIMPLEMENTED,
  Code.NOT_FOUND,
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
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly code?: number,
    /** The table refused a request and the sender is finding the records it refuses: retry at once. */
    readonly isolating = false,
  ) {
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
  /** Records the table refused, moved to the dead-letter store. */
  dead_lettered: number;
  /** True while requests go one at a time to find records the table refuses. */
  isolating: boolean;
  consecutive_failures: number;
  last_error: string | null;
  last_error_time: string | null;
  last_ack_time: string | null;
}

/** Event of a sender, for metrics and logs. */
export type SenderEvent =
  | { kind: "acked"; records: number; requests: number }
  | { kind: "error"; message: string }
  | { kind: "dead_letter"; records: number };

interface Inflight {
  offset: number;
  segments: Segment[];
  records: number;
  /** Set when the request was sent as a unit of the current isolation. */
  iso?: { isolation: Isolation; unit: IsolationUnit };
}

function frameRow(row: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + varintSize(row.length) + row.length);
  appendRow(out, 0, row);
  return out;
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
}

function jitter(ms: number): number {
  return ms / 2 + Math.random() * ms / 2;
}

function describe(s: CallStatus): string {
  return `${statusName(s.code)}: ${s.details || "no details"}${hint(s.code)}`;
}

function hint(code: number): string {
  switch (code) {
    case Code.UNAUTHENTICATED:
      return " (the token was refused: check zerobus.auth)";
    case Code.PERMISSION_DENIED:
      return " (grant the service principal MODIFY and SELECT on the table)";
    case Code.NOT_FOUND:
    case Code.INVALID_ARGUMENT:
      return " (check that the target table exists and matches the record schema: see `otedge schema`)";
    case Code.UNAVAILABLE:
      return " (the server is unavailable; the agent retries)";
    default:
      return "";
  }
}

/** Sends one target's lane to Zerobus until stopped. */
export class TargetSender {
  readonly latency = new LatencySampler();
  readonly stats: SenderStats;
  #stopped = false;
  #wakers = new Set<() => void>();
  #loops: Promise<void>[] = [];
  #streamIds = new Map<number, string>();
  #calls = new Set<BidiCall>();
  #isolation: Isolation | undefined;
  #lastRefusal = "";
  #deletes = new Set<Promise<void>>();
  readonly #lane: Lane;
  readonly #fullName: string;

  constructor(
    private readonly channel: GrpcChannel,
    private readonly spool: Spool,
    readonly target: string,
    private readonly tokens: TokenProvider,
    private readonly opts: SenderOptions,
    private readonly onEvent: (e: SenderEvent) => void = () => {},
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
      dead_lettered: 0,
      isolating: false,
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
    this.#wakeAll();
    const timer = setTimeout(() => this.#calls.forEach((c) => c.cancel()), graceMs);
    await Promise.allSettled(this.#loops);
    clearTimeout(timer);
    await Promise.allSettled([...this.#deletes]);
    this.stats.state = "stopped";
  }

  /** Deletes acknowledged segments from the spool; `stop()` waits for these. */
  #delete(segments: Segment[]): void {
    this.#pendingWrites(
      this.spool.ack(segments).catch((e) =>
        this.onEvent({ kind: "error", message: `spool delete failed: ${e}` })
      ),
    );
  }

  #pendingWrites(p: Promise<void>): void {
    const tracked = p.finally(() => this.#deletes.delete(tracked));
    this.#deletes.add(tracked);
  }

  #wakeAll(): void {
    for (const w of [...this.#wakers]) w();
  }

  /** Waits up to `ms`, or until woken (an ack, a close signal, the end of a call, stop). */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.#wakers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.#wakers.add(done);
    });
  }

  async #streamLoop(index: number): Promise<void> {
    const minBackoff = this.opts.backoffMinMs ?? 1000;
    let backoff = minBackoff;
    while (!this.#stopped) {
      const progress = { acked: false };
      try {
        this.stats.state = "connecting";
        if (this.stats.breaker === "open") this.stats.breaker = "half_open";
        await this.#runStream(index, progress);
        this.stats.consecutive_failures = 0;
        this.stats.breaker = "closed";
        backoff = minBackoff;
      } catch (e) {
        const err = e instanceof StreamError || e instanceof TokenError
          ? e
          : new StreamError(String((e as Error)?.message ?? e), true);
        this.stats.isolating = this.#isolation !== undefined;
        if (err instanceof StreamError && err.isolating) {
          this.stats.last_error = `${this.#fullName}: ${err.message}`;
          this.stats.last_error_time = new Date().toISOString();
          await this.#pause(50);
          continue;
        }
        if (err instanceof StreamError && err.code === Code.UNAUTHENTICATED) {
          this.tokens.invalidate();
        }
        if (progress.acked) backoff = minBackoff;
        this.stats.consecutive_failures = progress.acked ? 1 : this.stats.consecutive_failures + 1;
        this.stats.last_error = `${this.#fullName}: ${err.message}`;
        this.stats.last_error_time = new Date().toISOString();
        this.onEvent({ kind: "error", message: this.stats.last_error });
        if (this.stats.consecutive_failures >= 3) this.stats.breaker = "open";
        if (this.#stopped) break;
        this.stats.state = err.retryable ? "backoff" : "error";
        await this.#pause(err.retryable ? jitter(backoff) : (this.opts.fatalRetryMs ?? 60_000));
        backoff = Math.min(this.opts.backoffMaxMs ?? 30_000, backoff * 2);
      }
      if (!this.#stopped) this.stats.reconnections++;
    }
    this.#streamIds.delete(index);
    this.stats.stream_ids = [...this.#streamIds.values()];
  }

  /**
   * The next request to send: a batch of segments, or during an isolation one
   * segment or one row (only stream 0 sends then). Undefined when there is
   * nothing to send now.
   */
  async #nextUnit(
    index: number,
  ): Promise<Omit<Inflight, "offset"> & { body: Uint8Array[] } | undefined> {
    const isolation = this.#isolation;
    if (isolation && index !== 0) return undefined;
    if (isolation) {
      const unit = isolation.next();
      if (unit.kind === "row") {
        return { segments: [], body: [frameRow(unit.row)], records: 1, iso: { isolation, unit } };
      }
      const segs = await this.#lane.take(1, 1);
      if (segs.length === 0) {
        // Nothing left to probe and nothing held: the refused records were all found.
        if (isolation.holdsNothing) this.#endIsolation();
        return undefined;
      }
      return {
        segments: segs,
        body: [segs[0].rows],
        records: segs[0].count,
        iso: { isolation, unit },
      };
    }
    if (this.#lingering()) return undefined;
    const segs = await this.#lane.take(this.opts.maxRecords, this.opts.maxBytes);
    if (segs.length === 0) return undefined;
    let records = 0;
    for (const s of segs) records += s.count;
    return { segments: segs, body: segs.map((s) => s.rows), records };
  }

  /** True while a partial batch should wait up to `linger_ms` for more rows. */
  #lingering(): boolean {
    const lane = this.#lane;
    if (this.opts.lingerMs <= 0 || lane.ready.length === 0 || lane.spilled) return false;
    if (lane.readyRecords >= this.opts.maxRecords) return false;
    return Date.now() - lane.ready[0].firstMs < this.opts.lingerMs;
  }

  /** Applies what an isolation decided: dead letters and deletes of resolved segments. */
  #apply(actions: IsolationActions, details: string): void {
    for (const row of actions.deadLetters) this.#deadLetter(row, details);
    if (actions.deletes.length > 0) this.#delete(actions.deletes);
  }

  /** Isolation bookkeeping for an acknowledged request. */
  #isolationAccepted(f: Inflight): void {
    const isolation = this.#isolation;
    if (!isolation || f.iso?.isolation !== isolation) return;
    this.#apply(isolation.accepted(f.iso.unit), this.#lastRefusal);
    if (isolation.done) this.#endIsolation();
  }

  #endIsolation(): void {
    this.#isolation = undefined;
    this.stats.isolating = false;
  }

  /**
   * The table refused the first request in flight (INVALID_ARGUMENT after the
   * stream was created): start or continue an isolation (see isolation.ts).
   */
  #refused(inflight: Inflight[], details: string): StreamError {
    const first = inflight[0];
    const isolating = (msg: string) =>
      new StreamError(`${msg} (${details})`, true, Code.INVALID_ARGUMENT, true);
    this.#lastRefusal = details;
    const isolation = this.#isolation;
    if (!isolation) {
      this.#isolation = new Isolation();
      this.stats.isolating = true;
      return isolating("the table refused a request; isolating the refused records");
    }
    if (first.iso?.isolation !== isolation) return isolating("the table refused a request");
    if (first.iso.unit.kind === "segment") {
      const seg = first.segments[0];
      first.segments = []; // held by the isolation, not put back
      isolation.refused(first.iso.unit, seg);
      return isolating("the table refused a segment; sending its rows one by one");
    }
    const actions = isolation.refused(first.iso.unit);
    this.#apply(actions, details);
    if (actions.putBack) {
      this.#lane.putBack(actions.putBack);
      this.#endIsolation();
      return new StreamError(
        `stream failed: ${describe({ code: Code.INVALID_ARGUMENT, details })}; ` +
          "the table refuses every record, so nothing was dead-lettered",
        false,
        Code.INVALID_ARGUMENT,
      );
    }
    return isolating("the table refused a record");
  }

  #deadLetter(row: Uint8Array, details: string): void {
    const proto = this.opts.recordType === "proto";
    const text = proto ? "" : new TextDecoder().decode(row);
    let source = this.target;
    let recordId: string | undefined;
    if (!proto) {
      try {
        const rec = JSON.parse(text);
        source = rec.source_name ?? source;
        recordId = rec.record_id;
      } catch { /* kept as text */ }
    }
    this.stats.dead_lettered++;
    this.onEvent({ kind: "dead_letter", records: 1 });
    this.#pendingWrites(
      this.spool.deadLetter({
        source,
        reason: `table ${this.#fullName} refused the record: ${details}`,
        item: proto ? btoa(String.fromCharCode(...row)) : text,
        detail: {
          table: this.#fullName,
          record_id: recordId,
          encoding: proto ? "protobuf_base64" : "json",
        },
      }).catch((e) => this.onEvent({ kind: "error", message: `dead-letter store failed: ${e}` })),
    );
  }

  /**
   * Runs one stream until it ends: resolves on a clean rotation (close signal
   * or stop), throws StreamError on failure. Unacked segments always go back
   * to the lane. Sets `progress.acked` once any request is acknowledged.
   */
  async #runStream(index: number, progress: { acked: boolean }): Promise<void> {
    const token = await this.tokens.get();
    if (this.#stopped) return; // stopped while the token was fetched: open nothing
    const inflight: Inflight[] = [];
    const st = {
      streamId: undefined as string | undefined,
      closingUntil: undefined as number | undefined, // after a CloseStreamSignal
      ended: undefined as CallStatus | undefined,
      lastAck: Date.now(),
    };
    const onAck = (upTo: number) => {
      st.lastAck = Date.now();
      const done: Segment[] = [];
      let records = 0;
      let requests = 0;
      while (inflight.length > 0 && inflight[0].offset <= upTo) {
        const f = inflight.shift()!;
        done.push(...f.segments);
        records += f.records;
        requests++;
        this.#isolationAccepted(f);
      }
      if (requests === 0) return;
      if (!progress.acked) {
        // Delivering again: the breaker closes without waiting for the stream to end.
        this.stats.consecutive_failures = 0;
        this.stats.breaker = "closed";
      }
      progress.acked = true;
      const now = Date.now();
      for (const s of done) this.latency.add(now - s.firstMs, s.count);
      this.stats.records_acked += records;
      this.stats.last_ack_time = new Date(now).toISOString();
      this.stats.inflight_requests -= requests;
      this.#delete(done);
      this.onEvent({ kind: "acked", records, requests });
    };
    const call = this.channel.call(EPHEMERAL_STREAM_PATH, {
      authorization: `Bearer ${token}`,
      "x-databricks-zerobus-table-name": this.#fullName,
      "x-zerobus-sdk": this.opts.sdkName ?? "otedge/0.1",
    }, {
      onMessage: (buf) => {
        const r = decodeResponse(buf);
        if (r.kind === "created") st.streamId = r.streamId || "(empty)";
        else if (r.kind === "ack") onAck(r.upTo);
        else if (r.kind === "close") {
          this.stats.close_signals++;
          st.closingUntil = Date.now() + Math.min(r.durationMs, 30_000);
        }
        this.#wakeAll();
      },
      onStatus: (s) => {
        st.ended = s;
        this.#wakeAll();
      },
    });
    this.#calls.add(call);
    const failure = (): StreamError | undefined => {
      const s = st.ended;
      if (!s) return undefined;
      if (s.code === Code.OK) {
        return inflight.length > 0 || !st.streamId
          ? new StreamError(
            "the server ended the stream with requests unacknowledged",
            true,
            s.code,
          )
          : undefined;
      }
      return new StreamError(`stream failed: ${describe(s)}`, !NOT_RETRYABLE.has(s.code), s.code);
    };
    try {
      call.write(encodeCreateStream(
        this.#fullName,
        this.opts.recordType,
        this.opts.recordType === "proto" ? recordDescriptorProto() : undefined,
      ));
      const createDeadline = Date.now() + 30_000;
      while (!st.streamId) {
        const f = failure() ??
          (st.ended
            ? new StreamError("stream ended before create_stream was answered", true)
            : undefined);
        if (f) throw f;
        if (Date.now() > createDeadline) {
          throw new StreamError("no answer to create_stream within 30 s", true);
        }
        await this.#pause(100);
      }
      this.#streamIds.set(index, st.streamId);
      this.stats.stream_ids = [...this.#streamIds.values()];
      this.stats.state = "streaming";
      let offset = 0;
      while (true) {
        const f = failure();
        if (f) throw f;
        if (st.ended) return; // OK with nothing outstanding
        if (this.#stopped || st.closingUntil !== undefined) {
          // Draining: send nothing more, wait for the outstanding acks.
          if (
            inflight.length === 0 || (st.closingUntil !== undefined && Date.now() > st.closingUntil)
          ) break;
          await this.#pause(100);
          continue;
        }
        if (inflight.length > 0 && Date.now() - st.lastAck > this.opts.ackTimeoutMs) {
          throw new StreamError(`no durability ack for ${this.opts.ackTimeoutMs / 1000} s`, true);
        }
        if (inflight.length >= (this.#isolation ? 1 : this.opts.maxInflight)) {
          await this.#pause(100);
          continue;
        }
        const unit = await this.#nextUnit(index);
        if (!unit) {
          // Nothing to send now. While isolating (another stream's turn) or lingering, wait on
          // time: the lane holds data, so waiting on it would spin.
          if (this.#isolation) await this.#pause(200);
          else if (this.#lingering()) await this.#pause(5);
          else await Promise.race([this.#lane.waitForData(200), this.#pause(200)]);
          continue;
        }
        if (inflight.length === 0) st.lastAck = Date.now();
        inflight.push({ offset, segments: unit.segments, records: unit.records, iso: unit.iso });
        this.stats.inflight_requests++;
        this.stats.requests_sent++;
        this.stats.records_sent += unit.records;
        const ok = call.write(encodeBatchRequest(offset++, this.opts.recordType, unit.body));
        if (!ok) await Promise.race([call.drained(), this.#pause(1000)]);
      }
      call.end();
      // Give the server a moment to finish the call cleanly, else cancel it.
      const until = Date.now() + 2000;
      while (!st.ended && Date.now() < until) await this.#pause(100);
      if (!st.ended) call.cancel();
    } catch (e) {
      call.cancel();
      if (st.streamId && st.ended?.code === Code.INVALID_ARGUMENT && inflight.length > 0) {
        throw this.#refused(inflight, st.ended.details);
      }
      throw e;
    } finally {
      this.#calls.delete(call);
      const segs = inflight.flatMap((f) => f.segments);
      this.stats.inflight_requests -= inflight.length;
      inflight.length = 0;
      this.#lane.putBack(segs);
      this.#streamIds.delete(index);
      this.stats.stream_ids = [...this.#streamIds.values()];
    }
  }
}
