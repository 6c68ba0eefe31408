/**
 * Modbus RTU over TCP: the simulator's RTU frame server (CRC, exceptions, bad
 * frames ignored) and the Modbus source over `modbusrtu+tcp://` reading the
 * same memory as the Modbus TCP simulator.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { float32Words, startModbusSimulator } from "../src/simulator/modbus_server.ts";
import {
  crc16Modbus,
  startModbusRtuSimulator,
  withCrc,
} from "../src/simulator/modbus_rtu_server.ts";

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
