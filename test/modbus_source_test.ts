/**
 * The Modbus source in its real Worker under the real host, against the
 * simulator's Modbus TCP server on 127.0.0.1: decoded values and types, tag
 * paths, exception codes as bad quality, reconnect after a server restart, a
 * silent or late unit beside a healthy one.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { float32Words, startModbusSimulator } from "../src/simulator/modbus_server.ts";
import { MODBUS_DISCONNECTED_CODE, MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";
import type { PollFigures } from "../src/sources/modbus/poll_stats.ts";

const runSource = runSourceUnderHost;
const latest = latestByAddress;

function source(port: number, registers: string, extra = ""): string {
  return `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 500
${extra}    registers:
${registers}`;
}

Deno.test("modbus source: values, types and tag paths as the simulator serves them", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSource(source(
    port,
    `      - {address: 0, type: holding, data_type: float32, name: temp, unit: degC, signal_type: temperature}
      - {address: 2, type: holding, data_type: float32, byte_order: CDAB, name: flow}
      - {address: 4, type: holding, data_type: int16, scale: 0.1, name: pressure, unit: bar}
      - {address: 5, type: holding, data_type: int16, scale: 0.1}
      - {address: 6, type: holding, data_type: uint32}
      - {address: 0, type: input, data_type: float32, name: in0}
      - {address: 0, count: 4, type: coil}
      - {address: 0, count: 4, type: discrete, name: di}
      - {address: 0, type: holding, data_type: float, byte_order: CDAB, unit_id: 2, name: level}
      - {address: 2, type: holding, data_type: int16, unit_id: 2}
`,
  ));
  try {
    const want: Array<[string, string, unknown, string]> = [
      ["1/holding/0", "temp", 12.5, "float"],
      ["1/holding/2", "flow", 21.75, "float"],
      ["1/holding/4", "pressure", 23.5, "float"],
      ["1/holding/5", "holding_5", -1.5, "float"],
      ["1/holding/6", "holding_6", 65538, "int"],
      ["1/input/0", "in0", 1.5, "float"],
      ["1/coil/0", "coil_0", true, "bool"],
      ["1/coil/1", "coil_1", false, "bool"],
      ["1/coil/2", "coil_2", true, "bool"],
      ["1/coil/3", "coil_3", true, "bool"],
      ["1/discrete/0", "di_0", false, "bool"],
      ["1/discrete/3", "di_3", true, "bool"],
      ["2/holding/0", "level", 99.5, "float"],
      ["2/holding/2", "holding_2", -1, "int"],
    ];
    const seen = await waitFor(
      () => {
        const m = latest(run.rows);
        return want.every(([a]) => m.has(a)) ? m : undefined;
      },
      "a row for every tag",
    );
    for (const [address, name, value, type] of want) {
      const r = seen.get(address)!;
      const got = type === "bool" ? r.value_bool : r.value_num;
      assertEquals([r.tag_name, got, r.value_type, r.quality, r.quality_code], [
        name,
        value,
        type,
        "good",
        0,
      ], address);
    }
    const temp = seen.get("1/holding/0")!;
    assertEquals([temp.unit, temp.signal_type, temp.source_protocol], [
      "degC",
      "temperature",
      "modbus",
    ]);
    assert(Math.abs((temp.event_time as number) / 1000 - Date.now()) < 10_000, "event_time in µs");
    assertEquals(run.host.status().plc.state, "connected");

    // A value set on the server shows up in a later poll.
    sim.setHolding(1, 0, float32Words(-40.25));
    sim.setCoils(1, 1, [true]);
    const from = run.rows.length;
    const next = await waitFor(
      () => {
        const m = latest(run.rows, from);
        return m.get("1/holding/0")?.value_num === -40.25 && m.get("1/coil/1")?.value_bool === true;
      },
      "the new values",
    );
    assert(next);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus source: polls follow the interval without drift", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSource(source(port, "      - {address: 0, type: holding}\n"));
  try {
    // On the grid, 10 intervals of 100 ms span 1 s; a drifting schedule adds every cycle's
    // time. A busy machine may start one poll late (or skip a tick), so the test looks for
    // such a run among the polls instead of requiring it of the first ten.
    await waitFor(() => {
      const times = run.rows.map((r) => (r.event_time as number) / 1000);
      const spans = times.slice(10).map((t, i) => Math.round(t - times[i]));
      if (spans.some((span) => span > 900 && span < 1100)) return true;
      throw new Error(`10 intervals of 100 ms took ${spans.slice(-20).join(", ")} ms`);
    }, "10 polls spanning 1 s");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus source: an illegal address gives quality bad with exception code 2 per tag", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSource(
    source(
      port,
      `      - {address: 98, count: 4, type: holding}
      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 0, type: holding, unit_id: 7, name: ghost}
`,
      "    max_gap: 2\n",
    ),
  );
  try {
    const want = ["1/holding/98", "1/holding/99", "1/holding/100", "1/holding/101"];
    const seen = await waitFor(
      () => {
        const m = latest(run.rows);
        return [...want, "1/holding/0", "7/holding/0"].every((a) => m.has(a)) ? m : undefined;
      },
      "rows of every tag",
    );
    for (const a of want) {
      const r = seen.get(a)!;
      assertEquals([r.quality, r.quality_code, r.value_num], ["bad", 2, null], a);
      assert(String(r.metadata).includes("Illegal data address"), String(r.metadata));
    }
    const ghost = seen.get("7/holding/0")!;
    assertEquals([ghost.quality, ghost.quality_code], ["bad", 11], "unknown unit id: exception 11");
    const ok = seen.get("1/holding/0")!;
    assertEquals([ok.quality, ok.value_num], ["good", 12.5], "the other read is unaffected");
    assertEquals(run.host.status().plc.state, "connected");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

/** Exception codes a device or gateway answers with, and the text `modbus-serial` gives each. */
const EXCEPTIONS: Array<[number, RegExp]> = [
  [1, /Illegal function/],
  [2, /Illegal data address/],
  [6, /busy/],
  [10, /Gateway path unavailable/],
  [11, /Gateway target device failed to respond/],
];

Deno.test("modbus source: every exception code gives quality bad with that code on every tag of the unit", async (t) => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  const run = await runSource(
    source(
      port,
      `      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 0, type: holding, data_type: float32, byte_order: CDAB, unit_id: 2, name: level}
      - {address: 2, type: holding, data_type: int16, unit_id: 2, name: trim}
      - {address: 0, type: coil, unit_id: 2, name: pump}
`,
      // The healthy unit gets 1 s so a stalled machine does not read as a device timeout.
      "    slaves:\n      - {unit_id: 1, timeout_ms: 1000}\n",
    ),
  );
  // Unit 2's tags and their value types, which bad rows carry too.
  const types: Record<string, string> = {
    "2/holding/0": "float",
    "2/holding/2": "int",
    "2/coil/0": "bool",
  };
  const unit2 = Object.keys(types);
  try {
    for (const [code, text] of EXCEPTIONS) {
      await t.step(`exception ${code}`, async () => {
        sim.setException(2, code);
        const from = run.rows.length;
        // Rows of a poll that started before the switch may still carry the old answer.
        const seen = await waitFor(() => {
          const m = latest(run.rows, from);
          const all = unit2.every((a) => m.get(a)?.quality_code === code);
          return all && m.has("1/holding/0") ? m : undefined;
        }, `exception ${code} on every tag of unit 2, and a row of unit 1`);
        for (const a of unit2) {
          const r = seen.get(a)!;
          assertEquals([r.quality, r.value_num, r.value_bool, r.value_type], [
            "bad",
            null,
            null,
            types[a],
          ], a);
          const error = JSON.parse(r.metadata as string).error as string;
          assert(text.test(error), `${a}: ${error}`);
        }
        const healthy = run.rows.slice(from).filter((r) => r.address === "1/holding/0");
        for (const r of healthy) {
          assertEquals([r.quality, r.quality_code, r.value_num], ["good", 0, 12.5], "unit 1");
        }
      });
    }
    sim.setException(2, undefined);
    const from = run.rows.length;
    const back = await waitFor(() => {
      const m = latest(run.rows, from);
      return unit2.every((a) => m.get(a)?.quality === "good") ? m : undefined;
    }, "unit 2 good again");
    assertEquals(back.get("2/holding/0")!.value_num, 99.5);
    assertEquals(run.host.status().plc.state, "connected");
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus source: reconnects after the server restarts on the same port", async () => {
  const port = freePort();
  let sim = await startModbusSimulator({ port });
  const run = await runSource(source(port, "      - {address: 0, type: holding, name: w}\n"));
  try {
    await waitFor(() => run.rows.some((r) => r.quality === "good"), "first good row");
    await sim.stop();
    const down = await waitFor(
      () => {
        const st = run.host.status().plc;
        return st.state === "error" || st.state === "disconnected" ? st : undefined;
      },
      "the source noticing the server is gone",
    );
    assert(down.last_error?.includes(`127.0.0.1:${port}`), `${down.last_error}`);
    const lost = await waitFor(
      () => run.rows.find((r) => r.quality_code === MODBUS_DISCONNECTED_CODE),
      "a bad row for the lost connection",
    );
    assertEquals([lost.quality, lost.address, lost.value_num], ["bad", "1/holding/0", null]);
    await waitFor(
      () => run.host.status().plc.state === "error",
      "a failed reconnect attempt",
    );
    assert(
      /connect to 127\.0\.0\.1:\d+ failed: .*(refused|ECONNREFUSED)/i.test(
        run.host.status().plc.last_error ?? "",
      ),
      `${run.host.status().plc.last_error}`,
    );
    sim = await startModbusSimulator({ port });
    sim.setHolding(1, 0, [4242]);
    await waitFor(
      () => run.rows.some((r) => r.value_num === 4242 && r.quality === "good"),
      // Reconnect attempts back off (doubling, up to 30 s).
      "a good row from the restarted server",
      60_000,
    );
    const st = run.host.status().plc;
    assertEquals(st.state, "connected");
    assert(st.counters.reconnects >= 1, `reconnects ${st.counters.reconnects}`);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

/** Unit 1 (float32 12.5) and unit 2 (float32 CDAB 99.5) at 200 ms; unit 2 waits `timeout` ms. */
function twoUnits(port: number, timeout: number): string {
  return `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    polling_interval_ms: 200
    timeout_ms: 1000
    slaves:
      - {unit_id: 2, timeout_ms: ${timeout}}
    registers:
      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 0, type: holding, data_type: float32, byte_order: CDAB, unit_id: 2, name: level}
`;
}

Deno.test("modbus source: a silent unit does not slow a healthy one, backs off and recovers", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  sim.setSilent(2, true);
  const run = await runSource(twoUnits(port, 150));
  try {
    const of = (address: string, from = 0) =>
      run.rows.slice(from).filter((r) => r.address === address);
    await waitFor(() => of("1/holding/0").length > 0, "a first row of unit 1");
    const from = run.rows.length;
    await new Promise((r) => setTimeout(r, 3000));
    // Without back-off unit 2 would have had a row per poll (about 15 in these 3 s);
    // a busy machine polls less often, never more.
    const silentInWindow = of("2/holding/0", from).length;
    assert(silentInWindow <= 6, `silent unit polled ${silentInWindow} times in 3 s: no back-off`);
    // Unit 1 is polled on while unit 2 stays silent: counted, not timed.
    await waitFor(() => of("1/holding/0", from).length >= 12, "12 polls of unit 1");
    const healthy = of("1/holding/0", from);
    assert(healthy.every((r) => r.quality === "good" && r.value_num === 12.5), "unit 1 all good");
    const silent = of("2/holding/0");
    assert(silent.length >= 3, `silent unit rows: ${silent.length}`);
    for (const r of silent) {
      assertEquals([r.quality, r.quality_code, r.value_num], ["bad", MODBUS_TIMEOUT_CODE, null]);
    }
    // The healthy unit's rate holds: a poll that runs past the next grid tick misses it
    // (counted by the source). A poll of unit 2 ends after its own 150 ms timeout, inside
    // the 200 ms interval; waiting the source's 1000 ms instead misses 4 to 5 ticks per
    // poll of unit 2 however idle the machine, while an overloaded machine (16 busy loops
    // on 2 cores) missed at most 3 in all. The status is up to 1 s older than the rows.
    const group = await waitFor(() => {
      const g = (run.host.status().plc.detail as { poll_groups?: PollFigures[] }).poll_groups;
      return g?.[0] && g[0].polls >= 12 ? g[0] : undefined;
    }, "poll figures in the status");
    const silentPolls = of("2/holding/0").length;
    assert(
      group.missed < 2 * silentPolls,
      `${group.missed} ticks missed in ${group.polls} polls with ${silentPolls} polls of ` +
        `the silent unit: its timeout holds up the healthy one`,
    );
    assertEquals(run.host.status().plc.state, "connected");

    sim.setSilent(2, false);
    const back = await waitFor(
      () => of("2/holding/0", from).find((r) => r.quality === "good"),
      // Its retries back off while it is silent (doubling, up to 60 s).
      "unit 2 answering again",
      60_000,
    );
    assertEquals(back.value_num, 99.5);
    // Back at the full rate: polled in every cycle, as often as unit 1 (a batch may split them).
    const again = run.rows.length;
    await waitFor(() => of("2/holding/0", again).length >= 5, "5 more polls of unit 2");
    const unit1 = of("1/holding/0", again).length;
    const unit2 = of("2/holding/0", again).length;
    assert(unit1 <= unit2 + 2, `unit 1 polled ${unit1} times, unit 2 ${unit2}: still backing off`);
  } finally {
    await run.stop();
    await sim.stop();
  }
});

Deno.test("modbus source: late replies of a slow unit never reach another unit's read", async () => {
  const port = freePort();
  const sim = await startModbusSimulator({ port });
  sim.setDelay(2, 300);
  const run = await runSource(twoUnits(port, 100));
  try {
    const of = (address: string) => run.rows.filter((r) => r.address === address);
    await waitFor(() => of("2/holding/0").length >= 4, "several timeouts of unit 2");
    const late = of("2/holding/0");
    assert(late.every((r) => r.quality_code === MODBUS_TIMEOUT_CODE), "unit 2 timed out");
    sim.setDelay(2, 0);
    await waitFor(
      () => of("2/holding/0").some((r) => r.quality === "good"),
      // Its retries back off while it times out (doubling, up to 60 s).
      "unit 2 good again",
      60_000,
    );
    await waitFor(() => of("1/holding/0").length >= 10, "10 rows of unit 1");
    const temp = of("1/holding/0");
    for (const r of temp) {
      assertEquals([r.quality, r.value_num], ["good", 12.5], "unit 1 never got unit 2's reply");
    }
    const level = of("2/holding/0").filter((r) => r.quality === "good");
    assert(level.every((r) => r.value_num === 99.5), "unit 2's good rows are its own values");
  } finally {
    await run.stop();
    await sim.stop();
  }
});
