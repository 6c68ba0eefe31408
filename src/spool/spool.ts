/**
 * The durable spool: a Deno KV database holding every record until Zerobus
 * acknowledges it as durable.
 *
 * Rows are stored already framed for the wire (see `appendRow` in the Zerobus
 * wire module), many rows per KV value ("segments" of up to 60,000 bytes) and
 * many segments per atomic commit (group commit). `append` resolves only after
 * its commit, so a source is told "committed" only when a `kill -9` can no
 * longer lose the rows. Segments are deleted when the sink acknowledges them.
 *
 * Per target table there is one lane: segments committed while the lane's
 * in-memory queue is small go straight to it (no read back); past the memory
 * bound the lane "spills" and its sender reads segments back from KV in order.
 */
import { appendRow } from "../sinks/zerobus/wire.ts";

/** A committed group of rows for one target, as stored in KV. */
export interface Segment {
  target: string;
  seq: number;
  rows: Uint8Array;
  count: number;
  /** Epoch ms when the first row was appended (for latency figures). */
  firstMs: number;
}

/** Spool settings. */
export interface SpoolOptions {
  path: string;
  maxBytes: number;
  maxRecords: number;
  /** Rows per segment, at most (keep at or below the sink's batch size). */
  maxRowsPerSegment?: number;
  /** In-memory bytes per lane before it spills to read-back from KV. */
  laneMemoryBytes?: number;
  /** How long rows wait for more rows before a group commit. */
  commitDelayMs?: number;
}

/** A dead-letter entry: something that can never be delivered, with why. */
export interface DeadLetter {
  time: number;
  source: string;
  reason: string;
  item: string;
  detail?: Record<string, unknown>;
}

const SEGMENT_BYTES = 60_000;
const COMMIT_MAX_BYTES = 700_000;
const MAX_COMMITS_IN_FLIGHT = 3;
const DEAD_LETTER_ITEM_MAX = 32_000;

interface OpenSegment {
  buf: Uint8Array;
  off: number;
  count: number;
  firstMs: number;
}

interface PendingRows {
  waiters: Array<() => void>;
  failers: Array<(e: Error) => void>;
}

/** Per-target queue of committed segments waiting to be sent. */
export class Lane {
  ready: Segment[] = [];
  readyBytes = 0;
  readyRecords = 0;
  spilled = false;
  diskNext = 0;
  lastDiskSeq = -1;
  #waiters: Array<() => void> = [];
  #loading: Promise<void> | undefined;

  constructor(readonly target: string, private readonly spool: Spool) {}

  /** Segments ready to send, up to the given record and byte budget (at least one). */
  async take(maxRecords: number, maxBytes: number): Promise<Segment[]> {
    if (this.spilled && this.readyBytes < this.spool.laneMemoryBytes / 2) await this.#load();
    const out: Segment[] = [];
    let records = 0;
    let bytes = 0;
    while (this.ready.length > 0) {
      const s = this.ready[0];
      if (out.length > 0 && (records + s.count > maxRecords || bytes + s.rows.length > maxBytes)) {
        break;
      }
      this.ready.shift();
      this.readyBytes -= s.rows.length;
      this.readyRecords -= s.count;
      out.push(s);
      records += s.count;
      bytes += s.rows.length;
    }
    return out;
  }

  /** Resolves when segments may be ready (or after `ms`). */
  waitForData(ms: number): Promise<void> {
    if (this.ready.length > 0 || this.spilled) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const waiters = this.#waiters;
      function done() {
        clearTimeout(t);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  /** Returns unacknowledged segments to the front, in sequence order (after a stream failure). */
  putBack(segments: Segment[]): void {
    if (segments.length === 0) return;
    this.ready = [...segments, ...this.ready].sort((a, b) => a.seq - b.seq);
    for (const s of segments) {
      this.readyBytes += s.rows.length;
      this.readyRecords += s.count;
    }
    this.#wake();
  }

  /** True when nothing is queued in memory or on disk. */
  get idle(): boolean {
    return this.ready.length === 0 && !this.spilled;
  }

  /** Called by the spool when a segment of this lane is committed. */
  committed(s: Segment): void {
    if (this.spilled || this.readyBytes + s.rows.length > this.spool.laneMemoryBytes) {
      if (!this.spilled) {
        this.spilled = true;
        this.diskNext = s.seq;
      }
      this.lastDiskSeq = Math.max(this.lastDiskSeq, s.seq);
    } else {
      this.ready.push(s);
      this.readyBytes += s.rows.length;
      this.readyRecords += s.count;
    }
    this.#wake();
  }

  /** Marks segments found on disk at startup. */
  recovered(firstSeq: number, lastSeq: number): void {
    this.spilled = true;
    this.diskNext = Math.min(this.diskNext || firstSeq, firstSeq);
    this.lastDiskSeq = Math.max(this.lastDiskSeq, lastSeq);
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  #load(): Promise<void> {
    this.#loading ??= (async () => {
      try {
        const loaded = await this.spool.readSegments(this.target, this.diskNext, 64);
        for (const s of loaded) {
          this.ready.push(s);
          this.readyBytes += s.rows.length;
          this.readyRecords += s.count;
          this.diskNext = s.seq + 1;
        }
        if (loaded.length === 0 || this.diskNext > this.lastDiskSeq) {
          if (this.diskNext > this.lastDiskSeq) this.spilled = false;
          else this.diskNext = this.lastDiskSeq + 1; // keys gone (acked or dropped)
        }
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }
}

/** The durable spool and dead-letter store. */
export class Spool {
  readonly lanes = new Map<string, Lane>();
  totalBytes = 0;
  totalRecords = 0;
  deadLetters = 0;
  droppedRecords = 0;
  /** Set when a corrupt spool file was moved aside at open. */
  recoveredFrom?: string;
  readonly laneMemoryBytes: number;
  #seq = 0;
  #open = new Map<string, OpenSegment>();
  #pendingSegments: Segment[] = [];
  #pending: PendingRows = { waiters: [], failers: [] };
  #commitsInFlight = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #spaceWaiters: Array<() => void> = [];
  #dropping: Promise<void> | undefined;
  #dlqSeq = 0;
  #closed = false;
  readonly #maxRows: number;
  readonly #commitDelay: number;

  private constructor(readonly kv: Deno.Kv, readonly opts: SpoolOptions) {
    this.laneMemoryBytes = opts.laneMemoryBytes ?? 32 * 1024 * 1024;
    this.#maxRows = opts.maxRowsPerSegment ?? 1000;
    this.#commitDelay = opts.commitDelayMs ?? 5;
  }

  /**
   * Opens (or creates) the spool at `opts.path` and recovers unacknowledged
   * segments. A file that is not a database is moved aside (kept, never
   * deleted) and a new spool is started; `recoveredFrom` names the kept file.
   */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const dir = opts.path.replace(/\/[^/]*$/, "");
    if (dir && dir !== opts.path) await Deno.mkdir(dir, { recursive: true });
    let kv: Deno.Kv;
    let movedTo: string | undefined;
    try {
      kv = await Deno.openKv(opts.path);
      await kv.get(["meta"]);
    } catch (e) {
      if (!/not a database|malformed|corrupt/i.test(String(e))) throw e;
      movedTo = `${opts.path}.corrupt-${Date.now()}`;
      await Deno.rename(opts.path, movedTo);
      kv = await Deno.openKv(opts.path);
    }
    const spool = new Spool(kv, opts);
    spool.recoveredFrom = movedTo;
    await spool.#recover();
    return spool;
  }

  async #recover(): Promise<void> {
    const ranges = new Map<string, [number, number]>();
    for await (const e of this.kv.list<{ n: number; rows: Uint8Array }>({ prefix: ["seg"] })) {
      const [, target, seq] = e.key as [string, string, number];
      this.totalBytes += e.value.rows.length;
      this.totalRecords += e.value.n;
      this.#seq = Math.max(this.#seq, seq + 1);
      const r = ranges.get(target);
      ranges.set(target, r ? [Math.min(r[0], seq), Math.max(r[1], seq)] : [seq, seq]);
    }
    for (const [target, [first, last]] of ranges) this.lane(target).recovered(first, last);
    for await (const _ of this.kv.list({ prefix: ["dlq"] })) this.deadLetters++;
  }

  /** The lane of a target (created on first use). */
  lane(target: string): Lane {
    let l = this.lanes.get(target);
    if (!l) {
      l = new Lane(target, this);
      this.lanes.set(target, l);
    }
    return l;
  }

  /** True when the byte or record cap is reached. */
  isFull(): boolean {
    return this.totalBytes >= this.opts.maxBytes || this.totalRecords >= this.opts.maxRecords;
  }

  /** Resolves when the spool is below its caps again. */
  waitForSpace(): Promise<void> {
    if (!this.isFull()) return Promise.resolve();
    return new Promise((resolve) => this.#spaceWaiters.push(resolve));
  }

  /**
   * Appends JSON rows for a target; resolves once they are committed to KV.
   * Callers check `isFull()` first and apply the full-spool policy.
   */
  append(target: string, rows: readonly string[]): Promise<void> {
    const now = Date.now();
    let buf = new Uint8Array(SEGMENT_BYTES);
    let off = 0;
    let count = 0;
    for (const row of rows) {
      let next = count < this.#maxRows ? appendRow(buf, off, row) : -1;
      if (next < 0 && count > 0) {
        this.#appendChunk(target, buf.subarray(0, off), count, now, true);
        buf = new Uint8Array(SEGMENT_BYTES);
        off = count = 0;
        next = appendRow(buf, 0, row);
      }
      if (next < 0) {
        return Promise.reject(
          new Error(`row of ${row.length} characters exceeds the segment size`),
        );
      }
      off = next;
      count++;
    }
    if (count > 0) this.#appendChunk(target, buf.subarray(0, off), count, now, true);
    return this.#committed();
  }

  /**
   * Appends rows already framed for the wire (`appendRow`), as a source Worker
   * sends them; resolves once they are committed to KV. `rows` is kept, not
   * copied, when it becomes a segment of its own: do not reuse it.
   */
  appendFramed(target: string, rows: Uint8Array, count: number, firstMs: number): Promise<void> {
    if (rows.length > SEGMENT_BYTES) {
      return Promise.reject(new Error(`chunk of ${rows.length} bytes exceeds the segment size`));
    }
    this.#appendChunk(target, rows, count, firstMs, false);
    return this.#committed();
  }

  #committed(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new Error("the spool is closed (the agent is stopping)"));
    }
    const p = new Promise<void>((resolve, reject) => {
      this.#pending.waiters.push(resolve);
      this.#pending.failers.push(reject);
    });
    this.#schedule();
    return p;
  }

  #appendChunk(
    target: string,
    bytes: Uint8Array,
    count: number,
    firstMs: number,
    mustCopy: boolean,
  ): void {
    this.totalRecords += count;
    let seg = this.#open.get(target);
    if (seg && (seg.off + bytes.length > SEGMENT_BYTES || seg.count + count > this.#maxRows)) {
      this.#seal(target, seg);
      seg = undefined;
    }
    if (!seg && !mustCopy && bytes.length >= SEGMENT_BYTES / 2) {
      this.#sealBytes(target, bytes, count, firstMs); // big enough: its own segment, no copy
      return;
    }
    if (!seg) {
      seg = { buf: new Uint8Array(SEGMENT_BYTES), off: 0, count: 0, firstMs };
      this.#open.set(target, seg);
    }
    seg.buf.set(bytes, seg.off);
    seg.off += bytes.length;
    seg.count += count;
    seg.firstMs = Math.min(seg.firstMs, firstMs);
  }

  #seal(target: string, seg: OpenSegment): void {
    this.#open.delete(target);
    this.#sealBytes(target, seg.buf.slice(0, seg.off), seg.count, seg.firstMs);
  }

  #sealBytes(target: string, rows: Uint8Array, count: number, firstMs: number): void {
    const s: Segment = { target, seq: this.#seq++, rows, count, firstMs };
    this.totalBytes += rows.length;
    this.#pendingSegments.push(s);
  }

  #schedule(): void {
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#commit();
      }, this.#commitDelay);
    }
  }

  #commit(): void {
    if (this.#commitsInFlight >= MAX_COMMITS_IN_FLIGHT) return; // re-run when one finishes
    for (const [target, seg] of this.#open) if (seg.count > 0) this.#seal(target, seg);
    if (this.#pendingSegments.length === 0) {
      this.#release(this.#pending, undefined);
      this.#pending = { waiters: [], failers: [] };
      return;
    }
    const waiting = this.#pending;
    this.#pending = { waiters: [], failers: [] };
    // Split into atomic operations within KV's size limit; the rows' waiters
    // are released when the last of them commits.
    const groups: Segment[][] = [[]];
    let bytes = 0;
    for (const s of this.#pendingSegments) {
      if (bytes + s.rows.length > COMMIT_MAX_BYTES && groups.at(-1)!.length > 0) {
        groups.push([]);
        bytes = 0;
      }
      groups.at(-1)!.push(s);
      bytes += s.rows.length;
    }
    this.#pendingSegments = [];
    this.#commitsInFlight++;
    Promise.allSettled(groups.map((g) => this.#commitGroup(g))).then((results) => {
      let failure: Error | undefined;
      results.forEach((r, i) => {
        if (r.status === "fulfilled") {
          for (const s of groups[i]) this.lane(s.target).committed(s);
        } else {
          // Not stored: take the rows off the totals; their sources are told.
          this.#forget(groups[i]);
          failure ??= new Error(
            `the spool could not store records (${String(r.reason?.message ?? r.reason)}); ` +
              `check free disk space and that ${this.opts.path} is writable`,
          );
        }
      });
      this.#release(waiting, failure);
    }).finally(() => {
      this.#commitsInFlight--;
      if (
        this.#pendingSegments.length > 0 || this.#open.size > 0 || this.#pending.waiters.length > 0
      ) {
        this.#schedule();
      }
    });
  }

  async #commitGroup(group: Segment[]): Promise<void> {
    const op = this.kv.atomic();
    for (const s of group) {
      op.set(["seg", s.target, s.seq], { rows: s.rows, n: s.count, t: s.firstMs });
    }
    const res = await op.commit();
    if (!res.ok) throw new Error("Deno KV refused the atomic commit");
  }

  #release(p: PendingRows, err: Error | undefined): void {
    if (err) p.failers.forEach((f) => f(err));
    else p.waiters.forEach((w) => w());
  }

  /** Reads up to `limit` committed segments of a target from `fromSeq` on, in order. */
  async readSegments(target: string, fromSeq: number, limit: number): Promise<Segment[]> {
    const out: Segment[] = [];
    const iter = this.kv.list<{ rows: Uint8Array; n: number; t: number }>(
      { start: ["seg", target, fromSeq], end: ["seg", target, Number.MAX_SAFE_INTEGER] },
      { limit },
    );
    for await (const e of iter) {
      out.push({
        target,
        seq: e.key[2] as number,
        rows: e.value.rows,
        count: e.value.n,
        firstMs: e.value.t,
      });
    }
    return out;
  }

  /** Deletes acknowledged segments (durable at the target). */
  async ack(segments: readonly Segment[]): Promise<void> {
    await this.#deleteKeys(segments);
    this.#forget(segments);
  }

  async #deleteKeys(segments: readonly Segment[]): Promise<void> {
    for (let i = 0; i < segments.length; i += 500) {
      const op = this.kv.atomic();
      for (const s of segments.slice(i, i + 500)) op.delete(["seg", s.target, s.seq]);
      await op.commit();
    }
  }

  #forget(segments: readonly Segment[]): void {
    for (const s of segments) {
      this.totalBytes -= s.rows.length;
      this.totalRecords -= s.count;
    }
    if (!this.isFull()) { for (const w of this.#spaceWaiters.splice(0)) w(); }
  }

  /**
   * Makes room for `records` more records and `bytes` more bytes by dropping
   * the oldest queued (not in flight) segments, fullest lane first; returns
   * the number of records dropped (0 if nothing could go). The totals drop
   * (and `onDropped` is called) before the KV delete, and one drop runs at a
   * time, so concurrent callers never drop more than is needed.
   */
  dropOldest(
    records: number,
    bytes: number,
    onDropped: (records: number) => void = () => {},
  ): Promise<number> {
    const run = (this.#dropping ?? Promise.resolve()).then(() =>
      this.#dropOldest(records, bytes, onDropped)
    );
    this.#dropping = run.then(() => {}, () => {});
    return run;
  }

  async #dropOldest(
    records: number,
    bytes: number,
    onDropped: (records: number) => void,
  ): Promise<number> {
    const needRecords = this.totalRecords + records - this.opts.maxRecords;
    const needBytes = this.totalBytes + bytes - this.opts.maxBytes;
    let freedRecords = 0;
    let freedBytes = 0;
    while (freedRecords < needRecords || freedBytes < needBytes) {
      let lane: Lane | undefined;
      for (const l of this.lanes.values()) if (!lane || l.readyBytes > lane.readyBytes) lane = l;
      const victims = lane
        ? await lane.take(Math.max(1, needRecords - freedRecords), Infinity)
        : [];
      if (victims.length === 0) break;
      // Totals and the drop count change together, before the delete.
      this.#forget(victims);
      let n = 0;
      for (const v of victims) {
        n += v.count;
        freedBytes += v.rows.length;
      }
      freedRecords += n;
      this.droppedRecords += n;
      onDropped(n);
      await this.#deleteKeys(victims);
    }
    return freedRecords;
  }

  /** Stores an item that can never be delivered, with its source and reason. */
  async deadLetter(entry: Omit<DeadLetter, "time">): Promise<void> {
    const time = Date.now();
    const item = entry.item.length > DEAD_LETTER_ITEM_MAX
      ? entry.item.slice(0, DEAD_LETTER_ITEM_MAX) + "…[truncated]"
      : entry.item;
    // Ordered by time, then by arrival within a millisecond; the random part keeps
    // keys of two runs apart.
    await this.kv.set(["dlq", time, this.#dlqSeq++, crypto.randomUUID()], { ...entry, item, time });
    this.deadLetters++;
  }

  /** Lists dead letters, oldest first. */
  async listDeadLetters(limit = 100): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    for await (const e of this.kv.list<DeadLetter>({ prefix: ["dlq"] }, { limit })) {
      out.push(e.value);
    }
    return out;
  }

  /** Commits everything appended so far. */
  async flush(): Promise<void> {
    if (
      this.#open.size === 0 && this.#pendingSegments.length === 0 && this.#commitsInFlight === 0
    ) return;
    const p = new Promise<void>((resolve, reject) => {
      this.#pending.waiters.push(resolve);
      this.#pending.failers.push(reject);
    });
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#commit();
    await p;
    while (this.#commitsInFlight > 0) await new Promise((r) => setTimeout(r, 1));
  }

  /** Flushes and closes the database. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    for (const w of this.#spaceWaiters.splice(0)) w();
    this.kv.close();
  }

  /** Figures for status and metrics. */
  stats() {
    let spilledLanes = 0;
    for (const l of this.lanes.values()) if (l.spilled) spilledLanes++;
    return {
      path: this.opts.path,
      bytes: this.totalBytes,
      records: this.totalRecords,
      max_bytes: this.opts.maxBytes,
      max_records: this.opts.maxRecords,
      full: this.isFull(),
      dead_letters: this.deadLetters,
      dropped_records: this.droppedRecords,
      lanes: this.lanes.size,
      spilled_lanes: spilledLanes,
      recovered_from_corrupt_file: this.recoveredFrom ?? null,
    };
  }
}
