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
 * that it was sent, so it reads the next packet. The acks waiting for the
 * same commit (a spool batch holds many messages) form one group with one
 * promise reaction and go out together in one socket write (encoded here,
 * 4 bytes each). Acknowledgements may go out of order: MQTT allows that for
 * different packet ids. At most `max` acks are held; beyond that the packet loop's `done` is kept back too, so mqtt.js
 * stops reading the socket (TCP backpressure) until a commit frees a place.
 */
import { Buffer } from "node:buffer";
import type { MqttClient } from "mqtt";

/** The mqtt.js method every outgoing packet passes through (private in its typings). */
type SendPacket = (
  packet: { cmd: string; messageId?: number },
  cb?: (err?: Error) => void,
  cbStorePut?: () => void,
  noStore?: boolean,
) => void;

/** The client's socket stream (a node stream). */
type AckStream = { cork?: () => void; uncork?: () => void; write?: (b: Uint8Array) => boolean };

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

/** An acknowledgement kept back, as mqtt.js handed it to `_sendPacket`. */
export type HeldAck = {
  cmd: string;
  messageId?: number;
  reasonCode?: number;
  properties?: unknown;
};

/** First byte (packet type, flags 0) of the acks written directly. */
const ACK_TYPE: Record<string, number> = { puback: 0x40, pubrec: 0x50 };

/**
 * PUBACK/PUBREC packets as bytes, one after the other: type, remaining
 * length 2, packet id. The same in MQTT 3.1.1 and 5 (MQTT 5 omits reason
 * code 0 when there are no properties, 3.4.2.1 and 3.5.2.1). Undefined when
 * one of them carries more (a reason code, properties).
 */
export function encodeAcks(acks: readonly HeldAck[]): Uint8Array | undefined {
  const out = Buffer.allocUnsafe(acks.length * 4);
  for (let i = 0, o = 0; i < acks.length; i++, o += 4) {
    const a = acks[i];
    const type = ACK_TYPE[a.cmd];
    if (type === undefined || a.messageId === undefined || a.reasonCode || a.properties) {
      return undefined;
    }
    out[o] = type;
    out[o + 1] = 2;
    out[o + 2] = a.messageId >> 8;
    out[o + 3] = a.messageId & 0xff;
  }
  return out;
}

const isAck = (cmd: string) => cmd === "puback" || cmd === "pubrec";

/** The acks of one connection waiting for one commit. */
interface AckGroup {
  acks: HeldAck[];
  /** The connection's stream: acks go out only on it. */
  stream: unknown;
  settled: boolean;
}

/** Holds PUBACK/PUBREC packets until their message is committed; see the module comment. */
export class AckGate {
  readonly stats: AckGateStats = { sent: 0, dropped: 0, paused: 0, peakHeld: 0 };
  readonly #commits = new Map<number, Promise<unknown>>();
  /** Held acks by the commit they wait for: many messages share one spool commit. */
  readonly #waiting = new Map<Promise<unknown>, AckGroup>();
  readonly #resume: Array<() => void> = [];
  readonly #swallowed = new Set<number>();
  #held = 0;
  /** Writes a group of acks on a connection of the attached client (set by `attach`). */
  #send: (acks: HeldAck[], stream: AckStream) => void = () => {};
  #client: MqttClient | undefined;

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
    const c = client as unknown as { _sendPacket: SendPacket; stream: AckStream };
    const send = c._sendPacket.bind(c);
    this.#client = client;
    c._sendPacket = (packet, cb, cbStorePut, noStore) => {
      const id = packet.messageId;
      if (id !== undefined && isAck(packet.cmd) && this.#swallowed.delete(id)) return cb?.();
      const commit = id === undefined ? undefined : this.#commits.get(id);
      if (!commit || !isAck(packet.cmd)) {
        return send(packet, cb, cbStorePut, noStore);
      }
      this.#commits.delete(id!);
      this.#enqueue(packet, commit, c.stream);
      if (this.#held < this.max) cb?.();
      else {
        this.stats.paused++;
        this.#resume.push(() => cb?.());
      }
    };
    this.#send = (acks, stream) => {
      // One write for the whole group (mqtt.js would write each ack as
      // several chunks through its stream machinery).
      const bytes = encodeAcks(acks);
      if (bytes && stream.write) {
        stream.write(bytes);
        return;
      }
      stream.cork?.();
      for (const ack of acks) send(ack);
      stream.uncork?.();
    };
  }

  /**
   * The PUBACK of a QoS 1 message our reader took off `stream` (not through
   * mqtt.js) goes out once `commit` resolves (at once without one), if
   * `stream` is still the client's connection.
   */
  ackAfter(messageId: number, commit: Promise<unknown> | undefined, stream: unknown): void {
    this.#enqueue({ cmd: "puback", messageId }, commit ?? Promise.resolve(), stream);
  }

  /**
   * The PUBACK/PUBREC mqtt.js sends next for packet `messageId` is never
   * written (a stopping source; the broker keeps the message); mqtt.js is
   * told it was sent.
   */
  swallow(messageId: number): void {
    this.#swallowed.add(messageId);
  }

  /** Lets everything that waits for room go on (a stopping source: nothing is acked any more). */
  wake(): void {
    this.#resume.splice(0).forEach((r) => r());
  }

  /** Resolves once fewer than `max` acks are held. */
  whenRoom(): Promise<void> {
    if (this.#held < this.max) return Promise.resolve();
    this.stats.paused++;
    return new Promise((r) => this.#resume.push(r));
  }

  /** Adds an ack to the group of acks of `stream` waiting for `commit`. */
  #enqueue(ack: HeldAck, commit: Promise<unknown>, stream: unknown): void {
    this.#held++;
    if (this.#held > this.stats.peakHeld) this.stats.peakHeld = this.#held;
    let group = this.#waiting.get(commit);
    if (!group || group.stream !== stream) {
      const g: AckGroup = { acks: [], stream, settled: false };
      const release = () => {
        const c = this.#client as unknown as
          | { connected: boolean; disconnecting: boolean; stream: unknown }
          | undefined;
        // Not after a DISCONNECT (a stopping source): the broker redelivers those messages.
        const open = c?.connected === true && !c.disconnecting && c.stream === g.stream;
        this.#release(commit, g, open);
      };
      commit.then(release, release);
      this.#waiting.set(commit, group = g);
    }
    group.acks.push(ack);
  }

  /** Writes the acks that waited for `commit` (if their connection is still up). */
  #release(commit: Promise<unknown>, g: AckGroup, sameConnection: boolean): void {
    if (this.#waiting.get(commit) === g) this.#waiting.delete(commit);
    if (g.settled) return;
    this.#settle(g);
    if (sameConnection) {
      this.stats.sent += g.acks.length;
      this.#send(g.acks, g.stream as AckStream);
    } else this.stats.dropped += g.acks.length;
    if (this.#held < this.max) this.#resume.splice(0).forEach((r) => r());
  }

  #settle(g: AckGroup): void {
    g.settled = true;
    this.#held -= g.acks.length;
  }

  /**
   * The connection closed: forgets registered commits whose ack was never
   * sent and drops the held acks (the broker redelivers their messages).
   */
  reset(): void {
    this.#commits.clear();
    this.#swallowed.clear();
    for (const g of this.#waiting.values()) {
      this.#settle(g);
      this.stats.dropped += g.acks.length;
    }
    this.#waiting.clear();
    if (this.#held < this.max) this.#resume.splice(0).forEach((r) => r());
  }
}
