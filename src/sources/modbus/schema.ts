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
const RTU_SERIAL = /^modbusrtu:\/\/\/dev\/[^\s?#]+(?:\?\S*)?$/;

/**
 * True for `modbus://host[:port]`, `modbusrtu+tcp://host:port` or
 * `modbusrtu:///dev/<device>`.
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
  for (const key of ["scale", "offset"]) {
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

/** Rejects entries of one unit and table that read the same registers (bits of one register may share it). */
function checkOverlaps(registers: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(registers)) return;
  const seen: Array<{ key: string; span: [number, number]; index: number; bit: boolean }> = [];
  registers.forEach((item, index) => {
    if (typeof item !== "object" || item === null) return;
    const r = item as Record<string, unknown>;
    const span = spanOf(r);
    if (!span) return;
    const key = `${r.unit_id ?? "default"}/${r.type}`;
    const bit = r.bit !== undefined;
    const other = seen.find((s) =>
      s.key === key && s.span[0] < span[1] && span[0] < s.span[1] && !(bit && s.bit)
    );
    if (other) {
      ctx.addIssue({
        code: "custom",
        path: [index, "address"],
        message: `${r.type} ${span[0]}..${span[1] - 1} overlaps registers[${other.index}] ` +
          `(${other.span[0]}..${other.span[1] - 1})`,
      });
    }
    seen.push({ key, span, index, bit });
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

/** Modbus-specific keys of a source entry. */
export const modbusFields = {
  endpoint: z.string().refine(
    isModbusEndpoint,
    "expected modbus://host[:port], modbusrtu+tcp://host:port or modbusrtu:///dev/<device>",
  ),
  /** Unit id; 0 is broadcast. */
  slave_id: int().min(0).max(247).default(1),
  registers: z.array(modbusRegisterSchema).min(1).superRefine(checkOverlaps, { when: () => true }),
  polling_interval_ms: int().min(1).max(86_400_000).default(1000),
  /** How long to wait for each response (and for connecting); per unit in `slaves`. */
  timeout_ms: int().min(1).max(600_000).default(1000),
  /** Per-unit settings (own timeout); units not listed use the source's. */
  slaves: z.array(modbusSlaveSchema).superRefine(checkSlaves, { when: () => true }).optional(),
  /** Unused registers (bits for coil and discrete) a merged read may span between two tags. */
  max_gap: int().min(0).max(MAX_READ_BITS).default(10),
};

/** A Modbus source entry after validation and defaults. */
export type ModbusSourceConfig = z.output<typeof SOURCE_SCHEMAS.modbus>;
