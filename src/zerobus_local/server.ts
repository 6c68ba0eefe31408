/**
 * Local stand-in for Databricks Zerobus ingest: a plaintext gRPC server with the
 * `databricks.zerobus.Zerobus/EphemeralStream` method, writing accepted rows to
 * `<dataDir>/zerobus-local/<catalog>.<schema>.<table>.jsonl`, plus an HTTP server
 * with the OAuth token endpoint the client needs. For the demo, tests and field
 * checks without a workspace.
 */
import { join } from "node:path";
import type { CallServer, ServerCall } from "./call.ts";
import { type Faults, type FaultsUpdate, mergeFaults } from "./faults.ts";
import { makeHttpHandler } from "./http.ts";
import { TokenStore } from "./oauth.ts";
import { serveGrpcJs } from "./grpcjs_transport.ts";
import { serveH2Grpc } from "./h2c_server.ts";
import { StreamSession } from "./stream.ts";
import { type TableStats, TableWriter } from "./table_writer.ts";

export type { Faults, FaultsUpdate } from "./faults.ts";
export type { TableStats } from "./table_writer.ts";

/** Options of `startZerobusLocal`. */
export interface ZerobusLocalOptions {
  /** Address both servers bind (default 127.0.0.1). */
  host?: string;
  /** gRPC port (default 0 = a free port). */
  grpcPort?: number;
  /** HTTP (token endpoint) port (default 0 = a free port). */
  httpPort?: number;
  /** Root data directory; files go in `<dataDir>/zerobus-local/` (default ./data/zerobus-local-root). */
  dataDir?: string;
  /** OAuth client id accepted by the token endpoint (default "local-client"). */
  clientId?: string;
  /** OAuth client secret (default "local-secret"). */
  clientSecret?: string;
  /** Lifetime of issued tokens in seconds (default 3600). */
  tokenTtlS?: number;
  /** Faults active from the start. */
  faults?: Faults;
  /** Receives one event object per stream created / ended / close signal. */
  log?: (event: Record<string, unknown>) => void;
  /**
   * gRPC transport: "h2" (default, the stand-in's own HTTP/2 server) or "grpc-js"
   * (grpc-js on Deno's node:http2, which can crash the process; see README.md).
   */
  transport?: "h2" | "grpc-js";
  /** Largest request message accepted (default 4 MiB, like gRPC servers). */
  maxMessageBytes?: number;
}

/** Counters and settings of a running stand-in. */
export interface ZerobusLocalStats {
  tables: Record<string, TableStats>;
  open_streams: number;
  tokens_issued: number;
  faults: Faults;
}

/** A running stand-in. */
export interface ZerobusLocal {
  grpcPort: number;
  httpPort: number;
  /** Zerobus endpoint for clients, `http://<host>:<grpcPort>`. */
  endpointUrl: string;
  /** Workspace URL for OAuth, `http://<host>:<httpPort>`. */
  workspaceUrl: string;
  /** Directory holding the `<table>.jsonl` files. */
  filesDir: string;
  /** Path of the JSON-lines file of a table. */
  tableFile(table: string): string;
  /** Table counters, open streams, tokens issued and active faults. */
  stats(): ZerobusLocalStats;
  /** Changes faults (a field set to null clears it); returns the active faults. */
  setFaults(update: FaultsUpdate): Faults;
  /** Ends all streams, stops both servers, flushes and closes the files. */
  stop(): Promise<void>;
}

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** Starts the gRPC and HTTP servers; resolves once both listen. */
export async function startZerobusLocal(opts: ZerobusLocalOptions = {}): Promise<ZerobusLocal> {
  const host = opts.host ?? "127.0.0.1";
  const filesDir = join(opts.dataDir ?? "./data/zerobus-local-root", "zerobus-local");
  await Deno.mkdir(filesDir, { recursive: true });
  const log = opts.log ?? (() => {});
  let faults: Faults = mergeFaults({}, opts.faults ?? {});
  const tokens = new TokenStore();
  const writers = new Map<string, TableWriter>();
  const sessions = new Set<StreamSession>();
  const tableFile = (table: string) => join(filesDir, `${table}.jsonl`);

  const ctx = {
    tokens,
    sessions,
    log,
    faults: () => faults,
    writerFor(table: string): TableWriter {
      let w = writers.get(table);
      if (!w) {
        w = new TableWriter(tableFile(table));
        writers.set(table, w);
      }
      return w;
    },
  };
  const setFaults = (update: FaultsUpdate) => {
    faults = mergeFaults(faults, update);
    log({ event: "faults", faults });
    return faults;
  };
  const tables = () => {
    const out: Record<string, TableStats> = {};
    for (const [name, w] of writers) out[name] = { ...w.stats };
    return out;
  };

  const onCall = (call: ServerCall) => new StreamSession(ctx, call).start();
  const transportOpts = {
    hostname: host,
    port: opts.grpcPort ?? 0,
    onCall,
    maxMessageBytes: opts.maxMessageBytes,
  };
  const grpcServer: CallServer = opts.transport === "grpc-js"
    ? await serveGrpcJs(transportOpts)
    : serveH2Grpc(transportOpts);
  const grpcPort = grpcServer.port;

  let http: Deno.HttpServer<Deno.NetAddr>;
  try {
    http = Deno.serve(
      {
        hostname: host,
        port: opts.httpPort ?? 0,
        onListen: () => {},
      },
      makeHttpHandler({
        token: {
          clientId: opts.clientId ?? "local-client",
          clientSecret: opts.clientSecret ?? "local-secret",
          ttlS: opts.tokenTtlS ?? 3600,
        },
        tokens,
        tables,
        faults: () => faults,
        setFaults,
      }),
    );
  } catch (e) {
    await grpcServer.close();
    throw e;
  }
  const httpPort = http.addr.port;

  let stopping: Promise<void> | null = null;
  return {
    grpcPort,
    httpPort,
    endpointUrl: `http://${urlHost(host)}:${grpcPort}`,
    workspaceUrl: `http://${urlHost(host)}:${httpPort}`,
    filesDir,
    tableFile,
    stats: () => ({
      tables: tables(),
      open_streams: sessions.size,
      tokens_issued: tokens.issued,
      faults,
    }),
    setFaults,
    stop() {
      stopping ??= (async () => {
        for (const s of [...sessions]) s.abort();
        await grpcServer.close();
        await Promise.all([...writers.values()].map((w) => w.close()));
        await http.shutdown();
      })();
      return stopping;
    },
  };
}
