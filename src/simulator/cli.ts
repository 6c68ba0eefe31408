/**
 * `otedge simulate`: the OT simulator process. It serves an OPC UA server with
 * four industries, an MQTT broker with JSON, Kepware and Sparkplug B publishers,
 * a Modbus TCP plant whose registers follow simulated sensors, and the sensors'
 * live values over HTTP (`/health`, `/api/sensors`).
 */
import { parseArgs } from "node:util";
import { createGeneratorModel } from "../sources/generator/models.ts";
import { untilSignal } from "../run.ts";
import { startModbusPlant } from "./modbus_plant.ts";
import { freePort } from "./ports.ts";
import { startMqttSimulator } from "./mqtt_simulator.ts";

const USAGE = `Usage: otedge simulate [--host 127.0.0.1] [--port 8989] [--modbus-port 5020]
                      [--modbus-silent-unit N] [--modbus-slow-unit N:MS]
                      [--mqtt-port 1884] [--tags 20] [--opcua-port 4840] [--opcua-scale 0]
                      [--opcua-secure-port N]

Runs the OT simulator until Ctrl-C:
  HTTP on --port: GET /health, GET /api/sensors (live values of the simulated sensors)
  Modbus TCP on --modbus-port (0 = a free port); registers follow the sensors each second:
    unit 1 (boiler): holding 10..11 float32 ABCD boiler temperature (degC), 12..13 float32 CDAB
      steam pressure (bar), 14 int16 x10 tank level (%), 16..17 float32 DCBA flue gas O2 (%),
      18..19 float32 BADC feedwater flow (m3/h); coil 10 burner on; discrete 10 low water alarm
    unit 2 (pump): holding 10..11 float32 ABCD speed (rpm), 12 int16 x10 motor current (A);
      input 10 running hours; coil 10 pump running; discrete 10 high vibration alarm
    --modbus-silent-unit N never answers unit N; --modbus-slow-unit N:MS answers it after MS ms
  MQTT 3.1.1 broker on --mqtt-port (default 1884, 0 = a free port), plain TCP, with publishers:
    plant/columbus/paint_shop/line2/oven1/<sensor>  {"value","timestamp","unit"} QoS 1, each second
    plant/columbus/stamping/line1/press2/iotgateway Kepware IoT Gateway {"timestamp","values":[..]}
    spBv1.0/assembly/+/line4[/welder1|/conveyor2]   Sparkplug B edge node (NBIRTH, DBIRTH, DDATA)
      commands: NCMD Node Control/Rebirth, Node Control/Simulate Connection Loss (drops the
      connection without DISCONNECT: the broker sends the NDEATH Will); DCMD Device Control/Online
  OPC UA server on --opcua-port (default 4840, a free port when taken; 0 = a free port), security
    None, namespace urn:otedge:simulator:plant: Objects/<Industry>/<Site>/<Area>/<Equipment>/<Sensor>
    for Mining, Utilities, Manufacturing, OilAndGas (AnalogItems with EngineeringUnits, EURange);
    --opcua-scale N adds N variables under Objects/Scale, each changing once a second;
    --opcua-secure-port N (0 = a free port) adds the same plants on an endpoint that accepts only
    Basic256Sha256 SignAndEncrypt (anonymous, or user operator / password operator)
Prints one JSON line {"event":"ready",...} with the ports when it is ready.`;

/** `otedge simulate [--host H] [--port N] [--modbus-port N] [--tags N]`. */
export async function simulateCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "modbus-port": { type: "string" },
      "modbus-silent-unit": { type: "string" },
      "modbus-slow-unit": { type: "string" },
      "mqtt-port": { type: "string" },
      "opcua-port": { type: "string" },
      "opcua-scale": { type: "string" },
      "opcua-secure-port": { type: "string" },
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
  const mqttPortArg = Number(values["mqtt-port"] ?? 1884);
  const badPort = (p: number) => !Number.isInteger(p) || p < 0 || p > 65535;
  if (
    !Number.isInteger(tags) || tags < 1 || badPort(port) || badPort(modbusPortArg) ||
    badPort(mqttPortArg)
  ) {
    console.error(`--tags must be a positive integer and ports 0..65535\n\n${USAGE}`);
    return 2;
  }
  const silentUnit = values["modbus-silent-unit"] === undefined
    ? undefined
    : Number(values["modbus-silent-unit"]);
  const slow = /^(\d+):(\d+)$/.exec(values["modbus-slow-unit"] ?? "");
  if (
    (silentUnit !== undefined && !(Number.isInteger(silentUnit) && silentUnit >= 0)) ||
    (values["modbus-slow-unit"] !== undefined && !slow)
  ) {
    console.error(`--modbus-silent-unit takes a unit id, --modbus-slow-unit UNIT:MS\n\n${USAGE}`);
    return 2;
  }
  const opcuaPort = values["opcua-port"] === undefined ? undefined : Number(values["opcua-port"]);
  const opcuaScale = Number(values["opcua-scale"] ?? 0);
  const securePort = values["opcua-secure-port"] === undefined
    ? undefined
    : Number(values["opcua-secure-port"]);
  if (
    (opcuaPort !== undefined && badPort(opcuaPort)) ||
    (securePort !== undefined && badPort(securePort)) || !(opcuaScale >= 0 && opcuaScale <= 1e6)
  ) {
    console.error(`OPC UA ports must be 0..65535 and --opcua-scale 0..1000000\n\n${USAGE}`);
    return 2;
  }
  // node-opcua loads and the server starts while the other servers start.
  const opcuaStarting = import("./opcua_cli.ts").then((m) =>
    m.startSimulateOpcua({ host, port: opcuaPort, scale: Math.floor(opcuaScale), securePort })
  );
  opcuaStarting.catch(() => {});
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

  const modbus = await startModbusPlant({
    host,
    port: modbusPortArg === 0 ? freePort(host) : modbusPortArg,
    silentUnit,
    slowUnit: slow ? { unit: Number(slow[1]), ms: Number(slow[2]) } : undefined,
  });
  let mqtt;
  try {
    mqtt = await startMqttSimulator({ host, port: mqttPortArg, sensors });
  } catch (e) {
    await modbus.stop();
    console.error(`simulate: ${(e as Error).message}`);
    return 1;
  }
  let opcua;
  try {
    opcua = await opcuaStarting;
  } catch (e) {
    await mqtt.stop();
    await modbus.stop();
    console.error(`simulate: the OPC UA server did not start: ${(e as Error).message}`);
    return 1;
  }

  const server = Deno.serve({ hostname: host, port, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/health") {
      return Response.json({
        status: "ok",
        servers: [
          { protocol: "http", sensors: tags },
          { protocol: "modbus", endpoint: modbus.endpoint },
          mqtt.health(),
          opcua.health(),
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
    modbus_endpoint: modbus.endpoint,
    mqtt_port: mqtt.port,
    mqtt_endpoint: mqtt.endpoint,
    opcua_port: opcua.port,
    opcua_endpoint: opcua.endpoint,
    ...(opcua.secureEndpoint && { opcua_secure_endpoint: opcua.secureEndpoint }),
  }));
  await untilSignal();
  await mqtt.stop();
  await opcua.stop();
  await modbus.stop();
  await server.shutdown();
  return 0;
}
