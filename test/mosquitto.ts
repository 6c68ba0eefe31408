/**
 * Starts a Mosquitto broker for a test on a free 127.0.0.1 port (optionally
 * with a password file or TLS, certificates made with openssl) and stops it by
 * pid; runs an MQTT source in its Worker under a SourceHost.
 */
import mqtt from "mqtt";
import { freePort, waitFor } from "./helpers.ts";
import { loadConfigValue } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { type BatchHandler, SourceHost, type SourceStatus } from "../src/sources/host.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";

const CANDIDATES = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];

/** Path of the mosquitto binary, or undefined when it is not installed. */
export function mosquittoPath(): string | undefined {
  for (const p of CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** A running broker. */
export interface Mosquitto {
  port: number;
  url: string;
  /** `ws://` or `wss://` URL of the websockets listener, when one was asked for. */
  wsUrl?: string;
  pid: number;
  /** SIGTERM, then removes its folder. */
  stop(): Promise<void>;
  /** SIGKILL (no clean shutdown), then removes its folder. */
  kill(): Promise<void>;
}

/** How the test broker's listener is set up. */
export interface MosquittoOptions {
  /** Default true; false requires a username and password (set `passwordFile`). */
  anonymous?: boolean;
  /** A file made by `mosquitto_passwd`. */
  passwordFile?: string;
  /** A TLS listener with these PEM files; `requireCertificate` asks for a client certificate. */
  tls?: { ca: string; cert: string; key: string; requireCertificate?: boolean };
  /**
   * A second listener with `protocol websockets` on its own free port: `ws`,
   * or `wss` with the `tls` files (which then secure both listeners).
   */
  websockets?: "ws" | "wss";
  /** The plain listener's port (default: a free one), e.g. to start again where a killed broker was. */
  port?: number;
}

/**
 * Starts mosquitto with `listener <port> 127.0.0.1` (anonymous access unless
 * told otherwise, TLS when `opts.tls` is set); waits until it listens.
 */
export async function startMosquitto(
  extraConfig = "",
  opts: MosquittoOptions = {},
): Promise<Mosquitto> {
  const bin = mosquittoPath();
  if (!bin) throw new Error("mosquitto is not installed");
  const dir = await Deno.makeTempDir({ prefix: "mosquitto_" });
  const port = opts.port ?? freePort();
  const wsPort = opts.websockets ? freePort() : undefined;
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    listenerConfig(port, opts) + websocketsConfig(wsPort, opts) + extraConfig,
  );
  const child = new Deno.Command(bin, { args: ["-c", conf], stdout: "null", stderr: "null" })
    .spawn();
  const status = child.status;
  let exited = false;
  status.then(() => (exited = true));
  try {
    await waitForPort(port, () => exited);
    if (wsPort !== undefined) await waitForPort(wsPort, () => exited);
  } catch (e) {
    if (!exited) child.kill("SIGKILL");
    await status;
    throw e;
  }
  return {
    port,
    url: `${opts.tls ? "mqtts" : "mqtt"}://127.0.0.1:${port}`,
    wsUrl: wsPort === undefined ? undefined : `${opts.websockets}://127.0.0.1:${wsPort}`,
    pid: child.pid,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
  };

  async function end(signal: Deno.Signal): Promise<void> {
    if (!exited) Deno.kill(child.pid, signal);
    await status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function listenerConfig(port: number, opts: MosquittoOptions): string {
  const lines = [
    `listener ${port} 127.0.0.1`,
    `allow_anonymous ${opts.anonymous ?? true}`,
    "persistence false",
  ];
  // As root mosquitto would switch to the `mosquitto` user, which cannot read our temp files.
  if (runsAsRoot()) lines.push("user root");
  if (opts.passwordFile) lines.push(`password_file ${opts.passwordFile}`);
  if (opts.tls) {
    lines.push(`cafile ${opts.tls.ca}`, `certfile ${opts.tls.cert}`, `keyfile ${opts.tls.key}`);
    lines.push(`require_certificate ${opts.tls.requireCertificate ?? false}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * The websockets listener. Mosquitto 2.0.11 hands a websockets listener's
 * address to libwebsockets, which binds every interface unless the socket
 * domain is IPv4 too (then 127.0.0.1 only); and it refuses to start with a
 * websockets listener alone, so the plain listener stays first.
 */
function websocketsConfig(port: number | undefined, opts: MosquittoOptions): string {
  if (port === undefined) return "";
  const lines = [`listener ${port} 127.0.0.1`, "socket_domain ipv4", "protocol websockets"];
  if (opts.websockets === "wss") {
    if (!opts.tls) throw new Error("a wss listener needs the tls files");
    lines.push(`cafile ${opts.tls.ca}`, `certfile ${opts.tls.cert}`, `keyfile ${opts.tls.key}`);
    lines.push(`require_certificate ${opts.tls.requireCertificate ?? false}`);
  }
  return lines.join("\n") + "\n";
}

/** Waits until 127.0.0.1:`port` accepts connections (fails when `exited()` says so). */
function waitForPort(port: number, exited: () => boolean): Promise<unknown> {
  return waitFor(
    async () => {
      if (exited()) throw new Error("mosquitto exited at start");
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    },
    `mosquitto on port ${port}`,
  );
}

function runsAsRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** Path of a tool in the usual places, or undefined when it is not installed. */
export function toolPath(name: string): string | undefined {
  for (const dir of ["/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin", "/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

async function run(bin: string, args: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(bin, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${bin} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Writes a Mosquitto password file with one user (needs `mosquitto_passwd`). */
export async function writePasswordFile(path: string, user: string, pass: string): Promise<void> {
  const bin = toolPath("mosquitto_passwd");
  if (!bin) throw new Error("mosquitto_passwd is not installed");
  await run(bin, ["-b", "-c", path, user, pass]);
}

/** PEM files of a test CA, a server certificate for 127.0.0.1/localhost and a client certificate. */
export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

const CA_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = otedge test CA
[v3]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

const LEAF_CNF = (cn: string, ext: string) =>
  `[req]
distinguished_name = dn
prompt = no
[dn]
CN = ${cn}
[v3]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
${ext}
`;

/**
 * Generates a CA and certificates signed by it with openssl into `dir` (EC P-256, 2 days).
 * `serverAltNames` are the server certificate's subjectAltName entries.
 */
export async function makeTestCerts(
  dir: string,
  serverAltNames = "IP:127.0.0.1,DNS:localhost",
): Promise<TestCerts> {
  const bin = toolPath("openssl");
  if (!bin) throw new Error("openssl is not installed");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await Deno.writeTextFile(`${dir}/ca.cnf`, CA_CNF);
  await run(bin, [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-config",
    "ca.cnf",
    "-extensions",
    "v3",
  ], dir);
  const leaf = async (name: string, cn: string, ext: string) => {
    await Deno.writeTextFile(`${dir}/${name}.cnf`, LEAF_CNF(cn, ext));
    await run(bin, [
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-config",
      `${name}.cnf`,
    ], dir);
    await run(bin, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.cnf`,
      "-extensions",
      "v3",
    ], dir);
  };
  await leaf(
    "server",
    "localhost",
    `extendedKeyUsage = serverAuth\nsubjectAltName = ${serverAltNames}`,
  );
  await leaf("client", "otedge test client", "extendedKeyUsage = clientAuth");
  return {
    dir,
    ca: `${dir}/ca.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
  };
}

/** A record row as the source sent it. */
export type Row = Record<string, unknown>;

/** An MQTT source running in its Worker under a SourceHost. */
export interface Running {
  host: SourceHost;
  rows: Row[];
  /** Batches the source sent (each one a spool commit in the agent). */
  batches: number;
  deadLetters: Array<{ reason: string; item: string; detail?: Record<string, unknown> }>;
  status(): SourceStatus;
}

/** Starts one MQTT source (validated through the config schema) under a SourceHost. */
export async function runSource(
  source: Record<string, unknown>,
  answer: (rows: Row[]) => Promise<boolean> = () => Promise.resolve(true),
): Promise<Running> {
  const res = loadConfigValue({ sources: [{ name: "m", protocol: "mqtt", ...source }] }, {
    env: {},
  });
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const rows: Row[] = [];
  const deadLetters: Running["deadLetters"] = [];
  const dec = new TextDecoder();
  const running = { rows, deadLetters, batches: 0 } as Running;
  const onBatch: BatchHandler = (_src, batch) => {
    const got = [...splitRows(batch.rows)].map((r) => JSON.parse(dec.decode(r)) as Row);
    rows.push(...got);
    running.batches++;
    return answer(got);
  };
  const host = new SourceHost(
    onBatch,
    (_name, reason, item, detail) => deadLetters.push({ reason, item, detail }),
    createLogger("error", "test", () => {}),
    {
      dataDir: "/tmp",
      normalization: res.config.normalization,
      maxRows: 100,
      recordType: () => "json",
      workerUrl: () => new URL("../src/sources/mqtt/worker.ts", import.meta.url),
    },
  );
  await host.start(res.config.sources[0] as never);
  return Object.assign(running, { host, status: () => host.status().m });
}

/** A plain MQTT 5 client for publishing test messages. */
export async function publisher(url: string, opts: mqtt.IClientOptions = {}) {
  return await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...opts });
}

/** Waits until the source is connected and subscribed. */
export function connected(r: Running) {
  return waitFor(
    () => r.status()?.state === "connected" && r.status().detail.subscriptions,
    "the source connected and subscribed",
  );
}

/** A retained message as a fresh subscriber receives it. */
export interface Retained {
  payload: Uint8Array;
  retain: boolean;
}

/**
 * Subscribes a fresh client to `topic` and returns the first message it gets
 * within `waitMs` (a retained one arrives at once), or undefined.
 */
export async function retainedOn(
  url: string,
  topic: string,
  waitMs = 500,
): Promise<Retained | undefined> {
  const probe = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const got = new Promise<Retained | undefined>((resolve) => {
      probe.on(
        "message",
        (_t, payload, packet) =>
          resolve({ payload: new Uint8Array(payload), retain: packet.retain }),
      );
      timer = setTimeout(() => resolve(undefined), waitMs);
    });
    await probe.subscribeAsync(topic, { qos: 1 });
    return await got;
  } finally {
    clearTimeout(timer);
    await probe.endAsync();
  }
}
