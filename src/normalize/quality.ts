/** Unified quality from protocol-native codes. */
import type { Quality } from "../record.ts";

/** Per protocol, the native codes that map to each quality (config `normalization.quality_mapping`). */
export type QualityTable = Record<
  string,
  { good?: number[]; uncertain?: number[]; bad?: number[] }
>;

/** OPC-UA StatusCode severity bits: 00 good, 01 uncertain, 10/11 bad. */
export function opcuaQuality(code: number): Quality {
  const severity = (code >>> 30) & 0b11;
  return severity === 0 ? "good" : severity === 1 ? "uncertain" : "bad";
}

/** OPC Classic quality byte: 192+ good, 64..191 uncertain, below 64 bad. */
export function opcClassicQuality(code: number): Quality {
  const q = code & 0xc0;
  return q === 0xc0 ? "good" : q === 0x40 ? "uncertain" : "bad";
}

/**
 * The quality the configured table gives a native code, or undefined when it
 * does not list it. For `opcua`, numbers below 256 are a StatusCode's top byte
 * (as in the original description's example: 0 good, 64 = 0x40 uncertain,
 * 128 = 0x80 bad) and larger numbers whole StatusCodes.
 */
export function tableQuality(protocol: string, code: number, table?: QualityTable) {
  const t = table?.[protocol];
  if (!t) return undefined;
  const top = code >>> 24;
  const listed = protocol === "opcua"
    ? (list?: number[]) => list?.some((n) => (n < 256 ? n === top : n === code)) === true
    : (list?: number[]) => list?.includes(code) === true;
  if (listed(t.good)) return "good";
  if (listed(t.uncertain)) return "uncertain";
  if (listed(t.bad)) return "bad";
  return undefined;
}

/**
 * Quality of a native code: the configured table first (it must really apply),
 * then the protocol's own rule, else 0 = good and anything else bad.
 */
export function qualityOf(protocol: string, code: number, table?: QualityTable): Quality {
  const configured = tableQuality(protocol, code, table);
  if (configured) return configured;
  if (protocol === "opcua") return opcuaQuality(code);
  if (protocol === "opc_classic") return opcClassicQuality(code);
  return code === 0 ? "good" : "bad";
}
