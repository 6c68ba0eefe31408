/**
 * The record: one value change of one tag, flat for a Delta table.
 *
 * A record is encoded once, as the JSON row Zerobus takes, when it enters the
 * spool; everything after that ships those bytes unchanged.
 */

/** Unified quality of a value. */
export type Quality = "good" | "uncertain" | "bad";

/** How the value is typed in the row. */
export type ValueType =
  | "float"
  | "int"
  | "bool"
  | "string"
  | "json"
  | "bytes"
  | "timestamp";

/** One row of the target Delta table. Times are int64 microseconds since the epoch. */
export interface OtRecord {
  record_id: string;
  event_time: number;
  ingest_time: number;
  source_name: string;
  source_protocol: string;
  endpoint: string;
  address: string;
  tag_path: string;
  tag_name: string;
  site: string;
  area: string;
  line: string;
  equipment: string;
  signal_type: string;
  value_num: number | null;
  value_str: string | null;
  value_bool: boolean | null;
  value_type: ValueType;
  quality: Quality;
  quality_code: number;
  unit: string | null;
  metadata: string;
}

/** Column definition: name, Delta SQL type, nullability and a comment. */
export interface Column {
  name: keyof OtRecord;
  sql: "STRING" | "BIGINT" | "DOUBLE" | "BOOLEAN" | "INT";
  nullable: boolean;
  comment: string;
}

/** The record schema, in row order. Single source for the DDL and the encoders. */
export const COLUMNS: readonly Column[] = [
  {
    name: "record_id",
    sql: "STRING",
    nullable: false,
    comment: "Stable hex id assigned at ingest, kept through retries; deduplicate on it",
  },
  {
    name: "event_time",
    sql: "BIGINT",
    nullable: false,
    comment: "Source timestamp, microseconds since epoch (receive time when the source gives none)",
  },
  {
    name: "ingest_time",
    sql: "BIGINT",
    nullable: false,
    comment: "Time the agent received the value, microseconds since epoch",
  },
  {
    name: "source_name",
    sql: "STRING",
    nullable: false,
    comment: "Configured source name",
  },
  {
    name: "source_protocol",
    sql: "STRING",
    nullable: false,
    comment: "opcua, mqtt, sparkplug, modbus or generator",
  },
  {
    name: "endpoint",
    sql: "STRING",
    nullable: false,
    comment: "Endpoint URL of the source",
  },
  {
    name: "address",
    sql: "STRING",
    nullable: false,
    comment: "Protocol-native address: NodeId, topic, or unit/table/address",
  },
  {
    name: "tag_path",
    sql: "STRING",
    nullable: false,
    comment: "ISA-95 path site/area/line/equipment/signal_type/tag",
  },
  {
    name: "tag_name",
    sql: "STRING",
    nullable: false,
    comment: "Tag name (last path segment)",
  },
  { name: "site", sql: "STRING", nullable: false, comment: "ISA-95 site" },
  { name: "area", sql: "STRING", nullable: false, comment: "ISA-95 area" },
  { name: "line", sql: "STRING", nullable: false, comment: "ISA-95 line" },
  {
    name: "equipment",
    sql: "STRING",
    nullable: false,
    comment: "ISA-95 equipment",
  },
  {
    name: "signal_type",
    sql: "STRING",
    nullable: false,
    comment: "Kind of signal: temperature, pressure, speed, flow, ... or value",
  },
  {
    name: "value_num",
    sql: "DOUBLE",
    nullable: true,
    comment: "Numeric value (float, int, bool as 0/1, timestamp as microseconds)",
  },
  {
    name: "value_str",
    sql: "STRING",
    nullable: true,
    comment:
      "Text value, JSON text for structures and arrays, base64 for bytes, exact text for 64-bit integers and NaN/Infinity",
  },
  {
    name: "value_bool",
    sql: "BOOLEAN",
    nullable: true,
    comment: "Boolean value",
  },
  {
    name: "value_type",
    sql: "STRING",
    nullable: false,
    comment: "float, int, bool, string, json, bytes or timestamp",
  },
  {
    name: "quality",
    sql: "STRING",
    nullable: false,
    comment: "Unified quality: good, uncertain or bad",
  },
  {
    name: "quality_code",
    sql: "BIGINT",
    nullable: false,
    comment: "Protocol-native quality or status code",
  },
  { name: "unit", sql: "STRING", nullable: true, comment: "Engineering unit" },
  {
    name: "metadata",
    sql: "STRING",
    nullable: false,
    comment: "JSON text with protocol details",
  },
];

/** A Databricks SQL identifier, in backticks unless it is a plain word (`my-cat` → \`my-cat\`). */
function sqlName(part: string): string {
  return /^[A-Za-z_]\w*$/.test(part) ? part : `\`${part.replaceAll("`", "``")}\``;
}

/** Delta `CREATE TABLE` statement for the record schema (`catalog.schema.table`). */
export function createTableSql(
  name = "main.iot_data.sensor_readings",
): string {
  const fullName = name.split(".").map(sqlName).join(".");
  const cols = COLUMNS.map((c) =>
    `  ${c.name} ${c.sql}${c.nullable ? "" : " NOT NULL"} COMMENT '${
      c.comment.replaceAll("'", "\\'")
    }'`
  );
  return `CREATE TABLE IF NOT EXISTS ${fullName} (\n${
    cols.join(",\n")
  }\n)\nUSING DELTA\nCOMMENT 'OT records from the edge agent, one row per value change'\nTBLPROPERTIES ('delta.enableChangeDataFeed' = 'false');\n`;
}

/** Microseconds since the epoch for a Date or epoch milliseconds. */
export function toMicros(ms: number | Date): number {
  const v = typeof ms === "number" ? ms : ms.getTime();
  return Math.round(v * 1000);
}

/**
 * Makes record ids: a random 64-bit run prefix and a 64-bit counter, as 32 hex
 * characters. Unique across restarts without any coordination or I/O.
 */
export function recordIdFactory(): () => string {
  const prefix = Array.from(
    crypto.getRandomValues(new Uint8Array(8)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  let counter = 0;
  return () => prefix + (counter++).toString(16).padStart(16, "0");
}
