/**
 * Buffered append-only JSON-lines file of one table. Rows are copied into an
 * in-memory buffer; one write at a time drains it, so rows arriving while a write
 * is in flight go out together in the next one. `flushed()` resolves once
 * everything appended before the call is in the file (written, not fsynced).
 */

/** Counters of one table, as reported by `GET /tables`. */
export interface TableStats {
  /** Rows written to the file. */
  rows: number;
  /** Streams created for the table. */
  streams: number;
  /** Ingest requests accepted. */
  requests: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: Error) => void;
}

function deferred(): Deferred {
  const d = Promise.withResolvers<void>();
  d.promise.catch(() => {}); // a write error is also reported through the returned promise
  return d;
}

const LF = 10;
const CR = 13;
const SPACE = 32;
const RESOLVED = Promise.resolve();

/** Appends rows of one table to `<dir>/<table>.jsonl`. */
export class TableWriter {
  readonly stats: TableStats = { rows: 0, streams: 0, requests: 0 };
  #file: Deno.FsFile;
  #buf = new Uint8Array(1 << 16);
  #spare = new Uint8Array(1 << 16);
  #len = 0;
  #rows = 0;
  #writing = 0;
  #next: Deferred | null = null;
  #current: Deferred | null = null;
  #error: Error | null = null;
  #closed: Promise<void> | null = null;

  /** Opens (creates) the file for appending. */
  constructor(readonly path: string) {
    this.#file = Deno.openSync(path, { append: true, create: true });
  }

  /** Bytes appended but not yet in the file. */
  get backlog(): number {
    return this.#len + this.#writing;
  }

  /**
   * Appends one JSON row as a line, bytes as received. Raw CR/LF bytes, which a
   * valid JSON text can hold only as whitespace, become spaces to keep one row per line.
   */
  appendJsonRow(row: Uint8Array): void {
    const start = this.#reserve(row.length + 1);
    const buf = this.#buf;
    buf.set(row, start);
    const end = start + row.length;
    if (row.indexOf(LF) >= 0 || row.indexOf(CR) >= 0) {
      for (let i = start; i < end; i++) if (buf[i] === LF || buf[i] === CR) buf[i] = SPACE;
    }
    buf[end] = LF;
    this.#len = end + 1;
    this.#rows++;
  }

  /** Resolves when every row appended so far is in the file; rejects if a write failed. */
  flushed(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#len > 0) {
      if (!this.#next) {
        this.#next = deferred();
        if (!this.#current) queueMicrotask(() => this.#drain());
      }
      return this.#next.promise;
    }
    return this.#current ? this.#current.promise : RESOLVED;
  }

  /** Writes what is buffered and closes the file. Later appends are an error. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = this.flushed().catch(() => {}).finally(() => {
        this.#error ??= new Error(`${this.path} is closed`);
        this.#file.close();
      });
    }
    return this.#closed;
  }

  #reserve(n: number): number {
    if (this.#error) throw this.#error;
    if (this.#len + n > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < this.#len + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.#buf.subarray(0, this.#len));
      this.#buf = bigger;
    }
    return this.#len;
  }

  async #drain(): Promise<void> {
    while (this.#next) {
      const current = this.#current = this.#next;
      this.#next = null;
      const taken = this.#buf;
      const data = taken.subarray(0, this.#len);
      const rows = this.#rows;
      this.#buf = this.#spare;
      this.#len = 0;
      this.#rows = 0;
      this.#writing = data.length;
      try {
        for (let off = 0; off < data.length;) off += await this.#file.write(data.subarray(off));
      } catch (e) {
        this.#error = new Error(`write to ${this.path} failed: ${(e as Error).message}`);
        this.#writing = 0;
        this.#current = null;
        current.reject(this.#error);
        const next = this.#next as Deferred | null; // appended while the write was in flight
        next?.reject(this.#error);
        this.#next = null;
        return;
      }
      this.#spare = taken;
      this.#writing = 0;
      this.stats.rows += rows;
      this.#current = null;
      current.resolve();
    }
  }
}
