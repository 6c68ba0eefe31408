/**
 * One MQTT message → readings emitted, or a dead letter: Sparkplug B on its
 * namespace (through the host application), else the payload rules. Returns
 * what the message's acknowledgement waits for: the spool commit of its
 * readings, the dead letter being stored, or its release from the Sparkplug
 * reorder buffer.
 */
import type { IPublishPacket } from "mqtt";
import type { Reading } from "../worker_protocol.ts";
import type { BatchCommits } from "./commits.ts";
import { compileMessageReader, type MessageFlags } from "./messages.ts";
import type { MqttRun } from "./run.ts";
import type { HostResult, SparkplugHost } from "./sparkplug/host.ts";
import type { OwnHostState } from "./sparkplug/host_state.ts";
import type { ReorderAcks } from "./sparkplug/reorder_acks.ts";
import { NAMESPACE } from "./sparkplug/topic.ts";

const PREVIEW_CHARS = 2000;

/** The readings of a message (and what its ack waits for), or why it is a dead letter. */
type Readings =
  | { ok: true; readings: Reading[]; held?: Promise<void>; out?: HostResult }
  | { ok: false; reason: string; held?: Promise<void> };

/** The parts of the source a message handler works with. */
export interface HandlerParts {
  commits: BatchCommits;
  sparkplug: SparkplugHost;
  reorder: ReorderAcks;
  /** This host's STATE (with `sparkplug.host_id`). */
  own?: OwnHostState;
}

/** Turns messages into readings or dead letters; see the module comment. */
export class MessageHandler {
  readonly #read: ReturnType<typeof compileMessageReader>;
  readonly #preview = new TextDecoder();

  constructor(readonly run: MqttRun, readonly parts: HandlerParts) {
    this.#read = compileMessageReader(run.cfg);
  }

  /**
   * Handles a message; a bug (not bad input) keeps the message as a dead
   * letter. Returns the promise its ack waits for, or undefined when it may be
   * acknowledged at once.
   */
  handleSafely(
    topic: string,
    payload: Uint8Array,
    packet: IPublishPacket,
  ): Promise<void> | undefined {
    try {
      return this.#handle(topic, payload, packet);
    } catch (e) {
      return this.#deadLetter(`handling the message failed: ${e}`, topic, payload, packet);
    }
  }

  /** Emits a message's readings (or dead-letters it). */
  #handle(topic: string, payload: Uint8Array, packet: IPublishPacket): Promise<void> | undefined {
    const { kit } = this.run;
    const { commits, reorder } = this.parts;
    const flags = { qos: packet.qos, retain: packet.retain === true };
    const res = this.#readingsOf(topic, payload, flags);
    if (!res.ok) return this.#deadLetter(res.reason, topic, payload, packet);
    for (const r of res.readings) kit.emit(r);
    let commit: Promise<void> | undefined;
    const commitOnce = () => commit ??= commits.committed(topic);
    if (res.out) reorder.settle(res.out, commitOnce);
    if (res.readings.length === 0) return res.held ?? commit;
    if (flags.qos > 0) commits.flushSoon();
    return commitOnce();
  }

  /**
   * Readings of one message: none over `max_payload_bytes` (any topic), Sparkplug
   * B on its namespace, else the payload rules.
   */
  #readingsOf(topic: string, payload: Uint8Array, flags: MessageFlags): Readings {
    const max = this.run.cfg.max_payload_bytes;
    if (payload.length > max) {
      return {
        ok: false,
        reason: `payload of ${payload.length} bytes exceeds max_payload_bytes ${max}`,
      };
    }
    if (!topic.startsWith(`${NAMESPACE}/`)) return this.#read(topic, payload, flags);
    const { own } = this.parts;
    if (topic === own?.topic) {
      own.onOwnState(payload, this.run.client);
      return { ok: true, readings: [] };
    }
    return this.#sparkplugReadings(topic, payload, flags);
  }

  /** A Sparkplug B message through the host application (maybe held for reordering). */
  #sparkplugReadings(topic: string, payload: Uint8Array, flags: MessageFlags): Readings {
    const { sparkplug, reorder } = this.parts;
    const token = reorder.token(flags.qos);
    const out = sparkplug.handle(topic, payload, Date.now(), token);
    // Commands, DEATHs of unknown or older sessions, ...: decoded, no readings.
    if (out.ignored !== undefined) {
      this.run.kit.log("debug", "Sparkplug message without readings", {
        topic,
        reason: out.ignored,
      });
    }
    const held = out.buffered && token !== undefined ? reorder.hold(token) : undefined;
    return out.deadLetter !== undefined
      ? { ok: false, reason: out.deadLetter, held }
      : { ok: true, readings: out.readings, held, out };
  }

  /**
   * Sends a message no reader can use to the dead-letter store. A QoS 1/2
   * message's ack waits until the dead letter is stored (returned promise).
   */
  #deadLetter(
    reason: string,
    topic: string,
    payload: Uint8Array,
    packet: IPublishPacket,
  ): Promise<void> | undefined {
    const { kit } = this.run;
    kit.counters.errors++;
    const item = this.#preview.decode(payload.subarray(0, PREVIEW_CHARS * 4))
      .slice(0, PREVIEW_CHARS);
    const detail = {
      topic,
      qos: packet.qos,
      retained: packet.retain === true,
      bytes: payload.length,
    };
    if (packet.qos > 0) return kit.deadLetterStored(reason, item, detail);
    kit.deadLetter(reason, item, detail);
    return undefined;
  }
}
