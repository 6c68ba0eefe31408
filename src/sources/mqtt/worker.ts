/**
 * MQTT source Worker on mqtt.js: subscribes to the configured topic filters,
 * turns messages into readings, and acknowledges QoS 1/2 messages to the
 * broker only after their records are committed to the spool.
 *
 * QoS 1/2 messages (MQTT 5 and 3.1.1) come through mqtt.js `customHandleAcks`;
 * their PUBACK/PUBREC waits in the AckGate (`acks.ts`) for the commit while
 * mqtt.js reads on, so many messages share one spool commit (at most
 * `receive_maximum` unacknowledged).
 *
 * With `sparkplug.host_id` the source is a Sparkplug host: its Will is the
 * offline STATE, it subscribes first and then publishes the online STATE with
 * the Will's timestamp, republishes it (same timestamp) on seeing its own
 * offline STATE, and publishes offline with the current time on a clean stop.
 */
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { reconnectDelayMs } from "../schedule.ts";
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { describeMqttError } from "./errors.ts";
import { compileMessageReader } from "./messages.ts";
import { brokerUrl, clientIdOf, clientOptions, securityDetail, TLS_UNVERIFIED } from "./options.ts";
import type { MqttSourceConfig } from "./schema.ts";
import { NAMESPACE } from "./sparkplug/topic.ts";
import { type HostResult, SparkplugHost } from "./sparkplug/host.ts";
import { AckGate } from "./acks.ts";
import { parseState, statePayload, stateTopic, stateWill } from "./sparkplug/state.ts";

const PREVIEW_CHARS = 2000;
/** How long a clean stop waits for the broker to acknowledge the offline STATE. */
const OFFLINE_STATE_WAIT_MS = 2000;

function mqttDriver(cfg: MqttSourceConfig, kit: SourceKit): SourceDriver {
  const read = compileMessageReader(cfg);
  const url = brokerUrl(cfg);
  const preview = new TextDecoder();
  const security = securityDetail(cfg, url);
  let client: MqttClient | undefined;
  let stopping = false;
  /** Failed connects since the last good one (reconnect backoff). */
  let attempt = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let lastError: string | undefined;
  let dropped = 0;
  // Messages on spBv1.0/ topics go to the Sparkplug B host application.
  const sparkplug = new SparkplugHost({
    contextMapping: cfg.sparkplug?.context_mapping,
    rebirthIntervalMs: cfg.sparkplug?.rebirth_interval_ms,
    reorderTimeoutMs: cfg.sparkplug?.reorder_timeout_ms,
  });
  const gate = new AckGate(cfg.receive_maximum);
  const hostId = cfg.sparkplug?.host_id;
  const ownState = hostId === undefined ? undefined : stateTopic(hostId);
  /** Timestamp of this connection's Will and online STATE. */
  let stateT = Date.now();
  /** True once the online STATE of the current connection was published. */
  let online = false;

  /**
   * Publishes this host's STATE (retained, QoS 1), by default with the
   * timestamp of the connection's Will (Sparkplug 3.0: the online STATE and its
   * republish carry the Will's timestamp; a clean disconnect's offline STATE the current time).
   */
  function publishState(c: MqttClient, isOnline: boolean, timestamp = stateT): Promise<void> {
    return new Promise((resolve) => {
      c.publish(ownState!, statePayload(isOnline, timestamp), { qos: 1, retain: true }, (err) => {
        if (err) {
          kit.log("warning", "publishing the Sparkplug STATE failed", { error: err.message });
        }
        resolve();
      });
    });
  }

  /** Own offline STATE seen while online: announce online again (STATE never gives readings). */
  function onOwnState(payload: Uint8Array): void {
    const st = parseState(payload);
    if (!st || st.online || !online || !client) return;
    kit.log("info", "own Sparkplug STATE seen offline; republishing online", {
      topic: ownState,
      seen_timestamp: st.timestamp,
    });
    publishState(client, true);
  }

  /** Acks of Sparkplug messages waiting for reordering: token → gives the commit to wait for. */
  const waitingAcks = new Map<number, (commit: Promise<void>) => void>();
  let nextToken = 0;
  let reorderTimer: ReturnType<typeof setTimeout> | undefined;

  /** Acts on a host result: publishes its rebirth request, releases the acks it carries. */
  function settle(out: HostResult, commit: () => Promise<void>): void {
    if (out.rebirth) {
      kit.log("info", "requesting a Sparkplug rebirth", {
        topic: out.rebirth.topic,
        reason: out.rebirth.reason,
      });
      client?.publish(out.rebirth.topic, out.rebirth.payload as never, { qos: 0, retain: false });
    }
    if (out.released?.length) {
      const c = commit();
      for (const token of out.released) waitingAcks.get(token)?.(c), waitingAcks.delete(token);
    }
    armReorderTimer();
  }

  /** Closes the Sparkplug reorder windows when the next one ends. */
  function armReorderTimer(): void {
    clearTimeout(reorderTimer);
    const next = sparkplug.nextDeadline();
    if (next === undefined || stopping) return;
    reorderTimer = setTimeout(() => {
      for (const out of sparkplug.expire(Date.now())) {
        for (const r of out.readings) kit.emit(r);
        if (out.readings.length > 0) flushSoon();
        settle(out, () => committed("sparkplug reorder buffer"));
      }
      armReorderTimer();
    }, Math.max(0, next - Date.now()));
  }

  /** Readings of one message: Sparkplug B on its namespace, else the payload rules. */
  function readingsOf(topic: string, payload: Uint8Array, flags: { qos: number; retain: boolean }) {
    if (!topic.startsWith(`${NAMESPACE}/`)) return read(topic, payload, flags);
    if (payload.length > cfg.max_payload_bytes) {
      const reason =
        `payload of ${payload.length} bytes exceeds max_payload_bytes ${cfg.max_payload_bytes}`;
      return { ok: false as const, reason };
    }
    if (topic === ownState) {
      onOwnState(payload);
      return { ok: true as const, readings: [] };
    }
    const token = flags.qos > 0 ? ++nextToken : undefined;
    const out = sparkplug.handle(topic, payload, Date.now(), token);
    // Commands, DEATHs of unknown or older sessions, ...: decoded, no readings.
    if (out.ignored !== undefined) {
      kit.log("debug", "Sparkplug message without readings", { topic, reason: out.ignored });
    }
    let held: Promise<void> | undefined;
    if (out.buffered && token !== undefined) {
      held = new Promise<void>((resolve) =>
        waitingAcks.set(token, (commit) => commit.then(resolve, resolve))
      );
    }
    return out.deadLetter !== undefined
      ? { ok: false as const, reason: out.deadLetter, held }
      : { ok: true as const, readings: out.readings, held, out };
  }

  /** Posts the current batch once the packets already read are handled (after their nextTicks). */
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  function flushSoon(): void {
    flushTimer ??= setTimeout(() => {
      flushTimer = undefined;
      kit.flush();
    }, 0);
  }

  /** The kit's promise for the batch being filled, and what acks wait for on it. */
  let batch: { commit: Promise<boolean>; acked: Promise<void>; messages: number } | undefined;

  /**
   * Resolves once what was emitted so far is committed; logs records the spool
   * dropped. The messages of one batch share one promise (one reaction per
   * spool commit, not one per message).
   */
  function committed(topic: string): Promise<void> {
    const commit = kit.whenCommitted();
    if (batch?.commit !== commit) {
      const b = { commit, acked: Promise.resolve(), messages: 0 };
      b.acked = commit.then((stored) => {
        if (stored || stopping) return;
        dropped += b.messages;
        kit.log("warning", "records of MQTT messages were dropped by the spool; acknowledged", {
          topic,
          messages: b.messages,
          dropped_messages: dropped,
        });
      });
      batch = b;
    }
    batch.messages++;
    return batch.acked;
  }

  /**
   * Sends a message no reader can use to the dead-letter store. A QoS 1/2
   * message's ack waits until the dead letter is stored (returned promise).
   */
  function deadLetter(
    reason: string,
    topic: string,
    payload: Uint8Array,
    packet: IPublishPacket,
  ): Promise<void> | undefined {
    kit.counters.errors++;
    const item = preview.decode(payload.subarray(0, PREVIEW_CHARS * 4)).slice(0, PREVIEW_CHARS);
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

  /**
   * Emits a message's readings (or dead-letters it). Returns the promise its
   * acknowledgement waits for, or undefined when it may be acknowledged at once.
   */
  function handle(topic: string, payload: Uint8Array, packet: IPublishPacket) {
    const flags = { qos: packet.qos, retain: packet.retain === true };
    const res = readingsOf(topic, payload, flags);
    if (!res.ok) return deadLetter(res.reason, topic, payload, packet);
    for (const r of res.readings) kit.emit(r);
    let commit: Promise<void> | undefined;
    const commitOnce = () => commit ??= committed(topic);
    if ("out" in res && res.out) settle(res.out, commitOnce);
    if (res.readings.length === 0) return ("held" in res ? res.held : undefined) ?? commit;
    if (flags.qos > 0) flushSoon();
    return commitOnce();
  }

  /** Runs `fn` once the main thread takes batches again (posts the current one first). */
  function afterCredit(fn: () => void): void {
    kit.flush();
    kit.waitForCredit().then(fn);
  }

  /** Handles a message; a bug (not bad input) keeps the message as a dead letter. */
  function handleSafely(topic: string, payload: Uint8Array, packet: IPublishPacket) {
    try {
      return handle(topic, payload, packet);
    } catch (e) {
      return deadLetter(`handling the message failed: ${e}`, topic, payload, packet);
    }
  }

  /**
   * mqtt.js hook for every QoS 1/2 PUBLISH (both protocol versions): emits the
   * readings, registers the commit the PUBACK/PUBREC waits for with the gate,
   * and lets mqtt.js read the next packet at once.
   */
  function onPublish(
    topic: string,
    message: Uint8Array,
    packet: IPublishPacket,
    done: (err: Error, code: number) => void,
  ): void {
    if (stopping) return; // no ack: the broker keeps the message for the next session
    if (kit.hasCredit()) answer(topic, message, packet, done);
    else afterCredit(() => answer(topic, message, packet, done));
  }

  /** Handles a QoS 1/2 message and lets mqtt.js go on; its ack waits in the gate. */
  function answer(
    topic: string,
    message: Uint8Array,
    packet: IPublishPacket,
    done: (err: Error, code: number) => void,
  ): void {
    if (stopping) return;
    const held = handleSafely(topic, message, packet);
    if (held && packet.messageId !== undefined) gate.hold(packet.messageId, held);
    if (gate.full) kit.flush();
    done(null as unknown as Error, 0);
  }

  function connect(opts: mqtt.IClientOptions): void {
    kit.status("connecting", undefined, { broker: url, client_id: opts.clientId, ...security });
    const c = mqtt.connect(url, opts);
    // mqtt.js keeps its own default hook for MQTT 3.1.1; ours holds the ack with both versions.
    c.options.customHandleAcks = onPublish as never;
    gate.attach(c);
    c.handleMessage = (packet, done) => {
      // QoS 1/2 messages were handled in onPublish already.
      if (packet.qos > 0 || stopping) return done();
      const topic = typeof packet.topic === "string" ? packet.topic : String(packet.topic);
      const payload = typeof packet.payload === "string"
        ? new TextEncoder().encode(packet.payload)
        : packet.payload;
      if (kit.hasCredit()) {
        handleSafely(topic, payload, packet);
        return done();
      }
      afterCredit(() => {
        handleSafely(topic, payload, packet);
        done();
      });
    };
    c.on("connect", (connack) => {
      attempt = 0;
      lastError = undefined;
      online = false;
      const subs: Record<string, { qos: 0 | 1 | 2 }> = Object.fromEntries(
        cfg.topics.map((t) => [t, { qos: cfg.qos }]),
      );
      if (ownState !== undefined) subs[ownState] = { qos: 1 };
      c.subscribe(subs, (err, granted) => {
        if (err) {
          kit.status("error", `subscribe failed on ${url}: ${err.message}`);
          return;
        }
        const refused = (granted ?? []).filter((g) => g.qos > 2).map((g) => g.topic);
        if (refused.length > 0) {
          kit.status("error", `broker ${url} refused the subscription to ${refused.join(", ")}`);
          return;
        }
        if (ownState !== undefined) {
          online = true;
          publishState(c, true);
        }
        kit.status("connected", undefined, {
          broker: url,
          client_id: opts.clientId,
          session_present: connack.sessionPresent,
          subscriptions: (granted ?? []).map((g) => `${g.topic} (QoS ${g.qos})`),
        });
      });
    });
    c.on("error", (e) => {
      lastError = describeMqttError(e, url, cfg.mqtt_version, { username: cfg.username });
      kit.status("error", lastError);
    });
    c.on("close", () => {
      if (stopping || client !== c) return;
      // Sparkplug values are stale once the broker connection is gone.
      const discarded: number[] = [];
      for (const r of sparkplug.markAllStale("broker connection lost", Date.now(), discarded)) {
        kit.emit(r);
      }
      // Their acks would go to a closed connection: the broker redelivers these messages.
      for (const token of discarded) waitingAcks.get(token)?.(Promise.resolve());
      waitingAcks.clear();
      gate.reset();
      const wait = reconnectDelayMs(attempt++);
      kit.status("disconnected", lastError, { retry_in_ms: Math.round(wait) });
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        if (stopping || client !== c) return;
        kit.counters.reconnects++;
        kit.status("connecting", undefined, { broker: url });
        // A new session gets a new STATE timestamp, in its Will and its online STATE.
        if (hostId !== undefined) {
          stateT = Date.now();
          c.options.will = stateWill(hostId, stateT);
        }
        c.reconnect();
      }, wait);
    });
    client = c;
  }

  return {
    async start() {
      let opts: mqtt.IClientOptions;
      try {
        opts = await clientOptions(cfg, stateT);
      } catch (e) {
        kit.status("error", (e as Error).message);
        return;
      }
      if (security.tls === TLS_UNVERIFIED) {
        kit.log("warning", "TLS certificate verification is off (insecure: true); lab use only", {
          broker: url,
        });
      }
      if (!stopping) connect(opts);
    },
    async stop() {
      stopping = true;
      clearTimeout(retryTimer);
      clearTimeout(reorderTimer);
      clearTimeout(flushTimer);
      const c = client;
      client = undefined;
      if (!c) return;
      if (online && c.connected) {
        // A clean stop says offline itself; the Will covers a crash.
        online = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          publishState(c, false, Date.now()),
          new Promise((r) => timer = setTimeout(r, OFFLINE_STATE_WAIT_MS)),
        ]);
        clearTimeout(timer);
      }
      // Force: unacknowledged QoS 1/2 messages stay with the broker (persistent session).
      await new Promise<void>((resolve) => c.end(true, {}, () => resolve()));
    },
  };
}

runSourceWorker((source, kit) => {
  const cfg = source as unknown as MqttSourceConfig;
  kit.log("debug", "mqtt source starting", { client_id: clientIdOf(cfg) });
  return mqttDriver(cfg, kit);
});
