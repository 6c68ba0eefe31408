/**
 * otedge: the OT edge agent's command line.
 *
 * Exit codes: 0 ok, 2 bad usage or invalid config, 1 runtime failure.
 */
import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { loadAgentConfig, runAgent } from "./src/run.ts";
import { runDemo } from "./src/demo.ts";
import { formatErrors } from "./src/config/load.ts";
import { createTableSql } from "./src/record.ts";
import { recordProtoText } from "./src/record_proto.ts";
import { zerobusLocalCommand } from "./src/zerobus_local/cli.ts";
import { credentialsCommand } from "./src/config/credentials.ts";
import { exitWithParent } from "./src/self.ts";

const VERSION = denoJson.version;

const HELP =
  `otedge ${VERSION}: reads OT data (OPC-UA, MQTT, Sparkplug B, Modbus), normalizes it to ISA-95
tag paths, keeps it in a durable spool and streams it into Databricks Delta tables via Zerobus.

Usage: otedge <command> [options]

Commands:
  run [--config FILE]          run the agent (default config: config/config.yaml)
  demo [--port N]              simulator + local Zerobus stand-in + agent, in one command
  simulate                     run the OT simulator on its own (OPC UA, MQTT + Sparkplug B, Modbus)
  zerobus-local                run the local Zerobus stand-in (gRPC + OAuth token endpoint)
  validate-config FILE         check a config file; prints every problem with its key path
  schema [--table C.S.T|--proto]  the Delta CREATE TABLE for the record (or its .proto message)
  credentials <sub>            manage encrypted credentials (set, get, list, delete, generate-password)
  certificates <sub>           OPC UA server certificates: list, trust ID, reject ID

Options: --help on every command, --version.
Exit codes: 0 ok, 2 bad usage or invalid config, 1 runtime failure.`;

const COMMAND_HELP: Record<string, string> = {
  run: `Usage: otedge run [--config FILE] [--port N]

Runs the agent with FILE (default config/config.yaml). An invalid config prints every problem
with its key path and nothing starts (exit 2). Stops cleanly on Ctrl-C or SIGTERM.
Environment: CONNECTOR_* overrides (e.g. CONNECTOR_LOG_LEVEL, CONNECTOR_ZEROBUS_CLIENT_ID),
CONNECTOR_MASTER_PASSWORD unlocks \${credential:key} placeholders.`,
  demo: `Usage: otedge demo [--port N] [--data-dir DIR]

Starts the simulator (OPC UA server, MQTT broker with JSON, Kepware and Sparkplug B
publishers, Modbus TCP server), the local Zerobus stand-in and the agent with
config/demo.yaml (one source per protocol, each into its own table), all together.
Data, spool and the stand-in's table files go to DIR (default ./data/demo). API on
http://127.0.0.1:N (default 8080). Ctrl-C stops everything.`,
  "validate-config": `Usage: otedge validate-config FILE

Checks FILE; prints "ok" and a summary, or every problem with its key path (exit 2).`,
  schema: `Usage: otedge schema [--table CATALOG.SCHEMA.TABLE] [--proto]

Prints the Delta CREATE TABLE statement for the record schema (default table
main.iot_data.sensor_readings), ready to paste into a Databricks SQL editor.
--proto prints the record's protobuf message instead (zerobus.record_type: proto).`,
};

function fail(msg: string, code = 2): number {
  console.error(msg);
  return code;
}

async function validateConfig(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  if (positionals.length !== 1) return fail(COMMAND_HELP["validate-config"]);
  const file = positionals[0];
  const res = await loadAgentConfig(file);
  if (!res.ok) {
    console.error(formatErrors(res.errors, file));
    return 2;
  }
  const c = res.config;
  console.log(`ok: ${file}`);
  console.log(
    `  sources: ${c.sources.length} (${
      c.sources.map((s) => `${s.name}:${s.protocol}`).join(", ") || "none"
    })`,
  );
  console.log(`  zerobus: ${c.zerobus.enabled ? "enabled" : "disabled"}`);
  console.log(`  data_dir: ${c.connector.data_dir}, http: ${c.http.host}:${c.http.port}`);
  return 0;
}

function schema(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: { table: { type: "string" }, proto: { type: "boolean" } },
  });
  if (values.proto) {
    console.log(recordProtoText());
    return 0;
  }
  const table = values.table ?? "main.iot_data.sensor_readings";
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(table)) return fail("--table must be CATALOG.SCHEMA.TABLE");
  console.log(createTableSql(table));
  return 0;
}

/** connector.data_dir of a config file; throws with every problem of an invalid one. */
async function configDataDir(file: string): Promise<string> {
  const res = await loadAgentConfig(file);
  if (!res.ok) throw new Error(formatErrors(res.errors, file));
  return res.config.connector.data_dir;
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    console.log(HELP);
    return command ? 0 : 2;
  }
  if (command === "--version" || command === "-V") {
    console.log(`otedge ${VERSION}`);
    return 0;
  }
  if ((rest.includes("--help") || rest.includes("-h")) && COMMAND_HELP[command]) {
    console.log(COMMAND_HELP[command]);
    return 0;
  }
  try {
    switch (command) {
      case "run":
        return await runAgent(rest);
      case "demo":
        return await runDemo(rest);
      case "simulate":
        // Loaded on demand: the simulator pulls in protocol libraries the agent's main thread never loads.
        return await (await import("./src/simulator/cli.ts")).simulateCommand(rest);
      case "zerobus-local":
        return await zerobusLocalCommand(rest);
      case "validate-config":
        return await validateConfig(rest);
      case "schema":
        return schema(rest);
      case "credentials":
        return await credentialsCommand(rest, {
          dataDir: Deno.env.get("CONNECTOR_DATA_DIR") ?? "./data",
          env: Deno.env.toObject(),
        });
      case "certificates":
        // Loaded on demand (the store code needs no protocol library, but only this command uses it).
        return await (await import("./src/sources/opcua/certificates_cli.ts")).certificatesCommand(
          rest,
          { env: Deno.env.toObject(), dataDirOf: configDataDir },
        );
      default:
        return fail(`unknown command '${command}'\n\n${HELP}`);
    }
  } catch (e) {
    if (e instanceof TypeError && /ERR_PARSE_ARGS/.test(String((e as { code?: string }).code))) {
      return fail(`${(e as Error).message}\nSee 'otedge ${command} --help'.`);
    }
    console.error(`otedge ${command} failed: ${(e as Error)?.stack ?? e}`);
    return 1;
  }
}

if (import.meta.main) {
  exitWithParent();
  Deno.exit(await main(Deno.args));
}
