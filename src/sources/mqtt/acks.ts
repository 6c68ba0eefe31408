/**
 * Acknowledgements after the spool commit, pipelined.
 *
 * mqtt.js handles one incoming packet at a time: the packet loop in
 * `MqttClient.connect` (`work` / `nextTickWork`) moves to the next parsed
 * packet only when the handler's `done` runs, and the socket's writable
 * (`_write`) is released only when the queue is empty. For a QoS 1 PUBLISH
 * (`handlers/publish.js`) `done` runs after `customHandleAcks` answered, after
 * `handleMessage` answered and after `_sendPacket(puback, done)` wrote the
 * PUBACK; for QoS 2 after `_sendPacket(pubrec, done)`. Holding the answer
 * until the spool commit therefore holds the next message too: one commit per
 * message.
 *
 * The gate separates the two: a PUBACK/PUBREC of a message registered with
 * `hold` is kept back until the message's commit promise resolves and is then
 * written (if the connection is still the same one; otherwise the broker
 * redelivers it on the persistent session), while mqtt.js is told at once
 * that it was sent, so it reads the next packet. Acknowledgements may go out
 * of order: MQTT allows that for different packet ids. At most `max` acks are
 * held; beyond that the packet loop's `done` is kept back too, so mqtt.js
 * stops reading the socket (TCP backpressure) until a commit frees a place.
 */
import type { MqttClient } from "mqtt";

/** The mqtt.js method every outgoing packet passes through (private in its typings). */
type SendPacket = (
  packet: { cmd: string; messageId?: number },
  cb?: (err?: Error) => void,
  cbStorePut?: () => void,
  noStore?: boolean,
) => void;

/** Counts of the gate, for tests and status details. */
export interface AckGateStats {
  /** Acknowledgements written after their commit. */
  sent: number;
  /** Acknowledgements dropped because their connection was gone (the broker redelivers). */
  dropped: number;
  /** Times the packet loop was paused because `max` acks were held. */
  paused: number;
  /** Most acks held at once. */
  peakHeld: number;
}

/** Holds PUBACK/PUBREC packets until their message is committed; see the module comment. */
export class AckGate {
  readonly stats: AckGateStats = { sent: 0, dropped: 0, paused: 0, peakHeld: 0 };
  readonly #commits = new Map<number, Promise<unknown>>();
  readonly #resume: Array<() => void> = [];
  #held = 0;

  constructor(readonly max: number) {}

  /** Acks held now (waiting for their commit). */
  get held(): number {
    return this.#held;
  }

  /** True when one more held ack would pause the packet loop. */
  get full(): boolean {
    return this.#held >= this.max;
  }

  /** The ack of packet `messageId` (sent by mqtt.js next) waits for `commit`. */
  hold(messageId: number, commit: Promise<unknown>): void {
    this.#commits.set(messageId, commit);
  }

  /** Wraps the client's `_sendPacket` so that held acks wait for their commit. */
  attach(client: MqttClient): void {
    const c = client as unknown as { _sendPacket: SendPacket; stream: unknown };
    const send = c._sendPacket.bind(c);
    c._sendPacket = (packet, cb, cbStorePut, noStore) => {
      const id = packet.messageId;
      const commit = id === undefined ? undefined : this.#commits.get(id);
      if (!commit || (packet.cmd !== "puback" && packet.cmd !== "pubrec")) {
        return send(packet, cb, cbStorePut, noStore);
      }
      this.#commits.delete(id!);
      this.#held++;
      this.stats.peakHeld = Math.max(this.stats.peakHeld, this.#held);
      const stream = c.stream;
      const release = () => {
        this.#held--;
        if (client.connected && c.stream === stream) {
          this.stats.sent++;
          send(packet);
        } else this.stats.dropped++;
        if (this.#held < this.max) this.#resume.splice(0).forEach((r) => r());
      };
      commit.then(release, release);
      if (this.#held < this.max) cb?.();
      else {
        this.stats.paused++;
        this.#resume.push(() => cb?.());
      }
    };
  }

  /** Forgets registered commits whose ack was never sent (connection closed). */
  reset(): void {
    this.#commits.clear();
  }
}
