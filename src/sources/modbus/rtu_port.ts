/**
 * The port `modbus-serial` talks RTU through, over any byte stream (a serial
 * line, or a TCP connection to a serial gateway). Because RTU frames carry no
 * transaction id, the port frames answers itself:
 *
 * - before each request it drops whatever arrived since the last answer (a
 *   late reply after a timeout never meets the next request);
 * - it reads the line frame by frame (each frame's length from its header)
 *   and hands the client only the frame with the request's unit id,
 *   function code (or its exception), length and a good CRC; other frames
 *   (a late answer of another unit) are skipped whole and counted, so bytes
 *   inside them are never taken for an answer (`rtu_frame.ts`);
 * - it keeps the line silent for `gapMs` (3.5 characters on a serial line)
 *   between the end of one frame and the next request.
 */
import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import { type ExpectedAnswer, expectedAnswer, scanAnswer } from "./rtu_frame.ts";

/** A byte stream RTU frames travel on. */
export interface RtuLink {
  /** Reads into `buf`: bytes read, 0 when nothing came for a while, null at the end. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes the stream; resolves once no read is left pending. */
  close(): Promise<void>;
}

/** Most bytes kept while waiting for an answer (an RTU frame has at most 256). */
const MAX_BUFFERED = 512;

/** Options of an RTU port. */
export interface RtuPortOptions {
  /** Silence kept on the line before a request, after the last byte sent or received (ms). */
  gapMs?: number;
  /** Time one byte takes to send (ms), to know when a request has left the line. */
  charMs?: number;
}

/** A custom port for `new ModbusClient(port)`: open/close/write, `isOpen`, "data" and "close" events. */
export class RtuPort extends EventEmitter {
  /** Set by the client on open; RTU has one transaction at a time. */
  _transactionIdRead = 1;
  _transactionIdWrite = 1;
  /** Bytes skipped because they did not answer the pending request (late or foreign frames). */
  skippedBytes = 0;

  #opener: () => Promise<RtuLink>;
  #gapMs: number;
  #charMs: number;
  #link: RtuLink | undefined;
  #open = false;
  #closing = false;
  #pump: Promise<void> = Promise.resolve();
  #buffer = new Uint8Array(0);
  #expected: ExpectedAnswer | undefined;
  #lineBusyUntil = 0;
  #writes: Promise<void> = Promise.resolve();

  constructor(opener: () => Promise<RtuLink>, opts: RtuPortOptions = {}) {
    super();
    this.#opener = opener;
    this.#gapMs = opts.gapMs ?? 0;
    this.#charMs = opts.charMs ?? 0;
  }

  /** Bytes received that may still be the start of the pending answer. */
  get bufferedBytes(): number {
    return this.#buffer.length;
  }

  /** True from a successful open until the stream ends or the port is closed. */
  get isOpen(): boolean {
    return this.#open;
  }

  /** Opens the stream; `callback(error)` once it is open or failed. */
  open(callback: (err?: Error | null) => void): void {
    this.#opener().then((link) => {
      if (this.#closing) {
        link.close();
        callback(new Error("the port was closed while opening"));
        return;
      }
      this.#link = link;
      this.#open = true;
      this.#pump = this.#readAll(link);
      callback(null);
    }, (e) => callback(e instanceof Error ? e : new Error(String(e))));
  }

  /** Closes the port; `callback` once the stream has no read pending. */
  close(callback?: (err?: Error | null) => void): void {
    this.#closing = true;
    this.#open = false;
    const link = this.#link;
    this.#link = undefined;
    const closed = link ? link.close() : Promise.resolve();
    Promise.all([closed, this.#pump]).then(() => callback?.(null), () => callback?.(null));
  }

  /** Same as close (the client calls it on destroy). */
  destroy(callback?: (err?: Error | null) => void): void {
    this.close(callback);
  }

  /** Sends a request frame after the inter-frame silence, dropping what arrived before it. */
  write(data: Uint8Array): void {
    const frame = Uint8Array.from(data);
    this.#writes = this.#writes.then(() => this.#send(frame));
  }

  async #send(frame: Uint8Array): Promise<void> {
    const link = this.#link;
    if (!link || !this.#open) return;
    const wait = this.#lineBusyUntil + this.#gapMs - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, Math.ceil(wait)));
    this.#skip(this.#buffer.length);
    this.#expected = expectedAnswer(frame);
    try {
      await link.write(frame);
      this.#lineBusyUntil = performance.now() + frame.length * this.#charMs;
    } catch {
      this.#lost(link);
    }
  }

  async #readAll(link: RtuLink): Promise<void> {
    const chunk = new Uint8Array(MAX_BUFFERED);
    try {
      while (!this.#closing) {
        const n = await link.read(chunk);
        if (n === null) break;
        if (n > 0) this.#received(chunk.subarray(0, n));
      }
    } catch { /* the stream failed: the device is gone or the connection was reset */ }
    if (!this.#closing) await this.#lost(link);
  }

  #received(bytes: Uint8Array): void {
    this.#lineBusyUntil = performance.now();
    const all = new Uint8Array(this.#buffer.length + bytes.length);
    all.set(this.#buffer);
    all.set(bytes, this.#buffer.length);
    this.#buffer = all;
    if (this.#buffer.length > MAX_BUFFERED) this.#skip(this.#buffer.length - MAX_BUFFERED);
    const want = this.#expected;
    if (!want) return;
    const scan = scanAnswer(this.#buffer, want);
    const found = scan.found;
    if (!found) {
      this.#skip(scan.keepFrom);
      return;
    }
    this.#skip(found.start);
    const answer = Buffer.from(this.#buffer.subarray(0, found.length));
    this.#buffer = this.#buffer.slice(found.length);
    this.#expected = undefined;
    this.emit("data", answer);
  }

  /** Drops the first `n` buffered bytes. */
  #skip(n: number): void {
    if (n <= 0) return;
    this.skippedBytes += n;
    this.#buffer = this.#buffer.slice(n);
  }

  /** The stream ended by itself: the port is closed and says so. */
  async #lost(link: RtuLink): Promise<void> {
    if (!this.#open || this.#link !== link) return;
    this.#open = false;
    this.#link = undefined;
    await link.close();
    this.emit("close");
  }
}

/** An `RtuLink` over an open TCP connection. */
export function connLink(conn: Deno.Conn): RtuLink {
  return {
    read: (buf) => conn.read(buf),
    write: async (bytes) => {
      for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
    },
    close() {
      try {
        conn.close();
      } catch { /* already closed */ }
      return Promise.resolve();
    },
  };
}

/** An `RtuLink` over a new TCP connection (RTU frames to a serial gateway). */
export async function openTcpLink(hostname: string, port: number): Promise<RtuLink> {
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  return connLink(conn);
}
