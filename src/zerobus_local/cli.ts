/**
 * `otedge zerobus-local`: runs the local Zerobus stand-in until SIGINT/SIGTERM.
 * Prints one JSON `ready` line on stdout; stream events go to stderr as JSON lines.
 */
import { parseArgs } from "node:util";
import type { Faults } from "./faults.ts";
import { startZerobusLocal } from "./server.ts";

const USAGE = `Usage: otedge zerobus-local [options]

Local stand-in for Databricks Zerobus ingest (gRPC, plaintext) with an OAuth
token endpoint. Rows go to <data-dir>/zerobus-local/<catalog>.<schema>.<table>.jsonl.

Options:
  --host HOST               address to bind (default 127.0.0.1)
  --port N                  gRPC port (default 50051, 0 = a free port)
  --http-port N             token endpoint / HTTP port (default 50052, 0 = a free port)
  --data-dir DIR            data root (default ./data/zerobus-local-root)
  --client-id ID            OAuth client id (default local-client)
  --client-secret SECRET    OAuth client secret (default local-secret)
  --token-ttl-s N           token lifetime in seconds (default 3600)
  --ack-latency-ms N        delay every ack by N ms
  --fail-after N            end every stream with UNAVAILABLE after N acked requests
  --close-after N           send CloseStreamSignal after N requests, end the stream OK later
  --close-duration-ms N     duration in the close signal (default 1000)
  --reject-table NAME       fail create_stream for this table (repeatable)
  --reject-rows-containing TEXT
                            refuse (INVALID_ARGUMENT) a request holding a JSON row with TEXT
  --transport h2|grpc-js    gRPC server: the built-in HTTP/2 one (default) or grpc-js
  -h, --help                show this help

HTTP: POST /oidc/v1/token, GET /tables, GET /health, GET|POST /faults.
`;

class UsageError extends Error {}

function count(name: string, value: string | undefined, max = Number.MAX_SAFE_INTEGER) {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) > max) {
    throw new UsageError(`--${name} must be an integer from 0 to ${max}, got ${value}`);
  }
  return Number(value);
}

/** Runs `zerobus-local` with its arguments; resolves to the exit code (2 on bad usage). */
export async function zerobusLocalCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        host: { type: "string" },
        port: { type: "string" },
        "http-port": { type: "string" },
        "data-dir": { type: "string" },
        "client-id": { type: "string" },
        "client-secret": { type: "string" },
        "token-ttl-s": { type: "string" },
        "ack-latency-ms": { type: "string" },
        "fail-after": { type: "string" },
        "close-after": { type: "string" },
        "close-duration-ms": { type: "string" },
        "reject-table": { type: "string", multiple: true },
        "reject-rows-containing": { type: "string" },
        transport: { type: "string" },
      },
    }).values;
  } catch (e) {
    console.error(`zerobus-local: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  let grpcPort, httpPort, tokenTtlS;
  const faults: Faults = {};
  try {
    grpcPort = count("port", parsed.port, 65535) ?? 50051;
    httpPort = count("http-port", parsed["http-port"], 65535) ?? 50052;
    tokenTtlS = count("token-ttl-s", parsed["token-ttl-s"]) ?? 3600;
    faults.ack_latency_ms = count("ack-latency-ms", parsed["ack-latency-ms"]);
    faults.fail_after = count("fail-after", parsed["fail-after"]);
    faults.close_after = count("close-after", parsed["close-after"]);
    faults.close_duration_ms = count("close-duration-ms", parsed["close-duration-ms"]);
    if (parsed["reject-table"]?.length) faults.reject_tables = parsed["reject-table"];
    if (parsed["reject-rows-containing"]) {
      faults.reject_rows_containing = parsed["reject-rows-containing"];
    }
    if (parsed.transport !== undefined && !["h2", "grpc-js"].includes(parsed.transport)) {
      throw new UsageError(`--transport must be h2 or grpc-js, got ${parsed.transport}`);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`zerobus-local: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  for (const k of Object.keys(faults) as (keyof Faults)[]) {
    if (faults[k] === undefined) delete faults[k];
  }
  const dataDir = parsed["data-dir"] ?? "./data/zerobus-local-root";
  const server = await startZerobusLocal({
    host: parsed.host ?? "127.0.0.1",
    grpcPort,
    httpPort,
    dataDir,
    clientId: parsed["client-id"],
    clientSecret: parsed["client-secret"],
    tokenTtlS,
    faults,
    log: (event) => console.error(JSON.stringify(event)),
    transport: parsed.transport as "h2" | "grpc-js" | undefined,
  });
  console.log(JSON.stringify({
    event: "ready",
    grpc_port: server.grpcPort,
    http_port: server.httpPort,
    endpoint: server.endpointUrl,
    workspace_url: server.workspaceUrl,
    data_dir: dataDir,
  }));
  await waitForSignal();
  await server.stop();
  console.error(JSON.stringify({ event: "stopped", tables: server.stats().tables }));
  return 0;
}

function waitForSignal(): Promise<void> {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  return new Promise((resolve) => {
    const onSignal = () => {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
      resolve();
    };
    for (const s of signals) Deno.addSignalListener(s, onSignal);
  });
}
