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

/** The configured quality of a native code, or undefined when the table does not list it. */
export type TableLookup = (protocol: string, code: number) => Quality | undefined;

/**
 * Compiles `normalization.quality_mapping` into one lookup (maps, no search
 * per record). For `opcua`, numbers below 256 are a StatusCode's top byte (as
 * in the original description's example: 0 good, 64 = 0x40 uncertain, 128 =
 * 0x80 bad) and larger numbers whole StatusCodes; a whole code wins.
 */
export function compileQualityTable(table?: QualityTable): TableLookup {
  const byProtocol = new Map<string, { whole: Map<number, Quality>; top: Map<number, Quality> }>();
  for (const [protocol, lists] of Object.entries(table ?? {})) {
    const maps = { whole: new Map<number, Quality>(), top: new Map<number, Quality>() };
    for (const q of ["bad", "uncertain", "good"] as const) {
      for (const n of lists[q] ?? []) {
        (protocol === "opcua" && n < 256 ? maps.top : maps.whole).set(n, q);
      }
    }
    byProtocol.set(protocol, maps);
  }
  if (byProtocol.size === 0) return () => undefined;
  return (protocol, code) => {
    const maps = byProtocol.get(protocol);
    if (!maps) return undefined;
    return maps.whole.get(code) ?? (protocol === "opcua" ? maps.top.get(code >>> 24) : undefined);
  };
}

/**
 * Quality of a native code by the protocol's own rule (the configured table,
 * `compileQualityTable`, is looked up before this): 0 = good, anything else bad.
 */
export function qualityOf(protocol: string, code: number): Quality {
  if (protocol === "opcua") return opcuaQuality(code);
  if (protocol === "opc_classic") return opcClassicQuality(code);
  return code === 0 ? "good" : "bad";
}
