/**
 * Modbus RTU slave of the simulator: RTU frames (unit id, function code,
 * data, CRC-16/MODBUS little endian) over a plain TCP connection, as a serial
 * gateway passes them through, or on a serial line (a device path, e.g. one
 * end of a socat pseudo-terminal pair). Serves read coils, discrete inputs,
 * holding and input registers (function codes 1..4) from a `RegisterMemory`,
 * the same memory type as the TCP simulator (pass its `memory` to share the
 * values). Other function codes get exception 1, addresses outside a table
 * exception 2, quantities over the protocol limits exception 3, unknown units
 * exception 11. A frame with a bad CRC is ignored (and counted), as a serial
 * slave would. A unit can be made silent or slow (`setSilent`, `setDelay`).
 */
import { type RegisterMemory, registerMemory, type UnitMemory } from "./modbus_server.ts";
import { crc16Modbus, withCrc } from "../sources/modbus/rtu_frame.ts";
import { connLink, type RtuLink } from "../sources/modbus/rtu_port.ts";
import { openSerialLine, type SerialSettings } from "../sources/modbus/serial_port.ts";
import { serialSettingsOf } from "../sources/modbus/endpoint.ts";
import { SERIAL_DEFAULTS } from "../sources/modbus/schema.ts";

export { crc16Modbus, withCrc };

/** Length of a read request frame: unit, function, address, quantity, CRC. */
const READ_FRAME = 8;

const TABLES: Record<number, { name: keyof UnitMemory; max: number }> = {
  1: { name: "coil", max: 2000 },
  2: { name: "discrete", max: 2000 },
  3: { name: "holding", max: 125 },
  4: { name: "input", max: 125 },
};

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

/** What an RTU slave of the simulator offers, on TCP or on a serial line. */
export interface RtuSlave {
  /** The register memory it serves. */
  memory: RegisterMemory;
  /** Requests answered so far (values or exceptions). */
  readonly requests: number;
  /** Frames ignored for a bad CRC. */
  readonly badFrames: number;
  /** Request frames (good CRC) received for `unit`, answered or not. */
  requestsTo(unit: number): number;
  /** A silent unit gets requests but never answers them (`false`: answers again). */
  setSilent(unit: number, silent: boolean): void;
  /** Answers of `unit` go out `ms` later (0: at once); requests to other units are answered meanwhile. */
  setDelay(unit: number, ms: number): void;
  /**
   * Answers of `unit` are held back and go out just before the next answer to
   * another unit: replies so late that the master already waits for another
   * unit (`false`: answers at once again).
   */
  setLate(unit: number, late: boolean): void;
  /** Held-back answers sent ahead of another unit's answer so far. */
  readonly lateAnswers: number;
  /** Stops serving and closes every connection or the line. */
  stop(): Promise<void>;
}

/** A running RTU-over-TCP simulator. */
export interface ModbusRtuSimulator extends RtuSlave {
  port: number;
}

/** A running serial RTU simulator. */
export interface ModbusRtuSerialSimulator extends RtuSlave {
  /** The device path it serves on. */
  path: string;
  /** Resolves when the line ended (stopped, or the device went away). */
  readonly ended: Promise<void>;
}

/** The request handling shared by both transports: framing, CRC, silence and delays. */
function rtuSlave(memory: RegisterMemory) {
  const silent = new Set<number>();
  const late = new Set<number>();
  const delays = new Map<number, number>();
  const received = new Map<number, number>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const stats = { requests: 0, badFrames: 0, lateAnswers: 0 };

  /** Answers one request now, later, or never; `held` keeps late answers of this link. */
  function answer(frame: Uint8Array, held: Uint8Array[], send: (b: Uint8Array) => void): void {
    const unit = frame[0];
    received.set(unit, (received.get(unit) ?? 0) + 1);
    if (silent.has(unit)) return;
    const reply = rtuAnswer(memory, frame);
    if (late.has(unit)) {
      held.push(reply);
      return;
    }
    for (const h of held.splice(0)) {
      stats.lateAnswers++;
      send(h);
    }
    const ms = delays.get(unit) ?? 0;
    if (ms <= 0) {
      stats.requests++;
      send(reply);
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      stats.requests++;
      send(reply);
    }, ms);
    timers.add(t);
  }

  /** Serves requests read from `link` until it ends. */
  async function serve(link: RtuLink): Promise<void> {
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(1024);
    let writes = Promise.resolve();
    const held: Uint8Array[] = [];
    const send = (b: Uint8Array) => {
      writes = writes.then(() => link.write(b)).catch(() => {});
    };
    try {
      while (true) {
        const n = await link.read(chunk);
        if (n === null) return;
        const next = new Uint8Array(buf.length + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.length);
        buf = next;
        while (buf.length >= READ_FRAME) {
          const frame = buf.slice(0, READ_FRAME);
          const crc = frame[6] | (frame[7] << 8);
          if (crc16Modbus(frame.subarray(0, 6)) !== crc) {
            // Ignore what arrived: the frame boundary is lost, the client times out.
            stats.badFrames++;
            buf = new Uint8Array(0);
            break;
          }
          buf = buf.slice(READ_FRAME);
          answer(frame, held, send);
        }
      }
    } catch {
      // Connection reset, line gone, or closed by stop().
    } finally {
      await writes;
      await link.close();
    }
  }

  const slave = {
    memory,
    get requests() {
      return stats.requests;
    },
    get badFrames() {
      return stats.badFrames;
    },
    requestsTo: (unit: number) => received.get(unit) ?? 0,
    setSilent(unit: number, on: boolean) {
      if (on) silent.add(unit);
      else silent.delete(unit);
    },
    setDelay: (unit: number, ms: number) => void delays.set(unit, ms),
    setLate(unit: number, on: boolean) {
      if (on) late.add(unit);
      else late.delete(unit);
    },
    get lateAnswers() {
      return stats.lateAnswers;
    },
  };
  const clearTimers = () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };
  return { slave, serve, clearTimers };
}

/** Starts the RTU-over-TCP simulator on `host:port` (0: a free port), on its own or a shared memory. */
export function startModbusRtuSimulator(
  opts: { port: number; host?: string; memory?: RegisterMemory },
): ModbusRtuSimulator {
  const { slave, serve, clearTimers } = rtuSlave(opts.memory ?? registerMemory());
  const listener = Deno.listen({ hostname: opts.host ?? "127.0.0.1", port: opts.port });
  const links = new Set<RtuLink>();
  const served: Promise<void>[] = [];

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const link = connLink(conn);
        links.add(link);
        served.push(serve(link).finally(() => links.delete(link)));
      }
    } catch { /* listener closed */ }
  })();

  return withSlave(slave, {
    port: (listener.addr as Deno.NetAddr).port,
    async stop() {
      clearTimers();
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const l of links) await l.close();
      await accepting;
      await Promise.all(served);
    },
  });
}

/** `extra` with the slave's keys, getters kept. */
function withSlave<T extends object>(
  slave: Omit<RtuSlave, "stop">,
  extra: T,
): T & Omit<RtuSlave, "stop"> {
  return Object.defineProperties(extra, Object.getOwnPropertyDescriptors(slave)) as
    & T
    & Omit<RtuSlave, "stop">;
}

/**
 * Starts the serial RTU simulator on the device `path` (e.g. one end of
 * `socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`) with line settings
 * `serial` (default 9600 8N1, as the source), on its own or a shared memory.
 * It serves until stopped or until the line goes away.
 */
export async function startModbusRtuSerialSimulator(
  opts: { path: string; serial?: SerialSettings; memory?: RegisterMemory },
): Promise<ModbusRtuSerialSimulator> {
  const { slave, serve, clearTimers } = rtuSlave(opts.memory ?? registerMemory());
  const link = await openSerialLine(opts.path, opts.serial ?? serialSettingsOf(SERIAL_DEFAULTS));
  const ended = serve(link);
  return withSlave(slave, {
    path: opts.path,
    ended,
    async stop() {
      clearTimers();
      await link.close();
      await ended;
    },
  });
}
