/**
 * Alternative transport for the stand-in: the grpc-js server (Deno's
 * `node:http2`). Kept for comparison; see README.md for why it is not the default.
 */
import { Buffer } from "node:buffer";
import * as grpc from "@grpc/grpc-js";
import { EPHEMERAL_STREAM_PATH } from "../sinks/zerobus/wire.ts";
import { type CallListener, type CallServer, type ServerCall, Status } from "./call.ts";

type Duplex = grpc.ServerDuplexStream<Buffer, Uint8Array>;

/** Adapts a grpc-js bidirectional call to `ServerCall`. */
class GrpcJsCall implements ServerCall {
  readonly path = EPHEMERAL_STREAM_PATH;
  #headersSent = false;
  #ended = false;

  constructor(readonly call: Duplex) {}

  header(name: string): string | undefined {
    const v = this.call.metadata.get(name)[0];
    return v === undefined ? undefined : String(v);
  }

  listen(l: CallListener): void {
    this.call.on("data", (b: Buffer) => l.onMessage(b));
    this.call.on("end", () => l.onHalfClose());
    this.call.on("cancelled", () => l.onCancel());
    this.call.on("error", () => l.onCancel());
  }

  sendHeaders(): void {
    if (this.#headersSent) return;
    this.#headersSent = true;
    this.call.sendMetadata(new grpc.Metadata());
  }

  write(msg: Uint8Array): void {
    if (!this.#ended) this.call.write(msg);
  }

  end(code: number, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    if (code === Status.OK) this.call.end();
    else this.call.emit("error", { code, details, metadata: new grpc.Metadata() });
  }

  pause(): void {
    this.call.pause();
  }

  resume(): void {
    this.call.resume();
  }
}

const raw = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
const same = (b: Buffer) => b;

/** Serves `EphemeralStream` with grpc-js on `hostname:port` (0 = a free port). */
export async function serveGrpcJs(opts: {
  hostname: string;
  port: number;
  onCall(call: ServerCall): void;
  maxMessageBytes?: number;
}): Promise<CallServer> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes ?? 4 << 20,
  });
  server.addService({
    EphemeralStream: {
      path: EPHEMERAL_STREAM_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: raw,
      requestDeserialize: same,
      responseSerialize: raw,
      responseDeserialize: same,
    },
  }, { EphemeralStream: (call: Duplex) => opts.onCall(new GrpcJsCall(call)) });
  const host = opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (e, p) => {
      if (e) reject(e);
      else resolve(p);
    })
  );
  return {
    port,
    close() {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}
