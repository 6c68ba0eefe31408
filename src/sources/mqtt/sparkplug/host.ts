/**
 * The Sparkplug B host application as a pure state machine: fed each message
 * on `spBv1.0/#` with its receive time, it keeps per edge node the session
 * (bdSeq, seq) and the BIRTH metric tables of the node and its devices, and
 * answers with readings, a rebirth request to publish, or a dead-letter reason.
 *
 * Messages that arrive ahead of the expected seq wait in a per-node reorder
 * buffer for `reorderTimeoutMs` (Sparkplug 3.0 "Reorder Timeout"): when the
 * missing ones arrive they are all applied in seq order; when the window
 * elapses (`expire`) the buffer is applied in seq order and one rebirth is
 * requested. With 0 a gap requests a rebirth at once. Either way the data of
 * every message is emitted.
 */
import { get } from "sparkplug-payload";
import type { Reading } from "../../worker_protocol.ts";
import {
  decodeSparkplug,
  metricValue,
  type SparkplugMetric,
  type SparkplugPayload,
} from "./decode.ts";
import {
  type ContextMapping,
  contextOf,
  DEFAULT_CONTEXT_MAPPING,
  type MetricOrigin,
  metricReading,
  staleReading,
  unitOf,
} from "./readings.ts";
import { ncmdTopic, parseTopic } from "./topic.ts";

/** Host options. */
export interface SparkplugHostOptions {
  /** Which Sparkplug name fills which ISA-95 context field. */
  contextMapping?: ContextMapping;
  /** At most one rebirth request per edge node within this many ms; default 5000. */
  rebirthIntervalMs?: number;
  /** How long out-of-order messages wait for the missing seq; 0 (default) = no reordering. */
  reorderTimeoutMs?: number;
}

/** A message the host wants published (QoS 0, not retained). */
export interface RebirthRequest {
  topic: string;
  payload: Uint8Array;
  /** Why it is requested. */
  reason: string;
}

/** What one message produced. */
export interface HostResult {
  readings: Reading[];
  rebirth?: RebirthRequest;
  /** Set when the message goes to the dead-letter store. */
  deadLetter?: string;
  /** Why a well-formed message produced no readings (for logs and counters). */
  ignored?: string;
  /** The message waits in the reorder buffer (its readings come with a later result). */
  buffered?: boolean;
  /** Tokens of buffered messages whose readings are in this result. */
  released?: number[];
}

/** A decoded message with seq, as it waits in a reorder buffer. */
interface Waiting {
  topic: Extract<ReturnType<typeof parseTopic>, { ok: true; kind: "message" }>;
  payload: SparkplugPayload;
  receivedMs: number;
  token?: number;
}

/** A metric as its BIRTH declared it. */
interface MetricDef {
  name: string;
  datatype: number;
  unit?: string;
}

/** A BIRTH metric table. */
interface Table {
  byName: Map<string, MetricDef>;
  byAlias: Map<string, MetricDef>;
}

interface NodeSession {
  bdSeq?: bigint;
  /** Last seq seen. */
  seq?: number;
  table: Table;
  devices: Map<string, Table>;
  /** Messages ahead of the expected seq, by seq. */
  waiting: Map<number, Waiting>;
  /** When the reorder window of the current gap ends (ms). */
  deadline?: number;
}

/** The metric name of the rebirth command. */
export const REBIRTH_METRIC = "Node Control/Rebirth";

const sparkplug = get("spBv1.0")!;

/** The Sparkplug B host application state machine. */
export class SparkplugHost {
  readonly #mapping: ContextMapping;
  readonly #rebirthIntervalMs: number;
  readonly #reorderMs: number;
  readonly #nodes = new Map<string, NodeSession>();
  readonly #lastRebirth = new Map<string, number>();

  constructor(opts: SparkplugHostOptions = {}) {
    this.#mapping = opts.contextMapping ?? DEFAULT_CONTEXT_MAPPING;
    this.#rebirthIntervalMs = opts.rebirthIntervalMs ?? 5000;
    this.#reorderMs = opts.reorderTimeoutMs ?? 0;
  }

  /**
   * Handles one message; `receivedMs` is the host's clock (ms since the
   * epoch). `token` names the message in a later `released` list when it waits
   * in the reorder buffer.
   */
  handle(topic: string, payload: Uint8Array, receivedMs: number, token?: number): HostResult {
    const t = parseTopic(topic);
    if (!t.ok) return { readings: [], deadLetter: t.reason };
    if (t.kind === "state") return { readings: [], ignored: "STATE message" };
    const decoded = decodeSparkplug(payload);
    if (!decoded.ok) return { readings: [], deadLetter: decoded.reason };
    const msg: Waiting = { topic: t, payload: decoded.payload, receivedMs };
    const node = this.#nodes.get(`${t.group}/${t.edgeNode}`);
    if (t.type === "NBIRTH" || t.type === "NDEATH") {
      // A new session or its end: what waited is applied first, in seq order.
      const before = node ? this.#drainAll(node, receivedMs) : [];
      return merge([...before, this.#apply(msg, receivedMs)]);
    }
    const seq = msg.payload.seq;
    if (node && this.#reorderMs > 0 && seq !== undefined && node.seq !== undefined) {
      const ahead = (seq - node.seq - 1) & 0xff;
      if (ahead > 0 && ahead < 128 && !node.waiting.has(seq)) {
        node.waiting.set(seq, { ...msg, token });
        node.deadline ??= receivedMs + this.#reorderMs;
        return { readings: [], buffered: true };
      }
    }
    const results = [this.#apply(msg, receivedMs)];
    if (node) results.push(...this.#drainInOrder(node, receivedMs));
    return merge(results);
  }

  /** When the next reorder window ends (ms since the epoch), or undefined when none is open. */
  nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const n of this.#nodes.values()) {
      if (n.deadline !== undefined && (next === undefined || n.deadline < next)) next = n.deadline;
    }
    return next;
  }

  /**
   * Closes the reorder windows that ended by `nowMs`: their messages are
   * applied in seq order, and the gap requests a rebirth (one per edge node,
   * throttled). One result per edge node.
   */
  expire(nowMs: number): HostResult[] {
    const out: HostResult[] = [];
    for (const node of this.#nodes.values()) {
      if (node.deadline === undefined || node.deadline > nowMs) continue;
      out.push(merge(this.#drainAll(node, nowMs)));
    }
    return out;
  }

  /** Applies the waiting messages that follow the node's seq without a gap. */
  #drainInOrder(node: NodeSession, nowMs: number): HostResult[] {
    const out: HostResult[] = [];
    for (;;) {
      const next = node.seq === undefined ? undefined : node.waiting.get((node.seq + 1) & 0xff);
      if (!next) break;
      node.waiting.delete(next.payload.seq!);
      out.push(this.#apply(next, nowMs));
    }
    // The window closes, or after progress restarts for the next missing message.
    if (node.waiting.size === 0) node.deadline = undefined;
    else if (out.length > 0) node.deadline = nowMs + this.#reorderMs;
    return out;
  }

  /** Applies every waiting message in seq order (gaps and all). */
  #drainAll(node: NodeSession, nowMs: number): HostResult[] {
    const base = node.seq ?? 0;
    const order = [...node.waiting.values()].sort((x, y) =>
      ((x.payload.seq! - base) & 0xff) - ((y.payload.seq! - base) & 0xff)
    );
    node.waiting.clear();
    node.deadline = undefined;
    return order.map((m) => this.#apply(m, nowMs));
  }

  /** Applies one message to the session state; `nowMs` times a rebirth request. */
  #apply(msg: Waiting, nowMs: number): HostResult {
    const { topic: t, payload: p, receivedMs } = msg;
    const origin: MetricOrigin = { group: t.group, edgeNode: t.edgeNode, device: t.device };
    const key = `${t.group}/${t.edgeNode}`;
    const node = this.#nodes.get(key);
    const ctx: Ctx = { origin, key, type: t.type, receivedMs, nowMs, payloadTime: p.timestamp };
    const result = this.#applyType(ctx, node, p, t.device);
    if (msg.token !== undefined) (result.released ??= []).push(msg.token);
    return result;
  }

  #applyType(
    ctx: Ctx,
    node: NodeSession | undefined,
    p: SparkplugPayload,
    device: string | undefined,
  ): HostResult {
    const { origin, key, receivedMs } = ctx;
    switch (ctx.type) {
      case "NCMD":
      case "DCMD":
        return { readings: [], ignored: `${ctx.type} (a command, not data)` };
      case "NBIRTH": {
        const table = buildTable(p.metrics);
        const bd = p.metrics.find((m) => m.name === "bdSeq");
        this.#nodes.set(key, {
          bdSeq: bd ? bdSeqOf(bd) : undefined,
          seq: p.seq,
          table,
          devices: new Map(),
          waiting: new Map(),
        });
        return { readings: this.#readings(ctx, p.metrics, table).readings };
      }
      case "NDEATH": {
        if (!node) return { readings: [], ignored: "NDEATH of an edge node without a session" };
        const bd = p.metrics.find((m) => m.name === "bdSeq");
        const bdSeq = bd ? bdSeqOf(bd) : undefined;
        if (bdSeq !== undefined && node.bdSeq !== undefined && bdSeq !== node.bdSeq) {
          return {
            readings: [],
            ignored: `NDEATH bdSeq ${bdSeq} does not match the session's bdSeq ${node.bdSeq}`,
          };
        }
        this.#nodes.delete(key);
        const now = receivedMs * 1000;
        const readings = this.#stale(origin, node.table, now, "NDEATH");
        for (const [device, table] of node.devices) {
          readings.push(...this.#stale({ ...origin, device }, table, now, "NDEATH"));
        }
        return { readings };
      }
      default:
        break;
    }

    if (!node) return this.#rebirth(ctx, `${ctx.type} before NBIRTH`, []);
    const gap = checkSeq(node, p.seq);
    let result: HostResult;
    if (ctx.type === "DBIRTH") {
      const table = buildTable(p.metrics);
      node.devices.set(device!, table);
      result = this.#readings(ctx, p.metrics, table);
    } else if (ctx.type === "DDEATH") {
      const table = node.devices.get(device!);
      if (!table) result = { readings: [], ignored: "DDEATH of a device without a DBIRTH" };
      else {
        node.devices.delete(device!);
        result = { readings: this.#stale(origin, table, receivedMs * 1000, "DDEATH") };
      }
    } else {
      const table = device === undefined ? node.table : node.devices.get(device);
      if (!table) return this.#rebirth(ctx, `DDATA before DBIRTH of device '${device}'`, []);
      result = this.#readings(ctx, p.metrics, table);
    }
    if (gap) return this.#rebirth(ctx, gap, result.readings);
    return result;
  }

  /**
   * Marks every known metric stale (e.g. the broker connection was lost) and
   * forgets sessions. Messages waiting for reordering are discarded: their
   * tokens go to `discarded` (with a persistent session the broker redelivers them).
   */
  markAllStale(reason: string, nowMs: number, discarded: number[] = []): Reading[] {
    const readings: Reading[] = [];
    for (const [key, node] of this.#nodes) {
      for (const w of node.waiting.values()) if (w.token !== undefined) discarded.push(w.token);
      const [group, edgeNode] = splitKey(key);
      const origin: MetricOrigin = { group, edgeNode };
      readings.push(...this.#stale(origin, node.table, nowMs * 1000, reason));
      for (const [device, table] of node.devices) {
        readings.push(...this.#stale({ ...origin, device }, table, nowMs * 1000, reason));
      }
    }
    this.#nodes.clear();
    return readings;
  }

  /** Readings of a BIRTH or DATA message; an unknown metric requests a rebirth. */
  #readings(ctx: Ctx, metrics: SparkplugMetric[], table: Table): HostResult {
    const readings: Reading[] = [];
    let unknown: string | undefined;
    // One context object for all metrics of the message (readings never change it).
    const context = contextOf(ctx.origin, this.#mapping) ?? null;
    for (const m of metrics) {
      const def = (m.name ? table.byName.get(m.name) : undefined) ??
        (m.alias !== undefined ? table.byAlias.get(String(m.alias)) : undefined);
      if (!def) {
        unknown ??= !m.name && m.alias !== undefined
          ? `unknown alias ${m.alias} in ${ctx.type}`
          : `unknown metric '${m.name ?? ""}' in ${ctx.type}`;
        continue;
      }
      const value = m.isNull || m.datatype === def.datatype && m.value !== undefined
        ? m.value
        : metricValue(m.raw, def.datatype);
      readings.push(metricReading({
        origin: ctx.origin,
        name: def.name,
        datatype: def.datatype,
        value,
        isNull: m.isNull,
        eventTime: (m.timestamp ?? ctx.payloadTime ?? ctx.receivedMs) * 1000,
        properties: m.properties,
        birthUnit: def.unit,
        messageType: ctx.type,
        mapping: this.#mapping,
        context,
      }));
    }
    if (unknown) return this.#rebirth(ctx, unknown, readings);
    return { readings };
  }

  #stale(origin: MetricOrigin, table: Table, nowMicros: number, reason: string): Reading[] {
    return [...table.byName.values()].map((d) =>
      staleReading(origin, d.name, d.datatype, nowMicros, reason, this.#mapping, d.unit)
    );
  }

  /** Adds a rebirth request unless one was sent to the node within the interval. */
  #rebirth(ctx: Ctx, reason: string, readings: Reading[]): HostResult {
    const last = this.#lastRebirth.get(ctx.key);
    const result: HostResult = { readings };
    if (readings.length === 0) result.ignored = reason;
    if (last !== undefined && ctx.nowMs - last < this.#rebirthIntervalMs) return result;
    this.#lastRebirth.set(ctx.key, ctx.nowMs);
    result.rebirth = {
      topic: ncmdTopic(ctx.origin.group, ctx.origin.edgeNode),
      payload: rebirthPayload(ctx.nowMs),
      reason,
    };
    return result;
  }
}

/** Per-message facts the helpers need. */
interface Ctx {
  origin: MetricOrigin;
  key: string;
  type: string;
  receivedMs: number;
  /** The host's clock when the message is applied (later than receivedMs after waiting). */
  nowMs: number;
  payloadTime?: number;
}

/** One result of several (in order): readings and released tokens joined, the first rebirth. */
function merge(results: HostResult[]): HostResult {
  if (results.length === 1) return results[0];
  const out: HostResult = { readings: results.flatMap((r) => r.readings) };
  const released = results.flatMap((r) => r.released ?? []);
  if (released.length > 0) out.released = released;
  const rebirth = results.find((r) => r.rebirth)?.rebirth;
  if (rebirth) out.rebirth = rebirth;
  const ignored = results.find((r) => r.ignored)?.ignored;
  if (out.readings.length === 0 && ignored) out.ignored = ignored;
  return out;
}

/** The NCMD payload asking an edge node to rebirth. */
export function rebirthPayload(timestampMs: number): Uint8Array {
  return sparkplug.encodePayload({
    timestamp: timestampMs,
    metrics: [{ name: REBIRTH_METRIC, type: "Boolean", value: true }],
  });
}

function buildTable(metrics: SparkplugMetric[]): Table {
  const table: Table = { byName: new Map(), byAlias: new Map() };
  for (const m of metrics) {
    if (m.name === undefined || m.datatype === undefined) continue;
    const def: MetricDef = { name: m.name, datatype: m.datatype };
    const unit = unitOf(m.properties);
    if (unit) def.unit = unit;
    table.byName.set(m.name, def);
    if (m.alias !== undefined) table.byAlias.set(String(m.alias), def);
  }
  return table;
}

function bdSeqOf(m: SparkplugMetric): bigint | undefined {
  const v = m.datatype === undefined ? metricValue(m.raw, 8) : m.value;
  return typeof v === "number" || typeof v === "bigint" ? BigInt(v) : undefined;
}

/** Advances the node's seq; returns why when the message is out of order. */
function checkSeq(node: NodeSession, seq: number | undefined): string | undefined {
  if (seq === undefined) return undefined;
  const last = node.seq;
  node.seq = seq;
  if (last === undefined) return undefined;
  const expected = (last + 1) & 0xff;
  return seq === expected ? undefined : `seq gap: expected ${expected}, got ${seq}`;
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}
