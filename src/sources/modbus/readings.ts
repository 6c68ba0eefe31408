/**
 * Responses to readings: one reading per tag of a read, decoded and scaled, or
 * one bad reading per tag when the read failed. Quality codes are the Modbus
 * exception code (1 illegal function, 2 illegal data address, 3 illegal data
 * value, 4 device failure, 6 busy, 10 gateway path unavailable, 11 gateway
 * target failed to respond, ...) or one of the agent's own codes below.
 */
import type { ValueType } from "../../record.ts";
import type { Reading } from "../worker_protocol.ts";
import { decodeWords, isIntegerType, scaleValue } from "./decode.ts";
import { isBitTable, type ModbusTag, type ReadRequest } from "./plan.ts";

/** No response within `timeout_ms`. */
export const MODBUS_TIMEOUT_CODE = 256;
/** No connection (refused, closed, or lost while the read was pending). */
export const MODBUS_DISCONNECTED_CODE = 257;
/** A response that could not be decoded (wrong length, CRC, unexpected frame). */
export const MODBUS_BAD_RESPONSE_CODE = 258;

/**
 * True for an error of a response frame that did not decode: wrong length or
 * byte count, CRC, unexpected unit id or function code (`modbus-serial`'s
 * texts), or a parser running past the end of a short frame (RangeError).
 */
export function isMalformedFrame(err: unknown): boolean {
  const e = (err ?? {}) as { name?: unknown; code?: unknown; message?: unknown };
  if (err instanceof RangeError || e.name === "RangeError" || e.code === "ERR_OUT_OF_RANGE") {
    return true;
  }
  const message = typeof e.message === "string" ? e.message : String(err);
  return /crc|length|unexpected|out of range/i.test(message);
}

/** The quality code of a failed read: the exception code, or one of the agent's own codes. */
export function errorCode(err: unknown): number {
  const e = (err ?? {}) as { modbusCode?: unknown; errno?: unknown; message?: unknown };
  if (typeof e.modbusCode === "number" && e.modbusCode > 0) return e.modbusCode;
  const message = typeof e.message === "string" ? e.message : String(err);
  if (e.errno === "ETIMEDOUT" || /timed out/i.test(message)) return MODBUS_TIMEOUT_CODE;
  if (isMalformedFrame(err)) return MODBUS_BAD_RESPONSE_CODE;
  return MODBUS_DISCONNECTED_CODE;
}

/** A short text for an error of the client library. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  const e = err as { message?: unknown } | null;
  return typeof e?.message === "string" ? e.message : String(err);
}

/**
 * The value type of a tag's readings, from its table and data type (also for
 * bad readings without a value): bool for bits, string, int for integer types
 * with integral scale and offset, float otherwise.
 */
export function tagValueType(tag: ModbusTag): ValueType {
  if (isBitTable(tag.table) || tag.format.dataType === "bool") return "bool";
  if (tag.format.dataType === "string") return "string";
  const integral = isIntegerType(tag.format.dataType) &&
    Number.isInteger(tag.scale ?? 1) && Number.isInteger(tag.offset ?? 0);
  return integral ? "int" : "float";
}

function baseOf(tag: ModbusTag, eventTime: number): Omit<Reading, "value" | "quality_code"> {
  return {
    address: tag.path,
    tag_name: tag.name,
    event_time: eventTime,
    unit: tag.unit,
    signal_type: tag.signalType,
    context: tag.context,
  };
}

/**
 * Readings of a successful read: `data` is the registers (or bits) from
 * `req.address`. A tag whose value does not decode gets a bad reading.
 */
export function readingsOf(
  req: ReadRequest,
  data: ArrayLike<number | boolean>,
  eventTime: number,
): Reading[] {
  return req.tags.map((tag) => {
    const at = tag.address - req.address;
    try {
      if (data.length < at + tag.width) {
        throw new RangeError(`response has ${data.length} values, tag needs ${at + tag.width}`);
      }
      const raw = isBitTable(req.table) ? Boolean(data[at]) : decodeWords(
        Array.from({ length: tag.width }, (_, i) => Number(data[at + i])),
        tag.format,
      );
      const value = scaleValue(raw, tag.scale, tag.offset);
      return {
        ...baseOf(tag, eventTime),
        value,
        value_type: tagValueType(tag),
        quality_code: 0,
      };
    } catch (e) {
      return {
        ...baseOf(tag, eventTime),
        value: null,
        value_type: tagValueType(tag),
        quality_code: MODBUS_BAD_RESPONSE_CODE,
        metadata: { error: errorText(e) },
      };
    }
  });
}

/** One bad reading per tag of a failed read, with `code` as quality_code. */
export function failedReadings(
  req: ReadRequest,
  code: number,
  error: string,
  eventTime: number,
): Reading[] {
  return req.tags.map((tag) => ({
    ...baseOf(tag, eventTime),
    value: null,
    value_type: tagValueType(tag),
    quality_code: code,
    metadata: { error },
  }));
}
