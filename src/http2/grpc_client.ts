/**
 * Our own HTTP/2 gRPC client (the `GrpcChannel` of the Zerobus sender), on
 * `Deno.connect` / `Deno.connectTls`: Deno 2.9's `node:http2`, which grpc-js
 * uses, can abort the whole process inside nghttp2 when a server sends GOAWAY
 * after a busy connection.
 *
 * One connection per channel, opened on the first call and reopened on the
 * next call after it is lost or after GOAWAY. Request messages go out as DATA
 * frames within the peer's flow-control windows; the socket gets batched
 * writes of up to 1 MiB, copied once. Keep-alive PINGs detect half-open
 * connections. Failures end calls with a gRPC status, never with a throw.
 */
import type { BidiCall, CallHandlers, CallStatus, GrpcChannel } from "../sinks/zerobus/channel.ts";
import {
  decodeSettings,
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  encodeFrame,
  encodeGoaway,
  encodeSettings,
  Flag,
  FRAME_HEADER_SIZE,
  FrameReader,
  FrameType,
  GrpcMessageReader,
  grpcPrefix,
  H2ConnectionError,
  H2Error,
  HeaderBlockAssembler,
  MAX_WINDOW,
  percentDecode,
  PREFACE,
  readU32,
  Setting,
  u32,
  unpad,
  writeFrameHeader,
  writeU32,
} from "./frames.ts";
import { encodeHeaders, type HeaderList, HpackDecoder, HpackError } from "./hpack.ts";
import { GrpcStatus } from "./status.ts";

export { GrpcStatus } from "./status.ts";

const S = GrpcStatus;

/** Options of `connectGrpc`. */
export interface GrpcClientOptions {
  /** PING interval while calls are open and nothing was read (default 30 s). */
  keepaliveMs?: number;
  /** A PING not acknowledged within this fails the connection (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Limit of TCP connect plus TLS handshake (default 20 s). */
  connectTimeoutMs?: number;
  /** Extra trusted root certificates (PEM) for https endpoints. */
  caCerts?: string[];
  /** `user-agent` header (default "otedge-grpc/0.1"). */
  userAgent?: string;
  /** Largest response message accepted (default 4 MiB); larger ends the call RESOURCE_EXHAUSTED. */
  maxReceiveMessageBytes?: number;
  /** Bytes a call may hold unsent before `write` returns false (default 4 MiB). */
  writeBufferBytes?: number;
}

/** A channel from `connectGrpc`; `close()` resolves once its sockets are closed. */
export interface GrpcClientChannel extends GrpcChannel {
  close(): Promise<void>;
}

/** Our SETTINGS: no push, 4 MiB stream windows, 256 KiB frames. */
const STREAM_WINDOW = 4 << 20;
const CONN_WINDOW = 16 << 20;
const MAX_FRAME = 1 << 18;
const MAX_HEADER_BLOCK = 1 << 20;
/** Bytes handed to the socket per write, and the output queue bound per connection. */
const WRITE_CHUNK = 1 << 20;
const OUT_HIGH = 2 << 20;
const MAX_STREAM_ID = MAX_WINDOW;

/** Parsed endpoint. */
interface Target {
  tls: boolean;
  hostname: string;
  port: number;
  authority: string;
}

function parseEndpoint(endpoint: string): Target {
  const url = new URL(endpoint);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`gRPC endpoint must be http:// or https://, got ${endpoint}`);
  }
  const tls = url.protocol === "https:";
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port ? Number(url.port) : tls ? 443 : 80;
  return { tls, hostname, port, authority: url.host };
}

/**
 * Opens a channel to `endpoint`: `http://host:port` (h2c, prior knowledge) or
 * `https://host[:port]` (TLS, ALPN h2). Connects lazily, on the first call.
 */
export function connectGrpc(endpoint: string, opts: GrpcClientOptions = {}): GrpcClientChannel {
  return new Channel(parseEndpoint(endpoint), opts);
}

const TOKEN = /^[0-9a-z!#$&'*+.^_`|~-]+$/;
const RESERVED = new Set(["te", "content-type", "connection", "host", "transfer-encoding"]);

/** Request headers of a call, or an error text for bad metadata. */
function requestHeaders(
  target: Target,
  path: string,
  metadata: Record<string, string>,
  userAgent: string,
): HeaderList | string {
  if (!path.startsWith("/")) return `bad method path ${JSON.stringify(path)}`;
  const extra: HeaderList = [];
  let ua = userAgent;
  for (const [name, value] of Object.entries(metadata)) {
    if (!TOKEN.test(name) || RESERVED.has(name)) return `bad metadata name ${JSON.stringify(name)}`;
    if (!/^[\x20-\x7e]*$/.test(value)) return `metadata ${name} has a non-ASCII value`;
    if (name === "user-agent") ua = value;
    else extra.push([name, value]);
  }
  return [
    [":method", "POST"],
    [":scheme", target.tls ? "https" : "http"],
    [":path", path],
    [":authority", target.authority],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["user-agent", ua],
    ...extra,
  ];
}

const NO_BYTES = new Uint8Array(0);

/** A FIFO of byte chunks, consumed by byte count (views, no copies). */
class ChunkQueue {
  #items: Uint8Array[] = [];
  #head = 0;
  /** Bytes queued. */
  bytes = 0;

  push(b: Uint8Array): void {
    this.#items.push(b);
    this.bytes += b.length;
  }

  /** Length of the first chunk (0 when empty). */
  firstLength(): number {
    return this.#head < this.#items.length ? this.#items[this.#head].length : 0;
  }

  /** Removes the first `n` bytes (n <= bytes), handing them to `out` chunk by chunk. */
  take(n: number, out: (piece: Uint8Array) => void): void {
    this.bytes -= n;
    const items = this.#items;
    while (n > 0) {
      const piece = items[this.#head];
      if (piece.length <= n) {
        out(piece);
        n -= piece.length;
        items[this.#head++] = NO_BYTES; // drop the reference now
      } else {
        out(piece.subarray(0, n));
        items[this.#head] = piece.subarray(n);
        n = 0;
      }
    }
    if (this.#head === items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

class Channel implements GrpcClientChannel {
  #target: Target;
  #opts: Required<Omit<GrpcClientOptions, "caCerts">> & { caCerts?: string[] };
  #conn: Connection | null = null;
  #conns = new Set<Connection>();
  #closed = false;

  constructor(target: Target, opts: GrpcClientOptions) {
    this.#target = target;
    this.#opts = {
      keepaliveMs: opts.keepaliveMs ?? 30_000,
      keepaliveTimeoutMs: opts.keepaliveTimeoutMs ?? 10_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 20_000,
      caCerts: opts.caCerts,
      userAgent: opts.userAgent ?? "otedge-grpc/0.1",
      maxReceiveMessageBytes: opts.maxReceiveMessageBytes ?? 4 << 20,
      writeBufferBytes: opts.writeBufferBytes ?? 4 << 20,
    };
  }

  call(path: string, metadata: Record<string, string>, handlers: CallHandlers): BidiCall {
    const call = new ClientCall(handlers, this.#opts);
    if (this.#closed) {
      call.failSoon({ code: S.UNAVAILABLE, details: "channel closed" });
      return call;
    }
    const headers = requestHeaders(this.#target, path, metadata, this.#opts.userAgent);
    if (typeof headers === "string") {
      call.failSoon({ code: S.INTERNAL, details: headers });
      return call;
    }
    let conn = this.#conn;
    if (!conn?.acceptsCalls) {
      conn = new Connection(this.#target, this.#opts, () => {
        // GOAWAY "too_many_pings": the server wants fewer pings (gRPC convention).
        this.#opts.keepaliveMs = Math.min(this.#opts.keepaliveMs * 2, 30 * 60_000);
      });
      this.#conn = conn;
      this.#conns.add(conn);
      const c = conn;
      c.done.then(() => this.#conns.delete(c));
    }
    conn.open(call, encodeHeaders(headers));
    return call;
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#conn = null;
    const conns = [...this.#conns];
    for (const c of conns) c.close("channel closed");
    return Promise.all(conns.map((c) => c.finished())).then(() => {});
  }
}

/** One call: the caller's `BidiCall`, and the stream state its connection drives. */
class ClientCall implements BidiCall {
  id = 0;
  conn: Connection | null = null;
  /** Request bytes not yet handed to the connection's output. */
  pending = new ChunkQueue();
  sendWindow = 0;
  endQueued = false;
  endSent = false;
  gotHeaders = false;
  recvCredit = 0;
  ended = false;
  reader: GrpcMessageReader;
  #handlers: CallHandlers;
  #highWater: number;
  #drainWaiters: (() => void)[] = [];

  constructor(
    handlers: CallHandlers,
    opts: { maxReceiveMessageBytes: number; writeBufferBytes: number },
  ) {
    this.#handlers = handlers;
    this.#highWater = opts.writeBufferBytes;
    this.reader = new GrpcMessageReader(opts.maxReceiveMessageBytes);
  }

  write(msg: Uint8Array): boolean {
    if (this.ended || this.endQueued) return false;
    this.pending.push(grpcPrefix(msg.length));
    if (msg.length) this.pending.push(msg);
    this.conn?.sendable(this);
    return this.pending.bytes < this.#highWater;
  }

  drained(): Promise<void> {
    if (this.ended || this.pending.bytes === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  end(): void {
    if (this.ended || this.endQueued) return;
    this.endQueued = true;
    this.conn?.sendable(this);
  }

  cancel(): void {
    if (this.ended) return;
    this.conn?.cancel(this);
    this.finish({ code: S.CANCELLED, details: "cancelled by the client" });
  }

  /** Takes `n` pending bytes as views, in order. */
  take(n: number, out: (piece: Uint8Array) => void): void {
    this.pending.take(n, out);
    if (this.pending.bytes === 0) this.#wakeDrain();
  }

  /** Response headers arrived. */
  headers(): void {
    try {
      this.#handlers.onHeaders?.();
    } catch (e) {
      this.#handlerFailed("onHeaders", e);
    }
  }

  /** One response message; false when the call ended meanwhile. */
  message(m: Uint8Array): boolean {
    if (this.ended) return false;
    try {
      this.#handlers.onMessage(m);
    } catch (e) {
      this.#handlerFailed("onMessage", e);
    }
    return !this.ended;
  }

  /** Ends the call with `status` (once); drops what was not sent. */
  finish(status: CallStatus): void {
    if (this.ended) return;
    this.ended = true;
    this.pending.clear();
    this.#wakeDrain();
    this.#report(status);
  }

  /** Ends the call with `status` on a later microtask (before the caller has the call). */
  failSoon(status: CallStatus): void {
    this.ended = true;
    queueMicrotask(() => this.#report(status));
  }

  #report(status: CallStatus): void {
    try {
      this.#handlers.onStatus(status);
    } catch { /* a throwing handler must not break the connection */ }
  }

  #handlerFailed(which: string, e: unknown): void {
    this.conn?.cancel(this);
    this.finish({
      code: S.INTERNAL,
      details: `${which} handler threw: ${(e as Error)?.message ?? e}`,
    });
  }

  #wakeDrain(): void {
    for (const w of this.#drainWaiters.splice(0)) w();
  }
}

/** gRPC status of an RST_STREAM error code (gRPC's HTTP/2 mapping). */
function rstStatus(code: number): number {
  switch (code) {
    case H2Error.REFUSED_STREAM:
      return S.UNAVAILABLE;
    case H2Error.CANCEL:
      return S.CANCELLED;
    case H2Error.ENHANCE_YOUR_CALM:
      return S.RESOURCE_EXHAUSTED;
    case H2Error.INADEQUATE_SECURITY:
      return S.PERMISSION_DENIED;
    default:
      return S.INTERNAL;
  }
}

/** gRPC status of a non-200 HTTP response without grpc-status. */
function httpStatus(status: number): number {
  switch (status) {
    case 400:
      return S.INTERNAL;
    case 401:
      return S.UNAUTHENTICATED;
    case 403:
      return S.PERMISSION_DENIED;
    case 404:
      return S.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return S.UNAVAILABLE;
    default:
      return S.UNKNOWN;
  }
}

const H2_ERROR_NAMES = Object.fromEntries(Object.entries(H2Error).map(([k, v]) => [v, k]));
const errorName = (code: number) => H2_ERROR_NAMES[code] ?? `error ${code}`;

function first(headers: HeaderList, name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
}

/** The status in a trailers block (or a trailers-only response). */
function trailerStatus(headers: HeaderList): CallStatus {
  const raw = first(headers, "grpc-status");
  const code = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isFinite(code)) {
    return {
      code: S.UNKNOWN,
      details: raw === undefined ? "no grpc-status in the trailers" : `bad grpc-status ${raw}`,
    };
  }
  return { code, details: percentDecode(first(headers, "grpc-message") ?? "") };
}

const errText = (e: unknown) => (e as Error)?.message ?? String(e);

/** What a connection reads from the channel's options (keepaliveMs may grow). */
interface ConnOptions {
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
  connectTimeoutMs: number;
  caCerts?: string[];
}

/** One HTTP/2 connection and its calls. */
class Connection {
  readonly done: Promise<void>;
  #target: Target;
  #opts: ConnOptions;
  #onTooManyPings: () => void;
  #state: "connecting" | "open" | "closed" = "connecting";
  #goaway = false;
  #closing = false;
  #socket: Deno.Conn | null = null;
  #cancelConnect: () => void = () => {};
  #calls = new Map<number, ClientCall>();
  #waiting: { call: ClientCall; block: Uint8Array }[] = [];
  #sendable = new Set<ClientCall>();
  #nextId = 1;
  #peerMaxStreams = Infinity;
  #peerWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME;
  #sendWindow = DEFAULT_WINDOW;
  #recvCredit = 0;
  #hpack = new HpackDecoder();
  #headerBlocks = new HeaderBlockAssembler(MAX_HEADER_BLOCK);
  #out = new ChunkQueue();
  /** Bytes of the socket write in progress. */
  #writing = 0;
  #writeBuf: Uint8Array | null = null;
  #flushing: Promise<void> | null = null;
  #lastRead = Date.now();
  #keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setTimeout> | undefined;
  #pingSeq = 0;
  #pingPayload: Uint8Array | null = null;

  constructor(target: Target, opts: ConnOptions, onTooManyPings: () => void) {
    this.#target = target;
    this.#opts = opts;
    this.#onTooManyPings = onTooManyPings;
    this.#enqueue(PREFACE);
    this.#enqueue(encodeFrame(
      FrameType.SETTINGS,
      0,
      0,
      encodeSettings([
        [Setting.ENABLE_PUSH, 0],
        [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
        [Setting.MAX_FRAME_SIZE, MAX_FRAME],
      ]),
    ));
    this.#enqueue(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(CONN_WINDOW - DEFAULT_WINDOW)));
    this.done = this.#run();
  }

  /** True while new calls may start here. */
  get acceptsCalls(): boolean {
    return this.#state !== "closed" && !this.#goaway && this.#nextId <= MAX_STREAM_ID;
  }

  /** Starts a call (or queues it while the peer's concurrent stream limit is reached). */
  open(call: ClientCall, block: Uint8Array): void {
    call.conn = this;
    if (this.#calls.size < this.#peerMaxStreams) this.#start(call, block);
    else this.#waiting.push({ call, block });
    if (
      this.#state === "open" && !this.#pingPayload &&
      Date.now() - this.#lastRead >= this.#opts.keepaliveMs
    ) {
      this.#ping(); // idle for a while: check the connection is still there
    }
  }

  /** A call has data or its half-close to send. */
  sendable(call: ClientCall): void {
    if (call.id === 0 || call.ended) return;
    this.#sendable.add(call);
    this.#pump();
  }

  /** Resets a call (RST_STREAM CANCEL) and forgets it. */
  cancel(call: ClientCall): void {
    if (call.id === 0) {
      this.#waiting = this.#waiting.filter((w) => w.call !== call);
      return;
    }
    if (this.#calls.get(call.id) !== call) return;
    this.#enqueue(encodeFrame(FrameType.RST_STREAM, 0, call.id, u32(H2Error.CANCEL)));
    this.#forget(call);
  }

  /** Ends every call with UNAVAILABLE, says GOAWAY and closes the socket. */
  close(reason: string): void {
    if (this.#state === "closed") return;
    if (this.#state === "connecting") return this.#fail(reason);
    this.#enqueue(encodeFrame(FrameType.GOAWAY, 0, 0, encodeGoaway(0, H2Error.NO_ERROR)));
    this.#closeAfterFlush(reason);
    this.#endAll(reason);
  }

  /** Resolves once the connection and its pending socket write are over. */
  async finished(): Promise<void> {
    await this.done;
    await this.#flushing;
  }

  // ---------- connection life ----------

  async #run(): Promise<void> {
    const socket = await this.#connect();
    if (!socket) return;
    if (this.#state === "closed") {
      closeQuietly(socket);
      return;
    }
    this.#socket = socket;
    this.#state = "open";
    this.#lastRead = Date.now();
    this.#scheduleFlush();
    this.#armKeepalive();
    const reader = new FrameReader(socket, MAX_FRAME);
    try {
      await reader.run((t, f, id, p) => this.#frame(t, f, id, p), () => this.#closed());
      this.#fail("connection closed by the server");
    } catch (e) {
      if (this.#closed()) return;
      if (e instanceof H2ConnectionError) {
        const reason = `HTTP/2 protocol error from the server: ${e.message}`;
        this.#enqueue(encodeFrame(FrameType.GOAWAY, 0, 0, encodeGoaway(0, e.code, e.message)));
        this.#closeAfterFlush(reason);
        this.#endAll(reason);
      } else {
        this.#fail(`connection lost: ${errText(e)}`);
      }
    }
  }

  #closed(): boolean {
    return this.#state === "closed";
  }

  /** Dials with a timeout; on failure ends the calls and returns null. */
  async #connect(): Promise<Deno.Conn | null> {
    const { tls, hostname, port } = this.#target;
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stop = new Promise<string>((resolve) => {
      timer = setTimeout(
        () => resolve(`timed out after ${this.#opts.connectTimeoutMs} ms`),
        this.#opts.connectTimeoutMs,
      );
      this.#cancelConnect = () => resolve("connection closed");
    });
    const dial = (async (): Promise<Deno.Conn> => {
      if (!tls) {
        const c = await Deno.connect({ hostname, port, signal: ac.signal });
        c.setNoDelay(true);
        return c;
      }
      const c = await Deno.connectTls({
        hostname,
        port,
        caCerts: this.#opts.caCerts,
        alpnProtocols: ["h2"],
      });
      try {
        const info = await c.handshake();
        if (info.alpnProtocol !== "h2") {
          throw new Error(`the server did not negotiate HTTP/2 (ALPN: ${info.alpnProtocol})`);
        }
      } catch (e) {
        closeQuietly(c);
        throw e;
      }
      return c;
    })();
    const outcome = await Promise.race([
      dial.then((c) => ({ c }), (e) => ({ e: errText(e) })),
      stop.then((e) => ({ e })),
    ]);
    clearTimeout(timer);
    this.#cancelConnect = () => {};
    if ("c" in outcome) return outcome.c;
    ac.abort();
    dial.then(closeQuietly, () => {});
    this.#fail(`connect to ${hostname}:${port} failed: ${outcome.e}`);
    return null;
  }

  /** Ends all calls with UNAVAILABLE and closes the socket now. */
  #fail(reason: string): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#endAll(reason);
    this.#stopTimers();
    this.#cancelConnect();
    if (this.#socket) closeQuietly(this.#socket);
    this.#out.clear();
  }

  /** Takes no new calls; lets queued frames (GOAWAY, RST_STREAM) go out, then closes (≤ 1 s). */
  #closeAfterFlush(reason: string): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#goaway = true;
    this.#stopTimers();
    this.#scheduleFlush();
    const flushing = this.#flushing ?? Promise.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    Promise.race([flushing, new Promise<void>((r) => timer = setTimeout(r, 1000))]).then(() => {
      clearTimeout(timer);
      this.#fail(reason);
    });
  }

  #endAll(reason: string): void {
    const calls = [...this.#calls.values(), ...this.#waiting.map((w) => w.call)];
    this.#calls.clear();
    this.#waiting = [];
    this.#sendable.clear();
    for (const call of calls) call.finish({ code: S.UNAVAILABLE, details: reason });
  }

  // ---------- calls ----------

  #start(call: ClientCall, block: Uint8Array): void {
    if (call.ended) return;
    if (!this.acceptsCalls) {
      call.finish({
        code: S.UNAVAILABLE,
        details: "connection going away before the call started",
      });
      return;
    }
    const id = this.#nextId;
    this.#nextId += 2;
    call.id = id;
    call.sendWindow = this.#peerWindow;
    this.#calls.set(id, call);
    // HEADERS then CONTINUATION frames, back to back.
    const max = this.#peerMaxFrame;
    let off = 0;
    do {
      const part = block.subarray(off, off + max);
      const type = off === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      off += part.length;
      this.#enqueue(encodeFrame(type, off >= block.length ? Flag.END_HEADERS : 0, id, part));
    } while (off < block.length);
    this.#armKeepalive();
    if (call.pending.bytes > 0 || call.endQueued) this.sendable(call);
    else this.#scheduleFlush();
  }

  /** Drops a finished call; starts waiting ones; closes a drained connection after GOAWAY. */
  #forget(call: ClientCall): void {
    if (this.#calls.get(call.id) === call) this.#calls.delete(call.id);
    this.#sendable.delete(call);
    while (this.#waiting.length && this.#calls.size < this.#peerMaxStreams && this.acceptsCalls) {
      const w = this.#waiting.shift()!;
      this.#start(w.call, w.block);
    }
    if (this.#goaway && this.#calls.size === 0 && this.#state === "open") {
      for (const w of this.#waiting.splice(0)) {
        w.call.finish({ code: S.UNAVAILABLE, details: "connection going away" });
      }
      this.#closeAfterFlush("connection closed after GOAWAY");
    }
  }

  /** Ends a call with `status` (from the server side) and forgets it. */
  #end(call: ClientCall, status: CallStatus, rst?: number): void {
    if (rst !== undefined) {
      this.#enqueue(encodeFrame(FrameType.RST_STREAM, 0, call.id, u32(rst)));
    }
    this.#forget(call);
    call.finish(status);
  }

  // ---------- output ----------

  #enqueue(bytes: Uint8Array): void {
    if (this.#state === "closed") return;
    this.#out.push(bytes);
    this.#scheduleFlush();
  }

  /** Moves request data into the output, round robin, within the windows. */
  #pump(): void {
    const full = () => this.#out.bytes + this.#writing >= OUT_HIGH;
    while (!full() && this.#sendable.size > 0 && this.#state !== "closed") {
      let progressed = false;
      for (const call of this.#sendable) {
        if (full()) break;
        if (this.#sendFrame(call)) progressed = true;
      }
      if (!progressed) break;
    }
    this.#scheduleFlush();
  }

  /** Sends one DATA frame of `call` if the windows allow; true when something was queued. */
  #sendFrame(call: ClientCall): boolean {
    const pending = call.pending.bytes;
    if (pending === 0) {
      this.#sendable.delete(call);
      if (!call.endQueued || call.endSent) return false;
      call.endSent = true;
      this.#enqueue(encodeFrame(FrameType.DATA, Flag.END_STREAM, call.id));
      return true;
    }
    const n = Math.min(pending, call.sendWindow, this.#sendWindow, this.#peerMaxFrame);
    if (n <= 0) return false;
    const last = n === pending && call.endQueued;
    const header = new Uint8Array(FRAME_HEADER_SIZE);
    writeFrameHeader(header, 0, n, FrameType.DATA, last ? Flag.END_STREAM : 0, call.id);
    this.#out.push(header);
    call.take(n, (piece) => this.#out.push(piece));
    call.sendWindow -= n;
    this.#sendWindow -= n;
    if (last) {
      call.endSent = true;
      this.#sendable.delete(call);
    }
    return true;
  }

  #scheduleFlush(): void {
    if (this.#flushing || !this.#socket || this.#state === "closed") return;
    if (this.#out.bytes === 0) return;
    this.#flushing = new Promise<void>((resolve) => queueMicrotask(resolve)).then(() =>
      this.#flush()
    );
  }

  /** Writes the output queue in chunks of up to WRITE_CHUNK bytes; never rejects. */
  async #flush(): Promise<void> {
    const socket = this.#socket!;
    try {
      while (this.#out.bytes > 0 && this.#state !== "closed") {
        const n = Math.min(this.#out.bytes, WRITE_CHUNK);
        let data: Uint8Array = NO_BYTES;
        if (this.#out.firstLength() >= n) {
          this.#out.take(n, (piece) => data = piece); // one chunk: no copy
        } else {
          const buf = this.#writeBuf ??= new Uint8Array(WRITE_CHUNK);
          let off = 0;
          this.#out.take(n, (piece) => {
            buf.set(piece, off);
            off += piece.length;
          });
          data = buf.subarray(0, n);
        }
        this.#writing = n;
        for (let off = 0; off < n;) off += await socket.write(data.subarray(off));
        this.#writing = 0;
        if (this.#sendable.size) this.#pump();
      }
    } catch (e) {
      this.#fail(`connection lost: write failed: ${errText(e)}`);
    } finally {
      this.#flushing = null;
    }
    if (this.#out.bytes > 0) this.#scheduleFlush();
  }

  // ---------- keep-alive ----------

  /** Schedules the next keep-alive check while calls are open. */
  #armKeepalive(): void {
    if (this.#keepaliveTimer !== undefined || this.#state !== "open" || this.#calls.size === 0) {
      return;
    }
    // Due keepaliveMs after the last read; right after a PING, one interval later.
    const due = this.#lastRead + this.#opts.keepaliveMs - Date.now();
    const wait = due > 0 ? due : this.#opts.keepaliveMs;
    this.#keepaliveTimer = setTimeout(() => {
      this.#keepaliveTimer = undefined;
      if (this.#state !== "open" || this.#calls.size === 0) return;
      if (!this.#pingPayload && Date.now() - this.#lastRead >= this.#opts.keepaliveMs) this.#ping();
      this.#armKeepalive();
    }, wait);
  }

  #ping(): void {
    const payload = new Uint8Array(8);
    writeU32(payload, 4, ++this.#pingSeq);
    this.#pingPayload = payload;
    this.#enqueue(encodeFrame(FrameType.PING, 0, 0, payload));
    this.#pingTimer = setTimeout(() => {
      this.#pingTimer = undefined;
      this.#fail(`keepalive: no PING ack within ${this.#opts.keepaliveTimeoutMs} ms`);
    }, this.#opts.keepaliveTimeoutMs);
  }

  #stopTimers(): void {
    clearTimeout(this.#keepaliveTimer);
    clearTimeout(this.#pingTimer);
    this.#keepaliveTimer = this.#pingTimer = undefined;
    this.#pingPayload = null;
  }

  // ---------- input ----------

  #frame(type: number, flags: number, id: number, p: Uint8Array): void {
    this.#lastRead = Date.now();
    if (this.#headerBlocks.pending && type !== FrameType.CONTINUATION) {
      throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "expected CONTINUATION");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#data(flags, id, p);
      case FrameType.HEADERS: {
        const h = this.#headerBlocks.headers(id, flags, p);
        return h ? this.#headers(id, h.flags, h.block) : undefined;
      }
      case FrameType.CONTINUATION: {
        const h = this.#headerBlocks.continuation(id, flags, p);
        return h ? this.#headers(id, h.flags, h.block) : undefined;
      }
      case FrameType.RST_STREAM: {
        if (p.length !== 4) throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "bad RST_STREAM");
        const call = this.#calls.get(id);
        if (!call) return;
        const code = readU32(p, 0);
        this.#end(call, {
          code: rstStatus(code),
          details: `stream reset by the server (${errorName(code)})`,
        });
        return;
      }
      case FrameType.SETTINGS:
        return this.#settings(flags, id, p);
      case FrameType.PING:
        if (p.length !== 8) throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "bad PING");
        if (!(flags & Flag.ACK)) {
          this.#enqueue(encodeFrame(FrameType.PING, Flag.ACK, 0, p));
        } else if (this.#pingPayload && p.every((b, i) => b === this.#pingPayload![i])) {
          clearTimeout(this.#pingTimer);
          this.#pingTimer = undefined;
          this.#pingPayload = null;
        }
        return;
      case FrameType.GOAWAY:
        return this.#onGoaway(p);
      case FrameType.WINDOW_UPDATE:
        return this.#windowUpdate(id, p);
      case FrameType.PUSH_PROMISE:
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "PUSH_PROMISE with push disabled");
      default:
        return; // PRIORITY and unknown frame types are ignored
    }
  }

  #settings(flags: number, id: number, p: Uint8Array): void {
    if (id !== 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) return;
    for (const [key, value] of decodeSettings(p)) {
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) {
          throw new H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, "initial window too large");
        }
        const delta = value - this.#peerWindow;
        this.#peerWindow = value;
        for (const call of this.#calls.values()) call.sendWindow += delta;
      } else if (key === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16777215) {
          throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE");
        }
        this.#peerMaxFrame = value;
      } else if (key === Setting.MAX_CONCURRENT_STREAMS) {
        this.#peerMaxStreams = value;
      }
    }
    this.#enqueue(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
    while (this.#waiting.length && this.#calls.size < this.#peerMaxStreams && this.acceptsCalls) {
      const w = this.#waiting.shift()!;
      this.#start(w.call, w.block);
    }
    for (const call of this.#calls.values()) {
      if (call.pending.bytes > 0) this.#sendable.add(call);
    }
    this.#pump();
  }

  #windowUpdate(id: number, p: Uint8Array): void {
    if (p.length !== 4) throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE");
    const inc = readU32(p, 0) & MAX_WINDOW;
    if (id === 0) {
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new H2ConnectionError(H2Error.FLOW_CONTROL_ERROR, "connection window overflow");
      }
    } else {
      const call = this.#calls.get(id);
      if (!call) return;
      call.sendWindow += inc;
      if (call.sendWindow > MAX_WINDOW) {
        this.#end(call, {
          code: S.INTERNAL,
          details: "stream flow-control window overflow",
        }, H2Error.FLOW_CONTROL_ERROR);
        return;
      }
    }
    this.#pump();
  }

  #onGoaway(p: Uint8Array): void {
    if (p.length < 8) throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "bad GOAWAY");
    const last = readU32(p, 0) & MAX_WINDOW;
    const code = readU32(p, 4);
    const debug = new TextDecoder().decode(p.subarray(8));
    if (code === H2Error.ENHANCE_YOUR_CALM && debug === "too_many_pings") this.#onTooManyPings();
    this.#goaway = true;
    const reason = `server sent GOAWAY (${errorName(code)}${debug ? `: ${debug}` : ""})`;
    for (const call of [...this.#calls.values()]) {
      if (call.id > last) {
        this.#end(call, { code: S.UNAVAILABLE, details: `${reason}; call not processed` });
      }
    }
    for (const w of this.#waiting.splice(0)) {
      w.call.finish({ code: S.UNAVAILABLE, details: `${reason}; call not started` });
    }
    if (this.#calls.size === 0) this.#closeAfterFlush(`connection closed after ${reason}`);
  }

  #headers(id: number, flags: number, block: Uint8Array): void {
    let headers: HeaderList;
    try {
      headers = this.#hpack.decode(block);
    } catch (e) {
      if (e instanceof HpackError) {
        throw new H2ConnectionError(H2Error.COMPRESSION_ERROR, e.message);
      }
      throw e;
    }
    const call = this.#calls.get(id);
    if (!call) return;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (!call.gotHeaders) {
      const status = first(headers, ":status") ?? "";
      if (/^1\d\d$/.test(status) && !endStream) return; // informational
      call.gotHeaders = true;
      const grpcStatus = first(headers, "grpc-status");
      if (status !== "200" && grpcStatus === undefined) {
        const http = Number(status);
        this.#end(
          call,
          { code: httpStatus(http), details: `unexpected HTTP status ${status || "(none)"}` },
          endStream ? undefined : H2Error.CANCEL,
        );
        return;
      }
      const type = first(headers, "content-type");
      if (type !== undefined && !type.startsWith("application/grpc") && grpcStatus === undefined) {
        this.#end(
          call,
          { code: S.UNKNOWN, details: `unexpected content-type ${type}` },
          endStream ? undefined : H2Error.CANCEL,
        );
        return;
      }
      if (endStream) return this.#trailers(call, headers); // trailers-only response
      call.headers();
      return;
    }
    if (!endStream) {
      this.#end(
        call,
        { code: S.INTERNAL, details: "trailers without END_STREAM" },
        H2Error.PROTOCOL_ERROR,
      );
      return;
    }
    this.#trailers(call, headers);
  }

  #trailers(call: ClientCall, headers: HeaderList): void {
    let status = trailerStatus(headers);
    if (status.code === S.OK && call.reader.partial) {
      status = { code: S.INTERNAL, details: "the stream ended inside a message" };
    }
    // The server is done: a call still sending is reset (gRPC convention).
    this.#end(call, status, call.endSent ? undefined : H2Error.NO_ERROR);
  }

  #data(flags: number, id: number, p: Uint8Array): void {
    if (id === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "DATA on stream 0");
    const call = this.#calls.get(id);
    this.#credit(call, p.length);
    if (!call) return;
    if (!call.gotHeaders) {
      this.#end(
        call,
        { code: S.INTERNAL, details: "DATA before response headers" },
        H2Error.PROTOCOL_ERROR,
      );
      return;
    }
    const err = call.reader.push(unpad(flags, p), (m) => call.message(m));
    if (call.ended) return;
    if (err) {
      const status = err.kind === "compressed"
        ? { code: S.INTERNAL, details: "compressed response message (not negotiated)" }
        : {
          code: S.RESOURCE_EXHAUSTED,
          details: `response message of ${err.length} bytes exceeds the limit of ${err.limit}`,
        };
      this.#end(call, status, H2Error.CANCEL);
      return;
    }
    if (flags & Flag.END_STREAM) {
      this.#end(call, {
        code: S.INTERNAL,
        details: "the server ended the stream without trailers",
      });
    }
  }

  /** Returns `n` consumed bytes to the server's windows (connection, and the call's). */
  #credit(call: ClientCall | undefined, n: number): void {
    if (n === 0) return;
    this.#recvCredit += n;
    if (this.#recvCredit >= CONN_WINDOW / 4) {
      this.#enqueue(encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(this.#recvCredit)));
      this.#recvCredit = 0;
    }
    if (call && !call.ended) {
      call.recvCredit += n;
      if (call.recvCredit >= STREAM_WINDOW / 4) {
        this.#enqueue(encodeFrame(FrameType.WINDOW_UPDATE, 0, call.id, u32(call.recvCredit)));
        call.recvCredit = 0;
      }
    }
  }
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}
