/**
 * Config keys of the MQTT source. The keys every source has (name, enabled,
 * site, ...) are added in `../catalog.ts`.
 */
import { z } from "zod";
import type { SOURCE_SCHEMAS } from "../catalog.ts";

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

/** MQTT-specific keys of a source entry. */
export const mqttFields = {
  endpoint: z.string().refine(isMqttEndpoint, "expected an mqtt://, mqtts://, ws:// or wss:// URL"),
  /** Topic filters to subscribe to (`+` and `#` wildcards). */
  topics: z.array(topicFilter).min(1),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  use_tls: z.boolean().default(false),
  qos: z.literal([0, 1, 2]).default(1),
  client_id: z.string().min(1).max(256).optional(),
};

/** An MQTT source entry after validation and defaults. */
export type MqttSourceConfig = z.output<typeof SOURCE_SCHEMAS.mqtt>;
