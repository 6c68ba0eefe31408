/**
 * Tests of the local Zerobus stand-in, through a small raw gRPC client (grpc-js +
 * wire.ts) and fetch for the token endpoint. Everything binds 127.0.0.1 port 0.
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import type { OtRecord } from "../src/record.ts";
import { encodeRecordProto, recordDescriptorProto } from "../src/record_proto.ts";
import {
  appendRow,
  decodeResponse,
  encodeBatchRequest,
  encodeCreateStream,
  EPHEMERAL_STREAM_PATH,
  type RecordTypeName,
  type StreamResponse,
  varintSize,
  writeVarint,
} from "../src/sinks/zerobus/wire.ts";
import {
  startZerobusLocal,
  type ZerobusLocal,
  type ZerobusLocalOptions,
} from "../src/zerobus_local/server.ts";

const utf8 = new TextEncoder();
const TABLE = "main.iot_data.sensor_readings";
const { OK, INVALID_ARGUMENT, UNAUTHENTICATED, UNAVAILABLE } = grpc.status;

// ---------- harness ----------

interface Ctx {
  srv: ZerobusLocal;
  client: grpc.Client;
  dir: string;
}

/** Starts a stand-in in a temp dir, runs `fn`, and always stops and cleans up. */
async function withServer(opts: ZerobusLocalOptions, fn: (ctx: Ctx) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "zerobus-local-test-" });
  const srv = await startZerobusLocal({ dataDir: dir, ...opts });
  const client = new grpc.Client(
    srv.endpointUrl.replace("http://", ""),
    grpc.credentials.createInsecure(),
  );
  try {
    await fn({ srv, client, dir });
  } finally {
    client.close();
    await srv.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function authorizationDetails(table: string): string {
  const [cat, sch] = table.split(".");
  return JSON.stringify([
    {
      type: "unity_catalog_privileges",
      privileges: ["USE CATALOG"],
      object_type: "CATALOG",
      object_full_path: cat,
    },
    {
      type: "unity_catalog_privileges",
      privileges: ["USE SCHEMA"],
      object_type: "SCHEMA",
      object_full_path: `${cat}.${sch}`,
    },
    {
      type: "unity_catalog_privileges",
      privileges: ["SELECT", "MODIFY"],
      object_type: "TABLE",
      object_full_path: table,
    },
  ]);
}

/** Calls the token endpoint; returns status and parsed JSON body. */
async function tokenRequest(
  srv: ZerobusLocal,
  opts: {
    id?: string;
    secret?: string;
    form?: Record<string, string>;
    noAuth?: boolean;
  } = {},
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
  };
  if (!opts.noAuth) {
    headers.authorization = "Basic " +
      btoa(`${opts.id ?? "local-client"}:${opts.secret ?? "local-secret"}`);
  }
  const form = opts.form ?? {
    grant_type: "client_credentials",
    scope: "all-apis",
    resource: "api://databricks/workspaces/127/zerobusDirectWriteApi",
    authorization_details: authorizationDetails(TABLE),
  };
  const res = await fetch(`${srv.workspaceUrl}/oidc/v1/token`, {
    method: "POST",
    headers,
    body: new URLSearchParams(form),
  });
  return { status: res.status, body: await res.json() };
}

async function token(srv: ZerobusLocal): Promise<string> {
  const { status, body } = await tokenRequest(srv);
  strictEqual(status, 200);
  return body.access_token;
}

async function getJson(url: string, init?: RequestInit): Promise<any> {
  const res = await fetch(url, init);
  strictEqual(res.status, 200, url);
  return await res.json();
}

const toBuffer = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** A raw EphemeralStream call that records every response and the final status. */
class RawStream {
  readonly call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  readonly responses: StreamResponse[] = [];
  readonly received: number[] = [];
  statusValue: grpc.StatusObject | null = null;
  readonly status: Promise<grpc.StatusObject>;
  readonly headers: Promise<grpc.Metadata>;
  #wake: (() => void)[] = [];

  constructor(client: grpc.Client, meta: Record<string, string>) {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(meta)) md.set(k, v);
    this.call = client.makeBidiStreamRequest(
      EPHEMERAL_STREAM_PATH,
      toBuffer,
      (b: Buffer) => b,
      md,
    );
    this.headers = new Promise((resolve) => this.call.on("metadata", resolve));
    this.status = new Promise((resolve) =>
      this.call.on("status", (s: grpc.StatusObject) => {
        this.statusValue = s;
        this.#notify();
        resolve(s);
      })
    );
    this.call.on("error", () => {}); // non-OK status also arrives as "status"
    this.call.on("data", (b: Uint8Array) => {
      this.responses.push(decodeResponse(b));
      this.received.push(Date.now());
      this.#notify();
    });
  }

  send(msg: Uint8Array): void {
    this.call.write(msg);
  }

  acks(): number[] {
    return this.responses.flatMap((r) => r.kind === "ack" ? [r.upTo] : []);
  }

  /** Waits for a response matching `pred` (throws if the call ends first or on timeout). */
  async waitFor(pred: (r: StreamResponse) => boolean, what: string, ms = 30_000) {
    const deadline = Date.now() + ms;
    while (true) {
      const found = this.responses.find(pred);
      if (found) return found;
      if (this.statusValue) {
        throw new Error(`call ended (${this.statusValue.details}) while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#wake.push(r)),
        new Promise<void>((r) => timer = setTimeout(r, left)),
      ]);
      clearTimeout(timer);
    }
  }

  waitAck(upTo: number, ms?: number) {
    return this.waitFor((r) => r.kind === "ack" && r.upTo >= upTo, `ack ${upTo}`, ms);
  }

  /** Waits for the final status, with a timeout. */
  async ended(ms = 30_000): Promise<grpc.StatusObject> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, rej) =>
      timer = setTimeout(() => rej(new Error("call did not end")), ms)
    );
    try {
      return await Promise.race([this.status, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #notify() {
    for (const w of this.#wake.splice(0)) w();
  }
}

/** Opens a stream with a valid token and table header, and creates it. */
async function openCreated(
  ctx: Ctx,
  table = TABLE,
  type: RecordTypeName = "json",
  descriptor?: Uint8Array,
): Promise<RawStream> {
  const s = new RawStream(ctx.client, {
    authorization: `Bearer ${await token(ctx.srv)}`,
    "x-databricks-zerobus-table-name": table,
  });
  s.send(encodeCreateStream(table, type, descriptor));
  const created = await s.waitFor((r) => r.kind === "created", "create_stream_response");
  ok(created.kind === "created" && created.streamId.length > 0, "stream_id is not empty");
  return s;
}

function jsonBatch(offset: number, rows: string[]): Uint8Array {
  let size = 0;
  for (const r of rows) size += 6 + 3 * r.length;
  const buf = new Uint8Array(size);
  let off = 0;
  for (const r of rows) off = appendRow(buf, off, r);
  return encodeBatchRequest(offset, "json", [buf.subarray(0, off)]);
}

function protoBatch(offset: number, rows: Uint8Array[]): Uint8Array {
  const buf = new Uint8Array(rows.reduce((s, r) => s + r.length + 6, 0));
  let off = 0;
  for (const r of rows) off = appendRow(buf, off, r);
  return encodeBatchRequest(offset, "proto", [buf.subarray(0, off)]);
}

/** `EphemeralStreamRequest{ingest_record{offset_id, json_record}}` (wire.ts has no encoder). */
function jsonRecord(offset: number, row: string): Uint8Array {
  const rb = utf8.encode(row);
  const inner = new Uint8Array(1 + varintSize(offset) + 1 + varintSize(rb.length) + rb.length);
  let o = writeVarint(inner, 0, 0x08);
  o = writeVarint(inner, o, offset);
  o = writeVarint(inner, o, 0x1a);
  o = writeVarint(inner, o, rb.length);
  inner.set(rb, o);
  const out = new Uint8Array(1 + varintSize(inner.length) + inner.length);
  out.set(inner, writeVarint(out, writeVarint(out, 0, 0x12), inner.length));
  return out;
}

function rowOf(i: number, pad = 0): string {
  return JSON.stringify({ record_id: `r${i}`, value_num: i, unit: "°C", pad: "x".repeat(pad) });
}

async function readFile(srv: ZerobusLocal, table = TABLE): Promise<string> {
  return await Deno.readTextFile(srv.tableFile(table));
}

// ---------- token endpoint ----------

Deno.test("token endpoint: good credentials issue a bearer token", async () => {
  await withServer({ tokenTtlS: 120 }, async ({ srv }) => {
    const { status, body } = await tokenRequest(srv);
    strictEqual(status, 200);
    strictEqual(body.token_type, "Bearer");
    strictEqual(body.expires_in, 120);
    ok(typeof body.access_token === "string" && body.access_token.length >= 20);
    const second = await tokenRequest(srv);
    ok(second.body.access_token !== body.access_token, "tokens are unique");
    strictEqual(srv.stats().tokens_issued, 2);
  });
});

Deno.test("token endpoint: configured credentials and bad requests", async () => {
  await withServer({ clientId: "edge", clientSecret: "s3cr:et" }, async ({ srv }) => {
    strictEqual((await tokenRequest(srv, { id: "edge", secret: "s3cr:et" })).status, 200);
    for (const bad of [{ id: "edge", secret: "wrong" }, { id: "x", secret: "s3cr:et" }, {}]) {
      const { status, body } = await tokenRequest(srv, bad);
      strictEqual(status, 401, JSON.stringify(bad));
      strictEqual(body.error, "invalid_client");
    }
    strictEqual((await tokenRequest(srv, { noAuth: true })).status, 401);

    const good = {
      grant_type: "client_credentials",
      scope: "all-apis",
      resource: "api://databricks/workspaces/123/zerobusDirectWriteApi",
      authorization_details: authorizationDetails(TABLE),
    };
    const auth = { id: "edge", secret: "s3cr:et" };
    const badForms: Record<string, string>[] = [
      { ...good, grant_type: "password" },
      { ...good, resource: "api://other" },
      { ...good, authorization_details: "not json" },
      { ...good, authorization_details: "{}" },
      {
        ...good,
        authorization_details: JSON.stringify([{ object_type: "SCHEMA", object_full_path: "a.b" }]),
      },
    ];
    for (const form of badForms) {
      const { status, body } = await tokenRequest(srv, { ...auth, form });
      strictEqual(status, 400, JSON.stringify(form));
      ok(typeof body.error === "string");
    }
    const { grant_type: _, ...noGrant } = good;
    strictEqual((await tokenRequest(srv, { ...auth, form: noGrant })).status, 400);
    const { authorization_details: _d, ...noDetails } = good;
    strictEqual((await tokenRequest(srv, { ...auth, form: noDetails })).status, 400);
    // scope and resource are optional (scripts/bench.ts sends neither resource)
    const { scope: _s, resource: _r, ...minimal } = good;
    strictEqual((await tokenRequest(srv, { ...auth, form: minimal })).status, 200);
    strictEqual((await tokenRequest(srv, { ...auth, form: good })).status, 200);
  });
});

Deno.test("http: health, tables, unknown routes", async () => {
  await withServer({}, async ({ srv }) => {
    const health = await fetch(`${srv.workspaceUrl}/health`);
    strictEqual((await health.text()).trim(), "ok");
    deepStrictEqual(await getJson(`${srv.workspaceUrl}/tables`), { tables: {} });
    const missing = await fetch(`${srv.workspaceUrl}/nope`);
    await missing.body?.cancel();
    strictEqual(missing.status, 404);
    const wrongMethod = await fetch(`${srv.workspaceUrl}/oidc/v1/token`);
    await wrongMethod.body?.cancel();
    strictEqual(wrongMethod.status, 405);
  });
});

// ---------- call metadata and create_stream ----------

Deno.test("missing, invalid or expired bearer token -> UNAUTHENTICATED", async () => {
  await withServer({ tokenTtlS: 1 }, async (ctx) => {
    const table = { "x-databricks-zerobus-table-name": TABLE };
    const cases: Record<string, string>[] = [
      table,
      { ...table, authorization: "Bearer made-up-token" },
      { ...table, authorization: `Basic ${btoa("local-client:local-secret")}` },
      { ...table, authorization: `${await token(ctx.srv)}` },
    ];
    const expiring = await token(ctx.srv);
    for (const meta of cases) {
      const s = new RawStream(ctx.client, meta);
      await s.headers; // headers come first, before the status
      s.send(encodeCreateStream(TABLE, "json"));
      const st = await s.ended();
      strictEqual(st.code, UNAUTHENTICATED, JSON.stringify(meta));
      strictEqual(s.responses.length, 0);
    }
    await new Promise((r) => setTimeout(r, 1100));
    const s = new RawStream(ctx.client, { ...table, authorization: `Bearer ${expiring}` });
    s.send(encodeCreateStream(TABLE, "json"));
    const st = await s.ended();
    strictEqual(st.code, UNAUTHENTICATED);
    match(st.details, /expired/);
  });
});

Deno.test("response headers are sent before any request", async () => {
  await withServer({}, async (ctx) => {
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const md = await Promise.race([
      s.headers,
      new Promise<null>((r) => timer = setTimeout(() => r(null), 3000)),
    ]);
    clearTimeout(timer);
    ok(md !== null, "no response headers without a request");
    strictEqual(s.statusValue, null);
    s.call.end();
    strictEqual((await s.ended()).code, OK);
  });
});

Deno.test("missing table header -> INVALID_ARGUMENT", async () => {
  await withServer({}, async (ctx) => {
    const s = new RawStream(ctx.client, { authorization: `Bearer ${await token(ctx.srv)}` });
    s.send(encodeCreateStream(TABLE, "json"));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /x-databricks-zerobus-table-name/);
  });
});

Deno.test("create_stream must come first", async () => {
  await withServer({}, async (ctx) => {
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    s.send(jsonBatch(0, [rowOf(0)]));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /first request must be create_stream/);
    strictEqual(s.responses.length, 0);
  });
});

Deno.test("table header and create_stream table_name must match", async () => {
  await withServer({}, async (ctx) => {
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": "main.iot_data.other",
    });
    s.send(encodeCreateStream(TABLE, "json"));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /does not match/);
    strictEqual(s.responses.length, 0);
  });
});

Deno.test("bad table names and record types -> INVALID_ARGUMENT", async () => {
  await withServer({}, async (ctx) => {
    const tok = await token(ctx.srv);
    const attempt = async (table: string, msg: Uint8Array) => {
      const s = new RawStream(ctx.client, {
        authorization: `Bearer ${tok}`,
        "x-databricks-zerobus-table-name": table,
      });
      s.send(msg);
      return await s.ended();
    };
    for (const name of ["../../etc.passwd.x", "onlytwo.parts", "a.b.c.d", "a b.c.d"]) {
      const st = await attempt(name, encodeCreateStream(name, "json"));
      strictEqual(st.code, INVALID_ARGUMENT, name);
    }
    const noDescriptor = await attempt(TABLE, encodeCreateStream(TABLE, "proto"));
    strictEqual(noDescriptor.code, INVALID_ARGUMENT);
    match(noDescriptor.details, /descriptor_proto/);
    const unspecified = encodeCreateStream(TABLE, "json");
    unspecified[unspecified.length - 1] = 0; // record_type = RECORD_TYPE_UNSPECIFIED
    strictEqual((await attempt(TABLE, unspecified)).code, INVALID_ARGUMENT);
    deepStrictEqual(ctx.srv.stats().tables, {});
  });
});

Deno.test("reject_tables fault fails create_stream for listed tables only", async () => {
  await withServer({ faults: { reject_tables: ["main.iot_data.blocked"] } }, async (ctx) => {
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": "main.iot_data.blocked",
    });
    s.send(encodeCreateStream("main.iot_data.blocked", "json"));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /table main\.iot_data\.blocked rejected/);
    const good = await openCreated(ctx);
    good.call.end();
    strictEqual((await good.ended()).code, OK);
    // Changed at runtime over HTTP.
    await getJson(`${ctx.srv.workspaceUrl}/faults`, {
      method: "POST",
      body: JSON.stringify({ reject_tables: [TABLE] }),
    });
    const s2 = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    s2.send(encodeCreateStream(TABLE, "json"));
    strictEqual((await s2.ended()).code, INVALID_ARGUMENT);
  });
});

Deno.test("unauthenticated fault rejects calls with valid tokens; POST /faults clears it", async () => {
  await withServer({}, async (ctx) => {
    const url = `${ctx.srv.workspaceUrl}/faults`;
    const set = await getJson(url, {
      method: "POST",
      body: JSON.stringify({ unauthenticated: true }),
    });
    deepStrictEqual(set.faults, { unauthenticated: true });
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    s.send(encodeCreateStream(TABLE, "json"));
    strictEqual((await s.ended()).code, UNAUTHENTICATED);
    const bad = await fetch(url, { method: "POST", body: JSON.stringify({ fail_after: -1 }) });
    strictEqual(bad.status, 400);
    await bad.body?.cancel();
    const unknown = await fetch(url, { method: "POST", body: JSON.stringify({ nope: 1 }) });
    strictEqual(unknown.status, 400);
    await unknown.body?.cancel();
    await getJson(url, { method: "POST", body: JSON.stringify({ unauthenticated: null }) });
    deepStrictEqual((await getJson(url)).faults, {});
    const s2 = await openCreated(ctx);
    s2.call.end();
    strictEqual((await s2.ended()).code, OK);
  });
});

// ---------- ingest ----------

Deno.test("offset gaps and a second create_stream -> INVALID_ARGUMENT", async () => {
  await withServer({}, async (ctx) => {
    const s = await openCreated(ctx);
    s.send(jsonBatch(0, [rowOf(0)]));
    s.send(jsonBatch(2, [rowOf(2)]));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /offset_id 2 out of order: expected 1/);
    deepStrictEqual(s.acks(), [0], "offset 0 is acked before the error");
    strictEqual(await readFile(ctx.srv), rowOf(0) + "\n");

    const first = await openCreated(ctx);
    first.send(jsonBatch(1, [rowOf(1)]));
    const st1 = await first.ended();
    strictEqual(st1.code, INVALID_ARGUMENT);
    match(st1.details, /expected 0/);

    const twice = await openCreated(ctx);
    twice.send(encodeCreateStream(TABLE, "json"));
    strictEqual((await twice.ended()).code, INVALID_ARGUMENT);
  });
});

Deno.test("JSON rows land in the file byte for byte; /tables counts them", async () => {
  await withServer({}, async (ctx) => {
    const rows = [
      '{"a":1}',
      '{ "spaced" : [1, 2, {"x": null}] , "t":"Grüße 温度 🌡️" }',
      '{"escaped":"line\\nbreak \\u00e9 \\"q\\""}',
      rowOf(3, 200),
      rowOf(4, 20_000),
    ];
    const s = await openCreated(ctx);
    s.send(jsonBatch(0, rows.slice(0, 2)));
    s.send(jsonRecord(1, rows[2]));
    s.send(jsonBatch(2, rows.slice(3)));
    s.send(jsonBatch(3, [])); // an empty batch takes an offset too
    await s.waitAck(3);
    strictEqual(await readFile(ctx.srv), rows.join("\n") + "\n");
    const bytes = await Deno.readFile(ctx.srv.tableFile(TABLE));
    deepStrictEqual(bytes, utf8.encode(rows.join("\n") + "\n"));

    // A second stream on the same table appends after the first one's rows.
    const s2 = await openCreated(ctx);
    s2.send(jsonBatch(0, ['{"second":true}']));
    await s2.waitAck(0);
    strictEqual(await readFile(ctx.srv), [...rows, '{"second":true}'].join("\n") + "\n");
    const tables = await getJson(`${ctx.srv.workspaceUrl}/tables`);
    deepStrictEqual(tables, { tables: { [TABLE]: { rows: 6, streams: 2, requests: 5 } } });
    s.call.end();
    s2.call.end();
    strictEqual((await s.ended()).code, OK);
    strictEqual((await s2.ended()).code, OK);
    strictEqual(ctx.srv.stats().open_streams, 0);
  });
});

Deno.test("raw line breaks in JSON whitespace become spaces: one row per line", async () => {
  await withServer({}, async (ctx) => {
    const s = await openCreated(ctx);
    s.send(jsonBatch(0, ['{\n  "a": 1,\r\n  "b": "x"\n}', '{"c":2}']));
    await s.waitAck(0);
    const lines = (await readFile(ctx.srv)).split("\n");
    deepStrictEqual(lines, ['{   "a": 1,    "b": "x" }', '{"c":2}', ""]);
    deepStrictEqual(lines.slice(0, 2).map((l) => JSON.parse(l)), [{ a: 1, b: "x" }, { c: 2 }]);
  });
});

Deno.test("invalid JSON rows reject the whole request with INVALID_ARGUMENT", async () => {
  await withServer({}, async (ctx) => {
    const bad = ['{"a":', "[1,2]", "42", "null", '"text"', "{} {}"];
    for (const row of bad) {
      const s = await openCreated(ctx);
      s.send(jsonBatch(0, ['{"ok":0}']));
      s.send(jsonBatch(1, ['{"ok":1}', row, '{"ok":2}']));
      const st = await s.ended();
      strictEqual(st.code, INVALID_ARGUMENT, row);
      match(st.details, /offset_id 1: record 1 is not/);
      deepStrictEqual(s.acks(), [0]);
    }
    // Invalid UTF-8 is refused too.
    const s = await openCreated(ctx);
    const raw = new Uint8Array([0x0a, 0x05, 0x7b, 0x22, 0xff, 0x22, 0x7d]); // {"\xff"}
    const req = encodeBatchRequest(0, "json", [raw]);
    s.send(req);
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /UTF-8/);
    strictEqual(await readFile(ctx.srv), '{"ok":0}\n'.repeat(bad.length));
    strictEqual(ctx.srv.stats().tables[TABLE].rows, bad.length);
  });
});

Deno.test("PROTO streams decode rows with the descriptor into JSON lines", async () => {
  await withServer({}, async (ctx) => {
    const s = await openCreated(ctx, TABLE, "proto", recordDescriptorProto());
    const recs = [sampleRecord("a", 21.5), sampleRecord("b", null)];
    s.send(protoBatch(0, recs.map((r) => encodeRecordProto(r))));
    await s.waitAck(0);
    s.send(protoBatch(1, [Uint8Array.of(0xf8, 0x07, 0x01)])); // field 127: not in the descriptor
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /field number 127 is not in the descriptor/);
    const lines = (await readFile(ctx.srv)).trim().split("\n").map((l) => JSON.parse(l));
    deepStrictEqual(lines, recs);
  });
});

Deno.test("PROTO streams need a usable descriptor", async () => {
  await withServer({}, async (ctx) => {
    const s = new RawStream(ctx.client, {
      authorization: `Bearer ${await token(ctx.srv)}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    s.send(encodeCreateStream(TABLE, "proto", Uint8Array.of(0x0a, 0x03, 0x4d, 0x73, 0x67)));
    const st = await s.ended();
    strictEqual(st.code, INVALID_ARGUMENT);
    match(st.details, /descriptor_proto unusable: the descriptor has no fields/);
  });
});

function sampleRecord(id: string, value: number | null): OtRecord {
  return {
    record_id: id,
    event_time: 1_764_400_000_000_000,
    ingest_time: 1_764_400_000_000_123,
    source_name: "gen",
    source_protocol: "generator",
    endpoint: "generator://gen",
    address: "gen/tag_0001",
    tag_path: "s/a/l/e/temperature/tag_0001",
    tag_name: "tag_0001",
    site: "s",
    area: "a",
    line: "l",
    equipment: "e",
    signal_type: "temperature",
    value_num: value,
    value_str: value === null ? "NaN" : null,
    value_bool: null,
    value_type: "float",
    quality: value === null ? "bad" : "good",
    quality_code: value === null ? 2147483648 : 0,
    unit: "°C",
    metadata: '{"seq":1}',
  };
}

Deno.test("acks are cumulative, cover every offset and follow the file", async () => {
  await withServer({}, async (ctx) => {
    const s = await openCreated(ctx);
    const n = 300;
    const perRequest = 20;
    const lineBytes: number[] = [];
    let total = 0;
    const file = ctx.srv.tableFile(TABLE);
    const sizeAtAck: [number, number][] = [];
    s.call.on("data", (b: Uint8Array) => {
      const r = decodeResponse(b);
      if (r.kind === "ack") sizeAtAck.push([r.upTo, Deno.statSync(file).size]);
    });
    for (let off = 0; off < n; off++) {
      const rows = Array.from({ length: perRequest }, (_, i) => rowOf(off * perRequest + i, 400));
      for (const r of rows) total += utf8.encode(r).length + 1;
      lineBytes.push(total);
      s.send(jsonBatch(off, rows));
    }
    await s.waitAck(n - 1, 20_000);
    const acks = s.acks();
    strictEqual(acks[acks.length - 1], n - 1);
    for (let i = 1; i < acks.length; i++) ok(acks[i] > acks[i - 1], "acks rise strictly");
    ok(acks.length <= n);
    for (const [upTo, size] of sizeAtAck) {
      ok(size >= lineBytes[upTo], `ack ${upTo} sent before its rows were in the file`);
    }
    strictEqual(Deno.statSync(file).size, total);
    deepStrictEqual(ctx.srv.stats().tables[TABLE], {
      rows: n * perRequest,
      streams: 1,
      requests: n,
    });
    s.call.end();
    strictEqual((await s.ended()).code, OK);
  });
});

Deno.test("ack_latency_ms delays acks; changed at runtime", async () => {
  // A latency far above what a busy machine adds, so "without latency" can be told apart.
  await withServer({ faults: { ack_latency_ms: 1500 } }, async (ctx) => {
    const s = await openCreated(ctx);
    const t0 = Date.now();
    s.send(jsonBatch(0, [rowOf(0)]));
    await s.waitAck(0);
    const slow = Date.now() - t0;
    ok(slow >= 1480, `ack after ${slow} ms`);
    ctx.srv.setFaults({ ack_latency_ms: null });
    const t1 = Date.now();
    s.send(jsonBatch(1, [rowOf(1)]));
    await s.waitAck(1);
    const fast = Date.now() - t1;
    ok(fast < 1000, `ack after ${fast} ms without latency`);
    s.call.end();
    strictEqual((await s.ended()).code, OK);
  });
});

Deno.test("fail_after N: N requests acked, the next ends the call with UNAVAILABLE", async () => {
  await withServer({ faults: { fail_after: 3 } }, async (ctx) => {
    for (let round = 0; round < 2; round++) {
      const s = await openCreated(ctx);
      for (let off = 0; off < 6; off++) s.send(jsonBatch(off, [rowOf(off)]));
      const st = await s.ended();
      strictEqual(st.code, UNAVAILABLE);
      match(st.details, /after 3 requests/);
      strictEqual(s.acks()[s.acks().length - 1], 2, "the accepted requests are acked first");
    }
    const expected = [0, 1, 2].map((i) => rowOf(i) + "\n").join("");
    strictEqual(await readFile(ctx.srv), expected + expected);
    strictEqual(ctx.srv.stats().tables[TABLE].requests, 6);

    ctx.srv.setFaults({ fail_after: 0 });
    const s = await openCreated(ctx);
    s.send(jsonBatch(0, [rowOf(0)]));
    strictEqual((await s.ended()).code, UNAVAILABLE);
    deepStrictEqual(s.acks(), []);
  });
});

Deno.test("close_after N: close signal, later requests still acked, then status OK", async () => {
  await withServer({ faults: { close_after: 2, close_duration_ms: 600 } }, async (ctx) => {
    const s = await openCreated(ctx);
    // The signal goes out after the second request, so it comes later than this; the
    // time it is read here would shrink the measure when the machine is busy.
    const sentAt = Date.now();
    s.send(jsonBatch(0, [rowOf(0)]));
    s.send(jsonBatch(1, [rowOf(1)]));
    const signal = await s.waitFor((r) => r.kind === "close", "close signal");
    deepStrictEqual(signal, { kind: "close", durationMs: 600 });
    s.send(jsonBatch(2, [rowOf(2)]));
    await s.waitAck(2);
    const st = await s.ended();
    const endedAfter = Date.now() - sentAt;
    strictEqual(st.code, OK);
    ok(endedAfter >= 590, `ended ${endedAfter} ms after the requests (close_duration_ms 600)`);
    strictEqual(s.responses.filter((r) => r.kind === "close").length, 1);
    strictEqual(await readFile(ctx.srv), [0, 1, 2].map((i) => rowOf(i) + "\n").join(""));
  });
});

Deno.test("stop() ends open streams and flushes the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerobus-local-test-" });
  const srv = await startZerobusLocal({ dataDir: dir });
  const client = new grpc.Client(
    srv.endpointUrl.replace("http://", ""),
    grpc.credentials.createInsecure(),
  );
  try {
    const s = await openCreated({ srv, client, dir });
    s.send(jsonBatch(0, [rowOf(0)]));
    await s.waitAck(0);
    strictEqual(srv.stats().open_streams, 1);
    await srv.stop();
    const st = await s.ended();
    ok(st.code !== OK, "an open stream does not end OK when the server stops");
    strictEqual(srv.stats().open_streams, 0);
    strictEqual(await Deno.readTextFile(srv.tableFile(TABLE)), rowOf(0) + "\n");
  } finally {
    client.close();
    await srv.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unknown method -> UNIMPLEMENTED; a dropped client frees its stream", async () => {
  await withServer({}, async (ctx) => {
    const md = new grpc.Metadata();
    const other = ctx.client.makeBidiStreamRequest(
      "/databricks.zerobus.Zerobus/Other",
      toBuffer,
      (b: Buffer) => b,
      md,
    );
    other.on("error", () => {});
    const st = await new Promise<grpc.StatusObject>((r) => other.on("status", r));
    strictEqual(st.code, grpc.status.UNIMPLEMENTED);

    const s = await openCreated(ctx);
    s.send(jsonBatch(0, [rowOf(0)]));
    await s.waitAck(0);
    strictEqual(ctx.srv.stats().open_streams, 1);
    s.call.cancel();
    await s.ended();
    const deadline = Date.now() + 30_000;
    while (ctx.srv.stats().open_streams > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    strictEqual(ctx.srv.stats().open_streams, 0);
  });
});

Deno.test("grpc-js transport: same behaviour on a short stream", async () => {
  await withServer({ transport: "grpc-js", faults: { close_after: 2 } }, async (ctx) => {
    const bad = new RawStream(ctx.client, {
      authorization: "Bearer nope",
      "x-databricks-zerobus-table-name": TABLE,
    });
    strictEqual((await bad.ended()).code, UNAUTHENTICATED);
    const s = await openCreated(ctx);
    s.send(jsonBatch(0, [rowOf(0), rowOf(1)]));
    s.send(jsonRecord(1, rowOf(2)));
    await s.waitFor((r) => r.kind === "close", "close signal");
    await s.waitAck(1);
    strictEqual((await s.ended()).code, OK);
    strictEqual(await readFile(ctx.srv), [0, 1, 2].map((i) => rowOf(i) + "\n").join(""));
  });
});

// ---------- CLI ----------

const CLI_URL = new URL("../src/zerobus_local/cli.ts", import.meta.url).href;

function cliCommand(args: string[]): Deno.Command {
  const code = `import { zerobusLocalCommand } from ${JSON.stringify(CLI_URL)};\n` +
    `Deno.exit(await zerobusLocalCommand(${JSON.stringify(args)}));`;
  return new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  });
}

Deno.test("cli: --help and bad usage", async () => {
  const help = await cliCommand(["--help"]).output();
  strictEqual(help.code, 0);
  match(new TextDecoder().decode(help.stdout), /--close-after/);
  const bad = [["--port", "x"], ["--nope"], ["--fail-after", "-1"], ["extra"], [
    "--transport",
    "h3",
  ]];
  for (const args of bad) {
    const out = await cliCommand(args).output();
    strictEqual(out.code, 2, args.join(" "));
    match(new TextDecoder().decode(out.stderr), /Usage/);
  }
});

Deno.test("cli: prints ready, serves tokens and rows, stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "zerobus-local-cli-" });
  const child = cliCommand([
    "--port",
    "0",
    "--http-port",
    "0",
    "--data-dir",
    dir,
    "--reject-table",
    "a.b.c",
    "--reject-table",
    "a.b.d",
    "--ack-latency-ms",
    "5",
  ]).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const errText = (async () => {
    let t = "";
    for (let r = await stderr.read(); !r.done; r = await stderr.read()) t += r.value;
    return t;
  })();
  let client: grpc.Client | null = null;
  try {
    let text = "";
    while (!text.includes("\n")) {
      const r = await lines.read();
      if (r.done) throw new Error(`cli exited early: ${await errText}`);
      text += r.value;
    }
    const ready = JSON.parse(text.split("\n")[0]);
    strictEqual(ready.event, "ready");
    strictEqual(ready.data_dir, dir);
    strictEqual(ready.endpoint, `http://127.0.0.1:${ready.grpc_port}`);
    strictEqual(ready.workspace_url, `http://127.0.0.1:${ready.http_port}`);
    const workspace = ready.workspace_url;
    const faults = await getJson(`${workspace}/faults`);
    deepStrictEqual(faults.faults, { ack_latency_ms: 5, reject_tables: ["a.b.c", "a.b.d"] });
    const fake = { workspaceUrl: workspace } as ZerobusLocal;
    const tok = (await tokenRequest(fake)).body.access_token;
    client = new grpc.Client(`127.0.0.1:${ready.grpc_port}`, grpc.credentials.createInsecure());
    const s = new RawStream(client, {
      authorization: `Bearer ${tok}`,
      "x-databricks-zerobus-table-name": TABLE,
    });
    s.send(encodeCreateStream(TABLE, "json"));
    s.send(jsonBatch(0, [rowOf(0)]));
    await s.waitAck(0);
    s.call.end();
    strictEqual((await s.ended()).code, OK);
    strictEqual(
      await Deno.readTextFile(`${dir}/zerobus-local/${TABLE}.jsonl`),
      rowOf(0) + "\n",
    );
  } finally {
    client?.close();
    child.kill("SIGTERM");
    const status = await child.status;
    for (let r = await lines.read(); !r.done; r = await lines.read());
    const err = await errText;
    await Deno.remove(dir, { recursive: true });
    strictEqual(status.code, 0, err);
    match(err, /"event":"stopped"/);
  }
});
