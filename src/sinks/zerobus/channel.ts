/**
 * The client side of a bidirectional gRPC call as the Zerobus sender sees it,
 * independent of the HTTP/2 implementation underneath.
 */

/** How a call ended: a gRPC status code (0 = OK) and its message. */
export interface CallStatus {
  code: number;
  details: string;
}

/** Events of one call, delivered in order; `onStatus` comes exactly once, last. */
export interface CallHandlers {
  /** Response headers arrived (the server accepted the call). */
  onHeaders?(): void;
  /** One response message (the bytes may be reused after the callback: copy to keep). */
  onMessage(msg: Uint8Array): void;
  /** The call ended: trailers, RST_STREAM, GOAWAY, connection loss (UNAVAILABLE) or cancel. */
  onStatus(status: CallStatus): void;
}

/** One client-side bidirectional streaming call. */
export interface BidiCall {
  /** Queues one request message; false when the caller should wait for `drained()`. */
  write(msg: Uint8Array): boolean;
  /** Resolves when queued data has gone out (flow control allowed it) or the call ended. */
  drained(): Promise<void>;
  /** Half-closes: no more requests; responses keep coming until the status. */
  end(): void;
  /** Cancels the call (RST_STREAM CANCEL); `onStatus` reports CANCELLED if it had not ended. */
  cancel(): void;
}

/** A connection (or pool) to one gRPC server. */
export interface GrpcChannel {
  /** Starts a call on `path` with request metadata (lower-case header names). */
  call(path: string, metadata: Record<string, string>, handlers: CallHandlers): BidiCall;
  /** Closes connections; open calls end with UNAVAILABLE. */
  close(): void;
}
