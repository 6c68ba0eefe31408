/**
 * Modbus RTU on a serial line: the source in its real Worker under the real
 * host polls the simulator's RTU slave across a pseudo-terminal pair made by
 * socat (one end each). Values and exceptions, a silent unit beside a healthy
 * one, the line going away and coming back; the `serial` keys at config load.
 * The line tests need socat and are ignored where it is not installed.
 */
import { assert, assertEquals } from "./assert.ts";
import { latestByAddress, runSourceUnderHost, waitFor } from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { float32Words } from "../src/simulator/modbus_server.ts";
import {
  type ModbusRtuSerialSimulator,
  startModbusRtuSerialSimulator,
} from "../src/simulator/modbus_rtu_server.ts";
import { MODBUS_DISCONNECTED_CODE, MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";
import type { SerialSettings } from "../src/sources/modbus/serial_port.ts";
import { frameGapMs, sttyArgs } from "../src/sources/modbus/serial_port.ts";
import { modbusTarget, targetText } from "../src/sources/modbus/endpoint.ts";

/** True when `socat` runs (spawning a missing program throws at once, not in the promise). */
async function socatInstalled(): Promise<boolean> {
  try {
    const cmd = new Deno.Command("socat", { args: ["-V"], stdout: "null", stderr: "null" });
    return (await cmd.output()).success;
  } catch {
    return false;
  }
}

const hasSocat = await socatInstalled();
const needs = hasSocat ? "" : " (ignored: socat is not installed; apt-get install socat)";
if (!hasSocat) console.log("modbus_serial_test: socat not installed; serial line tests ignored");

/** The line settings of these tests: 19200 8N1 (a pseudo-terminal keeps no parity setting). */
const LINE: SerialSettings = { baudRate: 19200, parity: "none", dataBits: 8, stopBits: 1 };

/** A socat pseudo-terminal pair: the source opens `a`, the simulator `b`. */
interface PtyPair {
  a: string;
  b: string;
  /** Kills socat (by its pid) and waits for it to end. */
  stop(): Promise<void>;
}

async function startPtyPair(dir: string): Promise<PtyPair> {
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  const child = new Deno.Command("socat", {
    args: ["pty,raw,echo=0,link=" + a, "pty,raw,echo=0,link=" + b],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      Deno.kill(child.pid, "SIGTERM");
    } catch { /* already ended */ }
    await child.status;
  };
  try {
    const exists = async (p: string) => await Deno.stat(p).then(() => true, () => false);
    await waitFor(async () => await exists(a) && await exists(b), "socat's pty links");
  } catch (e) {
    await stop();
    throw e;
  }
  return { a, b, stop };
}

function serialSource(path: string, registers: string, extra = ""): string {
  return `sources:
  - name: rtu
    protocol: modbus
    endpoint: modbusrtu://${path}
    serial: {baud_rate: 19200, parity: none, data_bits: 8, stop_bits: 1}
    polling_interval_ms: 100
    timeout_ms: 500
${extra}    registers:
${registers}`;
}

/** Runs `body` with a pty pair and a serial slave on its `b` end; stops both. */
async function withLine(
  body: (pair: PtyPair, sim: ModbusRtuSerialSimulator, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "otedge-rtu-" });
  const pair = await startPtyPair(dir);
  let sim: ModbusRtuSerialSimulator | undefined;
  try {
    sim = await startModbusRtuSerialSimulator({ path: pair.b, serial: LINE });
    await body(pair, sim, dir);
  } finally {
    await sim?.stop();
    await pair.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("modbus serial: the endpoint names the device; line settings come from serial", () => {
  const target = modbusTarget("modbusrtu:///dev/ttyUSB0");
  assertEquals(target, {
    transport: "rtu",
    path: "/dev/ttyUSB0",
    serial: { baudRate: 9600, parity: "none", dataBits: 8, stopBits: 1 },
  });
  assertEquals(targetText(target), "/dev/ttyUSB0");
  const even = modbusTarget("modbusrtu:///dev/serial/by-id/usb-FTDI-if00", {
    baud_rate: 19200,
    parity: "even",
    data_bits: 8,
    stop_bits: 1,
  });
  assertEquals(even.transport === "rtu" && [even.path, even.serial.parity], [
    "/dev/serial/by-id/usb-FTDI-if00",
    "even",
  ]);
  let refused = "";
  try {
    modbusTarget("modbusrtu:///dev/ttyUSB0?baud=19200");
  } catch (e) {
    refused = (e as Error).message;
  }
  assert(refused.includes("line settings in the serial keys"), refused);
});

Deno.test("modbus serial: stty arguments and the 3.5-character frame gap", () => {
  assertEquals(sttyArgs("/dev/ttyUSB0", { ...LINE, parity: "even" }).slice(0, 7), [
    "-F",
    "/dev/ttyUSB0",
    "19200",
    "cs8",
    "parenb",
    "-parodd",
    "-cstopb",
  ]);
  const odd2 = sttyArgs("/dev/x", { ...LINE, parity: "odd", stopBits: 2 });
  assert(odd2.includes("parodd") && odd2.includes("cstopb"), odd2.join(" "));
  assert(sttyArgs("/dev/x", LINE).includes("-parenb"));
  // 9600 8N1: 10 bits a character, 3.5 characters = 3.65 ms; above 19200 baud fixed 1.75 ms.
  const gap = frameGapMs({ baudRate: 9600, parity: "none", dataBits: 8, stopBits: 1 });
  assertEquals(Math.round(gap * 100) / 100, 3.65);
  assertEquals(frameGapMs({ ...LINE, baudRate: 115200 }), 1.75);
});

Deno.test("modbus serial: the serial keys are checked at config load with their key paths", () => {
  const errors = (entry: string) => {
    const res = loadConfigText(`sources:\n  - ${entry}\n`, { env: {} });
    return res.ok ? [] : res.errors;
  };
  const regs = "registers: [{address: 0, type: holding}]";
  const tcp = errors(
    `{name: m, protocol: modbus, endpoint: "modbus://127.0.0.1:502", serial: {}, ${regs}}`,
  );
  assertEquals(tcp.length, 1, tcp.join("\n"));
  assert(
    tcp[0].startsWith("sources[0].serial: serial line settings apply to modbusrtu:///"),
    tcp[0],
  );
  const bad = errors(
    `{name: m, protocol: modbus, endpoint: "modbusrtu:///dev/ttyUSB0", ` +
      `serial: {baud_rate: 12345, parity: mark, data_bits: 7, stop_bits: 3}, ${regs}}`,
  );
  const keys = bad.map((e) => e.split(":")[0]).sort();
  assertEquals(keys, [
    "sources[0].serial.baud_rate",
    "sources[0].serial.data_bits",
    "sources[0].serial.parity",
    "sources[0].serial.stop_bits",
  ], bad.join("\n"));
  assert(bad.some((e) => e.includes("7 is Modbus ASCII")), bad.join("\n"));
  const query = errors(
    `{name: m, protocol: modbus, endpoint: "modbusrtu:///dev/ttyUSB0?baud=19200", ${regs}}`,
  );
  assert(
    query.length === 1 &&
      query[0].startsWith("sources[0].endpoint: put line settings in the serial keys"),
    query.join("\n"),
  );
  const res = loadConfigText(
    `sources:\n  - {name: m, protocol: modbus, endpoint: "modbusrtu:///dev/ttyUSB0", serial: {parity: even}, ${regs}}\n`,
    { env: {} },
  );
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const s = res.config.sources[0] as { serial?: unknown };
  assertEquals(s.serial, { baud_rate: 9600, parity: "even", data_bits: 8, stop_bits: 1 });
});

Deno.test({
  name:
    `modbus serial: values of several types with good quality, exceptions with their code${needs}`,
  ignore: !hasSocat,
  fn: () =>
    withLine(async (pair, sim) => {
      sim.memory.write(1, "holding", 10, [...float32Words(-7.25, "CDAB"), 0xfffe, 0xffff]);
      const run = await runSourceUnderHost(serialSource(
        pair.a,
        `      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 4, type: holding, data_type: int16, scale: 0.1, name: pressure}
      - {address: 6, type: holding, data_type: uint32}
      - {address: 10, type: holding, data_type: float32, byte_order: CDAB, name: flow}
      - {address: 12, type: holding, data_type: int32, name: delta}
      - {address: 0, type: input, data_type: float32, name: in0}
      - {address: 0, count: 4, type: coil}
      - {address: 0, count: 4, type: discrete, name: di}
      - {address: 98, count: 4, type: holding, unit_id: 2}
      - {address: 0, type: holding, unit_id: 9, name: ghost}
`,
        "    max_gap: 0\n",
      ));
      try {
        const want: Array<[string, unknown, string]> = [
          ["1/holding/0", 12.5, "float"],
          ["1/holding/4", 23.5, "float"],
          ["1/holding/6", 65538, "int"],
          ["1/holding/10", -7.25, "float"],
          ["1/holding/12", -65537, "int"],
          ["1/input/0", 1.5, "float"],
          ["1/coil/0", true, "bool"],
          ["1/coil/1", false, "bool"],
          ["1/coil/3", true, "bool"],
          ["1/discrete/0", false, "bool"],
          ["1/discrete/1", true, "bool"],
        ];
        const bad: Array<[string, number]> = [
          ["2/holding/98", 2],
          ["2/holding/101", 2],
          ["9/holding/0", 11],
        ];
        const all = [...want.map(([a]) => a), ...bad.map(([a]) => a)];
        const seen = await waitFor(
          () => {
            const m = latestByAddress(run.rows);
            return all.every((a) => m.has(a)) ? m : undefined;
          },
          "a row for every tag",
        );
        for (const [address, value, type] of want) {
          const r = seen.get(address)!;
          const got = type === "bool" ? r.value_bool : r.value_num;
          assertEquals(
            [got, r.value_type, r.quality, r.quality_code],
            [value, type, "good", 0],
            address,
          );
        }
        for (const [address, code] of bad) {
          const r = seen.get(address)!;
          assertEquals([r.quality, r.quality_code, r.value_num], ["bad", code, null], address);
        }
        const st = run.host.status().rtu;
        assertEquals(st.state, "connected");
        assertEquals(sim.badFrames, 0, "every request reached the slave intact");
        // A value changed in the slave shows up in a later poll.
        sim.memory.write(1, "holding", 0, float32Words(-40.25));
        const from = run.rows.length;
        await waitFor(
          () => latestByAddress(run.rows, from).get("1/holding/0")?.value_num === -40.25,
          "the new value",
          10_000,
        );
      } finally {
        await run.stop();
      }
    }),
});

Deno.test({
  name: `modbus serial: a silent unit times out while the healthy one keeps being polled${needs}`,
  ignore: !hasSocat,
  fn: () =>
    withLine(async (pair, sim) => {
      sim.setSilent(2, true);
      const run = await runSourceUnderHost(serialSource(
        pair.a,
        `      - {address: 0, type: holding, data_type: float32, name: temp}
      - {address: 0, type: holding, data_type: float32, byte_order: CDAB, unit_id: 2, name: level}
`,
        "    slaves: [{unit_id: 2, timeout_ms: 150}]\n",
      ));
      try {
        const of = (address: string, from = 0) =>
          run.rows.slice(from).filter((r) => r.address === address);
        await waitFor(() => of("2/holding/0").length >= 3, "three timeouts of unit 2");
        const after = run.rows.findIndex((r) => r.address === "2/holding/0");
        await waitFor(() => of("1/holding/0", after).length >= 10, "unit 1 still polled", 15_000);
        for (const r of of("1/holding/0")) {
          assertEquals([r.quality, r.value_num], ["good", 12.5], "unit 1 rows");
        }
        for (const r of of("2/holding/0")) {
          assertEquals([r.quality, r.quality_code, r.value_num], [
            "bad",
            MODBUS_TIMEOUT_CODE,
            null,
          ]);
        }
        assert(sim.requestsTo(2) >= 3, `unit 2 was asked ${sim.requestsTo(2)} times`);
        assertEquals(run.host.status().rtu.state, "connected");

        sim.setSilent(2, false);
        const back = await waitFor(
          () => of("2/holding/0").find((r) => r.quality === "good"),
          // Its retries back off while it is silent (doubling, up to 60 s).
          "unit 2 answering again",
          60_000,
        );
        assertEquals(back.value_num, 99.5);
      } finally {
        await run.stop();
      }
    }),
});

Deno.test({
  name: `modbus serial: the slave goes away and comes back; the source reconnects${needs}`,
  ignore: !hasSocat,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "otedge-rtu-" });
    let pair = await startPtyPair(dir);
    let sim = await startModbusRtuSerialSimulator({ path: pair.b, serial: LINE });
    const run = await runSourceUnderHost(
      serialSource(pair.a, "      - {address: 0, type: holding, name: w}\n"),
    );
    try {
      await waitFor(() => run.rows.some((r) => r.quality === "good"), "first good row");
      await pair.stop();
      await sim.ended;
      const lost = await waitFor(
        () => run.rows.find((r) => r.quality_code === MODBUS_DISCONNECTED_CODE),
        "a bad row for the lost line",
        15_000,
      );
      assertEquals([lost.quality, lost.address, lost.value_num], ["bad", "1/holding/0", null]);
      await waitFor(
        () => /connect to .*\/a failed/.test(run.host.status().rtu.last_error ?? ""),
        "a failed reconnect attempt naming the device",
        15_000,
      );
      await sim.stop();
      pair = await startPtyPair(dir);
      sim = await startModbusRtuSerialSimulator({ path: pair.b, serial: LINE });
      sim.memory.write(1, "holding", 0, [4242]);
      await waitFor(
        () => run.rows.some((r) => r.value_num === 4242 && r.quality === "good"),
        "a good row from the slave that came back",
        40_000,
      );
      const st = run.host.status().rtu;
      assertEquals(st.state, "connected");
      assert(st.counters.reconnects >= 1, `reconnects ${st.counters.reconnects}`);
    } finally {
      await run.stop();
      await sim.stop();
      await pair.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
