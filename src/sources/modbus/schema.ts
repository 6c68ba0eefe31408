/**
 * Config keys of the Modbus source (TCP, RTU over TCP, RTU on a serial line).
 * The keys every source has (name, enabled, site, ...) are added in
 * `../catalog.ts`.
 */
import { z } from "zod";
import type { SOURCE_SCHEMAS } from "../catalog.ts";

/** An integer; unlike `z.int()` a failure does not hide problems elsewhere in the file. */
const int = () => z.number().multipleOf(1);

/** Register tables: 16-bit words (holding, input) or bits (coil, discrete). */
export const MODBUS_REGISTER_TYPES = ["holding", "input", "coil", "discrete"] as const;

/** Value types; `float` is `float32`. */
export const MODBUS_DATA_TYPES = [
  "int16",
  "uint16",
  "int32",
  "uint32",
  "int64",
  "uint64",
  "float",
  "float32",
  "float64",
  "bool",
  "string",
] as const;

/** A register data type. */
export type ModbusDataType = (typeof MODBUS_DATA_TYPES)[number];

/** 16-bit registers one value of a data type takes (`string` and `bool`: 1 per register). */
export function registerWidth(dataType: ModbusDataType): number {
  switch (dataType) {
    case "int32":
    case "uint32":
    case "float":
    case "float32":
      return 2;
    case "int64":
    case "uint64":
    case "float64":
      return 4;
    default:
      return 1;
  }
}

const HOST = String.raw`(?:\[[0-9A-Fa-f:.]+\]|[^\s/:?#[\]]+)`;
const TCP = new RegExp(String.raw`^modbus://${HOST}(?::(\d{1,5}))?/?$`);
const RTU_TCP = new RegExp(String.raw`^modbusrtu\+tcp://${HOST}:(\d{1,5})/?$`);
const RTU_SERIAL = /^modbusrtu:\/\/\/[^\s?#]+(?:\?\S*)?$/;

/**
 * True for `modbus://host[:port]`, `modbusrtu+tcp://host:port` or
 * `modbusrtu:///dev/<device>` (any absolute device path, e.g. a udev or socat link).
 */
export function isModbusEndpoint(value: string): boolean {
  if (RTU_SERIAL.test(value)) return true;
  const m = TCP.exec(value) ?? RTU_TCP.exec(value);
  return m !== null && (m[1] === undefined || (Number(m[1]) >= 1 && Number(m[1]) <= 65535));
}

const BIT_TABLES: readonly string[] = ["coil", "discrete"];

/** Protocol limits of one read: 125 registers (FC 3, 4) or 2,000 bits (FC 1, 2). */
export const MAX_READ_REGISTERS = 125;
export const MAX_READ_BITS = 2000;

/** Byte and word orders of multi-byte values (see `decode.ts`). */
export const MODBUS_BYTE_ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"] as const;

function checkRegister(register: unknown, ctx: z.RefinementCtx): void {
  if (typeof register !== "object" || register === null) return;
  const r = register as Record<string, unknown>;
  const bits = typeof r.type === "string" && BIT_TABLES.includes(r.type);
  const issue = (key: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [key], message });
  if (bits && r.data_type !== undefined && r.data_type !== "bool") {
    issue("data_type", `${r.type} registers hold bits; use data_type bool or leave it out`);
  }
  if (!bits && typeof r.data_type === "string" && typeof r.count === "number") {
    const width = registerWidth(r.data_type as ModbusDataType);
    if (r.count % width !== 0) {
      issue(
        "count",
        `${r.data_type} takes ${width} registers per value; count ${r.count} ` +
          `is not a multiple of ${width}`,
      );
    }
  }
  if (!bits && typeof r.count === "number" && r.count > MAX_READ_REGISTERS) {
    issue(
      "count",
      `count ${r.count} is over the protocol limit of ${MAX_READ_REGISTERS} registers per read`,
    );
  }
  if (typeof r.address === "number" && typeof r.count === "number") {
    if (r.address + r.count > 65536) {
      issue("count", `address ${r.address} + count ${r.count} goes past register 65535`);
    }
  }
  if (r.bit !== undefined && (bits || (r.data_type ?? "bool") !== "bool")) {
    issue("bit", "bit selects one bit of a holding or input register; use it with data_type bool");
  }
  if (bits && r.byte_order !== undefined) {
    issue("byte_order", `${r.type} registers hold bits; byte_order does not apply`);
  }
  const plain = bits || r.data_type === "bool" || r.data_type === "string";
  for (const key of ["scale", "offset", "deadband"]) {
    if (plain && r[key] !== undefined) {
      issue(key, `${key} applies to numbers, not to ${bits ? r.type : r.data_type} values`);
    }
  }
}

/** Registers `[first, end)` a register entry occupies, or undefined when it is invalid. */
function spanOf(r: Record<string, unknown>): [number, number] | undefined {
  if (typeof r.address !== "number" || typeof r.type !== "string") return undefined;
  const dataType = typeof r.data_type === "string" ? r.data_type as ModbusDataType : undefined;
  const count = typeof r.count === "number"
    ? r.count
    : dataType === undefined
    ? 1
    : registerWidth(dataType);
  return [r.address, r.address + count];
}

/** Where a register entry reads: unit, table, registers and the one bit, if any. */
interface Footprint {
  index: number;
  unit: unknown;
  type: string;
  span: [number, number];
  bit?: number;
}

/** True when two entries read a common register, other than different bits of it. */
function clash(a: Footprint, b: Footprint): boolean {
  if (a.unit !== b.unit || a.type !== b.type) return false;
  if (a.span[1] <= b.span[0] || b.span[1] <= a.span[0]) return false;
  return a.bit === undefined || b.bit === undefined || a.bit === b.bit;
}

const extent = (f: Footprint) =>
  `${f.span[0]}..${f.span[1] - 1}${f.bit === undefined ? "" : ` bit ${f.bit}`}`;

/**
 * Rejects entries of one unit and table that read the same registers; entries
 * without `unit_id` are on `slaveId`. Different bits of one register may share it.
 */
function checkOverlaps(registers: unknown[], slaveId: unknown, ctx: z.RefinementCtx): void {
  const seen: Footprint[] = [];
  registers.forEach((item, index) => {
    if (typeof item !== "object" || item === null) return;
    const r = item as Record<string, unknown>;
    const span = spanOf(r);
    if (!span) return;
    const bit = typeof r.bit === "number" ? r.bit : undefined;
    const here = { index, unit: r.unit_id ?? slaveId, type: r.type as string, span, bit };
    const other = seen.find((s) => clash(s, here));
    if (other) {
      ctx.addIssue({
        code: "custom",
        path: ["registers", index, "address"],
        message: `${r.type} ${extent(here)} overlaps registers[${other.index}] ` +
          `(${extent(other)}) on unit ${here.unit}`,
      });
    }
    seen.push(here);
  });
}

/**
 * One block of registers read together. `count` is the number of 16-bit
 * registers (bits for coil and discrete) read from `address`; when absent it
 * is one value's worth of `data_type`. `data_type` defaults to bool for bit
 * tables and uint16 otherwise. The value read is `raw * scale + offset`.
 * A block of several values yields one tag per value at consecutive addresses
 * (`<name>_<i>`, or `<table>_<address>` without a name); a string is one value
 * over all `count` registers.
 */
export const modbusRegisterSchema = z.strictObject({
  address: int().min(0).max(65535),
  count: int().min(1).max(MAX_READ_BITS).optional(),
  type: z.enum(MODBUS_REGISTER_TYPES),
  data_type: z.enum(MODBUS_DATA_TYPES).optional(),
  name: z.string().min(1).optional(),
  /** Default ABCD (big endian). */
  byte_order: z.enum(MODBUS_BYTE_ORDERS).optional(),
  /** One bit (0 = least significant) of a holding or input register, as bool. */
  bit: int().min(0).max(15).optional(),
  scale: z.number().optional(),
  offset: z.number().optional(),
  unit: z.string().optional(),
  signal_type: z.string().min(1).optional(),
  /** Unit id of this entry; defaults to the source's `slave_id`. */
  unit_id: int().min(0).max(247).optional(),
  /** Name of the `poll_groups` entry that polls this entry; the source's interval otherwise. */
  poll_group: z.string().min(1).optional(),
  /** ISA-95 context of these tags, overriding the source's. */
  site: z.string().min(1).optional(),
  area: z.string().min(1).optional(),
  line: z.string().min(1).optional(),
  equipment: z.string().min(1).optional(),
  /** Report by exception: a number is reported when it moved more than this from the last one. */
  deadband: z.number().min(0).optional(),
}).superRefine(checkRegister, { when: () => true }).transform((r) => {
  const dataType: ModbusDataType = r.data_type ??
    (BIT_TABLES.includes(r.type) ? "bool" : "uint16");
  return { ...r, data_type: dataType, count: r.count ?? registerWidth(dataType) };
});

/** A register block after validation and defaults. */
export type ModbusRegisterConfig = z.output<typeof modbusRegisterSchema>;

/** Rejects a unit id listed twice in `slaves`. */
function checkSlaves(slaves: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(slaves)) return;
  const seen = new Map<unknown, number>();
  slaves.forEach((item, index) => {
    const id = (item as { unit_id?: unknown } | null)?.unit_id;
    if (typeof id !== "number") return;
    const first = seen.get(id);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: [index, "unit_id"],
        message: `unit ${id} is already listed in slaves[${first}]`,
      });
    } else seen.set(id, index);
  });
}

/**
 * Settings of one unit id behind the endpoint. Its registers are the
 * `registers` entries with this `unit_id` (or without one when it equals
 * `slave_id`).
 */
export const modbusSlaveSchema = z.strictObject({
  unit_id: int().min(0).max(247),
  /** How long to wait for each response of this unit; the source's `timeout_ms` otherwise. */
  timeout_ms: int().min(1).max(600_000).optional(),
});

/** Report by exception and its heartbeat, at source level or per poll group. */
const reportFields = {
  /** Emit a tag only when its value or quality changed (and at each heartbeat). */
  report_by_exception: z.boolean().optional(),
  /** With report_by_exception: every tag is emitted at least every this many seconds (0: never). */
  heartbeat_s: z.number().min(0).max(86_400).optional(),
};

/** A set of register entries polled on its own schedule. */
export const modbusPollGroupSchema = z.strictObject({
  name: z.string().min(1),
  polling_interval_ms: int().min(1).max(86_400_000),
  ...reportFields,
});

/** Rejects a poll group name listed twice. */
function checkPollGroups(groups: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(groups)) return;
  const seen = new Map<unknown, number>();
  groups.forEach((item, index) => {
    const name = (item as { name?: unknown } | null)?.name;
    if (typeof name !== "string") return;
    const first = seen.get(name);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: [index, "name"],
        message: `poll group '${name}' is already defined in poll_groups[${first}]`,
      });
    } else seen.set(name, index);
  });
}

/** Baud rates a serial line can be set to (`stty`). */
export const SERIAL_BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400];

/**
 * Line settings of serial RTU (`modbusrtu:///dev/...`). Defaults 9600 baud,
 * 8 data bits, no parity, 1 stop bit (9600 8N1, the usual factory setting;
 * the Modbus spec's default is 19200 8E1: set `baud_rate: 19200, parity: even`).
 */
export const modbusSerialSchema = z.strictObject({
  baud_rate: int().refine(
    (v) => SERIAL_BAUD_RATES.includes(v),
    `expected one of ${SERIAL_BAUD_RATES.join(", ")}`,
  ).default(9600),
  parity: z.enum(["none", "even", "odd"]).default("none"),
  data_bits: int().refine(
    (v) => v === 8,
    "Modbus RTU needs 8 data bits (7 is Modbus ASCII, which this source does not speak)",
  ).default(8),
  stop_bits: int().refine((v) => v === 1 || v === 2, "expected 1 or 2").default(1),
});

/** Line settings when a serial source has no `serial` keys. */
export const SERIAL_DEFAULTS = modbusSerialSchema.parse({});

/** `serial` only with a serial endpoint; line settings in `serial`, not in the endpoint. */
function checkSerial(s: Record<string, unknown>, ctx: z.RefinementCtx): void {
  if (typeof s.endpoint !== "string") return;
  const isSerial = s.endpoint.startsWith("modbusrtu:///");
  if (s.serial !== undefined && !isSerial) {
    ctx.addIssue({
      code: "custom",
      path: ["serial"],
      message: `serial line settings apply to modbusrtu:///dev/<device> endpoints, ` +
        `not to ${s.endpoint}; remove serial or change the endpoint`,
    });
  }
  if (isSerial && /[?#]/.test(s.endpoint)) {
    ctx.addIssue({
      code: "custom",
      path: ["endpoint"],
      message: "put line settings in the serial keys (baud_rate, parity, data_bits, " +
        "stop_bits), not in the endpoint",
    });
  }
}

/**
 * Checks across keys of a Modbus source entry: no two register entries read
 * the same registers of a unit (`unit_id` or `slave_id`), every `poll_group` a
 * register names is defined in `poll_groups`, and `deadband` is only set where
 * report by exception is on.
 */
export function checkModbus(source: unknown, ctx: z.RefinementCtx): void {
  const s = source as Record<string, unknown> | null;
  if (s && typeof s === "object") checkSerial(s, ctx);
  if (!s || !Array.isArray(s.registers)) return;
  checkOverlaps(s.registers, s.slave_id ?? 1, ctx);
  const groups = new Map<string, Record<string, unknown>>();
  if (Array.isArray(s.poll_groups)) {
    for (const g of s.poll_groups) {
      if (typeof g?.name === "string" && !groups.has(g.name)) groups.set(g.name, g);
    }
  }
  s.registers.forEach((item: unknown, index: number) => {
    const r = item as Record<string, unknown> | null;
    if (!r || typeof r !== "object") return;
    const issue = (key: string, message: string) =>
      ctx.addIssue({ code: "custom", path: ["registers", index, key], message });
    const name = r.poll_group;
    const group = typeof name === "string" ? groups.get(name) : undefined;
    if (typeof name === "string" && !group) {
      const known = [...groups.keys()];
      issue(
        "poll_group",
        `poll group '${name}' is not defined in poll_groups; ` +
          (known.length ? `use one of: ${known.join(", ")}` : "add it there"),
      );
      return;
    }
    const rbe = group?.report_by_exception ?? s.report_by_exception ?? false;
    if (r.deadband !== undefined && rbe !== true) {
      issue("deadband", "deadband applies with report_by_exception; turn it on or remove deadband");
    }
  });
}

/** Modbus-specific keys of a source entry. */
export const modbusFields = {
  endpoint: z.string().refine(
    isModbusEndpoint,
    "expected modbus://host[:port], modbusrtu+tcp://host:port or modbusrtu:///dev/<device>",
  ),
  /** Unit id; 0 is broadcast. */
  slave_id: int().min(0).max(247).default(1),
  registers: z.array(modbusRegisterSchema).min(1),
  polling_interval_ms: int().min(1).max(86_400_000).default(1000),
  /** How long to wait for each response (and for connecting); per unit in `slaves`. */
  timeout_ms: int().min(1).max(600_000).default(1000),
  /** Per-unit settings (own timeout); units not listed use the source's. */
  slaves: z.array(modbusSlaveSchema).superRefine(checkSlaves, { when: () => true }).optional(),
  /** Unused registers (bits for coil and discrete) a merged read may span between two tags. */
  max_gap: int().min(0).max(MAX_READ_BITS).default(10),
  /** Line settings of a `modbusrtu:///dev/...` endpoint (defaults: 9600 8N1). */
  serial: modbusSerialSchema.optional(),
  ...reportFields,
  /** Sets of register entries with their own polling interval (and report by exception). */
  poll_groups: z.array(modbusPollGroupSchema).superRefine(checkPollGroups, { when: () => true })
    .optional(),
};

/** A Modbus source entry after validation and defaults. */
export type ModbusSourceConfig = z.output<typeof SOURCE_SCHEMAS.modbus>;
