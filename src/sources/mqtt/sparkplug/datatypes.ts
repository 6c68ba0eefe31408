/** Sparkplug B data type codes (specification 3.0, `DataType` enum) and their names. */

/** Type code → name, as the specification numbers them. */
export const DATATYPE_NAMES: Readonly<Record<number, string>> = {
  1: "Int8",
  2: "Int16",
  3: "Int32",
  4: "Int64",
  5: "UInt8",
  6: "UInt16",
  7: "UInt32",
  8: "UInt64",
  9: "Float",
  10: "Double",
  11: "Boolean",
  12: "String",
  13: "DateTime",
  14: "Text",
  15: "UUID",
  16: "DataSet",
  17: "Bytes",
  18: "File",
  19: "Template",
  20: "PropertySet",
  21: "PropertySetList",
  22: "Int8Array",
  23: "Int16Array",
  24: "Int32Array",
  25: "Int64Array",
  26: "UInt8Array",
  27: "UInt16Array",
  28: "UInt32Array",
  29: "UInt64Array",
  30: "FloatArray",
  31: "DoubleArray",
  32: "BooleanArray",
  33: "StringArray",
  34: "DateTimeArray",
};

/** The code of a type name (case-insensitive), or undefined. */
export function datatypeCode(name: string): number | undefined {
  const lower = name.toLowerCase();
  for (const [code, n] of Object.entries(DATATYPE_NAMES)) {
    if (n.toLowerCase() === lower) return Number(code);
  }
  return undefined;
}
