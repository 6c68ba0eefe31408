/**
 * The server side of one gRPC call as the stand-in's stream logic sees it,
 * independent of the transport serving it (our own h2c server or grpc-js).
 */

export { GrpcStatus as Status, statusName } from "../http2/status.ts";

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
