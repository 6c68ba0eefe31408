/**
 * The register map as tags, and the request optimizer: tags of one poll group,
 * unit id and table merged into as few reads as possible, each within the
 * protocol limit (125 registers, 2,000 bits), joining gaps of up to `max_gap`
 * unused registers (bits for coil and discrete).
 */
import type { TagContext } from "../worker_protocol.ts";
import type { ByteOrder, ValueFormat } from "./decode.ts";
import {
  MAX_READ_BITS,
  MAX_READ_REGISTERS,
  MODBUS_REGISTER_TYPES,
  type ModbusDataType,
  type ModbusRegisterConfig,
  registerWidth,
} from "./schema.ts";

/** A register table. */
export type ModbusTable = (typeof MODBUS_REGISTER_TYPES)[number];

/** One value of the register map. */
export interface ModbusTag {
  unitId: number;
  table: ModbusTable;
  /** First register (or bit) of the value. */
  address: number;
  /** Registers (or bits) the value takes. */
  width: number;
  /** Tag name: the register's name (`<name>_<i>` in a block), or `<table>_<address>`. */
  name: string;
  /** `unit/table/address`, with `.bit` for a single bit of a register. */
  path: string;
  format: ValueFormat;
  scale?: number;
  offset?: number;
  unit?: string;
  signalType?: string;
  /** Poll group name; undefined for the source's own schedule. */
  group?: string;
  /** ISA-95 context of the register entry (overrides the source's). */
  context?: TagContext;
  /** Report by exception: smallest change of a number that is reported. */
  deadband?: number;
}

/** One read request and the tags it serves. */
export interface ReadRequest {
  /** Poll group of its tags; undefined for the source's own schedule. */
  group?: string;
  unitId: number;
  table: ModbusTable;
  address: number;
  count: number;
  tags: ModbusTag[];
}

/** The keys of a source entry the plan needs. */
export interface ModbusMapConfig {
  slave_id: number;
  registers: ModbusRegisterConfig[];
}

/** True for the 1-bit tables (coil, discrete). */
export function isBitTable(table: ModbusTable): boolean {
  return table === "coil" || table === "discrete";
}

/** The most registers (bits for coil and discrete) one read of `table` may return. */
export function readLimit(table: ModbusTable): number {
  return isBitTable(table) ? MAX_READ_BITS : MAX_READ_REGISTERS;
}

function valueWidth(table: ModbusTable, dataType: ModbusDataType, count: number): number {
  if (isBitTable(table)) return 1;
  return dataType === "string" ? count : registerWidth(dataType);
}

const CONTEXT_KEYS = ["site", "area", "line", "equipment"] as const;

/** The ISA-95 keys a register entry sets, or undefined when it sets none. */
function contextOf(r: ModbusRegisterConfig): TagContext | undefined {
  const keys = CONTEXT_KEYS.filter((k) => r[k] !== undefined);
  return keys.length === 0 ? undefined : Object.fromEntries(keys.map((k) => [k, r[k]]));
}

/** Expands the register map into one tag per value, in config order. */
export function tagsOf(cfg: ModbusMapConfig): ModbusTag[] {
  const tags: ModbusTag[] = [];
  for (const r of cfg.registers) {
    const unitId = r.unit_id ?? cfg.slave_id;
    const context = contextOf(r);
    const width = valueWidth(r.type, r.data_type, r.count);
    const n = Math.max(1, Math.floor(r.count / width));
    for (let i = 0; i < n; i++) {
      const address = r.address + i * width;
      const bit = r.bit === undefined ? "" : `.${r.bit}`;
      const fallback = `${r.type}_${address}${r.bit === undefined ? "" : `_bit${r.bit}`}`;
      tags.push({
        unitId,
        table: r.type,
        address,
        width,
        name: r.name === undefined ? fallback : n > 1 ? `${r.name}_${i}` : r.name,
        path: `${unitId}/${r.type}/${address}${bit}`,
        format: {
          dataType: r.data_type,
          byteOrder: r.byte_order as ByteOrder | undefined,
          bit: r.bit,
        },
        scale: r.scale,
        offset: r.offset,
        unit: r.unit,
        signalType: r.signal_type,
        group: r.poll_group,
        context,
        deadband: r.deadband,
      });
    }
  }
  return tags;
}

const TABLE_ORDER = new Map(MODBUS_REGISTER_TYPES.map((t, i) => [t, i]));

/** Orders poll group names, the source's own schedule (undefined) first. */
function byGroup(a: string | undefined, b: string | undefined): number {
  return a === b ? 0 : a === undefined ? -1 : b === undefined ? 1 : a < b ? -1 : 1;
}

/**
 * Merges tags into reads: per poll group, unit id and table, in address order,
 * a tag joins the current read when the unused registers before it are at most
 * `maxGap` and the read stays within the protocol limit. Tags of different poll
 * groups never share a read. Reads come out sorted by group, unit id, table
 * (holding, input, coil, discrete) and address.
 */
export function planReads(tags: readonly ModbusTag[], maxGap: number): ReadRequest[] {
  const sorted = [...tags].sort((a, b) =>
    byGroup(a.group, b.group) ||
    a.unitId - b.unitId ||
    TABLE_ORDER.get(a.table)! - TABLE_ORDER.get(b.table)! ||
    a.address - b.address ||
    a.width - b.width
  );
  const reads: ReadRequest[] = [];
  let cur: ReadRequest | undefined;
  for (const tag of sorted) {
    const end = tag.address + tag.width;
    if (cur && cur.unitId === tag.unitId && cur.table === tag.table && cur.group === tag.group) {
      const curEnd = cur.address + cur.count;
      const gap = tag.address - curEnd;
      const span = Math.max(curEnd, end) - cur.address;
      if (gap <= maxGap && span <= readLimit(tag.table)) {
        cur.count = span;
        cur.tags.push(tag);
        continue;
      }
    }
    cur = {
      group: tag.group,
      unitId: tag.unitId,
      table: tag.table,
      address: tag.address,
      count: tag.width,
      tags: [tag],
    };
    reads.push(cur);
  }
  return reads;
}
