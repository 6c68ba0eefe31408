/** Sparkplug 64-bit integers: the number fast path agrees with BigInt at and beyond 2^53. */
import { assertEquals } from "./assert.ts";
import { toInteger } from "../src/sources/mqtt/sparkplug/longs.ts";

/** A protobufjs-style Long (int32 halves) of a 64-bit pattern. */
function long(v: bigint) {
  const u = BigInt.asUintN(64, v);
  return {
    low: Number(BigInt.asIntN(32, u & 0xffffffffn)),
    high: Number(BigInt.asIntN(32, u >> 32n)),
  };
}

/** What the value is read as: a number when exact, else a bigint. */
function expected(v: bigint, signed: boolean): number | bigint {
  const b = signed ? BigInt.asIntN(64, v) : BigInt.asUintN(64, v);
  const safe = b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER);
  return safe ? Number(b) : b;
}

const MAX = 2n ** 53n;
const values = [
  0n,
  1n,
  -1n,
  1_700_000_000_123n,
  2n ** 32n,
  2n ** 32n - 1n,
  MAX - 1n,
  MAX,
  MAX + 1n,
  -(MAX - 1n),
  -MAX,
  -MAX - 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  2n ** 64n - 1n,
];

Deno.test("sparkplug longs: Long halves, signed and unsigned, around 2^53", () => {
  for (const v of values) {
    for (const signed of [true, false]) {
      assertEquals(toInteger(long(v), signed), expected(v, signed), `${v} signed=${signed}`);
    }
  }
});

Deno.test("sparkplug longs: numbers, bigints and text", () => {
  assertEquals(toInteger(42, false), 42);
  assertEquals(toInteger(-5, true), -5);
  assertEquals(toInteger(-1, false), 2n ** 64n - 1n);
  assertEquals(toInteger(Number.MAX_SAFE_INTEGER, false), Number.MAX_SAFE_INTEGER);
  assertEquals(toInteger(2 ** 53, true), 2n ** 53n);
  assertEquals(toInteger(12n, true), 12);
  assertEquals(toInteger("18446744073709551615", false), 2n ** 64n - 1n);
  assertEquals(toInteger("-3", true), -3);
  assertEquals(toInteger(1.5, true), 0);
});
