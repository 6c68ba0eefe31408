/**
 * MQTT payload → values: JSON objects with configurable field paths, JSON
 * arrays and multi-value objects (including the Kepware IoT Gateway shape),
 * plain numbers, booleans and text, and anything else as bytes.
 *
 * Quality codes this module sets (`quality_code` of a value): the payload's
 * own numeric quality when it has one; otherwise 0 good, 1 uncertain, 2 bad.
 */
import type { Quality, ValueType } from "../../record.ts";

/** How payloads are read and where the fields of a JSON object are. */
export interface PayloadOptions {
  format: "auto" | "json" | "text" | "bytes";
  /** Dotted path of the value in a JSON object; default `value`. */
  value_path?: string;
  /** Dotted path of the timestamp (ISO 8601 or epoch s/ms/µs); default `timestamp`. */
  timestamp_path?: string;
  /** Dotted path of the quality (boolean, good/uncertain/bad or a number); default `quality`. */
  quality_path?: string;
  /** Dotted path of the engineering unit; default `unit`. */
  unit_path?: string;
}

/** One value read from a payload. */
export interface PayloadValue {
  value: unknown;
  value_type?: ValueType;
  /** Microseconds since the epoch, when the payload carries a timestamp. */
  event_time?: number;
  quality?: Quality;
  quality_code?: number;
  unit?: string;
  /** Name of the value inside a multi-value payload (replaces the topic's tag name). */
  name?: string;
}

/** The values of a payload, or why it cannot be read. */
export type PayloadResult =
  | { ok: true; values: PayloadValue[] }
  | { ok: false; reason: string };

/** Own quality codes when the payload has no numeric quality. */
export const QUALITY_CODES: Record<Quality, number> = { good: 0, uncertain: 1, bad: 2 };

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Lenient = new TextDecoder("utf-8");

/**
 * UTF-8 text of a payload; throws when it is not valid UTF-8. The lenient
 * decoder is faster; only text with a replacement character (invalid input,
 * or a real U+FFFD) is decoded again strictly.
 */
function decodeUtf8(payload: Uint8Array): string {
  const text = utf8Lenient.decode(payload);
  return text.includes("\uFFFD") ? utf8.decode(payload) : text;
}

/** Text with control characters other than tab, CR and LF is treated as binary. */
// deno-lint-ignore no-control-regex
const BINARY_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/** Decodes one MQTT payload into values; an empty payload has none. */
export function decodePayload(payload: Uint8Array, opts: PayloadOptions): PayloadResult {
  if (payload.length === 0) return { ok: true, values: [] };
  if (opts.format === "bytes") return bytesResult(payload);
  let text: string;
  try {
    text = decodeUtf8(payload);
  } catch {
    if (opts.format === "auto") return bytesResult(payload);
    return { ok: false, reason: `payload is not valid UTF-8 (format ${opts.format})` };
  }
  if (opts.format === "text") return { ok: true, values: [{ value: text }] };
  const trimmed = text.trim();
  if (opts.format === "auto" && !looksLikeJson(trimmed)) {
    if (BINARY_CHARS.test(text)) return bytesResult(payload);
    return { ok: true, values: [{ value: text }] };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(trimmed);
  } catch (e) {
    return { ok: false, reason: `payload is not valid JSON: ${(e as Error).message}` };
  }
  return interpretJson(doc, opts);
}

/** Structures, quoted strings, numbers and the JSON literals are read as JSON in `auto`. */
function looksLikeJson(t: string): boolean {
  if (t === "") return false;
  const c = t[0];
  if (c === "{" || c === "[" || c === '"') return true;
  if (t === "true" || t === "false" || t === "null") return true;
  return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(t);
}

function bytesResult(payload: Uint8Array): PayloadResult {
  return { ok: true, values: [{ value: payload.slice(), value_type: "bytes" }] };
}

/** Interprets a parsed JSON document as values (see the module doc for the shapes). */
export function interpretJson(doc: unknown, opts: PayloadOptions): PayloadResult {
  if (Array.isArray(doc)) {
    if (doc.length > 0 && doc.every(isObject)) {
      return collect(doc.map((item, i) => objectValue(item, opts, `${i}`)));
    }
    return { ok: true, values: [{ value: doc, value_type: "json" }] };
  }
  if (!isObject(doc)) return { ok: true, values: [{ value: doc }] };
  if (Array.isArray(doc.values) && doc.values.length > 0 && doc.values.every(isKepwareEntry)) {
    return kepware(doc);
  }
  const valuePath = opts.value_path ?? "value";
  if (getPath(doc, valuePath) !== undefined) return collect([objectValue(doc, opts)]);
  if (opts.value_path !== undefined) {
    return { ok: false, reason: `value_path '${opts.value_path}' is not in the payload` };
  }
  return multiValue(doc, opts);
}

type ItemResult = PayloadValue | { error: string };

function collect(items: ItemResult[]): PayloadResult {
  const values: PayloadValue[] = [];
  for (const item of items) {
    if ("error" in item) return { ok: false, reason: item.error };
    values.push(item);
  }
  return { ok: true, values };
}

/** One value from an object with the configured paths. */
function objectValue(
  obj: Record<string, unknown>,
  opts: PayloadOptions,
  name?: string,
): ItemResult {
  const path = opts.value_path ?? "value";
  const value = getPath(obj, path);
  if (value === undefined) return { error: `value_path '${path}' is not in array item ${name}` };
  const out: PayloadValue = { value };
  if (name !== undefined) out.name = stringField(obj, "name") ?? stringField(obj, "id") ?? name;
  return applyMeta(out, obj, opts);
}

/** Timestamp, quality and unit from their paths onto a value. */
function applyMeta(out: PayloadValue, obj: Record<string, unknown>, opts: PayloadOptions) {
  const ts = getPath(obj, opts.timestamp_path ?? "timestamp");
  if (ts !== undefined) {
    const micros = parseTimestamp(ts);
    if (micros === undefined) {
      return { error: `timestamp ${JSON.stringify(ts)} is not ISO 8601 or epoch time` };
    }
    out.event_time = micros;
  }
  const q = getPath(obj, opts.quality_path ?? "quality");
  if (q !== undefined) {
    const problem = applyQuality(out, q);
    if (problem) return { error: problem };
  }
  const unit = getPath(obj, opts.unit_path ?? "unit");
  if (typeof unit === "string" && unit !== "") out.unit = unit;
  return out;
}

/** Every other top-level key of an object is a value named by its key. */
function multiValue(doc: Record<string, unknown>, opts: PayloadOptions): PayloadResult {
  const meta = applyMeta({ value: null }, doc, opts);
  if ("error" in meta) return { ok: false, reason: meta.error };
  const skip = new Set(
    [opts.timestamp_path ?? "timestamp", opts.quality_path ?? "quality", opts.unit_path ?? "unit"]
      .filter((p) => !p.includes(".")),
  );
  const values: PayloadValue[] = [];
  for (const [key, value] of Object.entries(doc)) {
    if (skip.has(key)) continue;
    const v: PayloadValue = { ...meta, value, name: key };
    if (isObject(value) || Array.isArray(value)) v.value_type = "json";
    values.push(v);
  }
  if (values.length === 0) return { ok: false, reason: "JSON object has no value fields" };
  return { ok: true, values };
}

function isKepwareEntry(e: unknown): e is Record<string, unknown> {
  return isObject(e) && typeof e.id === "string" && "v" in e;
}

/** Kepware IoT Gateway: `{"timestamp": ms, "values": [{"id", "v", "q", "t"}]}`. */
function kepware(doc: Record<string, unknown>): PayloadResult {
  const values: PayloadValue[] = [];
  const docTime = doc.timestamp === undefined ? undefined : parseTimestamp(doc.timestamp);
  for (const e of doc.values as Record<string, unknown>[]) {
    const v: PayloadValue = { value: e.v, name: e.id as string };
    const t = e.t === undefined ? docTime : parseTimestamp(e.t);
    if (t !== undefined) v.event_time = t;
    if (e.q !== undefined) {
      const problem = applyQuality(v, e.q);
      if (problem) return { ok: false, reason: `${e.id}: ${problem}` };
    }
    values.push(v);
  }
  return { ok: true, values };
}

/** Sets quality and code from a boolean, a good/uncertain/bad word or a number. */
function applyQuality(out: PayloadValue, q: unknown): string | undefined {
  if (typeof q === "boolean") {
    out.quality = q ? "good" : "bad";
    out.quality_code = QUALITY_CODES[out.quality];
  } else if (typeof q === "number" && Number.isInteger(q)) {
    out.quality_code = q;
  } else if (typeof q === "string") {
    const word = /^(good|uncertain|bad)/i.exec(q.trim())?.[1].toLowerCase() as
      | Quality
      | undefined;
    if (!word) return `quality ${JSON.stringify(q)} is not good, uncertain, bad or a number`;
    out.quality = word;
    out.quality_code = QUALITY_CODES[word];
  } else return `quality ${JSON.stringify(q)} is not a boolean, word or integer`;
  return undefined;
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * Microseconds since the epoch from ISO 8601 text (UTC when it has no
 * offset) or an epoch number (or numeric text): below 1e11 seconds, below 1e14 milliseconds, below 1e17
 * microseconds, else nanoseconds. Undefined when it is neither.
 */
export function parseTimestamp(ts: unknown): number | undefined {
  if (typeof ts === "string") {
    const t = ts.trim();
    if (/^\d+(\.\d+)?$/.test(t)) return parseTimestamp(Number(t));
    const iso = ISO_8601.exec(t);
    if (!iso) return undefined;
    // A time without an offset is UTC (as Telegraf's default), never the agent machine's zone.
    const ms = Date.parse(
      iso[1] !== undefined && iso[4] === undefined ? `${t.replace(" ", "T")}Z` : t,
    );
    return Number.isNaN(ms) ? undefined : ms * 1000;
  }
  if (typeof ts !== "number" || !Number.isFinite(ts) || ts < 0) return undefined;
  if (ts < 1e11) return Math.round(ts * 1e6);
  if (ts < 1e14) return Math.round(ts * 1e3);
  if (ts < 1e17) return Math.round(ts);
  return Math.round(ts / 1e3);
}

/** The value at a dotted path (`a.b.0.c`), or undefined. */
export function getPath(obj: unknown, path: string): unknown {
  if (!path.includes(".")) {
    // The usual one-level path, without splitting it for every message.
    if (obj === null || typeof obj !== "object" || !Object.hasOwn(obj, path)) return undefined;
    return (obj as Record<string, unknown>)[path];
  }
  let cur: unknown = obj;
  for (const key of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    if (!Object.hasOwn(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function stringField(obj: Record<string, unknown>, key: string): string | undefined {
  const v = obj[key];
  return typeof v === "string" && v !== "" ? v : undefined;
}
