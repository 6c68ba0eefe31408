/**
 * Modbus RTU over TCP: the simulator's RTU frame server (CRC, exceptions, bad
 * frames ignored), answer framing without transaction ids, and the Modbus
 * source over `modbusrtu+tcp://` reading the same memory as the Modbus TCP
 * simulator, beside a silent unit and a unit whose replies come late.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { float32Words, startModbusSimulator } from "../src/simulator/modbus_server.ts";
import {
  crc16Modbus,
  startModbusRtuSimulator,
  withCrc,
} from "../src/simulator/modbus_rtu_server.ts";
import { MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";
import { expectedAnswer, scanAnswer } from "../src/sources/modbus/rtu_frame.ts";

Deno.test("modbus rtu: CRC-16/MODBUS of a read request, appended low byte first", () => {
  const frame = withCrc([0x01, 0x03, 0x00, 0x00, 0x00, 0x01]);
  assertEquals([...frame.slice(6)], [0x84, 0x0a]);
  assertEquals(crc16Modbus(Uint8Array.from([0x11, 0x03, 0x00, 0x6b, 0x00, 0x03])), 0x8776);
});

/** Sends `bytes` and reads one answer of `length` bytes. */
async function exchange(conn: Deno.Conn, bytes: Uint8Array, length: number): Promise<number[]> {
  await conn.write(bytes);
  const buf = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = await conn.read(buf.subarray(got));
    if (n === null) throw new Error(`connection closed after ${got} of ${length} bytes`);
    got += n;
  }
  return [...buf];
}

Deno.test("modbus rtu: the server answers reads and exceptions, and ignores a bad CRC", async () => {
  const sim = startModbusRtuSimulator({ port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: sim.port });
  try {
    const bad = withCrc([1, 3, 0, 0, 0, 2]);
    bad[7] ^= 0xff;
    await conn.write(bad);
    await waitFor(() => sim.badFrames === 1, "the bad frame counted", 5_000);
    // The first answer on the connection is the one to the good frame.
    const regs = await exchange(conn, withCrc([1, 3, 0, 0, 0, 2]), 9);
    assertEquals(regs, [...withCrc([1, 3, 4, 0x41, 0x48, 0, 0])], "float32 12.5 ABCD");
    assertEquals(sim.requests, 1, "the bad frame was not answered");
    const coils = await exchange(conn, withCrc([1, 1, 0, 0, 0, 4]), 6);
    assertEquals(coils, [...withCrc([1, 1, 1, 0b1101])]);
    assertEquals(await exchange(conn, withCrc([1, 3, 0, 99, 0, 2]), 5), [...withCrc([1, 0x83, 2])]);
    assertEquals(await exchange(conn, withCrc([1, 6, 0, 0, 0, 1]), 5), [...withCrc([1, 0x86, 1])]);
  } finally {
    conn.close();
    await sim.stop();
  }
});

function rtuSource(port: number, registers: string): string {
  return `sources:
  - name: plc
    protocol: modbus
    endpoint: modbusrtu+tcp://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 500
    registers:
${registers}`;
}

Deno.test("modbus rtu: the source over modbusrtu+tcp reads what the TCP simulator serves", async () => {
  const tcp = await startModbusSimulator({ port: freePort() });
  const rtu = startModbusRtuSimulator({ port: 0, memory: tcp.memory });
  const run = await runSourceUnderHost(rtuSource(
    rtu.port,
    `      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 2, type: holding, data_type: float32, byte_order: CDAB, name: flow}
      - {address: 4, type: holding, data_type: int16, scale: 0.1, name: pressure}
      - {address: 0, count: 4, type: coil}
      - {address: 0, type: holding, data_type: float, byte_order: CDAB, unit_id: 2, name: level}
`,
  ));
  try {
    const want: Array<[string, unknown]> = [
      ["1/holding/0", 12.5],
      ["1/holding/2", 21.75],
      ["1/holding/4", 23.5],
      ["1/coil/0", true],
      ["1/coil/1", false],
      ["1/coil/2", true],
      ["1/coil/3", true],
      ["2/holding/0", 99.5],
    ];
    const seen = await waitFor(
      () => {
        const m = latestByAddress(run.rows);
        return want.every(([a]) => m.has(a)) ? m : undefined;
      },
      "a row for every tag",
      10_000,
    );
    for (const [address, value] of want) {
      const r = seen.get(address)!;
      const got = typeof value === "boolean" ? r.value_bool : r.value_num;
      assertEquals([got, r.quality, r.quality_code], [value, "good", 0], address);
    }
    assertEquals(run.host.status().plc.state, "connected");
    assert(rtu.requests > 0 && tcp.requests === 0, "every read went over RTU");

    // A value set through the TCP simulator shows up over RTU.
    tcp.setHolding(1, 0, float32Words(-40.25));
    const from = run.rows.length;
    await waitFor(
      () => latestByAddress(run.rows, from).get("1/holding/0")?.value_num === -40.25,
      "the new value",
      10_000,
    );
  } finally {
    await run.stop();
    await rtu.stop();
    await tcp.stop();
  }
});

Deno.test("modbus rtu: an illegal address gives quality bad with exception code 2", async () => {
  const rtu = startModbusRtuSimulator({ port: 0 });
  const run = await runSourceUnderHost(rtuSource(
    rtu.port,
    `      - {address: 98, count: 4, type: holding}
      - {address: 0, type: holding, data_type: float32, name: temp}
`,
  ));
  try {
    const bad = ["1/holding/98", "1/holding/99", "1/holding/100", "1/holding/101"];
    const seen = await waitFor(
      () => {
        const m = latestByAddress(run.rows);
        return [...bad, "1/holding/0"].every((a) => m.has(a)) ? m : undefined;
      },
      "rows of every tag",
      10_000,
    );
    for (const a of bad) {
      const r = seen.get(a)!;
      assertEquals([r.quality, r.quality_code, r.value_num], ["bad", 2, null], a);
    }
    const ok = seen.get("1/holding/0")!;
    assertEquals([ok.quality, ok.value_num], ["good", 12.5], "the other read is unaffected");
  } finally {
    await run.stop();
    await rtu.stop();
  }
});

/** Unit 1's answer to "read holding 0..1": float32 66.0 (words 0x4284 0x0000). */
const UNIT1_FAKE = [...withCrc([1, 3, 4, 0x42, 0x84, 0, 0])];

/** The 9 bytes of `UNIT1_FAKE` (and a pad byte) as 5 register words. */
function fakeWords(): number[] {
  const b = [...UNIT1_FAKE, 0];
  return [0, 2, 4, 6, 8].map((i) => (b[i] << 8) | b[i + 1]);
}

Deno.test("modbus rtu: an answer is found by unit, function, length and CRC; other frames skipped whole", () => {
  const want = expectedAnswer(withCrc([1, 3, 0, 0, 0, 2]));
  assertEquals(want, { unit: 1, functionCode: 3, length: 9 });
  const answer = [...withCrc([1, 3, 4, 0x41, 0x48, 0, 0])];
  // A late answer of unit 2 whose registers hold a complete, CRC-valid answer of unit 1.
  const late = [...withCrc([2, 3, 10, ...fakeWords().flatMap((w) => [w >> 8, w & 0xff])])];
  const bytes = Uint8Array.from([...late, ...answer]);
  assertEquals(scanAnswer(bytes, want).found, { start: late.length, length: 9 });
  // Only the late frame so far: nothing found, all of it dropped.
  assertEquals(scanAnswer(Uint8Array.from(late), want), { keepFrom: late.length });
  // An exception of unit 1 answers too; one of unit 2 does not.
  const ex = [...withCrc([1, 0x83, 2])];
  assertEquals(scanAnswer(Uint8Array.from([...withCrc([2, 0x83, 2]), ...ex]), want).found, {
    start: 5,
    length: 5,
  });
  // Same unit and function but another length (a late answer to another read): skipped.
  const other = [...withCrc([1, 3, 2, 0, 7])];
  assertEquals(scanAnswer(Uint8Array.from([...other, ...answer]), want).found?.start, 7);
  // A bad CRC is never an answer; an incomplete answer keeps its bytes.
  const broken = [...answer];
  broken[8] ^= 0xff;
  assertEquals(scanAnswer(Uint8Array.from(broken), want).found, undefined);
  const part = scanAnswer(Uint8Array.from([7, 7, ...answer.slice(0, 5)]), want);
  assert(part.found === undefined && part.keepFrom <= 2, JSON.stringify(part));
  assertEquals(scanAnswer(Uint8Array.from([7, 7, ...answer]), want).found, { start: 2, length: 9 });
});

/** Unit 1 (float32 12.5) and unit 2 (`unit2` registers) over RTU over TCP; unit 2 waits 150 ms. */
function twoUnitsRtu(port: number, unit2: string): string {
  return `sources:
  - name: plc
    protocol: modbus
    endpoint: modbusrtu+tcp://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 1000
    slaves: [{unit_id: 2, timeout_ms: 150}]
    registers:
      - {address: 0, type: holding, data_type: float32, name: temp}
${unit2}`;
}

Deno.test("modbus rtu: a silent unit times out while the healthy one keeps being polled", async () => {
  const rtu = startModbusRtuSimulator({ port: 0 });
  rtu.setSilent(2, true);
  const run = await runSourceUnderHost(twoUnitsRtu(
    rtu.port,
    "      - {address: 0, type: holding, data_type: float32, byte_order: CDAB, unit_id: 2}\n",
  ));
  try {
    const of = (address: string, from = 0) =>
      run.rows.slice(from).filter((r) => r.address === address);
    await waitFor(() => of("2/holding/0").length >= 3, "three timeouts of unit 2");
    const after = run.rows.findIndex((r) => r.address === "2/holding/0");
    await waitFor(() => of("1/holding/0", after).length >= 10, "unit 1 still polled", 15_000);
    for (const r of of("1/holding/0")) assertEquals([r.quality, r.value_num], ["good", 12.5]);
    for (const r of of("2/holding/0")) {
      assertEquals([r.quality, r.quality_code, r.value_num], ["bad", MODBUS_TIMEOUT_CODE, null]);
    }
    assert(rtu.requestsTo(2) >= 3, `unit 2 asked ${rtu.requestsTo(2)} times`);
    rtu.setSilent(2, false);
    const back = await waitFor(
      () => of("2/holding/0").find((r) => r.quality === "good"),
      // Its retries back off while it is silent (doubling, up to 60 s).
      "unit 2 answering again",
      60_000,
    );
    assertEquals(back.value_num, 99.5);
    const st = run.host.status().plc;
    assertEquals([st.state, st.counters.reconnects], ["connected", 0]);
  } finally {
    await run.stop();
    await rtu.stop();
  }
});

Deno.test("modbus rtu: a late reply of unit 2 is never taken for unit 1's answer", async () => {
  const rtu = startModbusRtuSimulator({ port: 0 });
  // Unit 2's registers 10..14 hold a complete, CRC-valid answer of unit 1 (66.0):
  // a client that searches the stream for unit 1's header would take it.
  rtu.memory.write(2, "holding", 10, fakeWords());
  rtu.setLate(2, true);
  const run = await runSourceUnderHost(
    twoUnitsRtu(rtu.port, "      - {address: 10, count: 5, type: holding, unit_id: 2}\n"),
  );
  try {
    const of = (address: string, from = 0) =>
      run.rows.slice(from).filter((r) => r.address === address);
    await waitFor(() => rtu.lateAnswers >= 3, "three late replies of unit 2", 20_000);
    const seen = run.rows.length;
    await waitFor(() => of("1/holding/0", seen).length >= 2, "unit 1 polled after them", 10_000);
    const temp = of("1/holding/0");
    for (const r of temp) {
      assertEquals([r.quality, r.value_num], ["good", 12.5], "unit 1 never got unit 2's reply");
    }
    for (const r of of("2/holding/10")) {
      assertEquals([r.quality, r.quality_code], ["bad", MODBUS_TIMEOUT_CODE], "unit 2 timed out");
    }
    // Replies on time again: unit 2 reads its own registers at its next poll, without a reconnect.
    rtu.setLate(2, false);
    const from = run.rows.length;
    const good = await waitFor(
      () => of("2/holding/10", from).find((r) => r.quality === "good"),
      // Its retries back off while it times out (doubling, up to 60 s).
      "unit 2 good again",
      60_000,
    );
    assertEquals(good.value_num, fakeWords()[0]);
    assert(
      of("2/holding/10", from).findIndex((r) => r.quality === "good") <= 1,
      "at most the poll in flight at the switch timed out",
    );
    const st = run.host.status().plc;
    assertEquals([st.state, st.counters.reconnects], ["connected", 0]);
  } finally {
    await run.stop();
    await rtu.stop();
  }
});
