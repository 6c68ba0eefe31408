/** Precise, actionable text for MQTT connection errors. */

const CHECK_CREDENTIALS =
  "check the source's username and password (or its ${credential:...} entry) against the broker's password file";

const V311_CONNACK: Record<number, string> = {
  1: "the broker does not accept MQTT 3.1.1 (set mqtt_version)",
  2: "the broker rejected the client id (client_id)",
  3: "the broker is unavailable",
  4: `the username or password was refused (${CHECK_CREDENTIALS})`,
  5: `not authorized: the username or password was refused, or this client is not allowed (${CHECK_CREDENTIALS}, and the broker's ACL)`,
};

const V5_CONNACK: Record<number, string> = {
  128: "unspecified error",
  129: "malformed packet",
  130: "protocol error",
  132: 'the broker does not accept MQTT 5 (set mqtt_version: "3.1.1")',
  133: "the broker rejected the client id (client_id)",
  134: `the username or password was refused (${CHECK_CREDENTIALS})`,
  135:
    `not authorized: the username or password was refused, or this client is not allowed (${CHECK_CREDENTIALS}, and the broker's ACL)`,
  136: "the broker is unavailable",
  137: "the broker is busy",
  138: "this client is banned",
  140: "bad authentication method",
  149: "packet too large",
  151: "quota exceeded",
  159: "connection rate exceeded",
};

/** TLS errors by code: what went wrong and what to check. */
const TLS_ERRORS: Record<string, string> = {
  SELF_SIGNED_CERT_IN_CHAIN: "the server certificate is signed by a CA that is not trusted",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the server certificate is signed by a CA that is not trusted",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "the server certificate is signed by a CA that is not trusted",
  UNABLE_TO_GET_ISSUER_CERT: "the server certificate is signed by a CA that is not trusted",
  DEPTH_ZERO_SELF_SIGNED_CERT: "the server certificate is self-signed and not trusted",
  CERT_HAS_EXPIRED: "the server certificate has expired",
  CERT_NOT_YET_VALID: "the server certificate is not yet valid (check the clock)",
  ERR_TLS_CERT_ALTNAME_INVALID: "the server certificate does not name this host",
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    "the broker requires a client certificate (set cert_file and key_file)",
};

const TLS_HINT =
  "set ca_file to the PEM file of the CA that signed the broker's certificate (insecure: true skips verification, for lab use only)";

const ALTNAME_HINT =
  "connect by a name the certificate carries (subjectAltName), or set server_name to that name";

/** Connection context that makes a message more precise. */
export interface ErrorContext {
  /** The configured username, if any. */
  username?: string;
}

/** Describes a client error: CONNACK refusals by code, TLS and socket errors by code. */
export function describeMqttError(
  e: unknown,
  broker: string,
  mqttVersion: "5" | "3.1.1",
  ctx: ErrorContext = {},
): string {
  const err = e as { code?: unknown; message?: string };
  const msg = err?.message ?? String(e);
  if (typeof err?.code === "number" && msg.startsWith("Connection refused")) {
    const table = mqttVersion === "5" ? V5_CONNACK : V311_CONNACK;
    const what = table[err.code] ?? `reason code ${err.code}`;
    const who = ctx.username === undefined ? "no username sent" : `username '${ctx.username}'`;
    return `broker ${broker} refused the connection (${who}): ${what} (CONNACK code ${err.code})`;
  }
  const tls = typeof err?.code === "string" ? TLS_ERRORS[err.code] : undefined;
  if (tls !== undefined) {
    const hint = err.code === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"
      ? ""
      : err.code === "ERR_TLS_CERT_ALTNAME_INVALID"
      ? `; ${ALTNAME_HINT}`
      : `; ${TLS_HINT}`;
    return `TLS certificate error with ${broker}: ${tls} (${msg})${hint}`;
  }
  if (/certificate|alert|handshake/i.test(msg) || /^ERR_(SSL|TLS)_/.test(String(err?.code))) {
    return `TLS error with ${broker}: ${msg} (check ca_file, cert_file and key_file)`;
  }
  switch (err?.code) {
    case "ECONNREFUSED":
      return `connection refused by ${broker} (is the broker running and listening there?)`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `cannot resolve the broker host of ${broker}`;
    case "ETIMEDOUT":
      return `connection to ${broker} timed out`;
    case "ECONNRESET":
      return `connection to ${broker} was reset`;
  }
  return `${broker}: ${msg}`;
}
