/**
 * Modbus TCP server of the simulator (`modbus-serial`'s `ServerTCP` with
 * vector callbacks), for tests and the demo. Two unit ids, each with 100
 * holding registers, input registers, coils and discrete inputs (addresses
 * 0..99; beyond that a read gets exception 2, illegal data address; an unknown
 * unit id gets exception 11, gateway target failed to respond).
 *
 * Initial values (`SIMULATOR_MAP`), all settable:
 *
 * | unit | table    | address | value                                  |
 * | ---- | -------- | ------- | -------------------------------------- |
 * | 1    | holding  | 0..1    | float32 ABCD 12.5                      |
 * | 1    | holding  | 2..3    | float32 CDAB 21.75                     |
 * | 1    | holding  | 4       | int16 235 (23.5 scaled by 10)          |
 * | 1    | holding  | 5       | int16 -15 (-1.5 scaled by 10)          |
 * | 1    | holding  | 6..7    | uint32 ABCD 65538                      |
 * | 1    | input    | 0..1    | float32 ABCD 1.5                       |
 * | 1    | coil     | 0..3    | true, false, true, true                |
 * | 1    | discrete | 0..3    | false, true, false, true               |
 * | 2    | holding  | 0..1    | float32 CDAB 99.5                      |
 * | 2    | holding  | 2       | int16 -1                               |
 * | 2    | coil     | 0       | true                                   |
 *
 * For tests a unit can be made silent (requests to it get no answer at all) or
 * slow (answers after a delay), with `setSilent` and `setDelay`, or made to
 * answer every read with one exception code (`setException`), and
 * `readsAt(unit, table, address)` counts the reads that started at an address.
 * For benchmarks `layout` gives more units and larger tables (all zero beyond
 * the map above).
 */
import { ServerTCP } from "../sources/modbus/client.ts";

/** Registers (and bits) per table and unit. */
export const SIMULATOR_TABLE_SIZE = 100;

/** Unit ids the simulator answers. */
export const SIMULATOR_UNITS = [1, 2] as const;

/** Register words of a float32 in a byte order: ABCD (big endian), CDAB, BADC or DCBA. */
export function float32Words(
  value: number,
  order: "ABCD" | "CDAB" | "BADC" | "DCBA" = "ABCD",
): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value);
  const [a, bb, c, d] = b;
  switch (order) {
    case "ABCD":
      return [(a << 8) | bb, (c << 8) | d];
    case "CDAB":
      return [(c << 8) | d, (a << 8) | bb];
    case "BADC":
      return [(bb << 8) | a, (d << 8) | c];
    case "DCBA":
      return [(d << 8) | c, (bb << 8) | a];
  }
}

/** The register word of an int16 (two's complement). */
export function int16Word(value: number): number {
  return value & 0xffff;
}

/** One unit's tables. */
export interface UnitMemory {
  holding: number[];
  input: number[];
  coil: boolean[];
  discrete: boolean[];
}

/** Unit ids and table size of a simulator (defaults: units 1 and 2, 100 per table). */
export interface SimulatorLayout {
  units?: readonly number[];
  /** Registers (and bits) per table, 1..65536. */
  tableSize?: number;
}

function blankUnit(size = SIMULATOR_TABLE_SIZE): UnitMemory {
  return {
    holding: new Array(size).fill(0),
    input: new Array(size).fill(0),
    coil: new Array(size).fill(false),
    discrete: new Array(size).fill(false),
  };
}

/** The simulator's initial register map (see the table above), on `layout`'s units and sizes. */
export function initialMemory(layout: SimulatorLayout = {}): Map<number, UnitMemory> {
  const size = layout.tableSize ?? SIMULATOR_TABLE_SIZE;
  if (!Number.isInteger(size) || size < 8 || size > 65536) {
    throw new RangeError(`tableSize must be 8..65536, got ${size}`);
  }
  const blank = () => blankUnit(size);
  const u1 = blank();
  u1.holding.splice(0, 8, ...float32Words(12.5), ...float32Words(21.75, "CDAB"), 235, 0xfff1, 1, 2);
  u1.input.splice(0, 2, ...float32Words(1.5));
  u1.coil.splice(0, 4, true, false, true, true);
  u1.discrete.splice(0, 4, false, true, false, true);
  const u2 = blank();
  u2.holding.splice(0, 3, ...float32Words(99.5, "CDAB"), int16Word(-1));
  u2.coil[0] = true;
  const all = new Map([[1, u1], [2, u2]]);
  for (const unit of layout.units ?? SIMULATOR_UNITS) if (!all.has(unit)) all.set(unit, blank());
  if (layout.units) {
    for (const unit of all.keys()) if (!layout.units.includes(unit)) all.delete(unit);
  }
  return all;
}

/** A Modbus exception a server answers with (`ServerTCP`'s shape). */
export interface ModbusException {
  modbusErrorCode: number;
  msg: string;
}

function exception(code: number, msg: string): ModbusException {
  return { modbusErrorCode: code, msg };
}

/** Register memory, shareable by the TCP and the RTU-over-TCP simulator. */
export interface RegisterMemory {
  /**
   * `n` values of `unit`'s table from `addr` on; throws a `ModbusException`
   * (11 for an unknown unit, 2 for an address outside the table).
   */
  read<K extends keyof UnitMemory>(unit: number, name: K, addr: number, n: number): UnitMemory[K];
  /** Sets values from `addr` on; throws a RangeError outside the table. */
  write<K extends keyof UnitMemory>(unit: number, name: K, addr: number, v: UnitMemory[K]): void;
}

/** A register memory holding the initial map (on `layout`'s units and sizes). */
export function registerMemory(layout: SimulatorLayout = {}): RegisterMemory {
  const memory = initialMemory(layout);
  function table<K extends keyof UnitMemory>(unit: number, name: K): UnitMemory[K] {
    const m = memory.get(unit);
    if (!m) throw exception(11, `unit ${unit} does not answer`);
    return m[name];
  }
  return {
    read(unit, name, addr, n) {
      const t = table(unit, name);
      if (addr < 0 || addr + n > t.length) {
        throw exception(2, `${name} ${addr}..${addr + n - 1} is outside 0..${t.length - 1}`);
      }
      return t.slice(addr, addr + n) as typeof t;
    },
    write(unit, name, addr, values) {
      const t = table(unit, name);
      if (addr < 0 || addr + values.length > t.length) {
        throw new RangeError(`${name} ${addr}+${values.length} is outside 0..${t.length - 1}`);
      }
      t.splice(addr, values.length, ...(values as never[]));
    },
  };
}

/** A running simulator. */
export interface ModbusSimulator {
  port: number;
  /** The register memory it serves. */
  memory: RegisterMemory;
  /** Sets holding registers from `address` on (16-bit words). */
  setHolding(unit: number, address: number, words: number[]): void;
  /** Sets input registers from `address` on (16-bit words). */
  setInput(unit: number, address: number, words: number[]): void;
  /** Sets coils from `address` on. */
  setCoils(unit: number, address: number, bits: boolean[]): void;
  /** Sets discrete inputs from `address` on. */
  setDiscrete(unit: number, address: number, bits: boolean[]): void;
  /** A silent unit gets requests but never answers them (`false`: answers again). */
  setSilent(unit: number, silent: boolean): void;
  /** Answers of `unit` wait `ms` (0: none); later requests of other units are not held up. */
  setDelay(unit: number, ms: number): void;
  /**
   * Every read of `unit` is answered with exception `code` (1..255, e.g. 1
   * illegal function, 6 busy, 10 gateway path unavailable); undefined: served again.
   */
  setException(unit: number, code: number | undefined): void;
  /** Requests served so far (reads of any table; one per bit for coils and discrete inputs). */
  readonly requests: number;
  /** Reads of `unit`'s `table` that started at `address` so far. */
  readsAt(unit: number, table: keyof UnitMemory, address: number): number;
  /** Closes the listener and every client connection. */
  stop(): Promise<void>;
}

/**
 * Starts the Modbus TCP simulator on `host:port` (port must be given; 0 is not
 * supported), on its own memory or a shared one.
 */
export async function startModbusSimulator(
  opts: { port: number; host?: string; memory?: RegisterMemory; layout?: SimulatorLayout },
): Promise<ModbusSimulator> {
  if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
    throw new Error(`the Modbus simulator needs a port 1..65535, got ${opts.port}`);
  }
  const memory = opts.memory ?? registerMemory(opts.layout);
  let requests = 0;
  const starts = new Map<string, number>();
  const silent = new Set<number>();
  const delays = new Map<number, number>();
  const exceptions = new Map<number, number>();
  const timers = new Set<ReturnType<typeof setTimeout>>();

  /** `value` later: after `unit`'s delay, or never when it is silent; else undefined. */
  function later<T>(unit: number, value: T): Promise<T> | undefined {
    if (silent.has(unit)) return new Promise<T>(() => {});
    const ms = delays.get(unit) ?? 0;
    if (ms <= 0) return undefined;
    return new Promise<T>((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve(value);
      }, ms);
      timers.add(t);
    });
  }

  /**
   * The answer of a single-value callback: the value, or a promise of it for a
   * slow or silent unit (`ServerTCP` replies only once every promise settled).
   * Exceptions (unknown unit, bad address) are thrown at once.
   */
  function one<T>(unit: number, value: T): T | Promise<T> {
    return later(unit, value) ?? value;
  }

  /** The answer of a multi-register callback: an array, of promises for a slow or silent unit. */
  function many<T>(unit: number, values: T[]): T[] | Promise<T>[] {
    const all = later(unit, values);
    return all ? values.map((_, i) => all.then((v) => v[i])) : values;
  }

  function span<K extends keyof UnitMemory>(unit: number, name: K, addr: number, n: number) {
    const code = exceptions.get(unit);
    if (code !== undefined) throw exception(code, `unit ${unit} set to answer exception ${code}`);
    const values = memory.read(unit, name, addr, n);
    requests++;
    const key = `${unit}/${name}/${addr}`;
    starts.set(key, (starts.get(key) ?? 0) + 1);
    return values;
  }
  const set = memory.write;

  const server = new ServerTCP({
    getHoldingRegister: (addr: number, unit: number) =>
      one(unit, span(unit, "holding", addr, 1)[0]),
    getMultipleHoldingRegisters: (addr: number, n: number, unit: number) =>
      many(unit, span(unit, "holding", addr, n)),
    getInputRegister: (addr: number, unit: number) => one(unit, span(unit, "input", addr, 1)[0]),
    getMultipleInputRegisters: (addr: number, n: number, unit: number) =>
      many(unit, span(unit, "input", addr, n)),
    getCoil: (addr: number, unit: number) => one(unit, span(unit, "coil", addr, 1)[0]),
    getDiscreteInput: (addr: number, unit: number) => one(unit, span(unit, "discrete", addr, 1)[0]),
  }, { host: opts.host ?? "127.0.0.1", port: opts.port, unitID: 255 });

  await new Promise<void>((resolve, reject) => {
    server.on("initialized", () => resolve());
    server.on("serverError", (e) => reject(e));
  });
  // Connection resets while stopping are expected; do not let them surface as errors.
  server.on("socketError", () => {});
  server.on("error", () => {});

  return {
    port: opts.port,
    memory,
    setHolding: (unit, address, words) => set(unit, "holding", address, words),
    setInput: (unit, address, words) => set(unit, "input", address, words),
    setCoils: (unit, address, bits) => set(unit, "coil", address, bits),
    setDiscrete: (unit, address, bits) => set(unit, "discrete", address, bits),
    setSilent(unit, on) {
      if (on) silent.add(unit);
      else silent.delete(unit);
    },
    setDelay: (unit, ms) => void delays.set(unit, ms),
    setException(unit, code) {
      if (code === undefined) return void exceptions.delete(unit);
      if (!Number.isInteger(code) || code < 1 || code > 255) {
        throw new RangeError(`a Modbus exception code is 1..255, got ${code}`);
      }
      exceptions.set(unit, code);
    },
    get requests() {
      return requests;
    },
    readsAt: (unit, table, address) => starts.get(`${unit}/${table}/${address}`) ?? 0,
    stop() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
