/**
 * The typed messages between the main thread and a source Worker. This file is
 * the whole contract: the main thread never imports protocol libraries, and a
 * Worker never touches the spool or the sinks.
 *
 * A Worker normalizes its own readings and encodes them as JSON rows, framed
 * for the wire (see `appendRow`), so the per-record work runs on the source's
 * thread and the main thread only moves byte chunks (transferred, not copied)
 * into the spool.
 *
 * Flow control is by credit: a Worker may have at most `maxInflight` batches
 * posted and not yet answered with `committed` (or `dropped`); it pauses
 * acquisition (or stops acknowledging upstream) until credit returns.
 */
import type { NormalizeSettings } from "../normalize/normalize.ts";
import type { Quality, ValueType } from "../record.ts";

/** ISA-95 context a source or a single reading may carry. */
export interface TagContext {
  site?: string;
  area?: string;
  line?: string;
  equipment?: string;
}

/** One value change as a source reports it, before normalization. */
export interface Reading {
  /** Protocol-native address: NodeId, topic, `unit/table/address`, ... */
  address: string;
  /** Tag name as the source knows it (normalization sanitizes it). */
  tag_name: string;
  /** The value as decoded: number, string, boolean, null, bigint text, array or object. */
  value: unknown;
  /** Type hint when the source knows better than inference (e.g. int64 as text). */
  value_type?: ValueType;
  /** Source timestamp, microseconds since the epoch. */
  event_time?: number;
  /** Protocol-native quality or status code. */
  quality_code: number;
  /** Unified quality when the source decided it; otherwise derived from the code. */
  quality?: Quality;
  unit?: string;
  signal_type?: string;
  context?: TagContext;
  /** Browse path (OPC-UA), topic (MQTT) or other hierarchical name, used by normalization rules. */
  browse_path?: string;
  /**
   * The protocol the reading came by when it is not its source's (`sparkplug`
   * for Sparkplug B on an MQTT source): rules, quality tables and
   * `source_protocol` use it.
   */
  protocol?: string;
  /** Protocol details; JSON text is taken as is (cheaper to post than an object). */
  metadata?: Record<string, unknown> | string;
}

/** Counters a Worker reports with its status. */
export interface SourceCounters {
  errors: number;
  reconnects: number;
  /** Records whose ISA-95 path lacked context and got the placeholder. */
  incomplete_paths: number;
}

/** Connection state of a source. */
export type SourceState =
  | "starting"
  | "connecting"
  | "connected"
  | "disconnected"
  | "error"
  | "stopped";

/** Messages from the main thread to a Worker. */
export type ToWorker =
  | {
    type: "start";
    source: Record<string, unknown>;
    dataDir: string;
    maxInflight: number;
    /** Normalization settings (the config's `normalization` section). */
    normalization: NormalizeSettings;
    /** Rows per batch, at most (the sink's batch size, capped at BATCH_MAX_READINGS). */
    maxRows: number;
    /** How rows are encoded: JSON text or the record's protobuf message. */
    recordType: "json" | "proto";
  }
  | { type: "stop" }
  /** The batch is durable in the spool (or dropped by policy): credit returns. */
  | { type: "committed"; batchId: number; dropped?: boolean }
  /** The dead letter `id` is stored (or its store failed and was logged): what waits for it may go on. */
  | { type: "dead_letter_stored"; id: number };

/** Messages from a Worker to the main thread. */
export type FromWorker =
  /** Normalized records as framed JSON rows; `rows` is transferred. */
  | {
    type: "records";
    batchId: number;
    rows: Uint8Array;
    count: number;
    firstIngestMs: number;
    /** Records so far whose path lacked context (cumulative). */
    incompletePaths: number;
  }
  | {
    type: "status";
    state: SourceState;
    error?: string;
    detail?: Record<string, unknown>;
    counters?: SourceCounters;
  }
  | {
    type: "dead_letter";
    reason: string;
    item: string;
    detail?: Record<string, unknown>;
    /** Set when the Worker waits for the store (`dead_letter_stored`), e.g. to ack a message. */
    id?: number;
    /** The source's counters after this dead letter (its errors count it). */
    counters: SourceCounters;
  }
  | {
    type: "log";
    level: "debug" | "info" | "warning" | "error";
    msg: string;
    fields?: Record<string, unknown>;
  }
  | { type: "stopped" };

/** Rows per batch, bytes per batch, and the longest a Worker holds a partial batch. */
export const BATCH_MAX_READINGS = 100;
export const BATCH_MAX_BYTES = 60_000;
export const BATCH_MAX_DELAY_MS = 50;
