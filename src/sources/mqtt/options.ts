/** mqtt.js client options from an MQTT source entry (URL, session, TLS files). */
import type { IClientOptions } from "mqtt";
import { stateWill } from "./sparkplug/state.ts";

/** The source keys the client options come from. */
export interface ClientConfig {
  name: string;
  endpoint: string;
  username?: string;
  password?: string;
  use_tls: boolean;
  ca_file?: string;
  cert_file?: string;
  key_file?: string;
  insecure: boolean;
  server_name?: string;
  mqtt_version: "5" | "3.1.1";
  qos: 0 | 1 | 2;
  client_id?: string;
  clean_session?: boolean;
  session_expiry_s: number;
  receive_maximum?: number;
  sparkplug?: { host_id?: string };
}

/** The broker URL: `use_tls` upgrades mqtt:// to mqtts:// and ws:// to wss://. */
export function brokerUrl(cfg: Pick<ClientConfig, "endpoint" | "use_tls">): string {
  if (!cfg.use_tls) return cfg.endpoint;
  return cfg.endpoint.replace(/^mqtt:\/\//, "mqtts://").replace(/^ws:\/\//, "wss://");
}

/** Client id: the configured one, else `otedge_<source name>` (stable across restarts). */
export function clientIdOf(cfg: Pick<ClientConfig, "name" | "client_id">): string {
  return cfg.client_id ?? `otedge_${cfg.name}`;
}

/**
 * Clean session: the configured value; else true for a Sparkplug primary host
 * (`sparkplug.host_id`: Sparkplug 3.0 requires it, and edge nodes store and
 * forward while the host's STATE is offline) and with QoS 0; else false
 * (a persistent session, so nothing unacknowledged is lost).
 */
export function cleanSessionOf(
  cfg: Pick<ClientConfig, "qos" | "clean_session" | "sparkplug">,
): boolean {
  return cfg.clean_session ?? (cfg.qos === 0 || cfg.sparkplug?.host_id !== undefined);
}

/**
 * Builds the mqtt.js options. Reconnection is left to the caller
 * (`reconnectPeriod: 0`) so it can use backoff with jitter. With
 * `sparkplug.host_id`, the Will is the host's offline STATE stamped `stateTimestamp`.
 */
export async function clientOptions(
  cfg: ClientConfig,
  stateTimestamp = Date.now(),
): Promise<IClientOptions> {
  const v5 = cfg.mqtt_version === "5";
  const clean = cleanSessionOf(cfg);
  const opts: IClientOptions = {
    clientId: clientIdOf(cfg),
    protocolVersion: v5 ? 5 : 4,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    keepalive: 30,
    resubscribe: false,
    rejectUnauthorized: !cfg.insecure,
  };
  // mqtt.js logs through npm:debug a dozen times per packet; skip that unless asked for.
  if (!mqttDebugWanted()) opts.log = () => {};
  if (v5) {
    opts.properties = { receiveMaximum: cfg.receive_maximum ?? 1000 };
    if (!clean) opts.properties.sessionExpiryInterval = cfg.session_expiry_s;
  }
  const hostId = cfg.sparkplug?.host_id;
  if (hostId !== undefined) opts.will = stateWill(hostId, stateTimestamp);
  if (cfg.username !== undefined) opts.username = cfg.username;
  if (cfg.password !== undefined) opts.password = cfg.password;
  if (cfg.server_name) {
    opts.servername = cfg.server_name;
    // mqtt.js hands its TLS options but not servername to the websocket
    // transport (npm:ws), which passes its options on to tls.connect.
    if (/^wss:/.test(brokerUrl(cfg))) {
      opts.wsOptions = { servername: cfg.server_name } as IClientOptions["wsOptions"];
    }
  }
  if (cfg.ca_file) opts.ca = await readPem("ca_file", cfg.ca_file);
  if (cfg.cert_file) opts.cert = await readPem("cert_file", cfg.cert_file);
  if (cfg.key_file) opts.key = await readPem("key_file", cfg.key_file);
  return opts;
}

/** True when `DEBUG` asks for mqtt.js' own log (e.g. `DEBUG=mqttjs*`). */
function mqttDebugWanted(): boolean {
  try {
    return /mqttjs|\*/.test(Deno.env.get("DEBUG") ?? "");
  } catch {
    return false; // no env permission
  }
}

/** Reads a PEM file; the error names the key and the path. */
async function readPem(key: string, path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
      ? "permission denied (the agent needs read access to it)"
      : (e as Error).message;
    throw new Error(`cannot read ${key} ${path}: ${why}`);
  }
  if (!text.includes("-----BEGIN ")) throw new Error(`${key} ${path} is not a PEM file`);
  return text;
}

/** `tls` status value when the server certificate is not verified. */
export const TLS_UNVERIFIED = "on, certificate verification OFF (insecure: true)";

/** Status details on the connection's security: TLS and its verification, client certificate. */
export function securityDetail(
  cfg: Pick<ClientConfig, "insecure" | "cert_file" | "username" | "server_name">,
  url: string,
): { tls: string; client_certificate: boolean; username: string | null; server_name?: string } {
  const tls = !/^(mqtts|wss):/.test(url)
    ? "off"
    : cfg.insecure
    ? TLS_UNVERIFIED
    : "on, server certificate verified";
  const detail = {
    tls,
    client_certificate: cfg.cert_file !== undefined,
    username: cfg.username ?? null,
  };
  return cfg.server_name && tls !== "off" ? { ...detail, server_name: cfg.server_name } : detail;
}
