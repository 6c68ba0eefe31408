/**
 * RTU-over-TCP server of the simulator: RTU frames (unit id, function code,
 * data, CRC-16/MODBUS little endian) over a plain TCP connection, as a serial
 * gateway passes them through. Serves read coils, discrete inputs, holding and
 * input registers (function codes 1..4) from a `RegisterMemory`, the same
 * memory type as the TCP simulator (pass its `memory` to share the values).
 * Other function codes get exception 1, addresses outside a table exception 2,
 * quantities over the protocol limits exception 3, unknown units exception 11.
 * A frame with a bad CRC is ignored (and counted), as a serial slave would.
 */
import { type RegisterMemory, registerMemory, type UnitMemory } from "./modbus_server.ts";

/** Length of a read request frame: unit, function, address, quantity, CRC. */
const READ_FRAME = 8;

const TABLES: Record<number, { name: keyof UnitMemory; max: number }> = {
  1: { name: "coil", max: 2000 },
  2: { name: "discrete", max: 2000 },
  3: { name: "holding", max: 125 },
  4: { name: "input", max: 125 },
};

/** CRC-16/MODBUS (init 0xFFFF, reflected polynomial 0xA001) of `bytes`. */
export function crc16Modbus(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** `body` with its CRC appended, low byte first. */
export function withCrc(body: number[]): Uint8Array {
  const crc = crc16Modbus(Uint8Array.from(body));
  return Uint8Array.from([...body, crc & 0xff, crc >>> 8]);
}

/** The PDU data of a read answer: byte count, then packed bits or big-endian words. */
function answerData(values: number[] | boolean[]): number[] {
  if (typeof values[0] === "boolean") {
    const bytes = new Array(Math.ceil(values.length / 8)).fill(0);
    values.forEach((v, i) => {
      if (v) bytes[i >> 3] |= 1 << (i & 7);
    });
    return [bytes.length, ...bytes];
  }
  const words = (values as number[]).flatMap((w) => [(w >> 8) & 0xff, w & 0xff]);
  return [words.length, ...words];
}

/** The answer frame to one request frame (CRC already checked). */
export function rtuAnswer(memory: RegisterMemory, frame: Uint8Array): Uint8Array {
  const [unit, fc] = frame;
  const fail = (code: number) => withCrc([unit, fc | 0x80, code]);
  const table = TABLES[fc];
  if (!table) return fail(1);
  const addr = (frame[2] << 8) | frame[3];
  const n = (frame[4] << 8) | frame[5];
  if (n < 1 || n > table.max) return fail(3);
  try {
    return withCrc([unit, fc, ...answerData(memory.read(unit, table.name, addr, n))]);
  } catch (e) {
    const code = (e as { modbusErrorCode?: number }).modbusErrorCode;
    return fail(code ?? 4);
  }
}

/** A running RTU-over-TCP simulator. */
export interface ModbusRtuSimulator {
  port: number;
  /** The register memory it serves. */
  memory: RegisterMemory;
  /** Requests answered so far (values or exceptions). */
  readonly requests: number;
  /** Frames ignored for a bad CRC. */
  readonly badFrames: number;
  /** Closes the listener and every connection. */
  stop(): Promise<void>;
}

/** Starts the RTU-over-TCP simulator on `host:port` (0: a free port), on its own or a shared memory. */
export function startModbusRtuSimulator(
  opts: { port: number; host?: string; memory?: RegisterMemory },
): ModbusRtuSimulator {
  const memory = opts.memory ?? registerMemory();
  const listener = Deno.listen({ hostname: opts.host ?? "127.0.0.1", port: opts.port });
  const conns = new Set<Deno.Conn>();
  const served: Promise<void>[] = [];
  let requests = 0;
  let badFrames = 0;

  async function serve(conn: Deno.Conn): Promise<void> {
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(1024);
    try {
      while (true) {
        const n = await conn.read(chunk);
        if (n === null) return;
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        while (buf.length >= READ_FRAME) {
          const frame = buf.subarray(0, READ_FRAME);
          const crc = frame[6] | (frame[7] << 8);
          if (crc16Modbus(frame.subarray(0, 6)) !== crc) {
            // Ignore what arrived: the frame boundary is lost, the client times out.
            badFrames++;
            buf = new Uint8Array(0);
            break;
          }
          buf = buf.slice(READ_FRAME);
          requests++;
          await conn.write(rtuAnswer(memory, frame));
        }
      }
    } catch {
      // Connection reset or closed by stop().
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.add(conn);
        served.push(serve(conn));
      }
    } catch { /* listener closed */ }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    memory,
    get requests() {
      return requests;
    },
    get badFrames() {
      return badFrames;
    },
    async stop() {
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await accepting;
      await Promise.all(served);
    },
  };
}
