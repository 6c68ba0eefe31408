/**
 * `otedge demo`: the simulator and the local Zerobus stand-in (child processes)
 * and the agent with config/demo.yaml, started together; Ctrl-C stops all.
 */
import { parseArgs } from "node:util";
import { formatErrors, loadConfigText } from "./config/load.ts";
import { createLogger } from "./log.ts";
import { startAgent, untilSignal } from "./run.ts";
import { type SelfProcess, spawnSelf } from "./self.ts";

/** `otedge demo [--port N] [--data-dir DIR]`. */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { port: { type: "string" }, "data-dir": { type: "string" } },
  });
  const dataDir = values["data-dir"] ?? "./data/demo";
  const port = values.port ?? "8080";
  await Deno.mkdir(dataDir, { recursive: true });

  const standIn: SelfProcess = await spawnSelf(
    ["zerobus-local", "--port", "0", "--http-port", "0", "--data-dir", dataDir],
    "ready",
  );
  const ready = standIn.ready as { endpoint: string; workspace_url: string };
  let simulator: SelfProcess;
  try {
    simulator = await spawnSelf(
      ["simulate", "--port", "0", "--modbus-port", "0", "--mqtt-port", "0", "--opcua-port", "0"],
      "ready",
    );
  } catch (e) {
    await standIn.stop();
    console.error(`demo: the simulator did not start: ${(e as Error).message}`);
    return 1;
  }
  const sim = simulator.ready as {
    url: string;
    modbus_endpoint: string;
    mqtt_endpoint: string;
    opcua_endpoint: string;
  };
  const stopChildren = async () => {
    await simulator.stop();
    await standIn.stop();
  };
  const text = await Deno.readTextFile(new URL("../config/demo.yaml", import.meta.url));
  const env = {
    ...Deno.env.toObject(),
    DEMO_ZEROBUS_ENDPOINT: ready.endpoint,
    DEMO_WORKSPACE_URL: ready.workspace_url,
    DEMO_DATA_DIR: dataDir,
    DEMO_MODBUS_ENDPOINT: sim.modbus_endpoint,
    DEMO_MQTT_ENDPOINT: sim.mqtt_endpoint,
    DEMO_OPCUA_ENDPOINT: sim.opcua_endpoint,
    CONNECTOR_HTTP_PORT: port,
  };
  const res = loadConfigText(text, { env, fileName: "config/demo.yaml" });
  if (!res.ok) {
    await stopChildren();
    console.error(formatErrors(res.errors, "config/demo.yaml"));
    return 2;
  }
  const log = createLogger(res.config.connector.log_level);
  let running;
  try {
    running = await startAgent(res.config, log);
  } catch (e) {
    await stopChildren();
    console.error(`demo failed to start: ${(e as Error).message}`);
    return 1;
  }
  const tables = `${dataDir}/zerobus-local/*.jsonl`;
  console.log(
    [
      "",
      "otedge demo is running",
      `  API:           ${running.url}  (try ${running.url}/api/status and ${running.url}/metrics)`,
      `  data folder:   ${dataDir}`,
      `  simulator:     ${sim.url}/api/sensors, Modbus TCP at ${sim.modbus_endpoint}`,
      `  MQTT broker:   ${sim.mqtt_endpoint} (JSON on plant/#, Sparkplug B on spBv1.0/#)`,
      `  OPC UA server: ${sim.opcua_endpoint} (Objects/<Industry>/<Site>/<Area>/<Equipment>/<Sensor>)`,
      `  Zerobus stand-in: ${ready.endpoint} (tokens at ${ready.workspace_url}/oidc/v1/token, counts at ${ready.workspace_url}/tables)`,
      `  Delta rows land in: ${tables}`,
      "  Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
  await untilSignal();
  log.info("demo stopping");
  await running.stop();
  await stopChildren();
  return 0;
}
