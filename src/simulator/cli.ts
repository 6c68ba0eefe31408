/**
 * `otedge simulate`: the OT simulator process. It serves a Modbus TCP server
 * whose registers follow simulated sensors, and the sensors' live values over
 * HTTP (`/health`, `/api/sensors`). The OPC-UA server and the MQTT broker with
 * its publishers join it with their sources.
 */
import { parseArgs } from "node:util";
import { createGeneratorModel } from "../sources/generator/models.ts";
import { untilSignal } from "../run.ts";
import { float32Words, int16Word, startModbusSimulator } from "./modbus_server.ts";

const USAGE =
  `Usage: otedge simulate [--host 127.0.0.1] [--port 8989] [--modbus-port 5020] [--tags 20]

Runs the OT simulator until Ctrl-C:
  HTTP on --port: GET /health, GET /api/sensors (live values of the simulated sensors)
  Modbus TCP on --modbus-port (0 = a free port), units 1 and 2; unit 1 follows three sensors:
    holding 10..11 float32 ABCD  boiler temperature (degC)
    holding 12..13 float32 CDAB  steam pressure (bar)
    holding 14     int16 x10     tank level (%)
Prints one JSON line {"event":"ready",...} with the ports when it is ready.`;

/** A free TCP port on the host (bound, then released). */
function freePort(hostname: string): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `otedge simulate [--host H] [--port N] [--modbus-port N] [--tags N]`. */
export async function simulateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "modbus-port": { type: "string" },
      tags: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const host = values.host ?? "127.0.0.1";
  const tags = Number(values.tags ?? 20);
  const port = Number(values.port ?? 8989);
  const modbusPortArg = Number(values["modbus-port"] ?? 5020);
  const badPort = (p: number) => !Number.isInteger(p) || p < 0 || p > 65535;
  if (!Number.isInteger(tags) || tags < 1 || badPort(port) || badPort(modbusPortArg)) {
    console.error(`--tags must be a positive integer and ports 0..65535\n\n${USAGE}`);
    return 2;
  }
  const next = createGeneratorModel({
    tags,
    recordsPerS: 0,
    models: ["sine", "ramp", "random_walk", "step"],
    prefix: "sensor",
  });
  const sensors = () => {
    const now = Date.now() * 1000;
    return Array.from({ length: tags }, () => next(now)).map((r) => ({
      name: r.tag_name,
      value: r.value as number,
      unit: r.unit,
      model: JSON.parse(r.metadata as string).model,
    }));
  };

  const modbus = await startModbusSimulator({
    host,
    port: modbusPortArg === 0 ? freePort(host) : modbusPortArg,
  });
  const follow = () => {
    const t = Date.now() / 1000;
    modbus.setHolding(1, 10, float32Words(80 + 5 * Math.sin(t / 30), "ABCD"));
    modbus.setHolding(1, 12, float32Words(11.5 + 0.3 * Math.sin(t / 7), "CDAB"));
    modbus.setHolding(1, 14, [int16Word(Math.round((50 + 20 * Math.sin(t / 60)) * 10))]);
  };
  follow();
  const timer = setInterval(follow, 1000);

  const server = Deno.serve({ hostname: host, port, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/health") {
      return Response.json({
        status: "ok",
        servers: [
          { protocol: "http", sensors: tags },
          { protocol: "modbus", endpoint: `modbus://${host}:${modbus.port}` },
        ],
      });
    }
    if (path === "/api/sensors") return Response.json({ sensors: sensors() });
    return Response.json({ error: "see /health and /api/sensors" }, { status: 404 });
  });
  const addr = server.addr as Deno.NetAddr;
  console.log(JSON.stringify({
    event: "ready",
    http_port: addr.port,
    url: `http://${addr.hostname}:${addr.port}`,
    modbus_port: modbus.port,
    modbus_endpoint: `modbus://${host}:${modbus.port}`,
  }));
  await untilSignal();
  clearInterval(timer);
  await modbus.stop();
  await server.shutdown();
  return 0;
}
