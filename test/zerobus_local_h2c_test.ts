/**
 * Tests of the stand-in's own HTTP/2 (h2c) gRPC server, driven by the grpc-js
 * client: message framing across frames, flow control both ways, pause/resume,
 * limits, cancellation and shutdown. Everything binds 127.0.0.1 port 0.
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { type CallListener, type ServerCall, Status } from "../src/zerobus_local/call.ts";
import { serveH2Grpc } from "../src/zerobus_local/h2c_server.ts";
import { waitFor } from "./helpers.ts";

const PATH = "/test.Echo/Bidi";

interface Harness {
  port: number;
  client: grpc.Client;
}

/** Serves `onCall` on a free port, runs `fn` with a client, always closes both. */
async function withH2(
  onCall: (call: ServerCall) => void,
  fn: (h: Harness) => Promise<void>,
  maxMessageBytes?: number,
) {
  const server = serveH2Grpc({ hostname: "127.0.0.1", port: 0, onCall, maxMessageBytes });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  try {
    await fn({ port: server.port, client });
  } finally {
    client.close();
    await server.close();
  }
}

/** Echo handler: every message back, OK on half-close. */
function echo(call: ServerCall, hooks: Partial<CallListener> = {}) {
  call.sendHeaders();
  call.listen({
    onMessage: (m) => {
      hooks.onMessage?.(m);
      call.write(m);
    },
    onHalfClose: () => {
      hooks.onHalfClose?.();
      call.end(Status.OK, "");
    },
    onCancel: () => hooks.onCancel?.(),
  });
}

interface Result {
  messages: Uint8Array[];
  status: grpc.StatusObject;
}

/** Opens a call, sends `msgs` then half-closes; resolves with what came back (`messages` grows). */
function bidi(
  client: grpc.Client,
  msgs: Uint8Array[],
  opts: { path?: string; meta?: Record<string, string>; halfClose?: boolean } = {},
): {
  call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  messages: Uint8Array[];
  done: Promise<Result>;
} {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(opts.meta ?? {})) md.set(k, v);
  const call = client.makeBidiStreamRequest(
    opts.path ?? PATH,
    (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    (b: Buffer) => b,
    md,
  );
  const messages: Uint8Array[] = [];
  call.on("data", (b: Uint8Array) => messages.push(b));
  call.on("error", () => {});
  const done = new Promise<Result>((resolve) =>
    call.on("status", (status: grpc.StatusObject) => resolve({ messages, status }))
  );
  for (const m of msgs) call.write(m);
  if (opts.halfClose !== false) call.end();
  return { call, messages, done };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("h2c: echo of small, empty and multi-frame messages", async () => {
  await withH2((call) => echo(call), async ({ client }) => {
    const msgs = [pattern(10, 1), new Uint8Array(0), pattern(70_000, 2), pattern(3_000_000, 3)];
    const { messages, status } = await bidi(client, msgs).done;
    strictEqual(status.code, Status.OK);
    deepStrictEqual(messages.map((m) => Uint8Array.from(m)), msgs);
  });
});

Deno.test("h2c: request headers and metadata reach the call", async () => {
  let seen: Record<string, string | undefined> = {};
  await withH2((call) => {
    seen = {
      path: call.path,
      auth: call.header("authorization"),
      table: call.header("x-databricks-zerobus-table-name"),
      method: call.header(":method"),
      missing: call.header("x-nope"),
    };
    echo(call);
  }, async ({ client }) => {
    const meta = { authorization: "Bearer zl-abc+/=~", "x-databricks-zerobus-table-name": "a.b.c" };
    strictEqual((await bidi(client, [], { meta }).done).status.code, Status.OK);
    // A second call on the same connection reuses HPACK dynamic table entries.
    strictEqual((await bidi(client, [], { meta }).done).status.code, Status.OK);
  });
  deepStrictEqual(seen, {
    path: PATH,
    auth: "Bearer zl-abc+/=~",
    table: "a.b.c",
    method: "POST",
    missing: undefined,
  });
});

Deno.test("h2c: concurrent calls on one connection", async () => {
  await withH2((call) => echo(call), async ({ client }) => {
    const calls = Array.from(
      { length: 20 },
      (_, i) => bidi(client, Array.from({ length: 50 }, (_, j) => pattern(1000 + j, i))).done,
    );
    const results = await Promise.all(calls);
    results.forEach((r, i) => {
      strictEqual(r.status.code, Status.OK);
      strictEqual(r.messages.length, 50);
      deepStrictEqual(Uint8Array.from(r.messages[49]), pattern(1049, i));
    });
  });
});

Deno.test("h2c: server writes more than the client's windows (send flow control)", async () => {
  await withH2((call) => {
    call.sendHeaders();
    call.listen({
      onMessage: () => {
        for (let i = 0; i < 200; i++) call.write(pattern(30_000, i));
        call.end(Status.OK, "");
      },
      onHalfClose: () => {},
      onCancel: () => {},
    });
  }, async ({ client }) => {
    const { messages, status } = await bidi(client, [Uint8Array.of(1)]).done;
    strictEqual(status.code, Status.OK);
    strictEqual(messages.length, 200);
    deepStrictEqual(Uint8Array.from(messages[199]), pattern(30_000, 199));
  });
});

Deno.test("h2c: pause holds the client back; resume delivers everything in order", async () => {
  let server: ServerCall | null = null;
  const got: number[] = [];
  await withH2((call) => {
    server = call;
    call.sendHeaders();
    call.listen({
      onMessage: (m) => {
        got.push(m[0]);
        if (got.length === 1) call.pause();
      },
      onHalfClose: () => call.end(Status.OK, `got ${got.length}`),
      onCancel: () => {},
    });
  }, async ({ client }) => {
    const n = 40;
    const msgs = Array.from({ length: n }, (_, i) => {
      const m = pattern(1 << 20, i);
      m[0] = i;
      return m;
    });
    const { done } = bidi(client, msgs);
    await waitFor(() => got.length >= 1, "the first message");
    await sleep(600); // time for more to arrive if the pause did not hold them back
    ok(got.length < 12, `${got.length} delivered while paused`);
    server!.resume();
    const { status } = await done;
    strictEqual(status.code, Status.OK);
    strictEqual(status.details, `got ${n}`);
    deepStrictEqual(got, Array.from({ length: n }, (_, i) => i));
  });
});

Deno.test("h2c: oversized message -> RESOURCE_EXHAUSTED; compressed -> UNIMPLEMENTED", async () => {
  await withH2((call) => echo(call), async ({ client, port }) => {
    const { status, messages } = await bidi(client, [pattern(10, 0), pattern(200_001, 1)]).done;
    strictEqual(status.code, Status.RESOURCE_EXHAUSTED);
    match(status.details, /200001 bytes/);
    strictEqual(messages.length, 1);
    const gzip = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.default_compression_algorithm": 2,
    });
    try {
      const compressed = await bidi(gzip, [pattern(1000, 0)]).done;
      strictEqual(compressed.status.code, Status.UNIMPLEMENTED);
      match(compressed.status.details, /compressed/);
    } finally {
      gzip.close();
    }
  }, 200_000);
});

Deno.test("h2c: client cancel reaches the call; later calls still work", async () => {
  let cancelled = 0;
  await withH2((call) => {
    // grpc-js cancels with an empty END_STREAM DATA frame and then RST_STREAM, so
    // this handler keeps the call open after half-close to see the cancel.
    call.sendHeaders();
    call.listen({
      onMessage: (m) => call.write(m),
      onHalfClose: () => {
        if (call.header("x-end") === "yes") call.end(Status.OK, "");
      },
      onCancel: () => cancelled++,
    });
  }, async ({ client }) => {
    const { call, messages, done } = bidi(client, [pattern(5, 0)], { halfClose: false });
    await waitFor(() => messages.length === 1, "the echo: the call is up");
    call.cancel();
    strictEqual((await done).status.code, Status.CANCELLED);
    await waitFor(() => cancelled > 0, "the cancel at the server");
    await sleep(100); // a second cancel would come right after
    strictEqual(cancelled, 1);
    const again = bidi(client, [pattern(5, 1)], { meta: { "x-end": "yes" } });
    strictEqual((await again.done).status.code, Status.OK);
  });
});

Deno.test("h2c: error status with details; end before half-close stops the client", async () => {
  await withH2((call) => {
    call.sendHeaders();
    call.listen({
      onMessage: () => call.end(Status.INVALID_ARGUMENT, "bad: ünïcode % 100"),
      onHalfClose: () => {},
      onCancel: () => {},
    });
  }, async ({ client }) => {
    const { status } = await bidi(client, [pattern(5, 0)], { halfClose: false }).done;
    strictEqual(status.code, Status.INVALID_ARGUMENT);
    strictEqual(status.details, "bad: ünïcode % 100");
  });
});

Deno.test("h2c: trailers-only response before any header", async () => {
  await withH2((call) => {
    call.listen({ onMessage: () => {}, onHalfClose: () => {}, onCancel: () => {} });
    call.end(Status.UNAUTHENTICATED, "no token");
  }, async ({ client }) => {
    const { status } = await bidi(client, [], { halfClose: false }).done;
    strictEqual(status.code, Status.UNAUTHENTICATED);
    strictEqual(status.details, "no token");
  });
});

Deno.test("h2c: close() ends open calls with UNAVAILABLE", async () => {
  const server = serveH2Grpc({ hostname: "127.0.0.1", port: 0, onCall: (call) => echo(call) });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  try {
    const { messages: echoed, done } = bidi(client, [pattern(5, 0)], { halfClose: false });
    await waitFor(() => echoed.length === 1, "the echo: the call is up");
    await server.close();
    const { status, messages } = await done;
    strictEqual(status.code, Status.UNAVAILABLE);
    strictEqual(messages.length, 1);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("h2c: an HTTP/1.1 request gets 400", async () => {
  await withH2((call) => echo(call), async ({ port }) => {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    strictEqual(res.status, 400);
    match(await res.text(), /gRPC/);
  });
});
