/** Modbus source helpers: poll grid, reconnect backoff, endpoint parsing, error codes. */
import { assert, assertEquals } from "./assert.ts";
import { BACKOFF_MAX_MS, backoffMs, nextTick } from "../src/sources/modbus/timing.ts";
import { tcpTarget } from "../src/sources/modbus/endpoint.ts";
import {
  errorCode,
  MODBUS_DISCONNECTED_CODE,
  MODBUS_TIMEOUT_CODE,
} from "../src/sources/modbus/readings.ts";

Deno.test("modbus timing: the poll grid does not drift and skips missed ticks", () => {
  assertEquals(nextTick(1000, 100, 1000), 1100);
  assertEquals(nextTick(1000, 100, 1099.9), 1100);
  assertEquals(nextTick(1000, 100, 1100), 1200);
  assertEquals(nextTick(1000, 100, 1350), 1400, "an overrun cycle skips 1200 and 1300");
});

Deno.test("modbus timing: backoff doubles from 500 ms with jitter, capped at 30 s", () => {
  assertEquals([0, 1, 2, 3].map((a) => backoffMs(a, 0.5)), [500, 1000, 2000, 4000]);
  assertEquals(backoffMs(0, 0), 400);
  assertEquals(backoffMs(0, 0.999999), 600);
  for (const a of [6, 7, 20, 1000]) {
    assert(backoffMs(a, 0.999999) <= BACKOFF_MAX_MS, `attempt ${a}`);
  }
  assertEquals(backoffMs(20, 0), 24_000);
});

Deno.test("modbus endpoint: host and port, 502 by default; other transports refused", () => {
  assertEquals(tcpTarget("modbus://127.0.0.1:5020"), { host: "127.0.0.1", port: 5020 });
  assertEquals(tcpTarget("modbus://plc.local"), { host: "plc.local", port: 502 });
  assertEquals(tcpTarget("modbus://[::1]:1502/"), { host: "::1", port: 1502 });
  let message = "";
  try {
    tcpTarget("modbusrtu+tcp://gw:4001");
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message.includes("only modbus://host[:port] (Modbus TCP) is supported"), message);
});

Deno.test("modbus errors: exception codes, timeouts and connection loss", () => {
  assertEquals(errorCode({ modbusCode: 2, message: "Modbus exception 2" }), 2);
  assertEquals(errorCode({ modbusCode: 11 }), 11);
  assertEquals(errorCode({ errno: "ETIMEDOUT", message: "Timed out" }), MODBUS_TIMEOUT_CODE);
  assertEquals(
    errorCode({ errno: "ECONNREFUSED", message: "Port Not Open" }),
    MODBUS_DISCONNECTED_CODE,
  );
  assertEquals(errorCode(new Error("socket hang up")), MODBUS_DISCONNECTED_CODE);
});
