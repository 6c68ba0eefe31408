/**
 * Sparkplug B 3.0 host STATE messages: `spBv1.0/STATE/<host_id>`, retained,
 * QoS 1, JSON `{"online": boolean, "timestamp": ms}`. The Will carries the
 * offline message with the same timestamp as the online one of that session.
 */
import { NAMESPACE } from "./topic.ts";

/** A decoded STATE payload. */
export interface HostState {
  online: boolean;
  timestamp: number;
}

/** The STATE topic of a host id. */
export function stateTopic(hostId: string): string {
  return `${NAMESPACE}/STATE/${hostId}`;
}

/** Why a host id is unusable in a topic, or undefined when it is fine. */
export function hostIdProblem(hostId: string): string | undefined {
  if (hostId.length === 0) return "host_id must not be empty";
  if (["/", "+", "#", "\u0000"].some((c) => hostId.includes(c))) {
    return "host_id must not contain '/', '+', '#' or NUL";
  }
  return undefined;
}

/** The JSON payload of a STATE message. */
export function statePayload(online: boolean, timestamp: number): string {
  return JSON.stringify({ online, timestamp });
}

/** Decodes a STATE payload; undefined when it is not `{"online": bool, "timestamp": number}`. */
export function parseState(payload: Uint8Array): HostState | undefined {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const { online, timestamp } = v as Record<string, unknown>;
  if (typeof online !== "boolean" || typeof timestamp !== "number") return undefined;
  return { online, timestamp };
}

/** The retained QoS 1 Will announcing the host offline (mqtt.js `will` option). */
export function stateWill(hostId: string, timestamp: number) {
  return {
    topic: stateTopic(hostId),
    payload: statePayload(false, timestamp),
    qos: 1 as const,
    retain: true,
  };
}
