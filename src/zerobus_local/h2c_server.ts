/**
 * A small HTTP/2 cleartext (h2c, prior knowledge) server for gRPC calls, on
 * `Deno.listen`. The stand-in uses it instead of grpc-js's server because Deno
 * 2.9's `node:http2` server can crash the process inside nghttp2 when a client
 * disconnects after a busy stream (see README.md).
 *
 * Scope: what gRPC clients send. Request headers are HPACK-decoded; DATA is
 * split into length-prefixed gRPC messages (uncompressed only); flow control
 * is honoured both ways and credited back only as messages are consumed, so a
 * paused call holds its client back. Responses are headers, messages and a
 * trailers frame; no server push, no priorities.
 */
import { encodeHeaders, type HeaderList, HpackDecoder, HpackError } from "./hpack.ts";
import { type CallListener, type CallServer, type ServerCall, Status } from "./call.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** HTTP/2 frame types. */
const Frame = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

/** HTTP/2 error codes. */
const H2Error = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  FLOW_CONTROL_ERROR: 3,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

/** Largest frame payload we accept (advertised in SETTINGS_MAX_FRAME_SIZE). */
const MAX_FRAME = 1 << 18;
/** Receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE) and per connection. */
const STREAM_WINDOW = 1 << 20;
const CONN_WINDOW = 16 << 20;
const MAX_HEADER_BLOCK = 64 << 10;
const MAX_STREAMS = 1000;
const DEFAULT_WINDOW = 65535;
const RESPONSE_HEADERS: [string, string][] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];

/** Options of `serveH2Grpc`. */
export interface H2GrpcOptions {
  hostname: string;
  port: number;
  /** Called for each new call, synchronously, before any of its messages. */
  onCall(call: ServerCall): void;
  /** Largest request message accepted (default 4 MiB, as gRPC servers do). */
  maxMessageBytes?: number;
}

/** Starts listening; calls `opts.onCall` for every gRPC call. */
export function serveH2Grpc(opts: H2GrpcOptions): CallServer {
  const listener = Deno.listen({ hostname: opts.hostname, port: opts.port, transport: "tcp" });
  const conns = new Set<Connection>();
  const maxMessage = opts.maxMessageBytes ?? 4 << 20;
  const accepting = (async () => {
    while (true) {
      let tcp: Deno.TcpConn;
      try {
        tcp = await listener.accept();
      } catch {
        return; // listener closed
      }
      try {
        tcp.setNoDelay(true);
      } catch { /* not fatal */ }
      const c = new Connection(tcp, opts.onCall, maxMessage);
      conns.add(c);
      c.done.finally(() => conns.delete(c));
    }
  })();
  let closing: Promise<void> | null = null;
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      closing ??= (async () => {
        listener.close();
        await accepting;
        await Promise.all([...conns].map((c) => c.shutdown()));
      })();
      return closing;
    },
  };
}

function frame(type: number, flags: number, streamId: number, payload?: Uint8Array): Uint8Array {
  const len = payload?.length ?? 0;
  const out = new Uint8Array(9 + len);
  out[0] = len >>> 16;
  out[1] = (len >>> 8) & 0xff;
  out[2] = len & 0xff;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, streamId);
  if (payload) out.set(payload, 9);
  return out;
}

function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}

/** Percent-encodes a grpc-message value (RFC: bytes outside 0x20..0x7e and '%'). */
export function percentEncode(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

class ProtocolError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** One HTTP/2 connection. */
class Connection {
  readonly done: Promise<void>;
  #tcp: Deno.TcpConn;
  #onCall: (call: ServerCall) => void;
  #maxMessage: number;
  #hpack = new HpackDecoder();
  #streams = new Map<number, H2Call>();
  #lastStreamId = 0;
  #peerWindow = DEFAULT_WINDOW; // the client's SETTINGS_INITIAL_WINDOW_SIZE
  #peerMaxFrame = 16384;
  #sendWindow = DEFAULT_WINDOW; // connection-level window for our DATA
  #blocked = new Set<H2Call>(); // calls waiting for connection window
  #recvCredit = 0; // consumed bytes not yet returned to the client
  #continuation: { id: number; flags: number; parts: Uint8Array[]; size: number } | null = null;
  #out: Uint8Array[] = [];
  #writing = false;
  #closed = false;
  #goaway = false;

  constructor(tcp: Deno.TcpConn, onCall: (call: ServerCall) => void, maxMessage: number) {
    this.#tcp = tcp;
    this.#onCall = onCall;
    this.#maxMessage = maxMessage;
    this.done = this.#run();
  }

  /** Ends open calls with UNAVAILABLE and closes once that is written. */
  async shutdown(): Promise<void> {
    for (const call of [...this.#streams.values()]) call.end(Status.UNAVAILABLE, "server stopping");
    // No GOAWAY: Deno 2.9's node:http2 client (under grpc-js) aborts inside nghttp2 on a
    // GOAWAY after a busy connection; a plain close reads as a lost connection (UNAVAILABLE).
    await this.#drainOutput();
    this.#close();
    await this.done;
  }

  async #run(): Promise<void> {
    let buf = new Uint8Array(1 << 20);
    let start = 0;
    let end = 0;
    let preface = false;
    try {
      while (!this.#closed) {
        if (buf.length - end < 16384) {
          if (start > 0) {
            buf.copyWithin(0, start, end);
            end -= start;
            start = 0;
          }
          if (buf.length - end < 16384) {
            const bigger = new Uint8Array(buf.length * 2);
            bigger.set(buf.subarray(0, end));
            buf = bigger;
          }
        }
        const n = await this.#tcp.read(buf.subarray(end));
        if (n === null) break;
        end += n;
        if (!preface) {
          if (end < PREFACE.length) continue;
          if (!PREFACE.every((b, i) => buf[i] === b)) {
            this.#send(new TextEncoder().encode(
              "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 30\r\n\r\n" +
                "this port speaks gRPC (h2c)\r\n\r\n",
            ));
            await this.#drainOutput();
            break;
          }
          preface = true;
          start = PREFACE.length;
          this.#send(frame(
            Frame.SETTINGS,
            0,
            0,
            Uint8Array.from([
              ...[0, 3, ...u32(MAX_STREAMS)],
              ...[0, 4, ...u32(STREAM_WINDOW)],
              ...[0, 5, ...u32(MAX_FRAME)],
            ]),
          ));
          this.#send(frame(Frame.WINDOW_UPDATE, 0, 0, u32(CONN_WINDOW - DEFAULT_WINDOW)));
        }
        start = this.#frames(buf, start, end);
        if (start === end) start = end = 0;
      }
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.#sendGoaway(e.code, e.message);
        await this.#drainOutput().catch(() => {});
      }
      // Otherwise the socket failed: nothing more to say.
    } finally {
      this.#close();
    }
  }

  /** Handles the complete frames in buf[start, end); returns where the rest begins. */
  #frames(buf: Uint8Array, start: number, end: number): number {
    while (end - start >= 9) {
      const len = (buf[start] << 16) | (buf[start + 1] << 8) | buf[start + 2];
      if (len > MAX_FRAME) throw new ProtocolError(H2Error.FRAME_SIZE_ERROR, "frame too large");
      if (end - start < 9 + len) break;
      const type = buf[start + 3];
      const flags = buf[start + 4];
      const id = ((buf[start + 5] & 0x7f) << 24 | buf[start + 6] << 16 | buf[start + 7] << 8 |
        buf[start + 8]) >>> 0;
      const payload = buf.subarray(start + 9, start + 9 + len);
      start += 9 + len;
      this.#frame(type, flags, id, payload);
      if (this.#closed) return end;
    }
    return start;
  }

  #frame(type: number, flags: number, id: number, p: Uint8Array): void {
    if (this.#continuation && type !== Frame.CONTINUATION) {
      throw new ProtocolError(H2Error.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    switch (type) {
      case Frame.DATA:
        return this.#data(flags, id, p);
      case Frame.HEADERS: {
        if (id === 0) throw new ProtocolError(H2Error.PROTOCOL_ERROR, "HEADERS on stream 0");
        let body = this.#unpad(flags, p);
        if (flags & PRIORITY_FLAG) body = body.subarray(5);
        if (flags & END_HEADERS) return this.#headers(id, flags, body);
        this.#continuation = { id, flags, parts: [body.slice()], size: body.length };
        return;
      }
      case Frame.CONTINUATION: {
        const c = this.#continuation;
        if (!c || c.id !== id) {
          throw new ProtocolError(H2Error.PROTOCOL_ERROR, "stray CONTINUATION");
        }
        c.parts.push(p.slice());
        c.size += p.length;
        if (c.size > MAX_HEADER_BLOCK) {
          throw new ProtocolError(H2Error.ENHANCE_YOUR_CALM, "header block too large");
        }
        if (!(flags & END_HEADERS)) return;
        this.#continuation = null;
        const block = new Uint8Array(c.size);
        let off = 0;
        for (const part of c.parts) {
          block.set(part, off);
          off += part.length;
        }
        return this.#headers(id, c.flags, block);
      }
      case Frame.RST_STREAM: {
        const call = this.#streams.get(id);
        if (call) {
          this.#forget(call);
          call.cancelled();
        }
        return;
      }
      case Frame.SETTINGS:
        if (flags & ACK) return;
        if (id !== 0 || p.length % 6) {
          throw new ProtocolError(H2Error.FRAME_SIZE_ERROR, "bad SETTINGS frame");
        }
        for (let i = 0; i < p.length; i += 6) {
          const key = (p[i] << 8) | p[i + 1];
          const value = new DataView(p.buffer, p.byteOffset + i + 2, 4).getUint32(0);
          if (key === 4) {
            if (value > 0x7fffffff) {
              throw new ProtocolError(H2Error.FLOW_CONTROL_ERROR, "initial window too large");
            }
            const delta = value - this.#peerWindow;
            this.#peerWindow = value;
            for (const call of this.#streams.values()) call.sendWindow += delta;
          } else if (key === 5) {
            if (value < 16384 || value > 16777215) {
              throw new ProtocolError(H2Error.PROTOCOL_ERROR, "bad max frame size");
            }
            this.#peerMaxFrame = value;
          }
        }
        this.#send(frame(Frame.SETTINGS, ACK, 0));
        for (const call of this.#streams.values()) this.pump(call);
        return;
      case Frame.PING:
        if (p.length !== 8) throw new ProtocolError(H2Error.FRAME_SIZE_ERROR, "bad PING");
        if (!(flags & ACK)) this.#send(frame(Frame.PING, ACK, 0, p));
        return;
      case Frame.GOAWAY:
        this.#goaway = true;
        if (this.#streams.size === 0) this.#drainOutput().then(() => this.#close());
        return;
      case Frame.WINDOW_UPDATE: {
        if (p.length !== 4) throw new ProtocolError(H2Error.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
        const inc = new DataView(p.buffer, p.byteOffset, 4).getUint32(0) & 0x7fffffff;
        if (id === 0) {
          this.#sendWindow += inc;
          for (const call of [...this.#blocked]) this.pump(call);
        } else {
          const call = this.#streams.get(id);
          if (call) {
            call.sendWindow += inc;
            this.pump(call);
          }
        }
        return;
      }
      case Frame.PUSH_PROMISE:
        throw new ProtocolError(H2Error.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      default:
        return; // PRIORITY and unknown frame types are ignored
    }
  }

  #unpad(flags: number, p: Uint8Array): Uint8Array {
    if (!(flags & PADDED)) return p;
    const pad = p[0];
    if (pad >= p.length) throw new ProtocolError(H2Error.PROTOCOL_ERROR, "bad padding");
    return p.subarray(1, p.length - pad);
  }

  #headers(id: number, flags: number, block: Uint8Array): void {
    let headers: HeaderList;
    try {
      headers = this.#hpack.decode(block);
    } catch (e) {
      if (e instanceof HpackError) throw new ProtocolError(H2Error.COMPRESSION_ERROR, e.message);
      throw e;
    }
    const existing = this.#streams.get(id);
    if (existing) {
      // Trailers from the client: only END_STREAM matters.
      if (flags & END_STREAM) existing.remoteEnd();
      return;
    }
    if (id % 2 === 0 || id <= this.#lastStreamId) {
      if (id % 2 === 0) throw new ProtocolError(H2Error.PROTOCOL_ERROR, "even stream id");
      return; // a stream we already closed
    }
    this.#lastStreamId = id;
    if (this.#goaway || this.#streams.size >= MAX_STREAMS) {
      this.#send(frame(Frame.RST_STREAM, 0, id, u32(H2Error.REFUSED_STREAM)));
      return;
    }
    const map = new Map<string, string>();
    for (const [n, v] of headers) if (!map.has(n)) map.set(n, v);
    if (map.get(":method") !== "POST" || !map.get("content-type")?.startsWith("application/grpc")) {
      this.#send(frame(
        Frame.HEADERS,
        END_HEADERS | END_STREAM,
        id,
        encodeHeaders([[":status", "415"], ["content-type", "text/plain"]]),
      ));
      if (!(flags & END_STREAM)) this.#send(frame(Frame.RST_STREAM, 0, id, u32(H2Error.NO_ERROR)));
      return;
    }
    const call = new H2Call(this, id, map, this.#peerWindow, this.#maxMessage);
    this.#streams.set(id, call);
    try {
      this.#onCall(call);
    } catch (e) {
      call.end(Status.INTERNAL, `handler failed: ${(e as Error).message}`);
    }
    if (flags & END_STREAM) call.remoteEnd();
  }

  #data(flags: number, id: number, p: Uint8Array): void {
    if (id === 0) throw new ProtocolError(H2Error.PROTOCOL_ERROR, "DATA on stream 0");
    const body = this.#unpad(flags, p);
    const call = this.#streams.get(id);
    if (!call) return this.credit(undefined, p.length);
    if (call.data(body)) call.withheld += p.length;
    else this.credit(call, p.length);
    if (flags & END_STREAM) call.remoteEnd();
  }

  /** Returns `n` consumed bytes to the client's send windows (connection and stream). */
  credit(call: H2Call | undefined, n: number): void {
    if (n <= 0 || this.#closed) return;
    this.#recvCredit += n;
    if (this.#recvCredit >= CONN_WINDOW / 4) {
      this.#send(frame(Frame.WINDOW_UPDATE, 0, 0, u32(this.#recvCredit)));
      this.#recvCredit = 0;
    }
    if (call && !call.remoteEnded && this.#streams.get(call.id) === call) {
      call.recvCredit += n;
      if (call.recvCredit >= STREAM_WINDOW / 4) {
        this.#send(frame(Frame.WINDOW_UPDATE, 0, call.id, u32(call.recvCredit)));
        call.recvCredit = 0;
      }
    }
  }

  /** Sends the response headers of a call. */
  sendHeaders(call: H2Call): void {
    if (this.#streams.get(call.id) !== call) return;
    this.#send(frame(Frame.HEADERS, END_HEADERS, call.id, encodeHeaders(RESPONSE_HEADERS)));
  }

  /** Sends what a call has queued, as far as the flow-control windows allow. */
  pump(call: H2Call): void {
    if (this.#closed || this.#streams.get(call.id) !== call) return;
    while (call.pending.length) {
      const room = Math.min(call.sendWindow, this.#sendWindow, this.#peerMaxFrame);
      if (room <= 0) {
        this.#blocked.add(call);
        return;
      }
      // Pack queued messages into one DATA frame up to `room` bytes.
      let len = 0;
      for (const m of call.pending) {
        len += m.length;
        if (len >= room) break;
      }
      len = Math.min(len, room);
      const payload = new Uint8Array(len);
      let off = 0;
      while (off < len) {
        const m = call.pending[0];
        const take = Math.min(m.length, len - off);
        payload.set(m.subarray(0, take), off);
        off += take;
        if (take === m.length) call.pending.shift();
        else call.pending[0] = m.subarray(take);
      }
      call.sendWindow -= len;
      this.#sendWindow -= len;
      this.#send(frame(Frame.DATA, 0, call.id, payload));
    }
    this.#blocked.delete(call);
    if (call.trailers) {
      this.#send(frame(Frame.HEADERS, END_HEADERS | END_STREAM, call.id, call.trailers));
      call.trailers = null;
      if (!call.remoteEnded) {
        // Tell the client to stop sending: the call is over (gRPC convention).
        this.#send(frame(Frame.RST_STREAM, 0, call.id, u32(H2Error.NO_ERROR)));
      }
      this.#forget(call);
    }
  }

  /** Drops a call from the stream table. */
  #forget(call: H2Call): void {
    this.#streams.delete(call.id);
    this.#blocked.delete(call);
    if (this.#goaway && this.#streams.size === 0) this.#drainOutput().then(() => this.#close());
  }

  #sendGoaway(code: number, debug: string): void {
    if (this.#closed) return;
    const text = new TextEncoder().encode(debug.slice(0, 200));
    const p = new Uint8Array(8 + text.length);
    p.set(u32(this.#lastStreamId), 0);
    p.set(u32(code), 4);
    p.set(text, 8);
    this.#send(frame(Frame.GOAWAY, 0, 0, p));
  }

  #send(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#out.push(bytes);
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length && !this.#closed) {
        const parts = this.#out;
        this.#out = [];
        let len = 0;
        for (const part of parts) len += part.length;
        const data = parts.length === 1 ? parts[0] : new Uint8Array(len);
        if (parts.length > 1) {
          let off = 0;
          for (const part of parts) {
            data.set(part, off);
            off += part.length;
          }
        }
        for (let off = 0; off < data.length;) off += await this.#tcp.write(data.subarray(off));
      }
    } catch {
      this.#close();
    } finally {
      this.#writing = false;
      for (const w of this.#flushWaiters.splice(0)) w();
    }
  }

  #flushWaiters: (() => void)[] = [];

  /** Resolves once everything queued so far has been written (or the socket closed). */
  async #drainOutput(): Promise<void> {
    while ((this.#writing || this.#out.length) && !this.#closed) {
      if (!this.#writing) {
        this.#writing = true;
        queueMicrotask(() => this.#flush());
      }
      await new Promise<void>((r) => this.#flushWaiters.push(r));
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#tcp.close();
    } catch { /* already closed */ }
    const calls = [...this.#streams.values()];
    this.#streams.clear();
    this.#blocked.clear();
    for (const call of calls) call.cancelled();
  }
}

/** One call (HTTP/2 stream) on a connection. */
class H2Call implements ServerCall {
  readonly path: string;
  sendWindow: number;
  recvCredit = 0;
  /** Bytes received while paused, credited back on resume. */
  withheld = 0;
  remoteEnded = false;
  /** gRPC-framed response messages not yet sent. */
  pending: Uint8Array[] = [];
  /** Encoded trailers, sent once `pending` is empty. */
  trailers: Uint8Array | null = null;
  #conn: Connection;
  #headers: Map<string, string>;
  #maxMessage: number;
  #listener: CallListener | null = null;
  #headersSent = false;
  #ended = false;
  #cancelled = false;
  #paused = false;
  #held: Uint8Array[] = []; // complete messages received while paused
  #halfClosePending = false;
  #prefix = new Uint8Array(5);
  #prefixFill = 0;
  #msg: Uint8Array | null = null;
  #msgFill = 0;

  constructor(
    conn: Connection,
    readonly id: number,
    headers: Map<string, string>,
    sendWindow: number,
    maxMessage: number,
  ) {
    this.#conn = conn;
    this.#headers = headers;
    this.path = headers.get(":path") ?? "";
    this.sendWindow = sendWindow;
    this.#maxMessage = maxMessage;
  }

  header(name: string): string | undefined {
    return this.#headers.get(name);
  }

  listen(listener: CallListener): void {
    this.#listener = listener;
  }

  sendHeaders(): void {
    if (this.#headersSent || this.#ended) return;
    this.#headersSent = true;
    this.#conn.sendHeaders(this);
  }

  write(msg: Uint8Array): void {
    if (this.#ended) return;
    this.sendHeaders();
    const framed = new Uint8Array(5 + msg.length);
    new DataView(framed.buffer).setUint32(1, msg.length);
    framed.set(msg, 5);
    this.pending.push(framed);
    this.#conn.pump(this);
  }

  end(code: number, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#held = [];
    const status: [string, string][] = [["grpc-status", String(code)]];
    if (details) status.push(["grpc-message", percentEncode(details.slice(0, 1024))]);
    // Without headers sent yet this is a trailers-only response.
    this.trailers = encodeHeaders(this.#headersSent ? status : [...RESPONSE_HEADERS, ...status]);
    this.#headersSent = true;
    this.#conn.pump(this);
    this.#conn.credit(this, this.withheld);
    this.withheld = 0;
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (this.#held.length && !this.#paused && !this.#ended) {
      this.#listener?.onMessage(this.#held.shift()!);
    }
    if (this.#paused && !this.#ended) return;
    this.#conn.credit(this, this.withheld);
    this.withheld = 0;
    if (this.#halfClosePending) {
      this.#halfClosePending = false;
      if (!this.#ended) this.#listener?.onHalfClose();
    }
  }

  /**
   * Request DATA. Returns true when messages are held (paused), in which case the
   * frame's bytes are credited back to the client only on `resume()`.
   */
  data(p: Uint8Array): boolean {
    let pos = 0;
    while (pos < p.length && !this.#ended) {
      if (this.#msg === null) {
        const take = Math.min(5 - this.#prefixFill, p.length - pos);
        this.#prefix.set(p.subarray(pos, pos + take), this.#prefixFill);
        this.#prefixFill += take;
        pos += take;
        if (this.#prefixFill < 5) break;
        this.#prefixFill = 0;
        const len = new DataView(this.#prefix.buffer).getUint32(1);
        if (this.#prefix[0] !== 0) {
          this.end(Status.UNIMPLEMENTED, "compressed messages are not supported");
          break;
        }
        if (len > this.#maxMessage) {
          this.end(
            Status.RESOURCE_EXHAUSTED,
            `message of ${len} bytes is larger than the limit of ${this.#maxMessage}`,
          );
          break;
        }
        if (p.length - pos >= len) {
          // The whole message is in this frame: hand out a view, no copy.
          this.#deliver(p.subarray(pos, pos + len), false);
          pos += len;
          continue;
        }
        this.#msg = new Uint8Array(len);
        this.#msgFill = 0;
      }
      const take = Math.min(this.#msg.length - this.#msgFill, p.length - pos);
      this.#msg.set(p.subarray(pos, pos + take), this.#msgFill);
      this.#msgFill += take;
      pos += take;
      if (this.#msgFill === this.#msg.length) {
        const m = this.#msg;
        this.#msg = null;
        this.#deliver(m, true);
      }
    }
    return !this.#ended && (this.#paused || this.#held.length > 0);
  }

  /** Hands a message to the listener, or holds it while paused. */
  #deliver(m: Uint8Array, owned: boolean): void {
    if (this.#paused || this.#held.length) this.#held.push(owned ? m : m.slice());
    else this.#listener?.onMessage(m);
  }

  /** The client sent END_STREAM. */
  remoteEnd(): void {
    if (this.remoteEnded) return;
    this.remoteEnded = true;
    if (this.#ended) return;
    if (this.#msg !== null || this.#prefixFill > 0) {
      this.end(Status.INTERNAL, "stream ended inside a message");
      return;
    }
    if (this.#paused || this.#held.length) this.#halfClosePending = true;
    else this.#listener?.onHalfClose();
  }

  /** RST_STREAM from the client or the connection went away. */
  cancelled(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const wasEnded = this.#ended;
    this.#ended = true;
    this.#held = [];
    if (!wasEnded) this.#listener?.onCancel();
  }
}
