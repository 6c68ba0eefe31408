/** MQTT payload decoding, table-driven: every shape, field paths, timestamps, errors. */
import { assertEquals } from "./assert.ts";
import {
  decodePayload,
  parseTimestamp,
  type PayloadOptions,
  type PayloadResult,
} from "../src/sources/mqtt/payload.ts";

const enc = new TextEncoder();
const auto: PayloadOptions = { format: "auto" };
const T = Date.parse("2024-05-06T07:08:09.250Z") * 1000;

const cases: Array<[string, string | Uint8Array, PayloadOptions, PayloadResult]> = [
  ["plain integer", "42", auto, { ok: true, values: [{ value: 42 }] }],
  ["plain float with spaces", " -3.5e1 \n", auto, { ok: true, values: [{ value: -35 }] }],
  ["boolean", "false", auto, { ok: true, values: [{ value: false }] }],
  ["text", "RUNNING", auto, { ok: true, values: [{ value: "RUNNING" }] }],
  ["text that starts with a digit", "12 bar", auto, { ok: true, values: [{ value: "12 bar" }] }],
  ["empty payload (retained clear)", "", auto, { ok: true, values: [] }],
  ["JSON string", '"on"', auto, { ok: true, values: [{ value: "on" }] }],
  ["JSON null", "null", auto, { ok: true, values: [{ value: null }] }],
  [
    "object with default paths",
    '{"value": 21.5, "timestamp": "2024-05-06T07:08:09.250Z", "quality": "Good", "unit": "degC"}',
    auto,
    {
      ok: true,
      values: [{ value: 21.5, event_time: T, quality: "good", quality_code: 0, unit: "degC" }],
    },
  ],
  [
    "object with configured nested paths, epoch seconds",
    '{"data": {"v": 7, "ts": 1714979289.25, "q": 192, "eu": "bar"}}',
    {
      format: "json",
      value_path: "data.v",
      timestamp_path: "data.ts",
      quality_path: "data.q",
      unit_path: "data.eu",
    },
    { ok: true, values: [{ value: 7, event_time: T, quality_code: 192, unit: "bar" }] },
  ],
  [
    "epoch milliseconds and a boolean quality",
    '{"value": true, "timestamp": 1714979289250, "quality": false}',
    auto,
    { ok: true, values: [{ value: true, event_time: T, quality: "bad", quality_code: 2 }] },
  ],
  [
    "configured value_path missing",
    '{"temp": 1}',
    { format: "json", value_path: "reading" },
    { ok: false, reason: "value_path 'reading' is not in the payload" },
  ],
  [
    "bad timestamp",
    '{"value": 1, "timestamp": "yesterday"}',
    auto,
    { ok: false, reason: 'timestamp "yesterday" is not ISO 8601 or epoch time' },
  ],
  [
    "bad quality word",
    '{"value": 1, "quality": "fine"}',
    auto,
    { ok: false, reason: 'quality "fine" is not good, uncertain, bad or a number' },
  ],
  [
    "multi-value object",
    '{"timestamp": 1714979289250, "temp": 20, "state": "ok", "cfg": {"a": 1}}',
    auto,
    {
      ok: true,
      values: [
        { value: 20, name: "temp", event_time: T },
        { value: "ok", name: "state", event_time: T },
        { value: { a: 1 }, name: "cfg", event_time: T, value_type: "json" },
      ],
    },
  ],
  [
    "Kepware IoT Gateway",
    JSON.stringify({
      timestamp: 1714979289250,
      values: [
        { id: "Ch1.Dev1.Speed", v: 1500, q: true, t: 1714979289000 },
        { id: "Ch1.Dev1.Mode", v: "auto", q: false },
      ],
    }),
    auto,
    {
      ok: true,
      values: [
        {
          value: 1500,
          name: "Ch1.Dev1.Speed",
          event_time: 1714979289000000,
          quality: "good",
          quality_code: 0,
        },
        { value: "auto", name: "Ch1.Dev1.Mode", event_time: T, quality: "bad", quality_code: 2 },
      ],
    },
  ],
  [
    "array of objects, named by name/id or index",
    '[{"name": "a", "value": 1}, {"id": "b", "value": 2, "unit": "A"}, {"value": 3}]',
    auto,
    {
      ok: true,
      values: [
        { value: 1, name: "a" },
        { value: 2, name: "b", unit: "A" },
        { value: 3, name: "2" },
      ],
    },
  ],
  [
    "array of numbers is one JSON value",
    "[1, 2, 3]",
    auto,
    { ok: true, values: [{ value: [1, 2, 3], value_type: "json" }] },
  ],
  [
    "malformed JSON object",
    '{"value": 1,',
    auto,
    { ok: false, reason: "payload is not valid JSON: " },
  ],
  [
    "format json rejects plain text",
    "hello",
    { format: "json" },
    { ok: false, reason: "payload is not valid JSON: " },
  ],
  ["format text keeps JSON as text", '{"a":1}', { format: "text" }, {
    ok: true,
    values: [{ value: '{"a":1}' }],
  }],
  [
    "format bytes",
    "AB",
    { format: "bytes" },
    { ok: true, values: [{ value: new Uint8Array([65, 66]), value_type: "bytes" }] },
  ],
  [
    "invalid UTF-8 in auto is bytes",
    new Uint8Array([0xff, 0x00, 0x80]),
    auto,
    { ok: true, values: [{ value: new Uint8Array([0xff, 0x00, 0x80]), value_type: "bytes" }] },
  ],
  [
    "control characters in auto are bytes",
    new Uint8Array([0x41, 0x01, 0x42]),
    auto,
    { ok: true, values: [{ value: new Uint8Array([0x41, 0x01, 0x42]), value_type: "bytes" }] },
  ],
  [
    "invalid UTF-8 with format text",
    new Uint8Array([0xc3]),
    { format: "text" },
    { ok: false, reason: "payload is not valid UTF-8 (format text)" },
  ],
  [
    "a real U+FFFD is valid UTF-8 text",
    '{"value": "bad \uFFFD sign"}',
    auto,
    { ok: true, values: [{ value: "bad \uFFFD sign" }] },
  ],
  [
    "valid UTF-8 then an invalid byte in auto is bytes",
    new Uint8Array([0x7b, 0x22, 0xc3, 0xa9, 0x22, 0xff, 0x7d]),
    auto,
    {
      ok: true,
      values: [{
        value: new Uint8Array([0x7b, 0x22, 0xc3, 0xa9, 0x22, 0xff, 0x7d]),
        value_type: "bytes",
      }],
    },
  ],
  [
    "dotted value_path",
    '{"data": {"pv": 7.5}, "timestamp": 1714979289250}',
    { format: "auto", value_path: "data.pv" },
    { ok: true, values: [{ value: 7.5, event_time: T }] },
  ],
];

for (const [name, input, opts, want] of cases) {
  Deno.test(`mqtt payload: ${name}`, () => {
    const bytes = typeof input === "string" ? enc.encode(input) : input;
    const got = decodePayload(bytes, opts);
    if (!want.ok && !got.ok && want.reason.endsWith(": ")) {
      // Parser messages differ between engines; compare the prefix only.
      assertEquals(got.reason.slice(0, want.reason.length), want.reason);
      return;
    }
    assertEquals(got, want);
  });
}

Deno.test("mqtt payload: timestamps in every unit", () => {
  const ms = 1714979289250;
  for (
    const ts of [ms / 1000, ms, ms * 1000, ms * 1e6, String(ms), "2024-05-06T07:08:09.250Z"]
  ) {
    assertEquals(parseTimestamp(ts), ms * 1000, `${ts}`);
  }
  assertEquals(parseTimestamp("2024-05-06T09:08:09.250+02:00"), ms * 1000);
  for (const bad of ["May 6", -1, NaN, true, "2024-13-45T00:00:00Z"]) {
    assertEquals(parseTimestamp(bad), undefined, `${bad}`);
  }
});

Deno.test("mqtt payload: a timestamp without an offset is UTC, whatever the machine's zone", async () => {
  const script = `import { parseTimestamp } from ${
    JSON.stringify(import.meta.resolve("../src/sources/mqtt/payload.ts"))
  };
console.log(JSON.stringify(["2024-05-06T07:08:09.250", "2024-05-06 07:08:09.250"].map(parseTimestamp)));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: { TZ: "Asia/Tokyo" },
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assertEquals(out.code, 0);
  const us = 1714979289250 * 1000;
  assertEquals(JSON.parse(new TextDecoder().decode(out.stdout)), [us, us]);
});
