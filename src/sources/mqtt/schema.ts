/**
 * Config keys of the MQTT source. The keys every source has (name, enabled,
 * site, ...) are added in `../catalog.ts`.
 */
import { z } from "zod";
import type { SOURCE_SCHEMAS } from "../catalog.ts";
import { topicTemplateProblem } from "./topics.ts";
import { hostIdProblem } from "./sparkplug/state.ts";

const ENDPOINT =
  /^(?:mqtts?|wss?):\/\/(?:\[[0-9A-Fa-f:.]+\]|[^\s/:?#[\]@]+)(?::(\d{1,5}))?(?:\/\S*)?$/;

/** True for `mqtt://`, `mqtts://`, `ws://` or `wss://` URLs with a valid port. */
export function isMqttEndpoint(value: string): boolean {
  const m = ENDPOINT.exec(value);
  return m !== null && (m[1] === undefined || (Number(m[1]) >= 1 && Number(m[1]) <= 65535));
}

/**
 * Why a topic filter is invalid, or undefined when it is valid: `#` only as
 * the whole last level, `+` only as a whole level.
 */
export function topicFilterProblem(filter: string): string | undefined {
  if (filter.length === 0) return "topic filter must not be empty";
  if (filter.includes("\u0000")) return "topic filter must not contain NUL";
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      return `'#' must be a whole level at the end of the filter: ${filter}`;
    }
    if (level.includes("+") && level !== "+") {
      return `'+' must be a whole level: ${filter}`;
    }
  }
  return undefined;
}

const topicFilter = z.string().superRefine((value, ctx) => {
  const problem = topicFilterProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

const topicTemplate = z.string().superRefine((value, ctx) => {
  const problem = topicTemplateProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/** A dotted field path in a JSON payload: `value`, `data.temp`, `values.0.v`. */
const fieldPath = z.string().regex(
  /^[^.\s]+(\.[^.\s]+)*$/,
  "expected a dotted path like data.value",
);

/** How payloads are read (see `payload.ts`). */
export const payloadSchema = z.strictObject({
  format: z.enum(["auto", "json", "text", "bytes"]).default("auto"),
  value_path: fieldPath.optional(),
  timestamp_path: fieldPath.optional(),
  quality_path: fieldPath.optional(),
  unit_path: fieldPath.optional(),
});

/** Sparkplug B host application settings (messages on `spBv1.0/` topics). */
export const sparkplugSchema = z.strictObject({
  /** Publishes the host's STATE (`spBv1.0/STATE/<host_id>`) with a Will when set. */
  host_id: z.string().superRefine((value, ctx) => {
    const problem = hostIdProblem(value);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  }).optional(),
  /** Which Sparkplug name fills which ISA-95 context field (default area/line/equipment). */
  context_mapping: z.partialRecord(
    z.enum(["site", "area", "line", "equipment"]),
    z.enum(["group", "edge_node", "device"]),
  ).optional(),
  /** At most one rebirth request per edge node within this many ms. */
  rebirth_interval_ms: z.number().multipleOf(1).min(0).default(5000),
  /**
   * Sparkplug 3.0 "Reorder Timeout": messages ahead of the expected seq wait this
   * long for the missing ones before a rebirth is requested; 0 requests it at once.
   */
  reorder_timeout_ms: z.number().multipleOf(1).min(0).max(600_000).default(2000),
});

/** MQTT-specific keys of a source entry. */
export const mqttFields = {
  endpoint: z.string().refine(isMqttEndpoint, "expected an mqtt://, mqtts://, ws:// or wss:// URL"),
  /** Topic filters to subscribe to (`+` and `#` wildcards). */
  topics: z.array(topicFilter).min(1),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  /** Upgrades mqtt:// to mqtts:// and ws:// to wss:// (same host and port). */
  use_tls: z.boolean().default(false),
  /** PEM files: CA bundle to trust, client certificate and key (mutual TLS). */
  ca_file: z.string().min(1).optional(),
  cert_file: z.string().min(1).optional(),
  key_file: z.string().min(1).optional(),
  /**
   * TLS server name (SNI, and the name the broker's certificate must carry) when
   * it differs from the endpoint's host, e.g. an IP endpoint with a certificate for a DNS name.
   */
  server_name: z.string().regex(
    /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/,
    "expected a DNS name like broker.plant.local",
  ).optional(),
  /** Accept any server certificate (testing only). */
  insecure: z.boolean().default(false),
  /** MQTT protocol version: 5 (default) or 3.1.1. */
  mqtt_version: z.enum(["5", "3.1.1"]).default("5"),
  qos: z.literal([0, 1, 2]).default(1),
  /** Defaults to `otedge_<source name>`; keep it stable for a persistent session. */
  client_id: z.string().min(1).max(256).optional(),
  /** Default: false with QoS 1 or 2 (the broker keeps unacknowledged messages), else true. */
  clean_session: z.boolean().optional(),
  /**
   * QoS 1/2 messages received and not yet acknowledged (waiting for the spool
   * commit), at most; sent to the broker as MQTT 5 Receive Maximum.
   */
  receive_maximum: z.number().multipleOf(1).min(1).max(65535).default(1000),
  /** How long the broker keeps a persistent session after a disconnect (MQTT 5). */
  session_expiry_s: z.number().multipleOf(1).min(0).max(4294967295).default(86400),
  /** Topic → tag mapping, e.g. `plant/{site}/{area}/{line}/{equipment}/{tag_name}`. */
  topic_template: topicTemplate.optional(),
  payload: payloadSchema.default(() => ({ format: "auto" as const })),
  /** Retained messages (old values replayed on subscribe) get quality uncertain. */
  retained_as_uncertain: z.boolean().default(true),
  /** Values whose own timestamp is older than this many seconds get quality uncertain. */
  stale_after_s: z.number().positive().optional(),
  /** Larger payloads go to the dead-letter store. */
  max_payload_bytes: z.number().multipleOf(1).min(1).max(268435455).default(1_048_576),
  sparkplug: sparkplugSchema.optional(),
};

/**
 * Cross-key checks of an MQTT source entry: a client certificate needs its
 * key, and the other way round.
 */
export function checkMqtt(
  entry: { cert_file?: string; key_file?: string },
  ctx: z.RefinementCtx,
): void {
  if ((entry.cert_file === undefined) !== (entry.key_file === undefined)) {
    const missing = entry.cert_file === undefined ? "cert_file" : "key_file";
    ctx.addIssue({
      code: "custom",
      path: [missing],
      message: "cert_file and key_file go together (mutual TLS)",
    });
  }
}

/** An MQTT source entry after validation and defaults. */
export type MqttSourceConfig = z.output<typeof SOURCE_SCHEMAS.mqtt>;
