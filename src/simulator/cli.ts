/**
 * `otedge simulate`: the OT simulator process. Today it serves the simulated
 * sensors' live values over HTTP (`/health`, `/api/sensors`); the protocol
 * issues add its OPC-UA server, MQTT broker and publishers, and Modbus server.
 */
import { parseArgs } from "node:util";
import { createGeneratorModel } from "../sources/generator/models.ts";
import { untilSignal } from "../run.ts";

/** `otedge simulate [--host H] [--port N] [--tags N]`. */
export async function simulateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      tags: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(`Usage: otedge simulate [--host 127.0.0.1] [--port 8989] [--tags 20]

Runs the OT simulator: GET /health and GET /api/sensors (live values of the simulated sensors).`);
    return 0;
  }
  const tags = Number(values.tags ?? 20);
  const port = Number(values.port ?? 8989);
  if (!Number.isInteger(tags) || tags < 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
    console.error("--tags must be a positive integer and --port 0..65535");
    return 2;
  }
  const next = createGeneratorModel({
    tags,
    recordsPerS: 0,
    models: ["sine", "ramp", "random_walk", "step"],
    prefix: "sensor",
  });
  const server = Deno.serve(
    { hostname: values.host ?? "127.0.0.1", port, onListen: () => {} },
    (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/health") {
        return Response.json({
          status: "ok",
          servers: [{ protocol: "http", sensors: tags }],
        });
      }
      if (path === "/api/sensors") {
        const now = Date.now() * 1000;
        const sensors = Array.from({ length: tags }, () => next(now)).map((r) => ({
          name: r.tag_name,
          value: r.value,
          unit: r.unit,
          model: JSON.parse(r.metadata as string).model,
        }));
        return Response.json({ sensors });
      }
      return Response.json({ error: "see /health and /api/sensors" }, { status: 404 });
    },
  );
  const addr = server.addr as Deno.NetAddr;
  console.log(
    JSON.stringify({
      event: "ready",
      http_port: addr.port,
      url: `http://${addr.hostname}:${addr.port}`,
    }),
  );
  await untilSignal();
  await server.shutdown();
  return 0;
}
