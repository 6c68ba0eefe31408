/**
 * `otedge run`: load and validate the config, start the agent and its HTTP
 * API, stop everything cleanly on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import denoJson from "../deno.json" with { type: "json" };
import { Agent, type AgentOptions } from "./agent.ts";
import { createApi } from "./api/app.ts";
import { credentialsPath, openCredentialStore } from "./config/credentials.ts";
import {
  type CredentialResolver,
  formatErrors,
  loadConfigFile,
  type LoadResult,
} from "./config/load.ts";
import type { AgentConfig } from "./config/schema.ts";
import { createLogger, type Logger } from "./log.ts";

/** A running agent with its HTTP server. */
export interface RunningAgent {
  agent: Agent;
  url: string;
  stop(): Promise<void>;
}

/**
 * Opens the credential store named by a config file's data_dir (or
 * CONNECTOR_DATA_DIR) when CONNECTOR_MASTER_PASSWORD is set. Without the
 * password there is no resolver, so a `${credential:...}` placeholder is
 * reported as "no credential store is open; set CONNECTOR_MASTER_PASSWORD".
 * A wrong password is an error that says so.
 */
export async function openResolverFor(
  configFile: string,
  env: Record<string, string> = Deno.env.toObject(),
): Promise<CredentialResolver | undefined> {
  const password = env.CONNECTOR_MASTER_PASSWORD;
  if (!password) return undefined;
  let dataDir: string | undefined = env.CONNECTOR_DATA_DIR;
  if (!dataDir) {
    try {
      const doc = parseYaml(await Deno.readTextFile(configFile)) as {
        connector?: { data_dir?: string };
      };
      dataDir = doc?.connector?.data_dir;
    } catch {
      // the loader reports unreadable or invalid files
    }
  }
  const path = credentialsPath(dataDir ?? "./data");
  try {
    await Deno.stat(path);
  } catch {
    return () => {
      throw new Error(
        `no credential store at ${path}; create it with 'otedge credentials set <key>'`,
      );
    };
  }
  return (await openCredentialStore(path, password)).resolver;
}

/** Loads a config file with env overrides and credentials; errors are returned, not thrown. */
export async function loadAgentConfig(
  file: string,
  env: Record<string, string> = Deno.env.toObject(),
): Promise<LoadResult> {
  let credential: CredentialResolver | undefined;
  try {
    credential = await openResolverFor(file, env);
  } catch (e) {
    return { ok: false, errors: [`credentials: ${(e as Error).message}`] };
  }
  return await loadConfigFile(file, { env, credential, fileName: file });
}

/** Starts the agent and its HTTP server for a validated config. */
export async function startAgent(
  config: AgentConfig,
  log: Logger,
  opts: AgentOptions = {},
): Promise<RunningAgent> {
  const agent = await Agent.start(config, log, opts);
  const app = createApi(agent, denoJson.version);
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({
      hostname: config.http.host,
      port: config.http.port,
      onListen: () => {},
    }, app.fetch);
  } catch (e) {
    await agent.stop();
    throw new Error(
      `cannot listen on ${config.http.host}:${config.http.port}: ${(e as Error).message}; ` +
        `free the port or set http.port (or CONNECTOR_HTTP_PORT)`,
    );
  }
  const addr = server.addr as Deno.NetAddr;
  const url = `http://${addr.hostname}:${addr.port}`;
  log.info("agent started", {
    api: url,
    sources: config.sources.length,
    data_dir: config.connector.data_dir,
  });
  return {
    agent,
    url,
    async stop() {
      await agent.stop();
      await server.shutdown();
      log.info("agent stopped");
    },
  };
}

/**
 * Resolves on the first SIGINT or SIGTERM; a second one exits at once
 * (code 130), for when a clean stop takes too long.
 */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: Deno.Signal) => () => {
      if (seen) {
        console.error(`otedge: second ${sig}, exiting without a clean stop`);
        Deno.exit(130);
      }
      seen = true;
      resolve(sig);
    };
    Deno.addSignalListener("SIGINT", on("SIGINT"));
    Deno.addSignalListener("SIGTERM", on("SIGTERM"));
  });
}

/** `otedge run [--config FILE] [--port N]`. */
export async function runAgent(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string", short: "c" }, port: { type: "string" } },
  });
  const file = values.config ?? "config/config.yaml";
  const env = Deno.env.toObject();
  if (values.port) env.CONNECTOR_HTTP_PORT = values.port;
  const res = await loadAgentConfig(file, env);
  if (!res.ok) {
    console.error(formatErrors(res.errors, file));
    return 2;
  }
  const log = createLogger(res.config.connector.log_level);
  let running: RunningAgent;
  try {
    running = await startAgent(res.config, log);
  } catch (e) {
    console.error(`otedge run: ${(e as Error).message}`);
    return 1;
  }
  // One machine-readable line on stdout for supervisors, tests and the demo.
  console.log(JSON.stringify({ event: "ready", api: running.url, pid: Deno.pid }));
  const sig = await untilSignal();
  log.info("stopping", { signal: sig });
  await running.stop();
  return 0;
}
