/** Sparkplug B host state machine: births, aliases, seq, rebirth requests, deaths, bad input. */
import { get } from "sparkplug-payload";
import { assert, assertEquals } from "./assert.ts";
import { decodeSparkplug, PayloadProto } from "../src/sources/mqtt/sparkplug/decode.ts";
import { REBIRTH_METRIC, SparkplugHost } from "../src/sources/mqtt/sparkplug/host.ts";
import type { Reading } from "../src/sources/worker_protocol.ts";

const sp = get("spBv1.0")!;
const T0 = 1_714_979_289_000;
const N = "spBv1.0/Plant1";

function long(v: bigint): never {
  const u = BigInt.asUintN(64, v);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: true } as never;
}

function enc(seq: number | undefined, metrics: unknown[], timestamp = T0): Uint8Array {
  return sp.encodePayload({ timestamp, seq, metrics: metrics as never });
}

function nbirth(bdSeq: number, seq = 0): Uint8Array {
  return enc(seq, [
    { name: "bdSeq", type: "Int64", value: bdSeq },
    { name: "Node Control/Rebirth", type: "Boolean", value: false },
    { name: "uptime", alias: 1, type: "UInt64", value: long(2n ** 60n) },
  ]);
}

function dbirth(seq: number): Uint8Array {
  return enc(seq, [
    {
      name: "temp",
      alias: 10,
      type: "Double",
      value: 20.5,
      properties: { engUnit: { type: "String", value: "degC" } },
    },
    { name: "count", alias: 11, type: "Int64", value: long(-(2n ** 62n)) },
    { name: "state", alias: 12, type: "String", value: "RUN" },
  ]);
}

/** A host with edge node Line1 born (bdSeq 3, seq 0) and device Boiler born (seq 1). */
function bornHost(): SparkplugHost {
  const host = new SparkplugHost();
  host.handle(`${N}/NBIRTH/Line1`, nbirth(3), T0);
  host.handle(`${N}/DBIRTH/Line1/Boiler`, dbirth(1), T0);
  return host;
}

function tags(readings: Reading[]): string[] {
  return readings.map((r) => r.tag_name);
}

Deno.test("NBIRTH and DBIRTH readings: address, value types, unit, context, times", () => {
  const host = new SparkplugHost();
  const nb = host.handle(`${N}/NBIRTH/Line1`, nbirth(3), T0 + 5);
  assertEquals(tags(nb.readings), ["bdSeq", "Node Control/Rebirth", "uptime"]);
  assertEquals(nb.readings[2].value, 2n ** 60n);
  assertEquals(nb.readings[2].address, "spBv1.0/Plant1/Line1/uptime");
  assertEquals(nb.readings[2].context, { area: "Plant1", line: "Line1", equipment: "Line1" });
  assertEquals(nb.readings[2].event_time, T0 * 1000);
  const db = host.handle(`${N}/DBIRTH/Line1/Boiler`, dbirth(1), T0);
  assertEquals(db.rebirth, undefined);
  const temp = db.readings[0];
  assertEquals(temp, {
    address: "spBv1.0/Plant1/Line1/Boiler/temp",
    protocol: "sparkplug",
    tag_name: "temp",
    value: 20.5,
    value_type: "float",
    event_time: T0 * 1000,
    quality_code: 192,
    quality: "good",
    metadata: '{"sparkplug":"DBIRTH","datatype":"Double"}',
    unit: "degC",
    context: { area: "Plant1", line: "Line1", equipment: "Boiler" },
  });
  assertEquals([db.readings[1].value, db.readings[1].value_type], [-(2n ** 62n), "int"]);
});

Deno.test("DDATA by alias keeps BIRTH name, datatype and unit; metric time wins", () => {
  const host = bornHost();
  const bytes = PayloadProto.encode({
    timestamp: T0 + 100,
    seq: 2,
    metrics: [
      { alias: 11, longValue: long(2n ** 60n + 1n) }, // no datatype: the BIRTH's Int64 applies
      { alias: 10, timestamp: T0 + 50, doubleValue: 21.25 },
    ],
  }).finish();
  const res = host.handle(`${N}/DDATA/Line1/Boiler`, bytes, T0 + 200);
  assertEquals(res.rebirth, undefined);
  assertEquals(tags(res.readings), ["count", "temp"]);
  assertEquals(res.readings[0].value, 2n ** 60n + 1n);
  assertEquals(res.readings[0].event_time, (T0 + 100) * 1000);
  assertEquals(res.readings[1].value, 21.25);
  assertEquals(res.readings[1].unit, "degC");
  assertEquals(res.readings[1].event_time, (T0 + 50) * 1000);
});

Deno.test("DATA is_null and a Quality property set the quality", () => {
  const host = bornHost();
  const res = host.handle(
    `${N}/DDATA/Line1/Boiler`,
    enc(2, [
      { alias: 10, type: "Double", value: null },
      {
        alias: 12,
        type: "String",
        value: "STOP",
        properties: { Quality: { type: "Int32", value: 500 } },
      },
    ]),
    T0,
  );
  assertEquals(
    res.readings.map((r) => [r.value, r.quality, r.quality_code]),
    [[null, "bad", 0], ["STOP", "uncertain", 500]],
  );
});

Deno.test("a seq gap requests exactly one rebirth within the throttle interval", () => {
  const host = bornHost();
  const data = (seq: number) => enc(seq, [{ alias: 10, type: "Double", value: seq }]);
  assertEquals(host.handle(`${N}/DDATA/Line1/Boiler`, data(2), T0).rebirth, undefined);
  const gap = host.handle(`${N}/DDATA/Line1/Boiler`, data(5), T0 + 10);
  assert(gap.rebirth, "expected a rebirth request");
  assertEquals(gap.rebirth.topic, "spBv1.0/Plant1/NCMD/Line1");
  assertEquals(gap.rebirth.reason, "seq gap: expected 3, got 5");
  assertEquals(gap.readings.map((r) => r.value), [5]);
  const cmd = decodeSparkplug(gap.rebirth.payload);
  assert(cmd.ok);
  assertEquals(cmd.payload.metrics.map((m) => [m.name, m.datatype, m.value]), [
    [REBIRTH_METRIC, 11, true],
  ]);
  // Another gap within 5 s: throttled. After 5 s: a new request.
  assertEquals(host.handle(`${N}/DDATA/Line1/Boiler`, data(9), T0 + 1000).rebirth, undefined);
  assert(host.handle(`${N}/DDATA/Line1/Boiler`, data(20), T0 + 5010).rebirth);
});

Deno.test("seq wraps from 255 to 0 without a rebirth", () => {
  const host = new SparkplugHost();
  host.handle(`${N}/NBIRTH/Line1`, nbirth(1, 254), T0);
  const data = (seq: number) => enc(seq, [{ alias: 1, type: "UInt64", value: seq }]);
  assertEquals(host.handle(`${N}/NDATA/Line1`, data(255), T0).rebirth, undefined);
  const wrapped = host.handle(`${N}/NDATA/Line1`, data(0), T0);
  assertEquals(wrapped.rebirth, undefined);
  assertEquals(wrapped.readings[0].address, "spBv1.0/Plant1/Line1/uptime");
});

Deno.test("DATA before BIRTH requests a rebirth and emits nothing", () => {
  const host = new SparkplugHost();
  const res = host.handle(`${N}/NDATA/Line9`, enc(4, [{ alias: 1, type: "Int32", value: 1 }]), T0);
  assertEquals(res.readings, []);
  assertEquals(res.rebirth?.topic, "spBv1.0/Plant1/NCMD/Line9");
  assertEquals(res.rebirth?.reason, "NDATA before NBIRTH");
  const born = bornHost();
  const dev = born.handle(
    `${N}/DDATA/Line1/Pump`,
    enc(2, [{ alias: 1, type: "Int32", value: 1 }]),
    T0,
  );
  assertEquals(dev.rebirth?.reason, "DDATA before DBIRTH of device 'Pump'");
  assertEquals(dev.readings, []);
});

Deno.test("an unknown alias requests a rebirth; known metrics are still emitted", () => {
  const host = bornHost();
  const res = host.handle(
    `${N}/DDATA/Line1/Boiler`,
    enc(2, [{ alias: 99, type: "Int32", value: 1 }, { alias: 12, type: "String", value: "ok" }]),
    T0,
  );
  assertEquals(res.rebirth?.reason, "unknown alias 99 in DDATA");
  assertEquals(tags(res.readings), ["state"]);
});

Deno.test("NDEATH with a stale bdSeq is ignored; the session keeps going", () => {
  const host = bornHost();
  const res = host.handle(
    `${N}/NDEATH/Line1`,
    enc(undefined, [{ name: "bdSeq", type: "Int64", value: 2 }]),
    T0,
  );
  assertEquals(res.readings, []);
  assertEquals(res.ignored, "NDEATH bdSeq 2 does not match the session's bdSeq 3");
  const data = host.handle(
    `${N}/DDATA/Line1/Boiler`,
    enc(2, [{ alias: 10, type: "Double", value: 1 }]),
    T0,
  );
  assertEquals([data.readings.length, data.rebirth], [1, undefined]);
});

Deno.test("NDEATH marks node and device metrics stale at the receive time", () => {
  const host = bornHost();
  const res = host.handle(
    `${N}/NDEATH/Line1`,
    enc(undefined, [{ name: "bdSeq", type: "Int64", value: 3 }]),
    T0 + 777,
  );
  assertEquals(tags(res.readings), [
    "bdSeq",
    "Node Control/Rebirth",
    "uptime",
    "temp",
    "count",
    "state",
  ]);
  for (const r of res.readings) {
    assertEquals([r.value, r.quality, r.quality_code, r.event_time], [
      null,
      "uncertain",
      500,
      (T0 + 777) * 1000,
    ]);
    assertEquals(r.metadata, '{"stale":true,"reason":"NDEATH"}');
  }
  assertEquals(res.readings[3].address, "spBv1.0/Plant1/Line1/Boiler/temp");
  assertEquals(res.readings[3].unit, "degC");
  // The session is over: DATA now asks for a rebirth.
  const after = host.handle(
    `${N}/NDATA/Line1`,
    enc(1, [{ alias: 1, type: "UInt64", value: 1 }]),
    T0 + 800,
  );
  assertEquals(after.rebirth?.reason, "NDATA before NBIRTH");
});

Deno.test("DDEATH marks only that device's metrics stale", () => {
  const host = bornHost();
  const res = host.handle(`${N}/DDEATH/Line1/Boiler`, enc(2, []), T0 + 1);
  assertEquals(tags(res.readings), ["temp", "count", "state"]);
  assertEquals(res.readings[0].metadata, '{"stale":true,"reason":"DDEATH"}');
  assertEquals(res.rebirth, undefined);
});

Deno.test("connection loss marks everything stale", () => {
  const host = bornHost();
  const readings = host.markAllStale("broker connection lost", T0 + 9);
  assertEquals(readings.length, 6);
  assertEquals(readings[5].metadata, '{"stale":true,"reason":"broker connection lost"}');
  assertEquals(host.markAllStale("again", T0 + 10), []);
});

Deno.test("context mapping is an option", () => {
  const host = new SparkplugHost({ contextMapping: { site: "group", equipment: "edge_node" } });
  const res = host.handle(`${N}/NBIRTH/Line1`, nbirth(0), T0);
  assertEquals(res.readings[0].context, { site: "Plant1", equipment: "Line1" });
});

Deno.test("bad input: invalid protobuf, unknown type, STATE and commands", () => {
  const host = bornHost();
  const bad = host.handle(`${N}/DDATA/Line1/Boiler`, new Uint8Array([0x0a, 0x05, 0x01]), T0);
  assert(bad.deadLetter?.startsWith("invalid Sparkplug B payload: "), bad.deadLetter);
  assertEquals(bad.readings, []);
  const unknown = host.handle(`${N}/NFOO/Line1`, enc(1, []), T0);
  assertEquals(
    unknown.deadLetter,
    "unknown Sparkplug message type 'NFOO' in 'spBv1.0/Plant1/NFOO/Line1'",
  );
  assertEquals(
    host.handle("spBv1.0/STATE/h1", new TextEncoder().encode("{}"), T0).ignored,
    "STATE message",
  );
  const cmd = host.handle(
    `${N}/NCMD/Line1`,
    enc(undefined, [{ name: REBIRTH_METRIC, type: "Boolean", value: true }]),
    T0,
  );
  assertEquals([cmd.readings, cmd.deadLetter], [[], undefined]);
  // None of these disturbed the session's seq.
  const ok = host.handle(
    `${N}/DDATA/Line1/Boiler`,
    enc(2, [{ alias: 10, type: "Double", value: 1 }]),
    T0,
  );
  assertEquals(ok.rebirth, undefined);
});

/** A host with a reorder window, Line1 and Boiler born (seq 0 and 1). */
function reorderHost(ms: number): SparkplugHost {
  const host = new SparkplugHost({ reorderTimeoutMs: ms });
  host.handle(`${N}/NBIRTH/Line1`, nbirth(3), T0);
  host.handle(`${N}/DBIRTH/Line1/Boiler`, dbirth(1), T0);
  return host;
}

const temp = (seq: number) => enc(seq, [{ alias: 10, type: "Double", value: seq }]);

Deno.test("reorder window: out-of-order messages filled in time come out in seq order, no rebirth", () => {
  const host = reorderHost(2000);
  const d = (seq: number, at: number, token: number) =>
    host.handle(`${N}/DDATA/Line1/Boiler`, temp(seq), at, token);
  const four = d(4, T0 + 1, 4);
  assertEquals([four.buffered, four.readings.length], [true, 0]);
  assertEquals(d(3, T0 + 2, 3).buffered, true);
  assertEquals(host.nextDeadline(), T0 + 2001, "the window started with the first gap");
  const two = d(2, T0 + 3, 2);
  assertEquals(two.readings.map((r) => r.value), [2, 3, 4]);
  assertEquals(two.released, [3, 4]);
  assertEquals(two.rebirth, undefined);
  assertEquals(host.nextDeadline(), undefined, "the window closed");
  assertEquals(host.expire(T0 + 10_000), []);
  assertEquals(d(5, T0 + 4, 5).readings.map((r) => r.value), [5], "normal operation goes on");
});

Deno.test("reorder window: a gap not filled in time gives one rebirth and the data in order", () => {
  const host = reorderHost(2000);
  const d = (seq: number, at: number) => host.handle(`${N}/DDATA/Line1/Boiler`, temp(seq), at, seq);
  assertEquals(d(2, T0).readings.length, 1);
  assertEquals(d(5, T0 + 10).buffered, true); // 3 and 4 missing
  assertEquals(d(4, T0 + 20).buffered, true);
  assertEquals(host.expire(T0 + 2009), [], "not yet");
  const [out] = host.expire(T0 + 2010);
  assertEquals(out.readings.map((r) => r.value), [4, 5]);
  assertEquals(out.released, [4, 5]);
  assertEquals(out.rebirth?.reason, "seq gap: expected 3, got 4");
  assertEquals(host.nextDeadline(), undefined);
  // The next gap within the throttle interval: no second request.
  d(9, T0 + 2100);
  const [again] = host.expire(T0 + 4200);
  assertEquals(again.readings.map((r) => r.value), [9]);
  assertEquals(again.rebirth, undefined, "throttled");
});

Deno.test("reorder window: an NBIRTH applies what waited first; 0 means a rebirth at once", () => {
  const host = reorderHost(2000);
  host.handle(`${N}/DDATA/Line1/Boiler`, temp(3), T0, 1);
  const born = host.handle(`${N}/NBIRTH/Line1`, nbirth(4), T0 + 5);
  assertEquals(born.released, [1]);
  assertEquals(born.readings.map((r) => r.tag_name)[0], "temp");
  assertEquals(host.nextDeadline(), undefined);

  const now = reorderHost(0);
  const gap = now.handle(`${N}/DDATA/Line1/Boiler`, temp(3), T0);
  assertEquals([gap.buffered, gap.readings.length, gap.rebirth?.reason], [
    undefined,
    1,
    "seq gap: expected 2, got 3",
  ]);
});
