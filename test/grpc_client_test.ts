/**
 * Tests of our HTTP/2 gRPC client (src/http2/grpc_client.ts) against the
 * Zerobus stand-in, its h2c server directly (echo, TLS), and a small raw
 * HTTP/2 server in this file for GOAWAY, keep-alive, resets and flow control.
 * Everything binds 127.0.0.1 on free ports and is stopped at the end.
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { join } from "node:path";
import type { BidiCall, CallStatus } from "../src/sinks/zerobus/channel.ts";
import {
  appendRow,
  decodeResponse,
  encodeBatchRequest,
  encodeCreateStream,
  EPHEMERAL_STREAM_PATH,
  type StreamResponse,
} from "../src/sinks/zerobus/wire.ts";
import { connectGrpc, type GrpcClientChannel, GrpcStatus } from "../src/http2/grpc_client.ts";
import {
  encodeFrame,
  encodeGoaway,
  encodeGrpcMessage,
  encodeSettings,
  Flag,
  FrameReader,
  FrameType,
  GrpcMessageReader,
  H2Error,
  percentDecode,
  percentEncode,
  PREFACE,
  u32,
} from "../src/http2/frames.ts";
import { encodeHeaders, type HeaderList, HpackDecoder } from "../src/http2/hpack.ts";
import { startZerobusLocal, type ZerobusLocal } from "../src/zerobus_local/server.ts";
import { waitFor } from "./helpers.ts";
import { serveH2Grpc } from "../src/zerobus_local/h2c_server.ts";
import type { ServerCall } from "../src/zerobus_local/call.ts";

const TABLE = "main.iot_data.sensor_readings";
const { OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, UNAUTHENTICATED, UNAVAILABLE } = GrpcStatus;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- a recording call ----------

/** A call that records its events; `status` resolves with the final status. */
class Recorded {
  readonly call: BidiCall;
  readonly messages: Uint8Array[] = [];
  headers = 0;
  final: CallStatus | null = null;
  readonly status: Promise<CallStatus>;
  #wake: (() => void)[] = [];

  constructor(ch: GrpcClientChannel, path: string, meta: Record<string, string> = {}) {
    let done: (s: CallStatus) => void = () => {};
    this.status = new Promise((r) => done = r);
    this.call = ch.call(path, meta, {
      onHeaders: () => this.headers++,
      onMessage: (m) => {
        ok(this.final === null, "message after status");
        this.messages.push(m.slice());
        this.#notify();
      },
      onStatus: (s) => {
        ok(this.final === null, "second status");
        this.final = s;
        this.#notify();
        done(s);
      },
    });
  }

  responses(): StreamResponse[] {
    return this.messages.map((m) => decodeResponse(m));
  }

  /** Waits until `pred` holds (checked on every event), or fails after `ms`. */
  async until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (this.final) throw new Error(`call ended (${JSON.stringify(this.final)}) before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      let t: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#wake.push(r)),
        new Promise<void>((r) => t = setTimeout(r, left)),
      ]);
      clearTimeout(t);
    }
  }

  /** The final status, or a failure after `ms`. */
  async ended(ms = 30_000): Promise<CallStatus> {
    let t: ReturnType<typeof setTimeout> | undefined;
    try {
      return await Promise.race([
        this.status,
        new Promise<never>((_, rej) =>
          t = setTimeout(() => rej(new Error("call did not end")), ms)
        ),
      ]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Writes with backpressure. */
  async send(msg: Uint8Array): Promise<void> {
    if (!this.call.write(msg)) await this.call.drained();
  }

  #notify() {
    for (const w of this.#wake.splice(0)) w();
  }
}

// ---------- stand-in helpers ----------

async function withStandIn(
  fn: (zl: ZerobusLocal, dir: string) => Promise<void>,
  opts: { grpcPort?: number; maxMessageBytes?: number } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "grpc-client-test-" });
  const zl = await startZerobusLocal({ dataDir: dir, ...opts });
  try {
    await fn(zl, dir);
  } finally {
    await zl.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

async function fetchToken(zl: ZerobusLocal): Promise<string> {
  const details = [{
    type: "unity_catalog_privileges",
    object_type: "TABLE",
    object_full_path: TABLE,
  }];
  const res = await fetch(`${zl.workspaceUrl}/oidc/v1/token`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa("local-client:local-secret")}` },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      scope: "all-apis",
      authorization_details: JSON.stringify(details),
    }),
  });
  strictEqual(res.status, 200);
  return (await res.json()).access_token;
}

async function zerobusMeta(zl: ZerobusLocal): Promise<Record<string, string>> {
  return {
    authorization: `Bearer ${await fetchToken(zl)}`,
    "x-databricks-zerobus-table-name": TABLE,
  };
}

/** An ingest_record_batch of `n` JSON rows, ids from `from`, each padded by `pad` bytes. */
function batch(offset: number, from: number, n: number, pad = 0): Uint8Array {
  const rows = Array.from(
    { length: n },
    (_, i) => JSON.stringify({ record_id: `r${from + i}`, v: from + i, pad: "x".repeat(pad) }),
  );
  const buf = new Uint8Array(rows.reduce((s, r) => s + r.length + 8, 0));
  let off = 0;
  for (const r of rows) off = appendRow(buf, off, r);
  return encodeBatchRequest(offset, "json", [buf.subarray(0, off)]);
}

const acked = (r: Recorded) =>
  Math.max(-1, ...r.responses().flatMap((x) => x.kind === "ack" ? [x.upTo] : []));

/** Opens an EphemeralStream call and waits for create_stream's answer. */
async function created(ch: GrpcClientChannel, zl: ZerobusLocal): Promise<Recorded> {
  const r = new Recorded(ch, EPHEMERAL_STREAM_PATH, await zerobusMeta(zl));
  r.call.write(encodeCreateStream(TABLE, "json"));
  await r.until(() => r.responses().some((x) => x.kind === "created"), "create_stream answer");
  return r;
}

async function lineCount(path: string): Promise<number> {
  return (await Deno.readTextFile(path)).split("\n").filter((l) => l).length;
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Serves an echo on the stand-in's h2c server (optionally on a given listener). */
function echoServer(listener?: Deno.Listener<Deno.Conn, Deno.Addr>, maxMessageBytes?: number) {
  return serveH2Grpc({
    hostname: "127.0.0.1",
    port: 0,
    listener,
    maxMessageBytes,
    onCall: (call: ServerCall) => {
      call.sendHeaders();
      call.listen({
        onMessage: (m) => call.write(m),
        onHalfClose: () => call.end(OK, call.header("x-echo-end") ?? ""),
        onCancel: () => {},
      });
    },
  });
}

/** A TCP listener on 127.0.0.1 that counts accepted connections. */
function countingListener(): { listener: Deno.Listener<Deno.Conn, Deno.Addr>; accepted(): number } {
  const inner = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let n = 0;
  const listener = {
    addr: inner.addr,
    async accept() {
      const c = await inner.accept();
      n++;
      return c;
    },
    close: () => inner.close(),
  } as unknown as Deno.Listener<Deno.Conn, Deno.Addr>;
  return { listener, accepted: () => n };
}

// ---------- a raw HTTP/2 server for protocol corner cases ----------

/** One connection of the raw server, with helpers to answer a stream. */
class RawConn {
  readonly index: number;
  readonly conn: Deno.Conn;
  pings = 0;
  closed = false;

  constructor(index: number, conn: Deno.Conn) {
    this.index = index;
    this.conn = conn;
  }

  send(...frames: Uint8Array[]): Promise<void> {
    if (this.closed) return Promise.resolve();
    const all = new Uint8Array(frames.reduce((s, f) => s + f.length, 0));
    let off = 0;
    for (const f of frames) {
      all.set(f, off);
      off += f.length;
    }
    return (async () => {
      try {
        for (let o = 0; o < all.length;) o += await this.conn.write(all.subarray(o));
      } catch { /* closed */ }
    })();
  }

  respond(id: number): Promise<void> {
    return this.send(encodeFrame(
      FrameType.HEADERS,
      Flag.END_HEADERS,
      id,
      encodeHeaders([[":status", "200"], ["content-type", "application/grpc"]]),
    ));
  }

  trailers(id: number, code: number, message = ""): Promise<void> {
    const h: [string, string][] = [["grpc-status", String(code)]];
    if (message) h.push(["grpc-message", message]);
    return this.send(
      encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, encodeHeaders(h)),
    );
  }

  message(id: number, msg: Uint8Array): Promise<void> {
    return this.send(encodeFrame(FrameType.DATA, 0, id, encodeGrpcMessage(msg)));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** What the raw server does; every hook is optional. */
interface RawBehaviour {
  /** Answer PINGs (default true). */
  ackPings?: boolean;
  /** Give DATA bytes back with WINDOW_UPDATE (default true). */
  windowUpdates?: boolean;
  onHeaders?(c: RawConn, id: number, headers: HeaderList): void;
  onMessage?(c: RawConn, id: number, msg: Uint8Array, count: number): void;
  onEnd?(c: RawConn, id: number, count: number): void;
}

/** A minimal HTTP/2 server on a raw TCP listener, driven by `RawBehaviour` hooks. */
function rawServer(b: RawBehaviour) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: RawConn[] = [];
  const loops: Promise<void>[] = [];
  const serve = async (c: RawConn) => {
    const reader = new FrameReader(c.conn, 1 << 20);
    const hpack = new HpackDecoder();
    const streams = new Map<number, { reader: GrpcMessageReader; count: number }>();
    try {
      if (!await reader.fill(PREFACE.length)) return;
      reader.take(PREFACE.length);
      await c.send(encodeFrame(FrameType.SETTINGS, 0, 0, encodeSettings([])));
      await reader.run((type, flags, id, p) => {
        if (type === FrameType.SETTINGS && !(flags & Flag.ACK)) {
          c.send(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
        } else if (type === FrameType.PING && !(flags & Flag.ACK)) {
          c.pings++;
          if (b.ackPings !== false) c.send(encodeFrame(FrameType.PING, Flag.ACK, 0, p));
        } else if (type === FrameType.HEADERS) {
          const headers = hpack.decode(p); // our client sends no padding or priority
          if (!streams.has(id)) {
            streams.set(id, { reader: new GrpcMessageReader(64 << 20), count: 0 });
            b.onHeaders?.(c, id, headers);
          }
        } else if (type === FrameType.DATA) {
          const s = streams.get(id);
          if (b.windowUpdates !== false && p.length) {
            c.send(
              encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, u32(p.length)),
              encodeFrame(FrameType.WINDOW_UPDATE, 0, id, u32(p.length)),
            );
          }
          if (!s) return;
          s.reader.push(p, (m) => {
            s.count++;
            b.onMessage?.(c, id, m, s.count);
            return true;
          });
          if (flags & Flag.END_STREAM) b.onEnd?.(c, id, s.count);
        }
      }, () => c.closed);
    } catch { /* connection closed */ }
    c.close();
  };
  const accepting = (async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      const c = new RawConn(conns.length, conn);
      conns.push(c);
      loops.push(serve(c));
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    conns,
    async close() {
      listener.close();
      await accepting;
      for (const c of conns) c.close();
      await Promise.all(loops);
    },
  };
}

/** Runs `fn` with a raw server and a channel to it; closes both. */
async function withRaw(
  b: RawBehaviour,
  fn: (ch: GrpcClientChannel, srv: ReturnType<typeof rawServer>) => Promise<void>,
  opts: Parameters<typeof connectGrpc>[1] = {},
) {
  const srv = rawServer(b);
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`, opts);
  try {
    await fn(ch, srv);
  } finally {
    await ch.close();
    await srv.close();
  }
}

// ---------- framing ----------

Deno.test("frames: reader across read boundaries; gRPC messages across frames; percent coding", async () => {
  const frames = [
    encodeFrame(FrameType.SETTINGS, 0, 0, encodeSettings([[4, 1 << 20]])),
    encodeFrame(FrameType.DATA, Flag.END_STREAM, 3, pattern(70_000, 1)),
    encodeFrame(FrameType.PING, Flag.ACK, 0, pattern(8, 2)),
  ];
  const bytes = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  frames.reduce((off, f) => (bytes.set(f, off), off + f.length), 0);
  let pos = 0;
  const src = { // hands out 1000 bytes per read
    read(p: Uint8Array) {
      if (pos >= bytes.length) return Promise.resolve(null);
      const n = Math.min(1000, p.length, bytes.length - pos);
      p.set(bytes.subarray(pos, pos + n));
      pos += n;
      return Promise.resolve(n);
    },
  };
  const seen: [number, number, number, number][] = [];
  await new FrameReader(src, 1 << 17, 4096).run((t, f, id, p) => seen.push([t, f, id, p.length]));
  deepStrictEqual(seen, [[4, 0, 0, 6], [0, 1, 3, 70_000], [6, 1, 0, 8]]);

  const wire = new Uint8Array([
    ...encodeGrpcMessage(pattern(10, 3)),
    ...encodeGrpcMessage(new Uint8Array(0)),
    ...encodeGrpcMessage(pattern(3000, 4)),
  ]);
  const got: Uint8Array[] = [];
  const r = new GrpcMessageReader(5000);
  for (let i = 0; i < wire.length; i += 7) {
    strictEqual(r.push(wire.subarray(i, i + 7), (m) => got.push(m.slice()) > 0), null);
  }
  deepStrictEqual(got, [pattern(10, 3), new Uint8Array(0), pattern(3000, 4)]);
  ok(!r.partial);
  deepStrictEqual(new GrpcMessageReader(10).push(encodeGrpcMessage(pattern(11, 0)), () => true), {
    kind: "too_large",
    length: 11,
    limit: 10,
  });

  const text = "50% ünïcode\r\n";
  strictEqual(percentEncode(text), "50%25 %C3%BCn%C3%AFcode%0D%0A");
  strictEqual(percentDecode(percentEncode(text)), text);
  strictEqual(percentDecode("bad %zz and %4"), "bad %zz and %4");
});

// ---------- against the stand-in ----------

Deno.test("grpc client: full Zerobus stream, cumulative acks, half-close, OK", async () => {
  await withStandIn(async (zl) => {
    const ch = connectGrpc(zl.endpointUrl);
    try {
      const r = await created(ch, zl);
      strictEqual(r.headers, 1);
      for (let i = 0; i < 50; i++) await r.send(batch(i, i * 100, 100));
      await r.until(() => acked(r) === 49, "ack of offset 49");
      r.call.end();
      strictEqual((await r.ended()).code, OK);
      const acks = r.responses().flatMap((x) => x.kind === "ack" ? [x.upTo] : []);
      deepStrictEqual(acks, [...acks].sort((a, b) => a - b), "acks only grow");
      strictEqual(await lineCount(zl.tableFile(TABLE)), 5000);
      ok(!r.call.write(batch(50, 0, 1)), "write after the end is refused");
    } finally {
      await ch.close();
    }
  });
});

Deno.test("grpc client: a 6 MiB request (over default window and frame size) arrives intact", async () => {
  await withStandIn(async (zl) => {
    const ch = connectGrpc(zl.endpointUrl);
    try {
      const r = await created(ch, zl);
      const big = batch(0, 0, 1500, 4000); // ~6 MB of rows
      ok(big.length > 6_000_000, `${big.length} bytes`);
      await r.send(big);
      await r.until(() => acked(r) === 0, "ack of the big request");
      r.call.end();
      strictEqual((await r.ended()).code, OK);
      const lines = (await Deno.readTextFile(zl.tableFile(TABLE))).trimEnd().split("\n");
      strictEqual(lines.length, 1500);
      deepStrictEqual(JSON.parse(lines[1499]), {
        record_id: "r1499",
        v: 1499,
        pad: "x".repeat(4000),
      });
    } finally {
      await ch.close();
    }
  }, { maxMessageBytes: 16 << 20 });
});

Deno.test("grpc client: large messages both ways through the h2c echo server", async () => {
  const srv = echoServer(undefined, 16 << 20);
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`, { maxReceiveMessageBytes: 16 << 20 });
  try {
    const r = new Recorded(ch, "/test.Echo/Bidi");
    const msgs = [pattern(7_000_000, 1), new Uint8Array(0), pattern(100_000, 2), pattern(3, 3)];
    for (const m of msgs) await r.send(m);
    r.call.end();
    strictEqual((await r.ended()).code, OK);
    strictEqual(r.messages.length, msgs.length);
    msgs.forEach((m, i) =>
      ok(r.messages[i].length === m.length && r.messages[i].every((b, j) => b === m[j]))
    );
  } finally {
    await ch.close();
    await srv.close();
  }
});

Deno.test("grpc client: a response over maxReceiveMessageBytes ends RESOURCE_EXHAUSTED", async () => {
  const srv = echoServer();
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`, { maxReceiveMessageBytes: 1000 });
  try {
    const r = new Recorded(ch, "/test.Echo/Bidi");
    r.call.write(pattern(10, 0));
    r.call.write(pattern(1001, 0));
    const s = await r.ended();
    strictEqual(s.code, GrpcStatus.RESOURCE_EXHAUSTED);
    match(s.details, /1001 bytes/);
    strictEqual(r.messages.length, 1);
  } finally {
    await ch.close();
    await srv.close();
  }
});

Deno.test("grpc client: error statuses from trailers carry their details", async () => {
  await withStandIn(async (zl) => {
    const ch = connectGrpc(zl.endpointUrl);
    try {
      // Offsets gap: 0 then 2.
      const gap = await created(ch, zl);
      gap.call.write(batch(0, 0, 3));
      gap.call.write(batch(2, 3, 3));
      const s = await gap.ended();
      strictEqual(s.code, INVALID_ARGUMENT);
      match(s.details, /offset/);
      strictEqual(acked(gap), 0);
      // No token: UNAUTHENTICATED.
      const anon = new Recorded(ch, EPHEMERAL_STREAM_PATH, {
        "x-databricks-zerobus-table-name": TABLE,
      });
      anon.call.write(encodeCreateStream(TABLE, "json"));
      deepStrictEqual(await anon.ended(), {
        code: UNAUTHENTICATED,
        details: "missing or malformed bearer token",
      });
      // Bad metadata never leaves the client.
      const bad = new Recorded(ch, EPHEMERAL_STREAM_PATH, { "Bad Name": "x" });
      strictEqual((await bad.ended()).code, GrpcStatus.INTERNAL);
    } finally {
      await ch.close();
    }
  });
  // Percent-encoded UTF-8 in grpc-message.
  const srv = serveH2Grpc({
    hostname: "127.0.0.1",
    port: 0,
    onCall: (call) => {
      call.listen({ onMessage: () => {}, onHalfClose: () => {}, onCancel: () => {} });
      call.end(INVALID_ARGUMENT, "bad: ünïcode % 100\r\n");
    },
  });
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`);
  try {
    const r = new Recorded(ch, "/x.Y/Z");
    deepStrictEqual(await r.ended(), { code: INVALID_ARGUMENT, details: "bad: ünïcode % 100\r\n" });
    strictEqual(r.headers, 0, "trailers-only response: no headers event");
  } finally {
    await ch.close();
    await srv.close();
  }
});

Deno.test("grpc client: many concurrent calls share one connection", async () => {
  const { listener, accepted } = countingListener();
  const srv = echoServer(listener);
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`);
  try {
    const calls = Array.from({ length: 100 }, (_, i) => {
      const r = new Recorded(ch, "/test.Echo/Bidi", { "x-echo-end": `call ${i}` });
      for (let j = 0; j < 20; j++) r.call.write(pattern(5000 + j, i));
      r.call.end();
      return r;
    });
    const statuses = await Promise.all(calls.map((r) => r.ended()));
    statuses.forEach((s, i) => deepStrictEqual(s, { code: OK, details: `call ${i}` }));
    calls.forEach((r, i) => {
      strictEqual(r.messages.length, 20);
      deepStrictEqual(r.messages[19], pattern(5019, i));
    });
    strictEqual(accepted(), 1);
  } finally {
    await ch.close();
    await srv.close();
  }
  // And concurrent Zerobus streams on the stand-in.
  await withStandIn(async (zl) => {
    const ch = connectGrpc(zl.endpointUrl);
    try {
      const streams = await Promise.all(Array.from({ length: 20 }, () => created(ch, zl)));
      await Promise.all(streams.map(async (r, k) => {
        for (let i = 0; i < 10; i++) await r.send(batch(i, k * 1000 + i * 10, 10));
        await r.until(() => acked(r) === 9, "ack 9");
        r.call.end();
        strictEqual((await r.ended()).code, OK);
      }));
      strictEqual(await lineCount(zl.tableFile(TABLE)), 2000);
    } finally {
      await ch.close();
    }
  });
});

Deno.test("grpc client: server stops mid-stream -> UNAVAILABLE; reconnects when it is back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "grpc-client-test-" });
  let zl = await startZerobusLocal({ dataDir: dir });
  const port = zl.grpcPort;
  const ch = connectGrpc(zl.endpointUrl);
  try {
    const r = await created(ch, zl);
    r.call.write(batch(0, 0, 10));
    await r.until(() => acked(r) === 0, "ack 0");
    await zl.stop();
    strictEqual((await r.ended()).code, UNAVAILABLE);
    // Server down: the next call fails fast with UNAVAILABLE.
    const down = new Recorded(ch, EPHEMERAL_STREAM_PATH, {});
    const s = await down.ended();
    strictEqual(s.code, UNAVAILABLE);
    match(s.details, /connect/);
    zl = await startZerobusLocal({ dataDir: dir, grpcPort: port });
    const again = await created(ch, zl);
    again.call.write(batch(0, 10, 10));
    await again.until(() => acked(again) === 0, "ack 0 after the restart");
    again.call.end();
    strictEqual((await again.ended()).code, OK);
    strictEqual(await lineCount(zl.tableFile(TABLE)), 20);
  } finally {
    await ch.close();
    await zl.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("grpc client: channel close ends open calls UNAVAILABLE; cancel -> CANCELLED", async () => {
  const srv = echoServer();
  const ch = connectGrpc(`http://127.0.0.1:${srv.port}`);
  try {
    const a = new Recorded(ch, "/test.Echo/Bidi");
    a.call.write(pattern(10, 0));
    await a.until(() => a.messages.length === 1, "echo");
    a.call.cancel();
    deepStrictEqual(await a.ended(), { code: CANCELLED, details: "cancelled by the client" });
    const b = new Recorded(ch, "/test.Echo/Bidi");
    b.call.write(pattern(10, 1));
    await b.until(() => b.messages.length === 1, "echo");
    await ch.close();
    deepStrictEqual(await b.ended(), { code: UNAVAILABLE, details: "channel closed" });
    const c = new Recorded(ch, "/test.Echo/Bidi");
    strictEqual((await c.ended()).code, UNAVAILABLE);
  } finally {
    await ch.close();
    await srv.close();
  }
});

Deno.test("grpc client: against grpc-js's server (nghttp2 HPACK: Huffman, dynamic table)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "grpc-client-test-" });
  const zl = await startZerobusLocal({ dataDir: dir, transport: "grpc-js" });
  const ch = connectGrpc(zl.endpointUrl);
  try {
    for (let round = 0; round < 2; round++) { // the second reuses the server's table entries
      const r = await created(ch, zl);
      r.call.write(batch(0, round * 10, 10));
      r.call.write(batch(2, 0, 1));
      const s = await r.ended();
      strictEqual(s.code, INVALID_ARGUMENT);
      strictEqual(s.details, "offset_id 2 out of order: expected 1");
      strictEqual(acked(r), 0);
      strictEqual(r.headers, 1);
    }
  } finally {
    await ch.close();
    await zl.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------- raw server: GOAWAY, keep-alive, resets, flow control ----------

/** Writes 16 KiB messages until the call ends; resolves with how many went out. */
async function keepBusy(r: Recorded, max = Infinity): Promise<number> {
  let n = 0;
  const msg = pattern(16 << 10, 9);
  while (!r.final && n < max) {
    await r.send(msg);
    n++;
    if (n % 16 === 0) await sleep(0);
  }
  return n;
}

Deno.test("grpc client: GOAWAY below a busy call -> UNAVAILABLE; next call on a new connection", async () => {
  await withRaw({
    onHeaders: (c, id) => c.respond(id),
    onMessage: (c, _id, _m, count) => {
      if (c.index === 0 && count === 300) {
        c.send(encodeFrame(FrameType.GOAWAY, 0, 0, encodeGoaway(0, H2Error.NO_ERROR, "bye")));
        setTimeout(() => c.close(), 50);
      }
    },
    onEnd: (c, id, count) => c.trailers(id, OK, `got ${count}`),
  }, async (ch, srv) => {
    const busy = new Recorded(ch, "/t/busy");
    const sent = await keepBusy(busy);
    const s = await busy.ended();
    strictEqual(s.code, UNAVAILABLE);
    match(s.details, /GOAWAY \(NO_ERROR: bye\)/);
    ok(sent >= 300, `${sent} sent`);
    const next = new Recorded(ch, "/t/next");
    for (let i = 0; i < 5; i++) next.call.write(pattern(100, i));
    next.call.end();
    deepStrictEqual(await next.ended(), { code: OK, details: "got 5" });
    strictEqual(srv.conns.length, 2);
  });
});

Deno.test("grpc client: graceful GOAWAY lets the busy call finish; new calls reconnect", async () => {
  let goawaySent = false;
  await withRaw({
    onHeaders: (c, id) => c.respond(id),
    onMessage: (c, id, _m, count) => {
      if (c.index === 0 && count === 200) {
        goawaySent = true;
        c.send(encodeFrame(FrameType.GOAWAY, 0, 0, encodeGoaway(id, H2Error.NO_ERROR)));
      }
    },
    onEnd: (c, id, count) => c.trailers(id, OK, `got ${count} on ${c.index}`),
  }, async (ch, srv) => {
    const busy = new Recorded(ch, "/t/busy");
    await keepBusy(busy, 400);
    ok(goawaySent);
    // Started after the GOAWAY arrived: goes to a second connection.
    await sleep(50);
    const other = new Recorded(ch, "/t/other");
    other.call.end();
    deepStrictEqual(await other.ended(), { code: OK, details: "got 0 on 1" });
    busy.call.end();
    deepStrictEqual(await busy.ended(), { code: OK, details: "got 400 on 0" });
    const third = new Recorded(ch, "/t/third");
    third.call.end();
    deepStrictEqual(await third.ended(), { code: OK, details: "got 0 on 1" });
    strictEqual(srv.conns.length, 2);
  });
});

Deno.test("grpc client: connection dropped mid-call -> UNAVAILABLE", async () => {
  await withRaw({
    onHeaders: (c, id) => c.respond(id),
    onMessage: (c, _id, _m, count) => {
      if (count === 100) c.close();
    },
  }, async (ch) => {
    const r = new Recorded(ch, "/t/drop");
    await keepBusy(r);
    const s = await r.ended();
    strictEqual(s.code, UNAVAILABLE);
    match(s.details, /connection/);
  });
});

Deno.test("grpc client: keep-alive PINGs; no ack -> UNAVAILABLE within the timeout", async () => {
  // Answered: the call stays up across several pings.
  await withRaw({
    onHeaders: (c, id) => c.respond(id),
    onEnd: (c, id) => c.trailers(id, OK, "fine"),
  }, async (ch, srv) => {
    const r = new Recorded(ch, "/t/idle");
    await waitFor(() => srv.conns[0]?.pings >= 2, "two answered pings");
    strictEqual(r.final, null, "the call outlives the answered pings");
    r.call.end();
    deepStrictEqual(await r.ended(), { code: OK, details: "fine" });
  }, { keepaliveMs: 200, keepaliveTimeoutMs: 5000 }); // a busy machine may answer late
  // Never answered: half-open connection detected.
  await withRaw({
    ackPings: false,
    onHeaders: (c, id) => c.respond(id),
  }, async (ch, srv) => {
    const r = new Recorded(ch, "/t/silent");
    const t0 = Date.now();
    const s = await r.ended();
    const took = Date.now() - t0;
    strictEqual(s.code, UNAVAILABLE);
    match(s.details, /keepalive/); // ended by the keep-alive, not by another timeout
    ok(took >= 400, `ended after ${took} ms`); // not before 200 idle + 300 timeout
    ok(srv.conns[0].pings >= 1);
  }, { keepaliveMs: 200, keepaliveTimeoutMs: 300 });
});

Deno.test("grpc client: RST_STREAM, HTTP errors and missing grpc-status map to statuses", async () => {
  const rst = (code: number) => (c: RawConn, id: number) =>
    c.send(encodeFrame(FrameType.RST_STREAM, 0, id, u32(code)));
  const plan: Record<string, (c: RawConn, id: number) => void> = {
    "/t/cancel": rst(H2Error.CANCEL),
    "/t/refused": rst(H2Error.REFUSED_STREAM),
    "/t/internal": rst(H2Error.INTERNAL_ERROR),
    "/t/503": (c, id) =>
      c.send(encodeFrame(
        FrameType.HEADERS,
        Flag.END_HEADERS | Flag.END_STREAM,
        id,
        encodeHeaders([[":status", "503"], ["content-type", "text/html"]]),
      )),
    "/t/html": (c, id) =>
      c.send(encodeFrame(
        FrameType.HEADERS,
        Flag.END_HEADERS,
        id,
        encodeHeaders([[":status", "200"], ["content-type", "text/html"]]),
      )),
    "/t/nostatus": async (c, id) => {
      await c.respond(id);
      await c.message(id, Uint8Array.of(1, 2, 3));
      await c.send(
        encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, encodeHeaders([])),
      );
    },
    "/t/nodata-end": async (c, id) => {
      await c.respond(id);
      await c.send(encodeFrame(FrameType.DATA, Flag.END_STREAM, id));
    },
  };
  await withRaw({
    onHeaders: (c, id, headers) => plan[headers.find(([n]) => n === ":path")![1]](c, id),
  }, async (ch, srv) => {
    const result = async (path: string) => (await new Recorded(ch, path).ended()).code;
    strictEqual(await result("/t/cancel"), CANCELLED);
    strictEqual(await result("/t/refused"), UNAVAILABLE);
    strictEqual(await result("/t/internal"), GrpcStatus.INTERNAL);
    strictEqual(await result("/t/503"), UNAVAILABLE);
    strictEqual(await result("/t/html"), UNKNOWN);
    const ns = new Recorded(ch, "/t/nostatus");
    strictEqual((await ns.ended()).code, UNKNOWN);
    deepStrictEqual(ns.messages, [Uint8Array.of(1, 2, 3)]);
    strictEqual(await result("/t/nodata-end"), GrpcStatus.INTERNAL);
    strictEqual(srv.conns.length, 1, "stream errors keep the connection");
  });
});

Deno.test("grpc client: flow control holds writes back until the server opens its window", async () => {
  let received = 0;
  let conn: RawConn | null = null;
  let streamId = 0;
  await withRaw({
    windowUpdates: false,
    onHeaders: (c, id) => {
      conn = c;
      streamId = id;
      c.respond(id);
    },
    onMessage: (_c, _id, m) => received += m.length,
    onEnd: (c, id, count) => c.trailers(id, OK, `got ${count}`),
  }, async (ch) => {
    const r = new Recorded(ch, "/t/window");
    const msg = pattern(1 << 20, 5);
    let accepted = 0;
    while (r.call.write(msg)) accepted++;
    ok(accepted >= 3 && accepted <= 4, `${accepted} writes before false`);
    let drained = false;
    const d = r.call.drained().then(() => drained = true);
    await sleep(300);
    ok(!drained, "drained() waits while the window is closed");
    ok(received < 65535, `${received} bytes within the default window`);
    r.call.end();
    const big = u32(64 << 20);
    await conn!.send(
      encodeFrame(FrameType.WINDOW_UPDATE, 0, 0, big),
      encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, big),
    );
    await d;
    deepStrictEqual(await r.ended(), { code: OK, details: `got ${accepted + 1}` });
    strictEqual(received, (accepted + 1) << 20);
  });
});

// ---------- TLS ----------

const haveOpenssl = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

async function openssl(dir: string, args: string[]) {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA and a server certificate for 127.0.0.1 signed by it, in `dir`. */
async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=grpc-client-test CA",
  ]); // deno-fmt-ignore
  await Deno.writeTextFile(
    join(dir, "ext.cnf"),
    "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n" +
      "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]); // deno-fmt-ignore
  await openssl(dir, [
    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf",
  ]); // deno-fmt-ignore
  const read = (f: string) => Deno.readTextFile(join(dir, f));
  return {
    ca: await read("ca.pem"),
    cert: await read("server.pem"),
    key: await read("server.key"),
  };
}

Deno.test({
  name: "grpc client: TLS with ALPN h2 and a private CA",
  ignore: !haveOpenssl, // needs `openssl` on PATH to make the certificates
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "grpc-client-tls-" });
    try {
      const { ca, cert, key } = await makeCerts(dir);
      const listener = Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert,
        key,
        alpnProtocols: ["h2"],
      });
      const srv = echoServer(listener);
      const ch = connectGrpc(`https://127.0.0.1:${srv.port}`, { caCerts: [ca] });
      try {
        const r = new Recorded(ch, "/test.Echo/Bidi", { "x-echo-end": "over tls" });
        const msg = pattern(2_000_000, 7);
        await r.send(msg);
        r.call.end();
        deepStrictEqual(await r.ended(), { code: OK, details: "over tls" });
        deepStrictEqual(r.messages, [msg]);
      } finally {
        await ch.close();
        await srv.close();
      }
      // A TLS server without ALPN h2 is refused; without the CA the certificate is.
      const plain = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key });
      const srv2 = echoServer(plain);
      const ch2 = connectGrpc(`https://127.0.0.1:${srv2.port}`, { caCerts: [ca] });
      const ch3 = connectGrpc(`https://127.0.0.1:${srv2.port}`);
      try {
        const s = await new Recorded(ch2, "/test.Echo/Bidi").ended();
        strictEqual(s.code, UNAVAILABLE);
        match(s.details, /ALPN/);
        const u = await new Recorded(ch3, "/test.Echo/Bidi").ended();
        strictEqual(u.code, UNAVAILABLE);
        match(u.details, /connect/);
      } finally {
        await ch2.close();
        await ch3.close();
        await srv2.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
