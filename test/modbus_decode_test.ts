/** Modbus register decoding: every data type in every byte/word order, bits, scale and offset. */
import { assertEquals } from "./assert.ts";
import {
  type ByteOrder,
  decodeWords,
  type RawValue,
  scaleValue,
  valueBytes,
} from "../src/sources/modbus/decode.ts";
import type { ModbusDataType } from "../src/sources/modbus/schema.ts";

interface Case {
  words: number[];
  type: ModbusDataType;
  order?: ByteOrder;
  bit?: number;
  want: RawValue;
}

const cases: Case[] = [
  // The issue's examples.
  { words: [0x4148, 0x0000], type: "float", order: "ABCD", want: 12.5 },
  { words: [0x0000, 0x4148], type: "float", order: "CDAB", want: 12.5 },
  { words: [0xffff], type: "int16", want: -1 },
  { words: [0xffff], type: "uint16", want: 65535 },
  { words: [0x0001, 0x0002], type: "int32", order: "ABCD", want: 65538 },
  // float32 12.5 = 0x41480000 in the other two orders.
  { words: [0x0000, 0x4841], type: "float32", order: "DCBA", want: 12.5 },
  { words: [0x4841, 0x0000], type: "float32", order: "BADC", want: 12.5 },
  { words: [0xc2f6, 0xe979], type: "float32", want: -123.456 },
  // 16-bit: ABCD/CDAB as is, DCBA/BADC swap the bytes.
  { words: [0x1234], type: "uint16", order: "CDAB", want: 0x1234 },
  { words: [0x1234], type: "uint16", order: "DCBA", want: 0x3412 },
  { words: [0x1234], type: "uint16", order: "BADC", want: 0x3412 },
  { words: [0x8000], type: "int16", want: -32768 },
  { words: [0x7fff], type: "int16", want: 32767 },
  { words: [0x00ff], type: "int16", order: "BADC", want: -256 },
  // 32-bit integers: 0x01020304 in all four orders.
  { words: [0x0102, 0x0304], type: "uint32", order: "ABCD", want: 0x01020304 },
  { words: [0x0403, 0x0201], type: "uint32", order: "DCBA", want: 0x01020304 },
  { words: [0x0201, 0x0403], type: "uint32", order: "BADC", want: 0x01020304 },
  { words: [0x0304, 0x0102], type: "uint32", order: "CDAB", want: 0x01020304 },
  { words: [0xffff, 0xfffe], type: "int32", want: -2 },
  { words: [0xfffe, 0xffff], type: "int32", order: "CDAB", want: -2 },
  { words: [0xffff, 0xffff], type: "uint32", want: 4294967295 },
  { words: [0x8000, 0x0000], type: "int32", want: -2147483648 },
  // 64-bit integers: 0x0102030405060708 in all four orders, beyond 2^53 as bigint.
  {
    words: [0x0102, 0x0304, 0x0506, 0x0708],
    type: "uint64",
    order: "ABCD",
    want: 0x0102030405060708n,
  },
  {
    words: [0x0807, 0x0605, 0x0403, 0x0201],
    type: "uint64",
    order: "DCBA",
    want: 0x0102030405060708n,
  },
  {
    words: [0x0201, 0x0403, 0x0605, 0x0807],
    type: "uint64",
    order: "BADC",
    want: 0x0102030405060708n,
  },
  {
    words: [0x0708, 0x0506, 0x0304, 0x0102],
    type: "uint64",
    order: "CDAB",
    want: 0x0102030405060708n,
  },
  { words: [0xffff, 0xffff, 0xffff, 0xffff], type: "uint64", want: 18446744073709551615n },
  { words: [0xffff, 0xffff, 0xffff, 0xffff], type: "int64", want: -1 },
  { words: [0x8000, 0, 0, 0], type: "int64", want: -9223372036854775808n },
  { words: [0, 0, 0x0001, 0x0000], type: "int64", want: 65536 },
  { words: [0x0020, 0, 0, 0], type: "uint64", want: 2n ** 53n }, // first unsafe integer
  { words: [0x001f, 0xffff, 0xffff, 0xffff], type: "uint64", want: 2 ** 53 - 1 },
  // float64: 12.5 = 0x4029000000000000, and pi.
  { words: [0x4029, 0, 0, 0], type: "float64", want: 12.5 },
  { words: [0, 0, 0, 0x2940], type: "float64", order: "DCBA", want: 12.5 },
  { words: [0x2940, 0, 0, 0], type: "float64", order: "BADC", want: 12.5 },
  { words: [0, 0, 0, 0x4029], type: "float64", order: "CDAB", want: 12.5 },
  { words: [0x4009, 0x21fb, 0x5444, 0x2d18], type: "float64", want: Math.PI },
  // Bits of a register and bool of a whole register.
  { words: [0x0005], type: "bool", bit: 0, want: true },
  { words: [0x0005], type: "bool", bit: 1, want: false },
  { words: [0x0005], type: "bool", bit: 2, want: true },
  { words: [0x8000], type: "bool", bit: 15, want: true },
  { words: [0x8000], type: "bool", want: true },
  { words: [0x0000], type: "bool", want: false },
  // Strings over N registers; trailing NULs cut; DCBA/BADC low byte first.
  { words: [0x4142, 0x4344], type: "string", want: "ABCD" },
  { words: [0x4142, 0x4300], type: "string", want: "ABC" },
  { words: [0x4241, 0x0043], type: "string", order: "BADC", want: "ABC" },
  { words: [0x4241, 0x4443], type: "string", order: "DCBA", want: "ABCD" },
  { words: [0x504c, 0x432d, 0x3031, 0, 0], type: "string", want: "PLC-01" },
  { words: [0, 0], type: "string", want: "" },
];

for (const c of cases) {
  const label = `${c.type}${c.bit !== undefined ? `.${c.bit}` : ""} ${c.order ?? "ABCD"} ` +
    `[${c.words.map((w) => `0x${w.toString(16).padStart(4, "0")}`).join(",")}]`;
  Deno.test(`modbus decode: ${label} reads ${String(c.want)}`, () => {
    const got = decodeWords(c.words, { dataType: c.type, byteOrder: c.order, bit: c.bit });
    assertEquals(typeof got, typeof c.want, "type");
    assertEquals(got, c.want);
  });
}

Deno.test("modbus decode: too few registers for the type is an error", () => {
  let message = "";
  try {
    decodeWords([0x4148], { dataType: "float32" });
  } catch (e) {
    message = (e as Error).message;
  }
  assertEquals(message, "float32 needs 2 registers, got 1");
});

Deno.test("modbus decode: valueBytes orders bytes most significant first", () => {
  assertEquals([...valueBytes([0x0304, 0x0102], "CDAB")], [1, 2, 3, 4]);
  assertEquals([...valueBytes([0x0403, 0x0201], "DCBA")], [1, 2, 3, 4]);
  assertEquals([...valueBytes([0x0201, 0x0403], "BADC")], [1, 2, 3, 4]);
  assertEquals([...valueBytes([0x10102, 0x0304], "ABCD")], [1, 2, 3, 4], "masked to 16 bits");
});

const scaleCases: Array<[RawValue, number | undefined, number | undefined, RawValue]> = [
  [235, 0.1, undefined, 23.5],
  [3, 0.1, undefined, 0.3],
  [-1, 0.1, undefined, -0.1],
  [1234, 0.01, undefined, 12.34],
  [100, 2, 5, 205],
  [12.5, undefined, -2.5, 10],
  [7, 0.5, undefined, 3.5],
  [2n ** 60n, undefined, undefined, 2n ** 60n],
  [2n ** 60n, 1, 0, 2n ** 60n],
  [2n ** 60n, 2, undefined, 2 ** 61],
  [true, 10, 1, true],
  ["txt", 10, 1, "txt"],
];

for (const [raw, scale, offset, want] of scaleCases) {
  Deno.test(`modbus scale: ${String(raw)} x ${scale ?? "-"} + ${offset ?? "-"} = ${String(want)}`, () => {
    assertEquals(scaleValue(raw, scale, offset), want);
  });
}
