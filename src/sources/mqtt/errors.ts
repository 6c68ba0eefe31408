/** Precise, actionable text for MQTT connection errors. */

const V311_CONNACK: Record<number, string> = {
  1: "the broker does not accept MQTT 3.1.1 (set mqtt_version)",
  2: "the broker rejected the client id (client_id)",
  3: "the broker is unavailable",
  4: "bad username or password (check username/password)",
  5: "not authorized (check the broker's ACL for this user)",
};

const V5_CONNACK: Record<number, string> = {
  128: "unspecified error",
  129: "malformed packet",
  130: "protocol error",
  132: 'the broker does not accept MQTT 5 (set mqtt_version: "3.1.1")',
  133: "the broker rejected the client id (client_id)",
  134: "bad username or password (check username/password)",
  135: "not authorized (check the broker's ACL for this user)",
  136: "the broker is unavailable",
  137: "the broker is busy",
  138: "this client is banned",
  140: "bad authentication method",
  149: "packet too large",
  151: "quota exceeded",
  159: "connection rate exceeded",
};

/** Describes a client error: CONNACK refusals by code, socket errors by errno name. */
export function describeMqttError(e: unknown, broker: string, mqttVersion: "5" | "3.1.1"): string {
  const err = e as { code?: unknown; message?: string };
  const msg = err?.message ?? String(e);
  if (typeof err?.code === "number" && msg.startsWith("Connection refused")) {
    const table = mqttVersion === "5" ? V5_CONNACK : V311_CONNACK;
    const what = table[err.code] ?? `reason code ${err.code}`;
    return `broker ${broker} refused the connection: ${what} (CONNACK code ${err.code})`;
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
