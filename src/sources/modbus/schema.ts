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

function checkRegister(register: unknown, ctx: z.RefinementCtx): void {
  if (typeof register !== "object" || register === null) return;
  const r = register as Record<string, unknown>;
  const bits = typeof r.type === "string" && BIT_TABLES.includes(r.type);
  if (bits && r.data_type !== undefined && r.data_type !== "bool") {
    ctx.addIssue({
      code: "custom",
      path: ["data_type"],
      message: `${r.type} registers hold bits; use data_type bool or leave it out`,
    });
  }
  if (!bits && typeof r.data_type === "string" && typeof r.count === "number") {
    const width = registerWidth(r.data_type as ModbusDataType);
    if (r.count % width !== 0) {
      ctx.addIssue({
        code: "custom",
        path: ["count"],
        message: `${r.data_type} takes ${width} registers per value; count ${r.count} ` +
          `is not a multiple of ${width}`,
      });
    }
  }
  if (typeof r.address === "number" && typeof r.count === "number") {
    if (r.address + r.count > 65536) {
      ctx.addIssue({
        code: "custom",
        path: ["count"],
        message: `address ${r.address} + count ${r.count} goes past register 65535`,
      });
    }
  }
}

/**
 * One block of registers read together. `count` is the number of 16-bit
 * registers (bits for coil and discrete) read from `address`; when absent it
 * is one value's worth of `data_type`. `data_type` defaults to bool for bit
 * tables and uint16 otherwise. The value read is `raw * scale + offset`.
 */
export const modbusRegisterSchema = z.strictObject({
  address: int().min(0).max(65535),
  count: int().min(1).max(125).optional(),
  type: z.enum(MODBUS_REGISTER_TYPES),
  data_type: z.enum(MODBUS_DATA_TYPES).optional(),
  name: z.string().min(1).optional(),
  scale: z.number().optional(),
  offset: z.number().optional(),
  unit: z.string().optional(),
}).superRefine(checkRegister, { when: () => true }).transform((r) => {
  const dataType: ModbusDataType = r.data_type ??
    (BIT_TABLES.includes(r.type) ? "bool" : "uint16");
  return { ...r, data_type: dataType, count: r.count ?? registerWidth(dataType) };
});

/** A register block after validation and defaults. */
export type ModbusRegisterConfig = z.output<typeof modbusRegisterSchema>;

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
  timeout_ms: int().min(1).max(600_000).default(1000),
};

/** A Modbus source entry after validation and defaults. */
export type ModbusSourceConfig = z.output<typeof SOURCE_SCHEMAS.modbus>;
