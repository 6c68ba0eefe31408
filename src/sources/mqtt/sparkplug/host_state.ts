/**
 * This source's own Sparkplug host STATE (with `sparkplug.host_id`): its Will
 * is the offline STATE; once subscribed it publishes the online STATE with the
 * Will's timestamp, republishes it (same timestamp) on seeing its own offline
 * STATE, and publishes offline with the current time on a clean stop.
 */
import type { MqttClient } from "mqtt";
import type { SourceKit } from "../../worker_kit.ts";
import { parseState, statePayload, stateTopic, stateWill } from "./state.ts";

/** How long a clean stop waits for the broker to acknowledge the offline STATE. */
const OFFLINE_STATE_WAIT_MS = 2000;

/** The STATE of the host this source is. */
export class OwnHostState {
  /** The STATE topic of this host. */
  readonly topic: string;
  /** Timestamp of this connection's Will and online STATE. */
  timestamp = Date.now();
  /** True once the online STATE of the current connection was published. */
  online = false;

  constructor(readonly hostId: string, readonly kit: SourceKit) {
    this.topic = stateTopic(hostId);
  }

  /**
   * Publishes this host's STATE (retained, QoS 1), by default with the
   * timestamp of the connection's Will (Sparkplug 3.0: the online STATE and its
   * republish carry the Will's timestamp; a clean disconnect's offline STATE the current time).
   */
  publish(c: MqttClient, isOnline: boolean, timestamp = this.timestamp): Promise<void> {
    return new Promise((resolve) => {
      c.publish(this.topic, statePayload(isOnline, timestamp), { qos: 1, retain: true }, (err) => {
        if (err) {
          this.kit.log("warning", "publishing the Sparkplug STATE failed", { error: err.message });
        }
        resolve();
      });
    });
  }

  /** Subscribed: announces the host online. */
  announceOnline(c: MqttClient): void {
    this.online = true;
    this.publish(c, true);
  }

  /** Own offline STATE seen while online: announce online again (STATE never gives readings). */
  onOwnState(payload: Uint8Array, client: MqttClient | undefined): void {
    const st = parseState(payload);
    if (!st || st.online || !this.online || !client) return;
    this.kit.log("info", "own Sparkplug STATE seen offline; republishing online", {
      topic: this.topic,
      seen_timestamp: st.timestamp,
    });
    this.publish(client, true);
  }

  /** A new session gets a new STATE timestamp, in its Will and its online STATE. */
  renewWill(c: MqttClient): void {
    this.timestamp = Date.now();
    c.options.will = stateWill(this.hostId, this.timestamp);
  }

  /**
   * A clean stop says offline itself (the Will covers a crash): publishes the
   * offline STATE with the current time if the host was announced online on a
   * connected client. The promise resolves on the broker's ack or after
   * OFFLINE_STATE_WAIT_MS; undefined when there is nothing to say.
   */
  sayOffline(c: MqttClient): Promise<void> | undefined {
    if (!this.online || !c.connected) return undefined;
    this.online = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      this.publish(c, false, Date.now()),
      new Promise<void>((r) => timer = setTimeout(r, OFFLINE_STATE_WAIT_MS)),
    ]).then(() => clearTimeout(timer));
  }
}
