/**
 * The hooks of an MQTT source on its mqtt.js client: our PUBLISH reader
 * (`publish_reader.ts`) takes QoS 0/1 messages off the socket first; what
 * it passes on reaches mqtt.js' `customHandleAcks` (QoS 1/2, both protocol
 * versions; mqtt.js keeps its own default for MQTT 3.1.1, ours holds the ack
 * with both) and `handleMessage` (QoS 0), with the AckGate on `_sendPacket`.
 * Every path waits for credit from the main thread before handling a message.
 */
import type { IPublishPacket, MqttClient } from "mqtt";
import type { AckGate } from "./acks.ts";
import type { MessageHandler } from "./handle.ts";
import { installPublishReader, type PublishTaker, type TakenPublish } from "./publish_reader.ts";
import type { MqttRun } from "./run.ts";

/** How mqtt.js is told a QoS 1/2 message was handled (`customHandleAcks`' callback). */
type AckDone = (err: Error, code: number) => void;

/** Installs the hooks on a new client (created with `manualConnect`, before it connects). */
export function attachHooks(
  c: MqttClient,
  run: MqttRun,
  gate: AckGate,
  handler: MessageHandler,
): void {
  installPublishReader(c, publishTaker(run, gate, handler));
  c.options.customHandleAcks = onPublishHook(c, run, gate, handler) as never;
  gate.attach(c);
  c.handleMessage = onMessageHook(run, handler);
}

/** What our PUBLISH reader does with the messages it takes (see `answer` below for mqtt.js'). */
function publishTaker(run: MqttRun, gate: AckGate, handler: MessageHandler): PublishTaker {
  return {
    // Stopping: taken and dropped unacknowledged (the broker keeps them), so that mqtt.js
    // still reads the PUBACK of the offline STATE a Sparkplug host publishes last.
    route: () => run.stopping || run.kit.hasCredit() && !gate.full ? "take" : "wait",
    async whenMayTake() {
      if (run.stopping) return;
      run.kit.flush();
      if (!run.kit.hasCredit()) await run.kit.waitForCredit();
      await gate.whenRoom();
    },
    take(p: TakenPublish, connection: unknown) {
      if (run.stopping) return;
      const held = handler.handleSafely(p.topic, p.payload, p as unknown as IPublishPacket);
      if (p.qos === 1) gate.ackAfter(p.messageId!, held, connection);
      if (gate.full) run.kit.flush();
    },
  };
}

/** Runs `fn` once the main thread takes batches again (posts the current one first). */
function afterCredit(run: MqttRun, fn: () => void): void {
  run.kit.flush();
  run.kit.waitForCredit().then(fn);
}

/**
 * mqtt.js hook for every QoS 1/2 PUBLISH: emits the readings, registers the
 * commit the PUBACK/PUBREC waits for with the gate, and lets mqtt.js read the
 * next packet at once.
 */
function onPublishHook(c: MqttClient, run: MqttRun, gate: AckGate, handler: MessageHandler) {
  /**
   * Stopping: mqtt.js goes on (so it still reads the PUBACK of a Sparkplug
   * host's offline STATE) but the message's ack is never sent: the broker
   * keeps it for the next session.
   */
  const drop = (packet: IPublishPacket, done: AckDone) => {
    if (packet.messageId !== undefined) gate.swallow(packet.messageId);
    done(null as unknown as Error, 0);
  };
  /** Handles a QoS 1/2 message and lets mqtt.js go on; its ack waits in the gate. */
  const answer = (topic: string, message: Uint8Array, packet: IPublishPacket, done: AckDone) => {
    if (run.stopping) return drop(packet, done);
    const held = handler.handleSafely(topic, message, packet);
    if (held && packet.messageId !== undefined) gate.hold(packet.messageId, held);
    // The ack mqtt.js sends next may fill the gate: post the batch its commit waits for.
    if (gate.held + 1 >= gate.max) run.kit.flush();
    done(null as unknown as Error, 0);
  };
  return (topic: string, message: Uint8Array, packet: IPublishPacket, done: AckDone): void => {
    if (run.stopping) return drop(packet, done);
    if (run.kit.hasCredit()) return answer(topic, message, packet, done);
    // Its ack may go out only on the connection it came on: after a reconnect
    // meanwhile its packet id may name another message (the broker redelivers it).
    const connection = streamOf(c);
    afterCredit(run, () => {
      if (streamOf(c) === connection) answer(topic, message, packet, done);
    });
  };
}

/** The connection (socket stream) a client uses now. */
const streamOf = (c: MqttClient): unknown => (c as unknown as { stream: unknown }).stream;

/** mqtt.js `handleMessage`: handles QoS 0 messages (QoS 1/2 were handled in the publish hook). */
function onMessageHook(run: MqttRun, handler: MessageHandler): MqttClient["handleMessage"] {
  return (packet, done) => {
    if (packet.qos > 0 || run.stopping) return done();
    const topic = typeof packet.topic === "string" ? packet.topic : String(packet.topic);
    const payload = typeof packet.payload === "string"
      ? new TextEncoder().encode(packet.payload)
      : packet.payload;
    if (run.kit.hasCredit()) {
      handler.handleSafely(topic, payload, packet);
      return done();
    }
    afterCredit(run, () => {
      handler.handleSafely(topic, payload, packet);
      done();
    });
  };
}
