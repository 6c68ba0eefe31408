/**
 * Table-driven unit tests of `PublishSplitter`, our own PUBLISH reader between the socket and
 * mqtt.js. Packets are built by a small local encoder written from the MQTT 3.1.1 and MQTT 5
 * specs (§2.2 fixed header, §1.5.5 variable byte integer, §3.3 PUBLISH); the expected results
 * come from the packet descriptions the bytes were built from, never from the splitter.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  MAX_TAKEN_PACKET,
  PublishSplitter,
  type TakenPublish,
} from "../src/sources/mqtt/publish_reader.ts";

// ---------------------------------------------------------------- local MQTT encoder

const utf8 = new TextEncoder();

/** Variable byte integer (MQTT 3.1.1 §2.2.3, MQTT 5 §1.5.5). */
function vbi(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Fixed header byte + remaining length + body. */
function packet(first: number, body: Uint8Array | number[]): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  return concat([Uint8Array.from([first, ...vbi(b.length)]), b]);
}

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

/** UTF-8 encoded string with a 2-byte length (§1.5.3 / §1.5.4). */
function str(s: string): number[] {
  const b = utf8.encode(s);
  return [...u16(b.length), ...b];
}

interface PublishSpec {
  /** A string (UTF-8 encoded) or the raw topic bytes. */
  topic: string | Uint8Array;
  payload: Uint8Array;
  qos: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  /** MQTT 5: the encoded properties (without their length); undefined for MQTT 3.1.1. */
  props?: number[];
}

function publish(s: PublishSpec): Uint8Array {
  const first = 0x30 | (s.dup ? 8 : 0) | ((s.qos & 3) << 1) | (s.retain ? 1 : 0);
  const topic = typeof s.topic === "string" ? utf8.encode(s.topic) : s.topic;
  const head = [...u16(topic.length), ...topic];
  if (s.qos > 0) head.push(...u16(s.messageId ?? 0));
  if (s.props) head.push(...vbi(s.props.length), ...s.props);
  return packet(first, concat([Uint8Array.from(head), s.payload]));
}

/** CONNACK: session present 0, return/reason code 0; MQTT 5 adds property length 0. */
const connack = (v5 = false) => packet(0x20, v5 ? [0, 0, 0] : [0, 0]);
const puback = (id: number) => packet(0x40, u16(id));
const pubrel = (id: number) => packet(0x62, u16(id));
const suback = (id: number, codes: number[]) => packet(0x90, [...u16(id), ...codes]);
const pingresp = () => packet(0xd0, []);

function bytesOf(text: string): Uint8Array {
  return utf8.encode(text);
}

/** `n` bytes of a repeating pattern, so misplaced slices show. */
function filler(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

// ---------------------------------------------------------------- harness

/** What a taken PUBLISH must look like (payload copied so later feeds cannot change it). */
interface Seen {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1;
  retain: boolean;
  dup: boolean;
  messageId?: number;
}

function seen(p: TakenPublish): Seen {
  assertEquals(p.cmd, "publish");
  return {
    topic: p.topic,
    payload: p.payload.slice(),
    qos: p.qos,
    retain: p.retain,
    dup: p.dup,
    messageId: p.messageId,
  };
}

/** The expected taken form of a spec with a string topic. */
function expectTaken(s: PublishSpec): Seen {
  return {
    topic: s.topic as string,
    payload: s.payload,
    qos: s.qos as 0 | 1,
    retain: s.retain ?? false,
    dup: s.dup ?? false,
    messageId: s.qos === 1 ? s.messageId : undefined,
  };
}

type Way = "take" | "pass" | "wait";

/** A splitter plus everything it took and forwarded so far. */
class Rig {
  readonly splitter: PublishSplitter;
  readonly taken: Seen[] = [];
  readonly forwarded: Uint8Array[] = [];
  routeCalls = 0;
  constructor(v5 = false) {
    this.splitter = new PublishSplitter(v5);
  }
  run(route: () => Way = () => "take"): boolean {
    return this.splitter.run(
      () => {
        this.routeCalls++;
        return route();
      },
      (p) => this.taken.push(seen(p)),
      (b) => {
        assert(b.length > 0, "forward() called with no bytes");
        this.forwarded.push(b.slice());
      },
    );
  }
  feedRun(chunk: Uint8Array, route?: () => Way): boolean {
    this.splitter.feed(chunk);
    return this.run(route);
  }
  get forwardedBytes(): Uint8Array {
    return concat(this.forwarded);
  }
}

/** One packet of a stream, and how it must come out. */
interface Item {
  name: string;
  bytes: Uint8Array;
  /** Set when the splitter must take it; otherwise it must be forwarded. */
  taken?: Seen;
}

function takenItem(name: string, s: PublishSpec): Item {
  return { name, bytes: publish(s), taken: expectTaken(s) };
}

function expected(items: Item[]) {
  return {
    taken: items.flatMap((i) => (i.taken ? [i.taken] : [])),
    forwarded: concat(items.filter((i) => !i.taken).map((i) => i.bytes)),
  };
}

interface Result {
  taken: Seen[];
  forwarded: Uint8Array;
}

function result(rig: Rig): Result {
  return { taken: rig.taken, forwarded: rig.forwardedBytes };
}

/**
 * Exact byte equality with a short message (a deep-equal diff of a 64 KiB array takes minutes).
 */
function assertSameBytes(actual: Uint8Array, want: Uint8Array, label: string): void {
  const n = Math.min(actual.length, want.length);
  let i = 0;
  while (i < n && actual[i] === want[i]) i++;
  if (i === n && actual.length === want.length) return;
  throw new Error(
    `${label}: ${actual.length} bytes, expected ${want.length}; first difference at byte ${i}: ` +
      `${actual.slice(i, i + 8).join(",")} instead of ${want.slice(i, i + 8).join(",")}`,
  );
}

/** Exact comparison of taken publishes (payload bytes included) and forwarded bytes. */
function assertResult(actual: Result, want: Result, label = "result"): void {
  const meta = (t: Seen) => ({ ...t, payload: t.payload.length });
  assertEquals(actual.taken.map(meta), want.taken.map(meta), `${label}: taken`);
  actual.taken.forEach((t, i) =>
    assertSameBytes(t.payload, want.taken[i].payload, `${label}: payload of taken #${i}`)
  );
  assertSameBytes(actual.forwarded, want.forwarded, `${label}: forwarded`);
}

/** Feeds `chunks` one by one, running after each; every run must finish (no "wait"). */
function feedAll(chunks: Uint8Array[], v5 = false): Rig {
  const rig = new Rig(v5);
  for (const c of chunks) assertEquals(rig.feedRun(c), true);
  return rig;
}

function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(bytes.slice(from, c));
    from = c;
  }
  return out;
}

function oneByteChunks(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (b) => Uint8Array.of(b));
}

// ---------------------------------------------------------------- the mixed stream

const mixed: Item[] = [
  { name: "CONNACK", bytes: connack() },
  takenItem("PUBLISH QoS 0 retained", {
    topic: "plant/line1/temp",
    payload: bytesOf("21.5"),
    qos: 0,
    retain: true,
  }),
  takenItem("PUBLISH QoS 1 dup", {
    topic: "plant/line1/pressure",
    payload: bytesOf('{"v":1.25}'),
    qos: 1,
    dup: true,
    messageId: 7,
  }),
  { name: "SUBACK", bytes: suback(1, [0, 1]) },
  { name: "PINGRESP", bytes: pingresp() },
  {
    name: "PUBLISH QoS 2",
    bytes: publish({ topic: "plant/line2/flow", payload: bytesOf("3"), qos: 2, messageId: 8 }),
  },
  { name: "PUBREL", bytes: pubrel(8) },
  takenItem("PUBLISH QoS 0 empty payload", {
    topic: "plant/ä/ü",
    payload: new Uint8Array(0),
    qos: 0,
  }),
  { name: "PUBACK", bytes: puback(9) },
  takenItem("PUBLISH QoS 1 max id", {
    topic: "x",
    payload: filler(130),
    qos: 1,
    messageId: 0xffff,
    retain: true,
  }),
];
const mixedBytes = concat(mixed.map((i) => i.bytes));

Deno.test("encoder: variable byte integers match the spec's table (MQTT 5 §1.5.5)", () => {
  const table: [number, number[]][] = [
    [0, [0x00]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [16383, [0xff, 0x7f]],
    [16384, [0x80, 0x80, 0x01]],
    [2097151, [0xff, 0xff, 0x7f]],
    [2097152, [0x80, 0x80, 0x80, 0x01]],
    [268435455, [0xff, 0xff, 0xff, 0x7f]],
  ];
  for (const [n, enc] of table) assertEquals(vbi(n), enc, `vbi(${n})`);
});

Deno.test("splitter: mixed stream in one chunk takes QoS 0/1 PUBLISH and forwards the rest", () => {
  const rig = feedAll([mixedBytes]);
  assertResult(result(rig), expected(mixed));
  assertEquals(rig.taken.length, 4);
  assertEquals(rig.splitter.pending, 0);
  assertEquals(rig.routeCalls, 4);
});

Deno.test("splitter: mixed stream split in two at every byte boundary", () => {
  const want = expected(mixed);
  for (let cut = 0; cut <= mixedBytes.length; cut++) {
    const rig = feedAll(splitAt(mixedBytes, [cut]));
    assertResult(result(rig), want, `cut at ${cut}`);
    assertEquals(rig.splitter.pending, 0, `cut at ${cut}`);
  }
});

Deno.test("splitter: mixed stream split in three at many boundary pairs", () => {
  const want = expected(mixed);
  for (let a = 1; a < mixedBytes.length; a += 3) {
    for (let b = a; b < mixedBytes.length; b += 7) {
      const rig = feedAll(splitAt(mixedBytes, [a, b]));
      assertResult(result(rig), want, `cuts at ${a}, ${b}`);
    }
  }
});

Deno.test("splitter: mixed stream fed one byte at a time", () => {
  const rig = feedAll(oneByteChunks(mixedBytes));
  assertResult(result(rig), expected(mixed));
  assertEquals(rig.splitter.pending, 0);
});

Deno.test("splitter: each packet alone comes out as its table row says", () => {
  for (const item of mixed) {
    const rig = feedAll([item.bytes]);
    assertResult(result(rig), expected([item]), item.name);
  }
});

// ---------------------------------------------------------------- MQTT 5

const v5Cases: { name: string; spec: PublishSpec; take: boolean }[] = [
  {
    name: "QoS 0, property length 0",
    spec: { topic: "a/b", payload: bytesOf("1"), qos: 0, props: [] },
    take: true,
  },
  {
    name: "QoS 1, property length 0, retained",
    spec: { topic: "a/b", payload: filler(300), qos: 1, messageId: 42, props: [], retain: true },
    take: true,
  },
  {
    name: "topic alias property",
    spec: { topic: "a/b", payload: bytesOf("2"), qos: 0, props: [0x23, ...u16(1)] },
    take: false,
  },
  {
    name: "topic alias with empty topic",
    spec: { topic: "", payload: bytesOf("2"), qos: 1, messageId: 3, props: [0x23, ...u16(1)] },
    take: false,
  },
  {
    name: "user property",
    spec: {
      topic: "a/b",
      payload: bytesOf("3"),
      qos: 1,
      messageId: 5,
      props: [0x26, ...str("site"), ...str("north")],
    },
    take: false,
  },
  {
    name: "payload format indicator",
    spec: { topic: "a/b", payload: bytesOf("4"), qos: 0, props: [0x01, 0x01] },
    take: false,
  },
];

Deno.test("splitter v5: PUBLISH without properties is taken, with properties forwarded", () => {
  for (const c of v5Cases) {
    const bytes = publish(c.spec);
    const item: Item = c.take
      ? { name: c.name, bytes, taken: expectTaken(c.spec) }
      : { name: c.name, bytes };
    const framed = [{ name: "CONNACK", bytes: connack(true) }, item, {
      name: "PINGRESP",
      bytes: pingresp(),
    }];
    const whole = concat(framed.map((i) => i.bytes));
    assertResult(result(feedAll([whole], true)), expected(framed), c.name);
    assertResult(
      result(feedAll(oneByteChunks(whole), true)),
      expected(framed),
      `${c.name} bytewise`,
    );
  }
});

Deno.test("splitter v3: the same PUBLISH layouts without property length are taken", () => {
  for (const c of v5Cases.filter((c) => c.spec.topic !== "")) {
    const spec = { ...c.spec, props: undefined };
    const rig = feedAll([publish(spec)], false);
    assertResult(result(rig), expected([takenItem(c.name, spec)]), c.name);
  }
});

Deno.test("splitter: the v5 flag decides whether a property length is read", () => {
  // The MQTT 5 bytes with a topic alias, read as MQTT 3.1.1: the properties are payload.
  const spec: PublishSpec = { topic: "a/b", payload: bytesOf("2"), qos: 0, props: [0x23, 0, 1] };
  const bytes = publish(spec);
  assertResult(result(feedAll([bytes], true)), { taken: [], forwarded: bytes });
  const v3 = feedAll([bytes], false);
  assertEquals(v3.taken, [{
    ...expectTaken(spec),
    payload: Uint8Array.from([3, 0x23, 0, 1, ...bytesOf("2")]),
  }]);
  assertEquals(v3.forwardedBytes, new Uint8Array(0));
  // A v3 PUBLISH whose payload starts with 0 reads, as MQTT 5, as property length 0.
  const v3spec: PublishSpec = { topic: "t", payload: Uint8Array.of(0, 9, 9), qos: 0 };
  assertEquals(feedAll([publish(v3spec)], true).taken, [{
    ...expectTaken(v3spec),
    payload: Uint8Array.of(9, 9),
  }]);
});

// ---------------------------------------------------------------- sizes

/** A QoS 1 PUBLISH spec whose whole packet is exactly `total` bytes. */
function specOfTotal(total: number): PublishSpec {
  const topic = "big/blob";
  const fixedBody = 2 + topic.length + 2;
  let payloadLength = total - 2 - fixedBody;
  while (1 + vbi(fixedBody + payloadLength).length + fixedBody + payloadLength > total) {
    payloadLength--;
  }
  return { topic, payload: filler(payloadLength), qos: 1, messageId: 300 };
}

Deno.test("splitter: size limit: at MAX_TAKEN_PACKET taken, above forwarded", () => {
  assertEquals(MAX_TAKEN_PACKET, 64 * 1024);
  const rows = [
    { total: MAX_TAKEN_PACKET - 1, take: true },
    { total: MAX_TAKEN_PACKET, take: true },
    { total: MAX_TAKEN_PACKET + 1, take: false },
    { total: 200_000, take: false },
  ];
  for (const row of rows) {
    const spec = specOfTotal(row.total);
    const bytes = publish(spec);
    assertEquals(bytes.length, row.total, "encoder sized the packet");
    const before = takenItem("before", { topic: "s/1", payload: bytesOf("a"), qos: 0 });
    const after = takenItem("after", { topic: "s/2", payload: bytesOf("b"), qos: 1, messageId: 2 });
    const item: Item = row.take ? takenItem("big", spec) : { name: "big", bytes };
    const items = [before, item, { name: "PINGRESP", bytes: pingresp() }, after];
    const whole = concat(items.map((i) => i.bytes));
    const want = expected(items);
    const label = `total ${row.total}`;
    assertResult(result(feedAll([whole])), want, label);
    for (const size of [1000, 4096, 65535]) {
      const cuts: number[] = [];
      for (let c = size; c < whole.length; c += size) cuts.push(c);
      assertResult(result(feedAll(splitAt(whole, cuts))), want, `${label}, chunks of ${size}`);
    }
  }
});

Deno.test("splitter: an oversized PUBLISH is forwarded as its bytes arrive, not held", () => {
  const bytes = publish(specOfTotal(MAX_TAKEN_PACKET + 10_000));
  const rig = new Rig();
  let fed = 0;
  for (const chunk of splitAt(bytes, [1, 2, 3, 4, 5000, 40_000, 70_000])) {
    rig.feedRun(chunk);
    fed += chunk.length;
    // The remaining length takes 3 bytes: until the fixed header is whole, it stays pending.
    const held = fed < 4 ? fed : 0;
    assertEquals(rig.splitter.pending, held, `after ${fed} bytes`);
    assertSameBytes(rig.forwardedBytes, bytes.slice(0, fed - held), `after ${fed} bytes`);
  }
  assertEquals(rig.taken, []);
  assertEquals(rig.routeCalls, 0);
});

Deno.test("splitter: remaining length in 1, 2 and 3 bytes parses", () => {
  const rows = [
    { payload: 100, lengthBytes: 1 },
    { payload: 200, lengthBytes: 2 },
    { payload: 16_000, lengthBytes: 2 },
    { payload: 20_000, lengthBytes: 3 },
  ];
  for (const row of rows) {
    const spec: PublishSpec = { topic: "len/test", payload: filler(row.payload), qos: 0 };
    const bytes = publish(spec);
    assertEquals(vbi(bytes.length - 1 - row.lengthBytes).length, row.lengthBytes);
    assertEquals(bytes[row.lengthBytes] & 0x80, 0, "last length byte");
    const items = [takenItem("p", spec), { name: "PINGRESP", bytes: pingresp() }];
    const whole = concat(items.map((i) => i.bytes));
    assertResult(result(feedAll([whole])), expected(items), `payload ${row.payload}`);
    // Split inside the remaining length itself.
    for (let cut = 1; cut <= row.lengthBytes + 1; cut++) {
      assertResult(
        result(feedAll(splitAt(whole, [cut]))),
        expected(items),
        `payload ${row.payload}, cut ${cut}`,
      );
    }
  }
});

// ---------------------------------------------------------------- invalid input goes to mqtt.js

const invalid: { name: string; bytes: Uint8Array }[] = [
  { name: "zero-length topic", bytes: publish({ topic: "", payload: bytesOf("x"), qos: 0 }) },
  {
    name: "zero-length topic QoS 1",
    bytes: publish({ topic: "", payload: bytesOf("x"), qos: 1, messageId: 4 }),
  },
  {
    name: "topic not UTF-8 (C3 28)",
    bytes: publish({ topic: Uint8Array.of(0x61, 0xc3, 0x28), payload: bytesOf("x"), qos: 0 }),
  },
  {
    name: "topic not UTF-8 (FF)",
    bytes: publish({ topic: Uint8Array.of(0xff), payload: bytesOf("x"), qos: 1, messageId: 1 }),
  },
  {
    name: "topic with a UTF-16 surrogate (ED A0 80)",
    bytes: publish({ topic: Uint8Array.of(0xed, 0xa0, 0x80), payload: bytesOf("x"), qos: 0 }),
  },
  {
    name: "topic cut by a multi-byte sequence",
    bytes: publish({ topic: Uint8Array.of(0x61, 0xe2, 0x82), payload: bytesOf("x"), qos: 0 }),
  },
  {
    name: "QoS 1 packet id 0",
    bytes: publish({ topic: "a", payload: bytesOf("x"), qos: 1, messageId: 0 }),
  },
  { name: "QoS 3 flags", bytes: publish({ topic: "a", payload: bytesOf("x"), qos: 3 }) },
  {
    name: "QoS 3 flags with packet id",
    bytes: publish({ topic: "a", payload: bytesOf("x"), qos: 3, messageId: 5 }),
  },
  { name: "topic length beyond the packet", bytes: packet(0x30, [0, 9, 0x61, 0x62]) },
  { name: "no topic length", bytes: packet(0x30, [0]) },
  { name: "empty PUBLISH", bytes: packet(0x30, []) },
  { name: "QoS 1 without packet id", bytes: packet(0x32, [0, 1, 0x61, 0]) },
];

Deno.test("splitter: invalid PUBLISH packets are forwarded whole, the stream stays in step", () => {
  const next = takenItem("next", { topic: "ok/1", payload: bytesOf("ok"), qos: 1, messageId: 1 });
  for (const bad of invalid) {
    const items = [{ name: bad.name, bytes: bad.bytes }, next];
    const whole = concat(items.map((i) => i.bytes));
    const want = expected(items);
    assertResult(result(feedAll([whole])), want, bad.name);
    assertResult(result(feedAll(oneByteChunks(whole))), want, `${bad.name} bytewise`);
    for (const v5 of [false, true]) {
      const rig = feedAll([bad.bytes], v5);
      assertResult(result(rig), { taken: [], forwarded: bad.bytes }, `${bad.name} v5=${v5}`);
    }
  }
});

Deno.test("splitter: MQTT 5 PUBLISH cut before its property length is forwarded", () => {
  const bytes = packet(0x32, [0, 1, 0x61, ...u16(3)]);
  assertResult(result(feedAll([bytes], true)), { taken: [], forwarded: bytes });
});

Deno.test("splitter: topic keeps a leading U+FEFF (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4)", () => {
  // "0xEF 0xBB 0xBF is always to be interpreted as U+FEFF ... MUST NOT be skipped over or
  // stripped off by a packet receiver"; mqtt.js (mqtt-packet) keeps it, so the taken topic must
  // be the same string mqtt.js would have produced.
  const topic = "\uFEFFplant/temp";
  const spec: PublishSpec = { topic, payload: bytesOf("1"), qos: 0 };
  assertEquals(Array.from(publish(spec).subarray(4, 7)), [0xef, 0xbb, 0xbf]);
  assertEquals(feedAll([publish(spec)]).taken.map((t) => t.topic), [topic]);
});

// ---------------------------------------------------------------- route(): wait and pass

function routeSeq(ways: Way[]): () => Way {
  let i = 0;
  return () => {
    assert(i < ways.length, "route() called more often than expected");
    return ways[i++];
  };
}

Deno.test("splitter: wait stops before the PUBLISH, a later run goes on from there", () => {
  const publishes = mixed.filter((i) => i.taken);
  for (let waitAt = 0; waitAt < publishes.length; waitAt++) {
    const rig = new Rig();
    rig.splitter.feed(mixedBytes);
    const ways: Way[] = [...Array(waitAt).fill("take"), "wait"];
    assertEquals(rig.run(routeSeq(ways)), false, `wait at ${waitAt}`);
    // Everything before the waiting PUBLISH came out, nothing after it.
    const stop = mixed.indexOf(publishes[waitAt]);
    const head = expected(mixed.slice(0, stop));
    assertResult(result(rig), head, `wait at ${waitAt}`);
    const rest = mixedBytes.length - concat(mixed.slice(0, stop).map((i) => i.bytes)).length;
    assertEquals(rig.splitter.pending, rest, `pending while waiting at ${waitAt}`);
    // Asking again while the source still cannot take: nothing moves.
    assertEquals(rig.run(() => "wait"), false);
    assertResult(result(rig), head);
    assertEquals(rig.splitter.pending, rest);
    // Go on: exactly the rest, no duplicate, no loss.
    assertEquals(rig.run(), true);
    assertResult(result(rig), expected(mixed), `resumed after wait at ${waitAt}`);
    assertEquals(rig.splitter.pending, 0);
  }
});

Deno.test("splitter: bytes fed while waiting come after the waiting PUBLISH", () => {
  for (let cut = 1; cut < mixedBytes.length; cut++) {
    const rig = new Rig();
    let waited = false;
    // Wait once, at the first PUBLISH route() is asked about.
    const route = (): Way => {
      if (waited) return "take";
      waited = true;
      return "wait";
    };
    const [a, b] = splitAt(mixedBytes, [cut]);
    if (!rig.feedRun(a, route)) assertEquals(rig.run(() => "wait"), false);
    rig.splitter.feed(b);
    // The wait may also fall on this run, when `a` held no whole PUBLISH.
    if (!rig.run(route)) assertEquals(rig.run(route), true, `cut ${cut}`);
    assert(waited, `cut ${cut}: route() was asked`);
    assertResult(result(rig), expected(mixed), `cut ${cut}`);
  }
});

Deno.test("splitter: pass forwards the PUBLISH bytes in their place", () => {
  const publishes = mixed.filter((i) => i.taken);
  // Every combination of take/pass over the four PUBLISH packets.
  for (let mask = 0; mask < 1 << publishes.length; mask++) {
    const ways: Way[] = publishes.map((_, i) => (mask & (1 << i) ? "pass" : "take"));
    const items = mixed.map((i) => {
      const k = publishes.indexOf(i);
      return k >= 0 && ways[k] === "pass" ? { name: i.name, bytes: i.bytes } : i;
    });
    const rig = new Rig();
    rig.splitter.feed(mixedBytes);
    assertEquals(rig.run(routeSeq(ways)), true);
    assertResult(result(rig), expected(items), `ways ${ways.join(",")}`);
    assertEquals(rig.routeCalls, publishes.length);
    const bytewise = new Rig();
    const seq = routeSeq(ways);
    for (const c of oneByteChunks(mixedBytes)) assertEquals(bytewise.feedRun(c, seq), true);
    assertResult(result(bytewise), expected(items), `bytewise ways ${ways.join(",")}`);
  }
});

Deno.test("splitter: route() is not asked about packets it may not take", () => {
  const items = mixed.filter((i) => !i.taken).concat(
    invalid.map((b) => ({ name: b.name, bytes: b.bytes })),
  );
  const rig = new Rig();
  rig.splitter.feed(concat(items.map((i) => i.bytes)));
  assertEquals(rig.run(() => "wait"), true);
  assertResult(result(rig), expected(items));
  assertEquals(rig.routeCalls, 0);
});

// ---------------------------------------------------------------- pending

Deno.test("splitter: pending counts the bytes of an incomplete packet", () => {
  assertEquals(new PublishSplitter(false).pending, 0);
  const rows: { name: string; bytes: Uint8Array; held: (fed: number, total: number) => number }[] =
    [
      {
        // A PUBLISH it may take is held until whole.
        name: "PUBLISH QoS 1",
        bytes: publish({ topic: "p/q", payload: filler(300), qos: 1, messageId: 11 }),
        held: (fed, total) => (fed < total ? fed : 0),
      },
      {
        // Any other packet is held only until its fixed header is whole, then forwarded.
        name: "SUBACK",
        bytes: suback(2, [0, 1, 2]),
        held: (fed) => (fed < 2 ? fed : 0),
      },
      {
        name: "QoS 2 PUBLISH with 2-byte remaining length",
        bytes: publish({ topic: "q2", payload: filler(500), qos: 2, messageId: 3 }),
        held: (fed) => (fed < 3 ? fed : 0),
      },
    ];
  for (const row of rows) {
    const rig = new Rig();
    for (let fed = 1; fed <= row.bytes.length; fed++) {
      rig.feedRun(row.bytes.subarray(fed - 1, fed));
      const held = row.held(fed, row.bytes.length);
      assertEquals(rig.splitter.pending, held, `${row.name} after ${fed} bytes`);
      assertEquals(
        rig.forwardedBytes.length + rig.taken.length * row.bytes.length,
        fed - held,
        `${row.name}: bytes not pending came out after ${fed} bytes`,
      );
    }
  }
});

Deno.test("splitter: pending after a whole PUBLISH and part of the next", () => {
  const first = takenItem("first", { topic: "a", payload: bytesOf("1"), qos: 0 });
  const second = publish({ topic: "b", payload: bytesOf("22"), qos: 1, messageId: 2 });
  for (let part = 1; part < second.length; part++) {
    const rig = feedAll([concat([first.bytes, second.subarray(0, part)])]);
    assertEquals(rig.taken, [first.taken], `part ${part}`);
    assertEquals(rig.splitter.pending, part, `part ${part}`);
  }
});
