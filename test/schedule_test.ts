/** The schedules source Workers share: the poll grid and reconnect backoff. */
import { assert, assertEquals } from "./assert.ts";
import { nextTick, RECONNECT_MAX_MS, reconnectDelayMs } from "../src/sources/schedule.ts";

Deno.test("schedule: the poll grid does not drift and skips missed ticks", () => {
  assertEquals(nextTick(1000, 100, 1000), 1100);
  assertEquals(nextTick(1000, 100, 1099.9), 1100);
  assertEquals(nextTick(1000, 100, 1100), 1200);
  assertEquals(nextTick(1000, 100, 1350), 1400, "an overrun cycle skips 1200 and 1300");
  assertEquals(nextTick(1000, 200, 1199), 1200);
  assertEquals(nextTick(1000, 200, 1730), 1800);
});

Deno.test("schedule: reconnect backoff doubles from 1 s with jitter, capped at 30 s", () => {
  assertEquals([0, 1, 2, 3].map((a) => reconnectDelayMs(a, 0.5)), [1000, 2000, 4000, 8000]);
  assertEquals(reconnectDelayMs(0, 0), 800);
  assertEquals(reconnectDelayMs(20, 0), 24_000);
  // The jitter never takes a delay over the cap (it used to reach 36 s for OPC UA).
  assertEquals(reconnectDelayMs(20, 0.999999), RECONNECT_MAX_MS);
  for (const a of [6, 7, 20, 1000]) {
    assert(reconnectDelayMs(a, 0.999999) <= RECONNECT_MAX_MS, `attempt ${a}`);
  }
});

Deno.test("schedule: a source may start its backoff lower (Modbus: 500 ms)", () => {
  assertEquals([0, 1, 2, 3].map((a) => reconnectDelayMs(a, 0.5, 500)), [500, 1000, 2000, 4000]);
  assertEquals(reconnectDelayMs(0, 0, 500), 400);
  assertEquals(reconnectDelayMs(0, 0.999999, 500), 600);
});
