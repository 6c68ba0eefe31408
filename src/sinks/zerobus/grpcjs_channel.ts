/** GrpcChannel on @grpc/grpc-js (node:http2). Temporary: being replaced by our own HTTP/2 client. */
import * as grpc from "@grpc/grpc-js";
import type { BidiCall, CallHandlers, GrpcChannel } from "./channel.ts";

/** Opens a grpc-js channel to `endpoint` (http:// = plaintext h2c, https:// = TLS). */
export function grpcJsChannel(endpoint: string): GrpcChannel {
  const url = new URL(endpoint.includes("://") ? endpoint : `https://${endpoint}`);
  const tls = url.protocol === "https:";
  const client = new grpc.Client(
    `${url.hostname}:${url.port || (tls ? "443" : "80")}`,
    tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
    { "grpc.max_send_message_length": 16 << 20, "grpc.max_receive_message_length": 16 << 20 },
  );
  return {
    call(path: string, metadata: Record<string, string>, h: CallHandlers): BidiCall {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      const call = client.makeBidiStreamRequest<Uint8Array, Buffer>(
        path,
        (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
        (b) => b,
        md,
      );
      let done = false;
      const finish = (code: number, details: string) => {
        if (done) return;
        done = true;
        h.onStatus({ code, details });
      };
      call.on("metadata", () => h.onHeaders?.());
      call.on("data", (b: Buffer) => h.onMessage(b));
      call.on("error", (e: grpc.ServiceError) => finish(e.code, e.details || e.message));
      call.on("status", (s: grpc.StatusObject) => finish(s.code, s.details));
      return {
        write: (m) => call.write(m),
        drained: () => new Promise<void>((r) => call.once("drain", r)),
        end: () => call.end(),
        cancel: () => call.cancel(),
      };
    },
    close: () => client.close(),
  };
}
