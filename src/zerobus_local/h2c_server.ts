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
import { encodeHeaders, type HeaderList, HpackDecoder, HpackError } from "../http2/hpack.ts";
import {
  decodeSettings,
  DEFAULT_WINDOW,
  encodeFrame as frame,
  encodeGoaway,
  encodeGrpcMessage,
  encodeSettings,
  Flag,
  FrameReader,
  FrameType as Frame,
  GrpcMessageReader,
  H2ConnectionError as ProtocolError,
  H2Error,
  HeaderBlockAssembler,
  percentEncode,
  PREFACE,
  readU32,
  Setting,
  u32,
  unpad,
} from "../http2/frames.ts";
import { type CallListener, type CallServer, type ServerCall, Status } from "./call.ts";

const { END_STREAM, ACK, END_HEADERS } = Flag;

/** Largest frame payload we accept (advertised in SETTINGS_MAX_FRAME_SIZE). */
const MAX_FRAME = 1 << 18;
/** Receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE) and per connection. */
const STREAM_WINDOW = 1 << 20;
const CONN_WINDOW = 16 << 20;
const MAX_HEADER_BLOCK = 64 << 10;
const MAX_STREAMS = 1000;
const RESPONSE_HEADERS: [string, string][] = [
  [":status", "200"],
  ["content-type", "application/grpc"],
];

/** Options of `serveH2Grpc`. */
export interface H2GrpcOptions {
  hostname: string;
  port: number;
  /**
   * Serve connections accepted from this listener instead of listening on
   * hostname:port (e.g. a `Deno.listenTls` one with ALPN "h2"); closed on close().
   */
  listener?: Deno.Listener<Deno.Conn, Deno.Addr>;
  /** Called for each new call, synchronously, before any of its messages. */
  onCall(call: ServerCall): void;
  /** Largest request message accepted (default 4 MiB, as gRPC servers do). */
  maxMessageBytes?: number;
}

/** Starts listening; calls `opts.onCall` for every gRPC call. */
export function serveH2Grpc(opts: H2GrpcOptions): CallServer {
  const listener = opts.listener ??
    Deno.listen({ hostname: opts.hostname, port: opts.port, transport: "tcp" });
  const conns = new Set<Connection>();
  const maxMessage = opts.maxMessageBytes ?? 4 << 20;
  const accepting = (async () => {
    while (true) {
      let tcp: Deno.Conn;
      try {
        tcp = await listener.accept();
      } catch {
        return; // listener closed
      }
      try {
        (tcp as Partial<Deno.TcpConn>).setNoDelay?.(true);
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
        try {
          listener.close();
        } catch { /* already closed */ }
        await accepting;
        await Promise.all([...conns].map((c) => c.shutdown()));
      })();
      return closing;
    },
  };
}

/** One HTTP/2 connection. */
class Connection {
  readonly done: Promise<void>;
  #tcp: Deno.Conn;
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
  #headerBlocks = new HeaderBlockAssembler(MAX_HEADER_BLOCK);
  #out: Uint8Array[] = [];
  #writing = false;
  #closed = false;
  #goaway = false;

  constructor(tcp: Deno.Conn, onCall: (call: ServerCall) => void, maxMessage: number) {
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
    const reader = new FrameReader(this.#tcp, MAX_FRAME, 1 << 20);
    try {
      if (!await reader.fill(PREFACE.length)) return;
      const preface = reader.take(PREFACE.length);
      if (!PREFACE.every((b, i) => preface[i] === b)) {
        this.#send(new TextEncoder().encode(
          "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 30\r\n\r\n" +
            "this port speaks gRPC (h2c)\r\n\r\n",
        ));
        await this.#drainOutput();
        return;
      }
      this.#send(frame(
        Frame.SETTINGS,
        0,
        0,
        encodeSettings([
          [Setting.MAX_CONCURRENT_STREAMS, MAX_STREAMS],
          [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
          [Setting.MAX_FRAME_SIZE, MAX_FRAME],
        ]),
      ));
      this.#send(frame(Frame.WINDOW_UPDATE, 0, 0, u32(CONN_WINDOW - DEFAULT_WINDOW)));
      await reader.run((type, flags, id, p) => this.#frame(type, flags, id, p), () => this.#closed);
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

  #frame(type: number, flags: number, id: number, p: Uint8Array): void {
    if (this.#headerBlocks.pending && type !== Frame.CONTINUATION) {
      throw new ProtocolError(H2Error.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    switch (type) {
      case Frame.DATA:
        return this.#data(flags, id, p);
      case Frame.HEADERS: {
        const h = this.#headerBlocks.headers(id, flags, p);
        return h ? this.#headers(id, h.flags, h.block) : undefined;
      }
      case Frame.CONTINUATION: {
        const h = this.#headerBlocks.continuation(id, flags, p);
        return h ? this.#headers(id, h.flags, h.block) : undefined;
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
        if (id !== 0) throw new ProtocolError(H2Error.FRAME_SIZE_ERROR, "bad SETTINGS frame");
        for (const [key, value] of decodeSettings(p)) {
          if (key === Setting.INITIAL_WINDOW_SIZE) {
            if (value > 0x7fffffff) {
              throw new ProtocolError(H2Error.FLOW_CONTROL_ERROR, "initial window too large");
            }
            const delta = value - this.#peerWindow;
            this.#peerWindow = value;
            for (const call of this.#streams.values()) call.sendWindow += delta;
          } else if (key === Setting.MAX_FRAME_SIZE) {
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
        const inc = readU32(p, 0) & 0x7fffffff;
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
    const body = unpad(flags, p);
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
    this.#send(frame(Frame.GOAWAY, 0, 0, encodeGoaway(this.#lastStreamId, code, debug)));
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
  #reader: GrpcMessageReader;

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
    this.#reader = new GrpcMessageReader(maxMessage);
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
    this.pending.push(encodeGrpcMessage(msg));
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
    if (this.#ended) return false;
    const err = this.#reader.push(p, (m, owned) => {
      this.#deliver(m, owned);
      return !this.#ended;
    });
    if (err?.kind === "compressed") {
      this.end(Status.UNIMPLEMENTED, "compressed messages are not supported");
    } else if (err?.kind === "too_large") {
      this.end(
        Status.RESOURCE_EXHAUSTED,
        `message of ${err.length} bytes is larger than the limit of ${this.#maxMessage}`,
      );
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
    if (this.#reader.partial) {
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
