/**
 * Malformed frames from a Modbus TCP device: a small raw Deno TCP server on
 * 127.0.0.1 answers read requests with MBAP frames broken on purpose (a fault
 * a real server cannot produce on demand). The source in its real Worker
 * under the real host counts them, logs once per burst, gives quality 258 to
 * the affected tags, does not crash and recovers the connection. An answer
 * with a transaction id that does not match costs one poll, never more.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";
import { SourceHost } from "../src/sources/host.ts";
import { MODBUS_BAD_RESPONSE_CODE, MODBUS_TIMEOUT_CODE } from "../src/sources/modbus/readings.ts";

/** How the server answers one request. */
type Answer =
  | "ok"
  | "byte_count"
  | "short_mbap"
  | "long_mbap"
  | "function_code"
  | "bad_crc"
  | "wrong_tid"
  | "stale_tid";

/** The value every register holds. */
const VALUE = 4711;

/** An MBAP frame: transaction id, protocol 0, `length` (default: the real one), unit, PDU. */
function mbap(tid: number, unit: number, pdu: number[], length = pdu.length + 1): Uint8Array {
  const out = new Uint8Array(7 + pdu.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, tid);
  view.setUint16(2, 0);
  view.setUint16(4, length);
  out[6] = unit;
  out.set(pdu, 7);
  return out;
}

/** The answer to a read of holding registers (FC 3), correct or broken as `how` says. */
function answer(how: Answer, tid: number, unit: number, count: number): Uint8Array {
  const words = Array.from({ length: count }, () => [VALUE >> 8, VALUE & 0xff]).flat();
  const pdu = [3, count * 2, ...words];
  switch (how) {
    case "ok":
      return mbap(tid, unit, pdu);
    case "byte_count": // two values more than asked for, framed consistently
      return mbap(tid, unit, [3, count * 2 + 4, ...words, 0, 1, 0, 2]);
    case "short_mbap": // the MBAP length cuts the PDU short; the rest follows as garbage
      return mbap(tid, unit, pdu, 3);
    case "long_mbap": // the MBAP length promises more bytes than ever come
      return mbap(tid, unit, pdu, pdu.length + 11);
    case "function_code": // FC 4 in answer to FC 3
      return mbap(tid, unit, [4, ...pdu.slice(1)]);
    case "wrong_tid": // a transaction id the client never sent
      return mbap((tid + 0x4000) & 0xffff, unit, pdu);
    case "stale_tid": // the id of the previous, already answered request
      return mbap((tid - 1) & 0xffff, unit, pdu);
    case "bad_crc":
      throw new Error("bad_crc is an RTU fault");
  }
}

/** CRC-16/MODBUS of `bytes` (init 0xFFFF, reflected polynomial 0xA001). */
function crc16(bytes: number[]): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** The RTU answer to a read of holding registers, with a good or a broken CRC. */
function rtuAnswer(how: Answer, unit: number, count: number): Uint8Array {
  const words = Array.from({ length: count }, () => [VALUE >> 8, VALUE & 0xff]).flat();
  const body = [unit, 3, count * 2, ...words];
  const crc = crc16(body) ^ (how === "bad_crc" ? 0x5a5a : 0);
  return Uint8Array.from([...body, crc & 0xff, crc >>> 8]);
}

/** A raw Modbus TCP (or RTU over TCP) server answering from `script` (then "ok" forever). */
function rawServer(port: number, script: Answer[], framing: "mbap" | "rtu" = "mbap") {
  const size = framing === "mbap" ? 12 : 8;
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conns = new Set<Deno.Conn>();
  let served = 0;
  async function serve(conn: Deno.Conn): Promise<void> {
    conns.add(conn);
    const buf = new Uint8Array(1024);
    let pending = new Uint8Array(0);
    try {
      while (true) {
        const n = await conn.read(buf);
        if (n === null) break;
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(buf.subarray(0, n), pending.length);
        pending = joined;
        while (pending.length >= size) {
          const view = new DataView(pending.buffer, pending.byteOffset);
          const how = script[served++] ?? "ok";
          const reply = framing === "mbap"
            ? answer(how, view.getUint16(0), pending[6], view.getUint16(10))
            : rtuAnswer(how, pending[0], view.getUint16(4));
          pending = pending.slice(size);
          await conn.write(reply);
        }
      }
    } catch {
      // reset by the client: it resynchronizes after a malformed frame
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }
  const accepting = (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch { /* listener closed */ }
  })();
  return {
    get served() {
      return served;
    },
    async stop() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await accepting;
    },
  };
}

Deno.test("modbus malformed frames: counted, logged once per burst, quality 258, connection recovers", async () => {
  const port = freePort();
  const broken: Answer[] = [
    "byte_count",
    "short_mbap",
    "function_code",
    "long_mbap",
    "byte_count",
    "function_code",
  ];
  const server = rawServer(port, ["ok", "ok", ...broken]);
  const res = loadConfigText(
    `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 300
    registers:
      - {address: 0, count: 2, type: holding, data_type: int16, name: w}
`,
    { env: {} },
  );
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const rows: Row[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const dec = new TextDecoder();
  const dataDir = await Deno.makeTempDir();
  const host = new SourceHost(
    (_src, batch) => {
      for (const r of splitRows(batch.rows)) rows.push(JSON.parse(dec.decode(r)));
      return Promise.resolve(true);
    },
    () => {},
    createLogger("debug", "test", (line) => logs.push(JSON.parse(line)), false),
    {
      dataDir,
      normalization: res.config.normalization,
      maxRows: 100,
      recordType: () => "json",
    },
  );
  try {
    await host.start(res.config.sources[0] as never);
    const w0 = () => rows.filter((r) => r.address === "1/holding/0");
    await waitFor(
      () =>
        server.served > broken.length + 2 && w0().filter((r) => r.quality === "good").length > 2,
      "good rows after the malformed frames",
      20_000,
    );
    const bad = w0().filter((r) => r.quality !== "good");
    assertEquals(bad.length, broken.length, "one bad row per malformed frame");
    for (const r of bad) {
      assertEquals([r.quality, r.quality_code, r.value_num], [
        "bad",
        MODBUS_BAD_RESPONSE_CODE,
        null,
      ]);
    }
    const errors = bad.map((r) => JSON.parse(r.metadata as string).error as string);
    assert(errors.some((e) => /Data length error/.test(e)), errors.join("; "));
    assert(errors.some((e) => /expected code 3 got 4/.test(e)), errors.join("; "));
    assert(errors.some((e) => /incomplete frame/.test(e)), errors.join("; "));
    const good = w0().filter((r) => r.quality === "good");
    assert(good.every((r) => r.value_num === VALUE), "good rows carry the register value");

    const st = await waitFor(
      () => {
        const s = host.status().plc;
        return (s.detail as { malformed_frames?: number }).malformed_frames === broken.length
          ? s
          : undefined;
      },
      "the malformed frame counter in the status",
    );
    assertEquals([st.state, st.restarts], ["connected", 0], "no crash, connected");
    assert(st.counters.reconnects >= 1, `resynchronized: ${st.counters.reconnects} reconnects`);
    const frameLogs = logs.filter((l) => String(l.msg).includes("malformed frames"));
    assertEquals(frameLogs.length, 1, "one log line for the burst");
    assertEquals(frameLogs[0].level, "warning");
  } finally {
    await host.stopAll();
    await server.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("modbus malformed frames: a bad CRC over RTU is counted and gives quality 258", async () => {
  const port = freePort();
  const server = rawServer(port, ["ok", "ok", "bad_crc", "ok"], "rtu");
  const run = await runSourceUnderHost(`sources:
  - name: plc
    protocol: modbus
    endpoint: modbusrtu+tcp://127.0.0.1:${port}
    polling_interval_ms: 100
    timeout_ms: 300
    registers:
      - {address: 0, count: 2, type: holding, data_type: int16, name: w}
`);
  try {
    const w0 = () => run.rows.filter((r) => r.address === "1/holding/0");
    await waitFor(
      () => server.served > 4 && w0().filter((r) => r.quality === "good").length > 3,
      "good rows after the bad CRC",
      20_000,
    );
    const bad = w0().filter((r) => r.quality !== "good");
    assertEquals(bad.map((r) => r.quality_code), [MODBUS_BAD_RESPONSE_CODE]);
    const error = JSON.parse(bad[0].metadata as string).error as string;
    assert(/bad CRC/.test(error), error);
    await waitFor(
      () => (run.host.status().plc.detail as { malformed_frames?: number }).malformed_frames === 1,
      "the malformed frame counter",
    );
    assertEquals(run.host.status().plc.restarts, 0);
  } finally {
    await run.stop();
    await server.stop();
  }
});

Deno.test("modbus malformed frames: an answer with a wrong transaction id costs one poll, the next is good", async () => {
  const port = freePort();
  // Polls 1-2 good, 3 a foreign id, 4-5 good, 6 the id of poll 5 again, then good.
  const script: Answer[] = ["ok", "ok", "wrong_tid", "ok", "ok", "stale_tid"];
  const server = rawServer(port, script);
  const run = await runSourceUnderHost(`sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:${port}
    polling_interval_ms: 100
    # 1 s: a stalled machine must not turn a good poll into a timeout.
    timeout_ms: 1000
    registers:
      - {address: 0, count: 2, type: holding, data_type: int16, name: w}
`);
  try {
    const w0 = () => run.rows.filter((r) => r.address === "1/holding/0");
    await waitFor(() => w0().length >= script.length + 3, `${script.length + 3} polls`, 20_000);
    // One row per poll, in poll order: the polls answered with a wrong id, and only they, are bad.
    const polls = w0().slice(0, script.length + 3);
    const bad = polls.flatMap((r, i) => r.quality === "good" ? [] : [i]);
    assertEquals(bad, [2, 5], polls.map((r) => `${r.quality}/${r.quality_code}`).join(" "));
    for (const i of bad) {
      // The client ignores the foreign answer and waits for its own, which never comes.
      assertEquals([polls[i].quality_code, polls[i].value_num], [MODBUS_TIMEOUT_CODE, null]);
      assertEquals([polls[i + 1].quality, polls[i + 1].value_num], ["good", VALUE], "next poll");
    }
    assert(polls.every((r, i) => bad.includes(i) || r.value_num === VALUE), "good values");
    const st = run.host.status().plc;
    assertEquals([st.state, st.restarts], ["connected", 0], "no crash, connected");
  } finally {
    await run.stop();
    await server.stop();
  }
});
