/**
 * The state one MQTT source shares between the modules of its Worker
 * (`worker.ts`, `hooks.ts`, `handle.ts`, `commits.ts`,
 * `sparkplug/reorder_acks.ts`, `sparkplug/host_state.ts`).
 */
import type { MqttClient } from "mqtt";
import type { SourceKit } from "../worker_kit.ts";
import type { MqttSourceConfig } from "./schema.ts";

/** What one MQTT source holds while it runs. */
export interface MqttRun {
  readonly cfg: MqttSourceConfig;
  readonly kit: SourceKit;
  /** The broker URL (`brokerUrl`). */
  readonly url: string;
  /** The client in use; only this one may reconnect. Unset by stop(). */
  client?: MqttClient;
  /** Set by stop(): no more acks, timers or reconnects. */
  stopping: boolean;
}
