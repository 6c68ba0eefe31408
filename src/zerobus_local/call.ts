/**
 * The server side of one gRPC call as the stand-in's stream logic sees it,
 * independent of the transport serving it (our own h2c server or grpc-js).
 */

/** gRPC status codes. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** Name of a gRPC status code, e.g. "INVALID_ARGUMENT". */
export function statusName(code: number): string {
  return Object.entries(Status).find(([, v]) => v === code)?.[0] ?? String(code);
}

/** Receives a call's request side. */
export interface CallListener {
  /** One request message; the bytes are valid only during the call (copy to keep). */
  onMessage(msg: Uint8Array): void;
  /** The client half-closed (sent everything). */
  onHalfClose(): void;
  /** The call was cancelled or its connection lost; nothing more can be sent. */
  onCancel(): void;
}

/** One server-side gRPC call. */
export interface ServerCall {
  /** The method path, e.g. `/databricks.zerobus.Zerobus/EphemeralStream`. */
  readonly path: string;
  /** First value of a request header (name in lower case). */
  header(name: string): string | undefined;
  /** Starts delivering request events to `listener`. */
  listen(listener: CallListener): void;
  /** Sends the response headers now (they go out before any message anyway). */
  sendHeaders(): void;
  /** Sends one response message. */
  write(msg: Uint8Array): void;
  /** Ends the call with a status; later writes are ignored. */
  end(code: number, details: string): void;
  /** Stops delivering request messages (flow control holds the client back). */
  pause(): void;
  /** Delivers held messages and resumes. */
  resume(): void;
}

/** A transport serving gRPC calls on a TCP port. */
export interface CallServer {
  readonly port: number;
  /** Ends open calls with UNAVAILABLE, closes connections and the listener. */
  close(): Promise<void>;
}
