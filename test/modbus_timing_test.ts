/** Modbus source helpers: unit back-off, endpoint parsing, error codes. */
import { assert, assertEquals } from "./assert.ts";
import { UNIT_BACKOFF_MAX_MS, unitBackoffMs } from "../src/sources/modbus/timing.ts";
import { isDue, unitAnswered, unitsOf, unitTimedOut } from "../src/sources/modbus/units.ts";
import type { ReadRequest } from "../src/sources/modbus/plan.ts";
import { modbusTarget } from "../src/sources/modbus/endpoint.ts";
import {
  errorCode,
  MODBUS_DISCONNECTED_CODE,
  MODBUS_TIMEOUT_CODE,
} from "../src/sources/modbus/readings.ts";

Deno.test("modbus endpoint: TCP (502 by default) and RTU over TCP", () => {
  const tcp = (host: string, port: number) => ({ transport: "tcp" as const, host, port });
  assertEquals(modbusTarget("modbus://127.0.0.1:5020"), tcp("127.0.0.1", 5020));
  assertEquals(modbusTarget("modbus://plc.local"), tcp("plc.local", 502));
  assertEquals(modbusTarget("modbus://[::1]:1502/"), tcp("::1", 1502));
  assertEquals(modbusTarget("modbusrtu+tcp://gw:4001"), {
    transport: "rtu+tcp",
    host: "gw",
    port: 4001,
  });
  const refused = (endpoint: string) => {
    try {
      modbusTarget(endpoint);
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  assert(refused("modbusrtu+tcp://gw").includes("modbusrtu+tcp://host:port"), "port required");
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

Deno.test("modbus units: back-off after 3 timeouts, doubling from 2 intervals to 60 s", () => {
  assertEquals([0, 1, 2].map((f) => unitBackoffMs(f, 200)), [0, 0, 0]);
  assertEquals([3, 4, 5, 6].map((f) => unitBackoffMs(f, 200)), [400, 800, 1600, 3200]);
  assertEquals(unitBackoffMs(12, 200), UNIT_BACKOFF_MAX_MS);
  assertEquals(unitBackoffMs(10_000, 1000), UNIT_BACKOFF_MAX_MS);
});

Deno.test("modbus units: reads grouped per unit with its own timeout; back-off ends on an answer", () => {
  const req = (unitId: number, address: number) =>
    ({ unitId, table: "holding", address, count: 1, tags: [] }) as ReadRequest;
  const units = unitsOf([req(1, 0), req(1, 10), req(2, 0)], {
    timeout_ms: 1000,
    polling_interval_ms: 200,
    slaves: [{ unit_id: 2, timeout_ms: 150 }, { unit_id: 9 }],
  });
  assertEquals(units.map((u) => [u.unitId, u.timeoutMs, u.reads.length]), [[1, 1000, 2], [
    2,
    150,
    1,
  ]]);
  const u = units[1];
  assertEquals([unitTimedOut(u, 0, 200), unitTimedOut(u, 0, 200)], [0, 0]);
  assert(isDue(u, 0), "still polled every cycle after 2 timeouts");
  assertEquals(unitTimedOut(u, 1000, 200), 400);
  assert(!isDue(u, 1399) && isDue(u, 1400), "skipped for 400 ms after the third");
  assertEquals(unitTimedOut(u, 1400, 200), 800);
  assertEquals(unitAnswered(u), true);
  assert(isDue(u, 1401), "polled at the full rate again");
  assertEquals(unitAnswered(u), false);
});
