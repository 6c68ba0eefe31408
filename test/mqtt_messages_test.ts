/** One MQTT message to readings: retained and stale values get quality uncertain. */
import { assertEquals } from "./assert.ts";
import { compileMessageReader } from "../src/sources/mqtt/messages.ts";

const enc = new TextEncoder();
const NOW = Date.parse("2026-11-29T12:00:00Z") * 1000;
const read = compileMessageReader({
  payload: { format: "auto" },
  retained_as_uncertain: true,
  stale_after_s: 60,
});

function one(payload: unknown, retain = false) {
  const r = read(
    "plant/line1/press1/temp",
    enc.encode(JSON.stringify(payload)),
    { qos: 1, retain },
    NOW,
  );
  if (!r.ok) throw new Error(r.reason);
  return r.readings[0];
}

Deno.test("mqtt messages: fresh, stale, retained and bad values", () => {
  const cases: Array<[string, unknown, boolean, string | undefined, number, boolean]> = [
    ["fresh value", { value: 1, timestamp: "2026-11-29T11:59:30Z" }, false, undefined, 0, false],
    [
      "older than stale_after_s",
      { value: 1, timestamp: "2026-11-29T11:58:00Z" },
      false,
      "uncertain",
      1,
      true,
    ],
    ["no timestamp is never stale", { value: 1 }, false, undefined, 0, false],
    ["retained", { value: 1, timestamp: "2026-11-29T11:59:59Z" }, true, "uncertain", 1, false],
    [
      "stale but bad stays bad",
      { value: 1, quality: "bad", timestamp: 1764417000 },
      false,
      "bad",
      2,
      true,
    ],
  ];
  for (const [name, payload, retain, quality, code, stale] of cases) {
    const r = one(payload, retain);
    assertEquals([r.quality, r.quality_code], [quality, code], name);
    assertEquals(JSON.parse(r.metadata as string).stale === true, stale, `${name}: metadata`);
  }
});

Deno.test("mqtt messages: the topic is the browse path rules and {browse_path} see", () => {
  const r = one({ value: 1 });
  assertEquals([r.address, r.browse_path], ["plant/line1/press1/temp", "plant/line1/press1/temp"]);
});
