/**
 * One `EphemeralStream` call on the local Zerobus stand-in: checks the call's
 * metadata, expects `create_stream` first, then validates and appends each
 * ingest request, acks cumulatively once rows are in the file, and applies the
 * injected faults.
 */
import {
  decodeRequest,
  encodeAck,
  encodeCloseSignal,
  encodeCreated,
  EPHEMERAL_STREAM_PATH,
  RecordType,
  type RecordTypeName,
  type StreamRequest,
} from "../sinks/zerobus/wire.ts";
import { type ServerCall, Status, statusName } from "./call.ts";
import type { Faults } from "./faults.ts";
import type { TokenStore } from "./oauth.ts";
import type { TableWriter } from "./table_writer.ts";
import { type DescribedField, parseDescriptor, protoRowToJson } from "./proto_rows.ts";

/** What a stream needs from its server. */
export interface StreamContext {
  tokens: TokenStore;
  faults(): Faults;
  /** The writer of a valid `<catalog>.<schema>.<table>` name (opened on first use). */
  writerFor(table: string): TableWriter;
  log(event: Record<string, unknown>): void;
  sessions: Set<StreamSession>;
}

/** `<catalog>.<schema>.<table>`, each part letters, digits, `_` or `-`. */
export const TABLE_NAME_RE = /^[\w-]+\.[\w-]+\.[\w-]+$/;

/** Pause reading a call while its table has more than this many bytes unwritten. */
const HIGH_WATER = 32 << 20;

/**
 * Delay between the last ack and an error status: a grpc-js client reports a non-OK
 * status at once and drops responses it has not handed to the application yet.
 */
const ERROR_AFTER_ACK_MS = 50;

const { OK, INVALID_ARGUMENT, UNAUTHENTICATED, UNAVAILABLE, UNIMPLEMENTED } = Status;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();

/**
 * Why a JSON row is refused, or null when it is a JSON object. A row holding
 * `rejectContaining` is refused as the table would refuse a record it cannot take.
 */
export function jsonRowError(row: Uint8Array, rejectContaining?: string): string | null {
  let text: string;
  try {
    text = strictUtf8.decode(row);
  } catch {
    return "not valid UTF-8";
  }
  if (rejectContaining !== undefined && text.includes(rejectContaining)) {
    return `refused by the table schema (injected fault: contains ${
      JSON.stringify(rejectContaining)
    })`;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "not valid JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "not a JSON object";
  }
  return null;
}

type State = "create" | "open" | "draining" | "ended";

/** State of one call; `start()` wires it to the call's events. */
export class StreamSession {
  #state: State = "create";
  #headerTable = "";
  #table = "";
  #streamId = "";
  #recordType: RecordTypeName = "json";
  #protoFields: Map<number, DescribedField> | undefined;
  #writer: TableWriter | null = null;
  #requests = 0;
  #accepted = -1;
  #acked = -1;
  #tail: { p: Promise<void>; upTo: number } | null = null;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #closeSent = false;
  #paused = false;
  #onDrained: (() => void) | null = null;

  /** Binds a session to a call; call `start()` next. */
  constructor(readonly ctx: StreamContext, readonly call: ServerCall) {}

  /** Sends response headers at once, checks metadata, then serves requests. */
  start(): void {
    const call = this.call;
    call.sendHeaders();
    this.ctx.sessions.add(this);
    call.listen({
      onMessage: (msg) => this.#onData(msg),
      onHalfClose: () => this.#onEnd(),
      onCancel: () => this.abort(),
    });
    if (call.path !== EPHEMERAL_STREAM_PATH) {
      return this.#end(UNIMPLEMENTED, `unknown method ${call.path}`);
    }
    if (this.ctx.faults().unauthenticated) {
      return this.#end(UNAUTHENTICATED, "unauthenticated (injected fault)");
    }
    const auth = call.header("authorization") ?? "";
    const m = auth.match(/^Bearer\s+(\S+)$/i);
    if (!m) return this.#end(UNAUTHENTICATED, "missing or malformed bearer token");
    if (!this.ctx.tokens.valid(m[1])) {
      return this.#end(UNAUTHENTICATED, "invalid or expired token");
    }
    this.#headerTable = call.header("x-databricks-zerobus-table-name") ?? "";
    if (!this.#headerTable) {
      return this.#end(INVALID_ARGUMENT, "missing x-databricks-zerobus-table-name header");
    }
  }

  /** Stops the session without sending anything (call cancelled or server stopping). */
  abort(): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    this.#cleanup();
  }

  #onData(buf: Uint8Array): void {
    if (this.#state === "draining" || this.#state === "ended") return;
    let req: StreamRequest;
    try {
      req = decodeRequest(buf);
    } catch (e) {
      return this.#fail(INVALID_ARGUMENT, `malformed request: ${(e as Error).message}`);
    }
    if (this.#state === "create") this.#onCreate(req);
    else this.#onIngest(req);
  }

  #onCreate(req: StreamRequest): void {
    if (req.kind !== "create") {
      return this.#fail(INVALID_ARGUMENT, "the first request must be create_stream");
    }
    const table = req.tableName;
    if (table !== this.#headerTable) {
      return this.#fail(
        INVALID_ARGUMENT,
        `create_stream table_name "${table}" does not match x-databricks-zerobus-table-name "${this.#headerTable}"`,
      );
    }
    if (!TABLE_NAME_RE.test(table)) {
      return this.#fail(
        INVALID_ARGUMENT,
        `table name "${table}" is not <catalog>.<schema>.<table>`,
      );
    }
    if (this.ctx.faults().reject_tables?.includes(table)) {
      return this.#fail(INVALID_ARGUMENT, `table ${table} rejected (injected fault)`);
    }
    if (req.recordType === RecordType.PROTO) {
      // descriptorProto is a view into the transport's read buffer: copy it to keep it.
      if (!req.descriptorProto?.length) {
        return this.#fail(INVALID_ARGUMENT, "record_type PROTO requires descriptor_proto");
      }
      try {
        this.#protoFields = parseDescriptor(req.descriptorProto.slice()).fields;
      } catch (e) {
        return this.#fail(INVALID_ARGUMENT, `descriptor_proto unusable: ${(e as Error).message}`);
      }
      this.#recordType = "proto";
    } else if (req.recordType === RecordType.JSON) {
      this.#recordType = "json";
    } else {
      return this.#fail(
        INVALID_ARGUMENT,
        `record_type ${req.recordType} is not supported (PROTO = 1, JSON = 2)`,
      );
    }
    try {
      this.#writer = this.ctx.writerFor(table);
    } catch (e) {
      return this.#fail(UNAVAILABLE, `cannot open table ${table}: ${(e as Error).message}`);
    }
    this.#writer.stats.streams++;
    this.#table = table;
    this.#streamId = crypto.randomUUID();
    this.#state = "open";
    this.call.write(encodeCreated(this.#streamId));
    this.ctx.log({
      event: "stream_created",
      table,
      stream_id: this.#streamId,
      record_type: this.#recordType,
    });
    this.#maybeSignalClose();
  }

  #onIngest(req: StreamRequest): void {
    if (req.kind === "create") {
      return this.#fail(INVALID_ARGUMENT, "create_stream sent twice on one stream");
    }
    if (req.kind === "unknown") {
      return this.#fail(INVALID_ARGUMENT, "request has no ingest_record or ingest_record_batch");
    }
    const faults = this.ctx.faults();
    if (faults.fail_after !== undefined && this.#requests >= faults.fail_after) {
      return this.#fail(
        UNAVAILABLE,
        `injected failure after ${this.#requests} requests (offset_id ${req.offsetId} not accepted)`,
      );
    }
    const offset = req.offsetId;
    if (offset !== this.#accepted + 1) {
      return this.#fail(
        INVALID_ARGUMENT,
        `offset_id ${offset} out of order: expected ${this.#accepted + 1}`,
      );
    }
    if (req.recordType !== this.#recordType) {
      return this.#fail(
        INVALID_ARGUMENT,
        `offset_id ${offset}: ${req.recordType} records on a ${this.#recordType} stream`,
      );
    }
    const writer = this.#writer!;
    const rows = req.rows;
    if (this.#recordType === "json") {
      for (let i = 0; i < rows.length; i++) {
        const err = jsonRowError(rows[i], faults.reject_rows_containing);
        if (err) {
          return this.#fail(
            INVALID_ARGUMENT,
            `offset_id ${offset}: record ${i} is ${err}; request rejected`,
          );
        }
      }
      for (let i = 0; i < rows.length; i++) writer.appendJsonRow(rows[i]);
    } else {
      const lines: Uint8Array[] = [];
      for (let i = 0; i < rows.length; i++) {
        try {
          lines.push(utf8.encode(protoRowToJson(rows[i], this.#protoFields!)));
        } catch (e) {
          return this.#fail(
            INVALID_ARGUMENT,
            `offset_id ${offset}: record ${i} does not match the descriptor: ${
              (e as Error).message
            }; request rejected`,
          );
        }
      }
      for (const line of lines) writer.appendJsonRow(line);
    }
    this.#accepted = offset;
    this.#requests++;
    writer.stats.requests++;
    this.#trackDurable(writer, offset);
    if (!this.#paused && writer.backlog > HIGH_WATER) {
      this.#paused = true;
      this.call.pause();
      writer.flushed().finally(() => {
        this.#paused = false;
        if (this.#state !== "ended") this.call.resume();
      });
    }
    this.#maybeSignalClose();
  }

  /** Acks `offset` once the writer has the rows in the file; one ack per flush. */
  #trackDurable(writer: TableWriter, offset: number): void {
    const p = writer.flushed();
    if (this.#tail?.p === p) {
      this.#tail.upTo = offset;
      return;
    }
    const entry = { p, upTo: offset };
    this.#tail = entry;
    p.then(
      () => this.#durable(entry.upTo),
      (e: Error) => this.#end(UNAVAILABLE, e.message),
    );
  }

  #durable(upTo: number): void {
    if (this.#state === "ended") return;
    const latency = this.ctx.faults().ack_latency_ms ?? 0;
    if (latency > 0) this.#after(latency, () => this.#sendAck(upTo));
    else this.#sendAck(upTo);
  }

  #sendAck(upTo: number): void {
    if (this.#state === "ended") return;
    if (upTo > this.#acked) {
      this.#acked = upTo;
      this.call.write(encodeAck(upTo));
    }
    if (this.#onDrained && this.#acked >= this.#accepted) {
      const done = this.#onDrained;
      this.#onDrained = null;
      done();
    }
  }

  #maybeSignalClose(): void {
    const faults = this.ctx.faults();
    if (this.#closeSent || faults.close_after === undefined) return;
    if (this.#requests < faults.close_after) return;
    this.#closeSent = true;
    const ms = faults.close_duration_ms ?? 1000;
    this.call.write(encodeCloseSignal(ms));
    this.ctx.log({ event: "close_signal", table: this.#table, stream_id: this.#streamId, ms });
    this.#after(ms, () => this.#fail(OK, "stream closed by server"));
  }

  #onEnd(): void {
    if (this.#state === "create") this.#end(OK, "closed before create_stream");
    else this.#fail(OK, "client half-closed");
  }

  /** Stops reading, waits until everything accepted is acked, then ends the call. */
  #fail(code: number, details: string): void {
    if (this.#state === "draining" || this.#state === "ended") return;
    this.#state = "draining";
    const end = () => {
      if (code === OK || this.#acked < 0) this.#end(code, details);
      else this.#after(ERROR_AFTER_ACK_MS, () => this.#end(code, details));
    };
    if (this.#acked >= this.#accepted) end();
    else this.#onDrained = end;
  }

  #end(code: number, details: string): void {
    if (this.#state === "ended") return;
    this.#state = "ended";
    this.#cleanup();
    this.ctx.log({
      event: "stream_ended",
      table: this.#table || this.#headerTable,
      stream_id: this.#streamId,
      code: statusName(code),
      details,
      requests: this.#requests,
      acked_up_to: this.#acked,
    });
    this.call.end(code, details);
  }

  #after(ms: number, fn: () => void): void {
    const id = setTimeout(() => {
      this.#timers.delete(id);
      fn();
    }, ms);
    this.#timers.add(id);
  }

  #cleanup(): void {
    for (const id of this.#timers) clearTimeout(id);
    this.#timers.clear();
    this.#onDrained = null;
    this.ctx.sessions.delete(this);
  }
}
