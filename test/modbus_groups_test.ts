/**
 * The Modbus source's report by exception (changes, heartbeat, quality
 * changes), poll groups (own schedule, own requests, own reporting) and
 * per-tag ISA-95 context, in its real Worker under the real host against the
 * simulator's Modbus TCP server on 127.0.0.1. Request counts come from the
 * server, never from timings.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import { float32Words, startModbusSimulator } from "../src/simulator/modbus_server.ts";
import { MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";

function source(port: number, keys: string, registers: string): string {
  return `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 1000
${keys}    registers:
${registers}`;
}

const of = (rows: Row[], address: string) => rows.filter((r) => r.address === address);

Deno.test("modbus report by exception: repeats suppressed, changes and quality changes emitted", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSourceUnderHost(source(
    port,
    "    report_by_exception: true\n    heartbeat_s: 3600\n",
    `      - {address: 0, type: holding, data_type: float32, name: temp, deadband: 0.5}
      - {address: 4, type: holding, data_type: int16, name: raw}
`,
  ));
  const reads = () => sim.readsAt(1, "holding", 0);
  try {
    await waitFor(() => of(run.rows, "1/holding/0").length === 1, "the first row");
    const first = reads();
    await waitFor(() => reads() >= first + 8, "8 more polls");
    assertEquals(of(run.rows, "1/holding/0").length, 1, "unchanged value not re-emitted");
    assertEquals(of(run.rows, "1/holding/4").length, 1, "unchanged int not re-emitted");

    sim.setHolding(1, 0, float32Words(13.25));
    await waitFor(() => of(run.rows, "1/holding/0").length === 2, "the changed value");
    assertEquals(of(run.rows, "1/holding/0").map((r) => r.value_num), [12.5, 13.25]);
    const changed = reads();
    await waitFor(() => reads() >= changed + 5, "5 more polls");
    assertEquals(of(run.rows, "1/holding/0").length, 2, "the new value is emitted once");
    assertEquals(of(run.rows, "1/holding/4").length, 1, "the other tag did not change");

    // A move within the deadband (0.5) of the last emitted value is not reported.
    sim.setHolding(1, 0, float32Words(13.5));
    const small = reads();
    await waitFor(() => reads() >= small + 5, "5 polls after a small move");
    assertEquals(of(run.rows, "1/holding/0").length, 2, "13.25 -> 13.5 is within the deadband");
    sim.setHolding(1, 0, float32Words(13.25));

    // Good -> bad: one bad row per tag, however many polls time out.
    sim.setSilent(1, true);
    const silent = reads();
    await waitFor(() => reads() >= silent + 3, "3 polls of the silent unit");
    await waitFor(() => of(run.rows, "1/holding/4").length === 2, "the bad row");
    const bad = of(run.rows, "1/holding/0").slice(2);
    assertEquals(bad.map((r) => [r.quality, r.quality_code]), [["bad", MODBUS_TIMEOUT_CODE]]);

    // Bad -> good with the same value as before: emitted (quality change).
    sim.setSilent(1, false);
    await waitFor(() => of(run.rows, "1/holding/0").length === 4, "the good row again");
    const back = of(run.rows, "1/holding/0")[3];
    assertEquals([back.quality, back.value_num], ["good", 13.25]);
    const rows = of(run.rows, "1/holding/4");
    assertEquals(rows.map((r) => r.quality), ["good", "bad", "good"]);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus report by exception: the heartbeat re-emits unchanged tags", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSourceUnderHost(source(
    port,
    "    report_by_exception: true\n    heartbeat_s: 0.3\n",
    `      - {address: 0, type: holding, data_type: float32, name: temp}
`,
  ));
  try {
    const rows = () => of(run.rows, "1/holding/0");
    await waitFor(() => rows().length >= 4, "3 heartbeats after the first row");
    assert(rows().every((r) => r.value_num === 12.5 && r.quality === "good"), "same value");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus poll groups: own requests and rates, own reporting, per-tag context", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSourceUnderHost(`sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    site: plant1
    area: press_shop
    line: line3
    equipment: press1
    polling_interval_ms: 200
    report_by_exception: true
    heartbeat_s: 3600
    poll_groups:
      - {name: fast, polling_interval_ms: 50, report_by_exception: false}
      - {name: slow, polling_interval_ms: 1000}
    registers:
      - {address: 0, type: holding, data_type: float32, name: temp, poll_group: fast}
      - {address: 4, type: holding, data_type: int16, name: raw, poll_group: slow, equipment: pump7, area: utilities}
      - {address: 5, type: holding, data_type: int16, name: other}
`);
  try {
    const fast = () => sim.readsAt(1, "holding", 0);
    const slow = () => sim.readsAt(1, "holding", 4);
    const plain = () => sim.readsAt(1, "holding", 5);
    await waitFor(() => slow() >= 2 && fast() > slow() + 10, "both groups polled");
    assert(fast() > slow(), `fast group read ${fast()} times, slow ${slow()}`);
    assert(plain() >= 1, "the source's own group reads register 5 in its own request");
    // Every poll of the fast group is emitted; the others report by exception.
    // Rows reach the host a little after the reads: wait for them, not for a rate.
    await waitFor(
      () =>
        of(run.rows, "1/holding/0").length >= 10 && of(run.rows, "1/holding/4").length >= 1 &&
        of(run.rows, "1/holding/5").length >= 1,
      "10 fast group rows and the first row of each other group",
    );
    assertEquals(of(run.rows, "1/holding/4").length, 1, "slow group: one row (no change)");
    assertEquals(of(run.rows, "1/holding/5").length, 1, "own group: one row (no change)");

    const raw = of(run.rows, "1/holding/4")[0];
    assertEquals([raw.site, raw.area, raw.line, raw.equipment], [
      "plant1",
      "utilities",
      "line3",
      "pump7",
    ]);
    assert(String(raw.tag_path).includes("/utilities/line3/pump7/"), String(raw.tag_path));
    const other = of(run.rows, "1/holding/5")[0];
    assertEquals([other.area, other.equipment], ["press_shop", "press1"]);
    assert(String(other.tag_path).includes("/press_shop/line3/press1/"), String(other.tag_path));

    const detail = await waitFor(
      () => {
        const d = run.host.status().plc.detail as { poll_groups?: Array<Record<string, unknown>> };
        return d.poll_groups?.every((g) => (g.polls as number) > 0) ? d.poll_groups : undefined;
      },
      "poll figures in the status",
    );
    assertEquals(detail.map((g) => [g.name, g.interval_ms, g.report_by_exception]), [
      ["default", 200, true],
      ["fast", 50, false],
      ["slow", 1000, true],
    ]);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus poll groups: a silent unit in one group does not stop another group", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  sim.setSilent(2, true);
  const run = await runSourceUnderHost(`sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    timeout_ms: 1000
    slaves:
      - {unit_id: 2, timeout_ms: 150}
    poll_groups:
      - {name: fast, polling_interval_ms: 100}
      - {name: slow, polling_interval_ms: 200}
    registers:
      - {address: 0, type: holding, data_type: float32, name: temp, poll_group: fast}
      - {address: 0, type: holding, data_type: float32, unit_id: 2, name: level, poll_group: slow}
`);
  try {
    const level = () => of(run.rows, "2/holding/0");
    await waitFor(() => level().length >= 3, "3 timeouts of unit 2");
    const from = sim.readsAt(1, "holding", 0);
    await waitFor(() => level().length >= 5, "2 more timeouts of unit 2");
    assert(sim.readsAt(1, "holding", 0) > from, "the fast group kept polling unit 1");
    assert(level().every((r) => r.quality_code === MODBUS_TIMEOUT_CODE), "unit 2 timed out");
    await waitFor(() => of(run.rows, "1/holding/0").length >= 10, "10 rows of unit 1");
    const temp = of(run.rows, "1/holding/0");
    assert(temp.every((r) => r.quality === "good" && r.value_num === 12.5), "unit 1 all good");
    assertEquals(run.host.status().plc.state, "connected");
  } finally {
    await run.stop();
    await sim.stop();
  }
});
