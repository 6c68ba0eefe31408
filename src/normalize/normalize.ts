/**
 * Normalization: a source reading becomes a record with an ISA-95 tag path, a
 * unified quality and a typed value. Everything configurable is compiled once
 * in `createNormalizer`; the per-record work is lookups and string joins.
 */
import type { OtRecord, Quality } from "../record.ts";
import type { Reading, TagContext } from "../sources/worker_protocol.ts";
import { compileQualityTable, qualityOf, type QualityTable } from "./quality.ts";
import { compileRules, GENERIC_SEGMENTS, type Rule, withoutGenericSegments } from "./rules.ts";
import { FIELD_NUMBER as F, ProtoWriter, writeRecordFields } from "../record_proto.ts";
import { typeValue } from "./values.ts";

/** What normalization needs to know about the source of a reading. */
export interface SourceInfo {
  name: string;
  protocol: string;
  endpoint: string;
  context: TagContext;
}

/** The normalization settings this module reads (a subset of the config section). */
export interface NormalizeSettings {
  enabled: boolean;
  path_template: string;
  default_context?: TagContext;
  missing_placeholder: string;
  quality_mapping?: QualityTable;
  rules?: readonly Rule[];
  /** Browse-path segments dropped before rules and `{browse_path}` see the path. */
  generic_segments?: readonly string[];
}

/** A record before the spool gives it its id. */
export type NormalizedRecord = Omit<OtRecord, "record_id">;

/**
 * Normalizes one reading into a record object, or (`row`) straight into the
 * JSON row the spool stores; also counts paths with missing context per source.
 */
export interface Normalizer {
  (source: SourceInfo, reading: Reading, ingestMicros: number): NormalizedRecord;
  /** The record as its JSON row, with its id; the same content as the object form. */
  row(source: SourceInfo, reading: Reading, ingestMicros: number, recordId: string): string;
  /**
   * The record as its protobuf message (`record_proto.ts`), with its id: a view
   * that the next `protoRow` call overwrites, so copy it before calling again.
   */
  protoRow(
    source: SourceInfo,
    reading: Reading,
    ingestMicros: number,
    recordId: string,
  ): Uint8Array;
  incompletePaths: Map<string, number>;
}

const CONTEXT_KEYS = ["site", "area", "line", "equipment"] as const;

/** Lowercases and reduces every run of characters outside [a-z0-9_] to one `_`. */
export function sanitizeSegment(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
}

const SIGNAL_BY_UNIT: Record<string, string> = {
  "°c": "temperature",
  "degc": "temperature",
  "c": "temperature",
  "k": "temperature",
  "°f": "temperature",
  "degf": "temperature",
  "f": "temperature",
  "bar": "pressure",
  "mbar": "pressure",
  "pa": "pressure",
  "kpa": "pressure",
  "mpa": "pressure",
  "psi": "pressure",
  "rpm": "speed",
  "m/s": "speed",
  "m3/h": "flow",
  "m³/h": "flow",
  "l/min": "flow",
  "l/s": "flow",
  "kg/h": "flow",
  "t/h": "flow",
  "kw": "power",
  "w": "power",
  "mw": "power",
  "a": "current",
  "ma": "current",
  "v": "voltage",
  "kv": "voltage",
  "mm/s": "vibration",
  "g": "vibration",
  "hz": "frequency",
  "kwh": "energy",
};

/**
 * Signal types by the words of a tag name. A word is a run of letters (camel
 * case splits words), so `Press1/Running` is a status, not a pressure; the
 * prefixes are matched at the start of a word (`Temp`, `Temperature`, `Vib_X`).
 */
const SIGNAL_WORDS: Array<[RegExp, string]> = [
  [/^(temp|tmp)/, "temperature"],
  [/^(pressure|pres$|psi$)/, "pressure"],
  [/^(speed|rpm$|velocity)/, "speed"],
  [/^flow/, "flow"],
  [/^(power|kw$)/, "power"],
  [/^(current|amps?$)/, "current"],
  [/^volt/, "voltage"],
  [/^vib/, "vibration"],
  [/^(level|lvl$)/, "level"],
  [/^(status|state|running|alarm|fault)/, "status"],
  [/^(count|total)/, "counter"],
];

/** The lowercase words of a tag name: letter runs, split at camel-case humps. */
function nameWords(name: string): string[] {
  return name.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase().match(/[a-z]+/g) ?? [];
}

/**
 * Infers the signal type from the unit, then from words in the tag name, else
 * `value`. `%` is a level when the name says so (level, fill), else `percent`
 * (valve position, load, humidity).
 */
export function inferSignalType(unit: string | undefined, tagName: string): string {
  const u = unit?.trim().toLowerCase();
  const words = nameWords(tagName);
  if (u === "%") return words.some((w) => /^(level|lvl$|fill)/.test(w)) ? "level" : "percent";
  if (u) {
    const byUnit = SIGNAL_BY_UNIT[u];
    if (byUnit) return byUnit;
  }
  for (const [re, type] of SIGNAL_WORDS) if (words.some((w) => re.test(w))) return type;
  return "value";
}

/**
 * Compiles a `{field}` path template into a function over the record's fields
 * (any static field: site, area, line, equipment, signal_type, tag_name,
 * source_name, source_protocol, endpoint, address, unit; and `browse_path`, the
 * sanitized browse path or topic without generic segments).
 */
export function compileTemplate(template: string): (fields: Record<string, unknown>) => string {
  const parts = template.split(/(\{[a-z_]+\})/).filter((p) => p !== "");
  const steps = parts.map((p) =>
    p.startsWith("{") && p.endsWith("}") ? { field: p.slice(1, -1) } : { text: p }
  );
  return (fields) => {
    let out = "";
    for (const s of steps) out += "text" in s ? s.text : String(fields[s.field!] ?? "");
    return out;
  };
}

/** The per-tag part of a record: computed once per tag, reused while its inputs stay the same. */
interface TagEntry {
  // inputs, compared on every hit
  tagNameIn: string;
  protocolIn: string | undefined;
  unitIn: string | undefined;
  signalIn: string | undefined;
  ctxIn: string | undefined;
  browseIn: string | undefined;
  // outputs
  fields: Pick<
    NormalizedRecord,
    | "source_name"
    | "source_protocol"
    | "endpoint"
    | "address"
    | "tag_path"
    | "tag_name"
    | "site"
    | "area"
    | "line"
    | "equipment"
    | "signal_type"
    | "unit"
  >;
  /** A rule's `value_type` for text values (numeric text becomes a number). */
  textAs?: "int" | "float";
  /** The same fields as JSON members, with a leading comma. */
  json: string;
  /** The same fields as protobuf fields (built on first use). */
  proto?: Uint8Array;
  incomplete: boolean;
}

function contextKey(c: TagContext | undefined): string | undefined {
  return c
    ? `${c.site ?? ""}\u0000${c.area ?? ""}\u0000${c.line ?? ""}\u0000${c.equipment ?? ""}`
    : undefined;
}

/** A browse path as sanitized segments joined by `/` (empty segments dropped). */
function browsePathSegments(path: string | undefined): string {
  if (path === undefined) return "";
  return path.split("/").map(sanitizeSegment).filter((s) => s !== "").join("/");
}

/**
 * The per-tag part of normalization: context, rules, tag path and the JSON of
 * the tag's fields, built once per tag and kept while the reading's inputs stay
 * the same; counts records whose path lacked context, per source.
 */
function compileTagEntries(settings: NormalizeSettings) {
  const template = compileTemplate(settings.path_template);
  const placeholder = settings.missing_placeholder;
  const defaults = settings.default_context ?? {};
  const incompletePaths = new Map<string, number>();
  const tagsBySource = new WeakMap<SourceInfo, Map<string, TagEntry>>();

  const generic = new Set(
    (settings.generic_segments ?? GENERIC_SEGMENTS).map((s) => s.toLowerCase()),
  );
  const rulesFor = compileRules(settings.rules ?? [], generic);

  // Precedence: default context < source < rules < the reading's own (per-tag) context.
  const buildEntry = (source: SourceInfo, r: Reading): TagEntry => {
    const cleanPath = r.browse_path === undefined
      ? undefined
      : withoutGenericSegments(r.browse_path, generic);
    const protocol = r.protocol ?? source.protocol;
    const ruled = rulesFor(protocol, source.name, r, cleanPath);
    const ctx: Record<string, string> = {};
    let incomplete = false;
    for (const k of CONTEXT_KEYS) {
      const raw = r.context?.[k] ?? ruled[k] ?? source.context[k] ?? defaults[k];
      const v = raw === undefined ? "" : sanitizeSegment(raw);
      if (v === "") incomplete = true;
      ctx[k] = v === "" ? placeholder : v;
    }
    const rawName = ruled.tag_name ?? r.tag_name;
    const unit = ruled.unit ?? r.unit;
    const tagName = sanitizeSegment(rawName) || sanitizeSegment(r.address) || placeholder;
    const signalIn = ruled.signal_type ?? r.signal_type;
    const signalType = signalIn ? sanitizeSegment(signalIn) : inferSignalType(unit, rawName);
    const fields: TagEntry["fields"] = {
      source_name: source.name,
      source_protocol: protocol,
      endpoint: source.endpoint,
      address: r.address,
      tag_path: "",
      tag_name: tagName,
      site: ctx.site,
      area: ctx.area,
      line: ctx.line,
      equipment: ctx.equipment,
      signal_type: signalType,
      unit: unit ?? null,
    };
    fields.tag_path = settings.enabled
      ? template({ ...fields, browse_path: browsePathSegments(cleanPath) })
      : r.address;
    let json = "";
    for (const [k, v] of Object.entries(fields)) json += `,"${k}":${JSON.stringify(v)}`;
    return {
      tagNameIn: r.tag_name,
      protocolIn: r.protocol,
      unitIn: r.unit,
      signalIn: r.signal_type,
      ctxIn: contextKey(r.context),
      browseIn: r.browse_path,
      fields,
      textAs: ruled.value_type as "int" | "float" | undefined,
      json,
      incomplete,
    };
  };

  const entryFor = (source: SourceInfo, r: Reading): TagEntry => {
    let tags = tagsBySource.get(source);
    if (!tags) tagsBySource.set(source, tags = new Map());
    let e = tags.get(r.address);
    if (
      !e || e.tagNameIn !== r.tag_name || e.protocolIn !== r.protocol || e.unitIn !== r.unit ||
      e.signalIn !== r.signal_type ||
      e.browseIn !== r.browse_path ||
      (e.ctxIn !== undefined || r.context !== undefined) && e.ctxIn !== contextKey(r.context)
    ) {
      e = buildEntry(source, r);
      if (tags.size > 1_000_000) tags.clear();
      tags.set(r.address, e);
    }
    if (e.incomplete) incompletePaths.set(source.name, (incompletePaths.get(source.name) ?? 0) + 1);
    return e;
  };

  return { entryFor, incompletePaths };
}

/** Builds the normalizer for a config section; call once, use per record. */
export function createNormalizer(settings: NormalizeSettings): Normalizer {
  const { entryFor, incompletePaths } = compileTagEntries(settings);

  // The configured table first, even over a quality the source decided (it must really apply).
  const tableQuality = compileQualityTable(settings.quality_mapping);
  const quality = (source: SourceInfo, r: Reading): Quality => {
    const protocol = r.protocol ?? source.protocol;
    return tableQuality(protocol, r.quality_code) ?? r.quality ??
      qualityOf(protocol, r.quality_code);
  };
  const metadataText = (r: Reading) =>
    r.metadata === undefined
      ? "{}"
      : typeof r.metadata === "string"
      ? r.metadata
      : JSON.stringify(r.metadata);

  /** The typed value; a rule's `value_type` (int or float) turns numeric text into a number. */
  const valueOf = (e: TagEntry, r: Reading) =>
    typeValue(
      r.value,
      e.textAs !== undefined && typeof r.value === "string" &&
        (r.value_type === undefined || r.value_type === "string")
        ? e.textAs
        : r.value_type,
    );

  const normalize = ((source: SourceInfo, r: Reading, ingest: number): NormalizedRecord => {
    const e = entryFor(source, r);
    const typed = valueOf(e, r);
    return {
      event_time: r.event_time ?? ingest,
      ingest_time: ingest,
      ...e.fields,
      value_num: typed.value_num,
      value_str: typed.value_str,
      value_bool: typed.value_bool,
      value_type: typed.value_type,
      quality: quality(source, r),
      quality_code: r.quality_code,
      metadata: metadataText(r),
    };
  }) as Normalizer;

  normalize.row = (source: SourceInfo, r: Reading, ingest: number, recordId: string): string => {
    const e = entryFor(source, r);
    const t = valueOf(e, r);
    return `{"record_id":"${recordId}","event_time":${
      r.event_time ?? ingest
    },"ingest_time":${ingest}` +
      `,"value_num":${t.value_num === null ? "null" : t.value_num}` +
      `,"value_str":${t.value_str === null ? "null" : JSON.stringify(t.value_str)}` +
      `,"value_bool":${t.value_bool}` +
      `,"value_type":"${t.value_type}","quality":"${
        quality(source, r)
      }","quality_code":${r.quality_code}` +
      `,"metadata":${JSON.stringify(metadataText(r))}${e.json}}`;
  };
  const writer = new ProtoWriter();
  normalize.protoRow = (
    source: SourceInfo,
    r: Reading,
    ingest: number,
    recordId: string,
  ): Uint8Array => {
    const e = entryFor(source, r);
    if (!e.proto) {
      writeRecordFields(writer, e.fields);
      e.proto = writer.take();
    }
    const t = valueOf(e, r);
    // The per-value fields by number (no object walk per record), then the tag's cached fields.
    writer.string(F.record_id, recordId);
    writer.int64(F.event_time, r.event_time ?? ingest);
    writer.int64(F.ingest_time, ingest);
    writer.double(F.value_num, t.value_num);
    writer.string(F.value_str, t.value_str);
    writer.bool(F.value_bool, t.value_bool);
    writer.string(F.value_type, t.value_type);
    writer.string(F.quality, quality(source, r));
    writer.int64(F.quality_code, r.quality_code);
    writer.string(F.metadata, metadataText(r));
    writer.raw(e.proto);
    return writer.takeView();
  };
  normalize.incompletePaths = incompletePaths;
  return normalize;
}
