/**
 * HTTP/2 (RFC 9113) framing shared by our gRPC client and the stand-in's
 * server: frame types, flags, settings, error codes, frame header encoding, a
 * frame reader over a byte stream, and gRPC's length-prefixed message framing.
 */

/** The client connection preface. */
export const PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** HTTP/2 frame types. */
export const FrameType = {
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

/** Frame flags (ACK shares the bit of END_STREAM, on SETTINGS and PING). */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** SETTINGS identifiers. */
export const Setting = {
  HEADER_TABLE_SIZE: 1,
  ENABLE_PUSH: 2,
  MAX_CONCURRENT_STREAMS: 3,
  INITIAL_WINDOW_SIZE: 4,
  MAX_FRAME_SIZE: 5,
  MAX_HEADER_LIST_SIZE: 6,
} as const;

/** HTTP/2 error codes (RST_STREAM, GOAWAY). */
export const H2Error = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  CONNECT_ERROR: 10,
  ENHANCE_YOUR_CALM: 11,
  INADEQUATE_SECURITY: 12,
  HTTP_1_1_REQUIRED: 13,
} as const;

/** Bytes of a frame header. */
export const FRAME_HEADER_SIZE = 9;
/** Initial flow-control window of streams and connections. */
export const DEFAULT_WINDOW = 65535;
/** Initial SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_MAX_FRAME = 16384;
/** Largest flow-control window and largest stream id. */
export const MAX_WINDOW = 0x7fffffff;

/** A connection error: the connection ends with GOAWAY carrying `code`. */
export class H2ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** Writes a frame header at `off` of `buf`. */
export function writeFrameHeader(
  buf: Uint8Array,
  off: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  buf[off] = length >>> 16;
  buf[off + 1] = (length >>> 8) & 0xff;
  buf[off + 2] = length & 0xff;
  buf[off + 3] = type;
  buf[off + 4] = flags;
  writeU32(buf, off + 5, streamId & MAX_WINDOW);
}

/** Encodes a whole frame (header and a copy of the payload). */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload?: Uint8Array,
): Uint8Array {
  const len = payload?.length ?? 0;
  const out = new Uint8Array(FRAME_HEADER_SIZE + len);
  writeFrameHeader(out, 0, len, type, flags, streamId);
  if (payload) out.set(payload, FRAME_HEADER_SIZE);
  return out;
}

/** Writes a big-endian 32-bit unsigned integer. */
export function writeU32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/** Reads a big-endian 32-bit unsigned integer. */
export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/** A 4-byte big-endian encoding of `v`. */
export function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  writeU32(b, 0, v);
  return b;
}

/** SETTINGS payload from [id, value] pairs. */
export function encodeSettings(pairs: readonly (readonly [number, number])[]): Uint8Array {
  const out = new Uint8Array(pairs.length * 6);
  pairs.forEach(([id, value], i) => {
    out[i * 6] = id >>> 8;
    out[i * 6 + 1] = id & 0xff;
    writeU32(out, i * 6 + 2, value);
  });
  return out;
}

/** [id, value] pairs of a SETTINGS payload; throws H2ConnectionError when malformed. */
export function decodeSettings(p: Uint8Array): [number, number][] {
  if (p.length % 6) throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "bad SETTINGS frame");
  const out: [number, number][] = [];
  for (let i = 0; i < p.length; i += 6) out.push([(p[i] << 8) | p[i + 1], readU32(p, i + 2)]);
  return out;
}

/** GOAWAY payload: last stream id, error code and debug text. */
export function encodeGoaway(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug.slice(0, 200));
  const p = new Uint8Array(8 + text.length);
  writeU32(p, 0, lastStreamId & MAX_WINDOW);
  writeU32(p, 4, code);
  p.set(text, 8);
  return p;
}

/** The payload of a DATA or HEADERS frame without its padding. */
export function unpad(flags: number, p: Uint8Array): Uint8Array {
  if (!(flags & Flag.PADDED)) return p;
  if (p.length === 0 || p[0] >= p.length) {
    throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "bad padding");
  }
  return p.subarray(1, p.length - p[0]);
}

/** Receives one frame; `payload` is valid only during the call (copy to keep). */
export type FrameHandler = (
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array,
) => void;

/** Something to read bytes from, like a `Deno.Conn`. */
export interface ByteSource {
  read(p: Uint8Array): Promise<number | null>;
}

/** Reads frames from a byte stream into one growable buffer (no copy per frame). */
export class FrameReader {
  #src: ByteSource;
  #maxFrame: number;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;

  /** `maxFrameSize` is our SETTINGS_MAX_FRAME_SIZE: larger frames are a FRAME_SIZE_ERROR. */
  constructor(src: ByteSource, maxFrameSize: number, initialBuffer = 1 << 16) {
    this.#src = src;
    this.#maxFrame = maxFrameSize;
    this.#buf = new Uint8Array(Math.max(initialBuffer, 1 << 14));
  }

  /** Reads until `n` bytes are buffered; false when the stream ends first. */
  async fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      this.#room(n);
      const got = await this.#src.read(this.#buf.subarray(this.#end));
      if (got === null) return false;
      this.#end += got;
    }
    return true;
  }

  /** Consumes `n` buffered bytes; the view is valid until the next read. */
  take(n: number): Uint8Array {
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /**
   * Reads frames until the stream ends or `stopped()` turns true, handing each
   * to `onFrame` synchronously. Throws H2ConnectionError on an oversized frame;
   * read errors propagate.
   */
  async run(onFrame: FrameHandler, stopped: () => boolean = () => false): Promise<void> {
    while (!stopped()) {
      let need = FRAME_HEADER_SIZE;
      const buf = this.#buf;
      let pos = this.#start;
      while (this.#end - pos >= FRAME_HEADER_SIZE) {
        const len = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
        if (len > this.#maxFrame) {
          throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, "frame too large");
        }
        if (this.#end - pos < FRAME_HEADER_SIZE + len) {
          need = FRAME_HEADER_SIZE + len;
          break;
        }
        const type = buf[pos + 3];
        const flags = buf[pos + 4];
        const id = readU32(buf, pos + 5) & MAX_WINDOW;
        const payload = buf.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + len);
        pos += FRAME_HEADER_SIZE + len;
        this.#start = pos;
        onFrame(type, flags, id, payload);
        if (stopped()) return;
      }
      if (this.#start === this.#end) this.#start = this.#end = 0;
      if (!await this.fill(need)) return;
    }
  }

  /** Makes room after `#end` for a read that completes `n` buffered bytes. */
  #room(n: number): void {
    const minRead = 1 << 14;
    if (this.#buf.length - this.#end >= minRead && this.#buf.length - this.#start >= n) return;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#buf.length - this.#end < minRead || this.#buf.length < n) {
      const bigger = new Uint8Array(Math.max(this.#buf.length * 2, n + minRead));
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    }
  }
}

// ---------- gRPC message framing ----------

/** Bytes of the gRPC message prefix (compressed flag, 32-bit length). */
export const GRPC_PREFIX_SIZE = 5;

/** The 5-byte prefix of an uncompressed gRPC message of `length` bytes. */
export function grpcPrefix(length: number): Uint8Array {
  const p = new Uint8Array(GRPC_PREFIX_SIZE);
  writeU32(p, 1, length);
  return p;
}

/** A copy of `msg` with its gRPC prefix, as one buffer. */
export function encodeGrpcMessage(msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(GRPC_PREFIX_SIZE + msg.length);
  writeU32(out, 1, msg.length);
  out.set(msg, GRPC_PREFIX_SIZE);
  return out;
}

/** Why a gRPC message stream cannot be read on. */
export type GrpcFramingError =
  | { kind: "compressed" }
  | { kind: "too_large"; length: number; limit: number };

/**
 * Receives one message (`owned` false: a view into the frame, valid during the
 * call only). Returns false to stop reading the rest of the data.
 */
export type MessageSink = (msg: Uint8Array, owned: boolean) => boolean;

/** Splits the DATA of one stream into gRPC messages, across frames. */
export class GrpcMessageReader {
  #prefix = new Uint8Array(GRPC_PREFIX_SIZE);
  #prefixFill = 0;
  #msg: Uint8Array | null = null;
  #msgFill = 0;

  /** Messages longer than `maxMessageBytes` are a `too_large` error. */
  constructor(readonly maxMessageBytes: number) {}

  /** True while a message is only partly received. */
  get partial(): boolean {
    return this.#msg !== null || this.#prefixFill > 0;
  }

  /** Feeds DATA bytes; returns an error (and stops) on a message it cannot take. */
  push(p: Uint8Array, deliver: MessageSink): GrpcFramingError | null {
    let pos = 0;
    while (pos < p.length) {
      if (this.#msg === null) {
        const take = Math.min(GRPC_PREFIX_SIZE - this.#prefixFill, p.length - pos);
        this.#prefix.set(p.subarray(pos, pos + take), this.#prefixFill);
        this.#prefixFill += take;
        pos += take;
        if (this.#prefixFill < GRPC_PREFIX_SIZE) break;
        this.#prefixFill = 0;
        const len = readU32(this.#prefix, 1);
        if (this.#prefix[0] !== 0) return { kind: "compressed" };
        if (len > this.maxMessageBytes) {
          return { kind: "too_large", length: len, limit: this.maxMessageBytes };
        }
        if (p.length - pos >= len) {
          // The whole message is in this frame: hand out a view, no copy.
          pos += len;
          if (!deliver(p.subarray(pos - len, pos), false)) break;
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
        if (!deliver(m, true)) break;
      }
    }
    return null;
  }
}

// ---------- grpc-message ----------

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** Percent-encodes a grpc-message value (bytes outside 0x20..0x7e and '%'). */
export function percentEncode(s: string): string {
  let out = "";
  for (const b of utf8.encode(s)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Decodes a grpc-message value; malformed escapes stay as they are. */
export function percentDecode(s: string): string {
  if (!s.includes("%")) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c & 0xff);
  }
  return utf8d.decode(Uint8Array.from(bytes));
}

/**
 * Assembles header blocks: a HEADERS frame and the CONTINUATION frames that
 * follow it on the same stream, up to `maxBlock` bytes. Used by both our
 * client and the stand-in's server.
 */
export class HeaderBlockAssembler {
  #pending: { id: number; flags: number; parts: Uint8Array[]; size: number } | null = null;

  constructor(private readonly maxBlock: number) {}

  /** True while a header block waits for CONTINUATION frames (no other frame may come). */
  get pending(): boolean {
    return this.#pending !== null;
  }

  /** A HEADERS frame: the whole block, or null when CONTINUATION frames follow. */
  headers(id: number, flags: number, p: Uint8Array): { flags: number; block: Uint8Array } | null {
    if (id === 0) throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "HEADERS on stream 0");
    let body = unpad(flags, p);
    if (flags & Flag.PRIORITY) body = body.subarray(5);
    if (flags & Flag.END_HEADERS) return { flags, block: body };
    this.#pending = { id, flags, parts: [body.slice()], size: body.length };
    return null;
  }

  /** A CONTINUATION frame: the whole block once END_HEADERS arrives, else null. */
  continuation(
    id: number,
    flags: number,
    p: Uint8Array,
  ): { flags: number; block: Uint8Array } | null {
    const c = this.#pending;
    if (!c || c.id !== id) {
      throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    c.parts.push(p.slice());
    c.size += p.length;
    if (c.size > this.maxBlock) {
      throw new H2ConnectionError(H2Error.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (!(flags & Flag.END_HEADERS)) return null;
    this.#pending = null;
    const block = new Uint8Array(c.size);
    let off = 0;
    for (const part of c.parts) {
      block.set(part, off);
      off += part.length;
    }
    return { flags: c.flags, block };
  }
}
