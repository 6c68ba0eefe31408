/**
 * MQTT source Worker on mqtt.js: subscribes to the configured topic filters,
 * turns messages into readings, and acknowledges QoS 1/2 messages to the
 * broker only after their records are committed to the spool.
 *
 * mqtt.js handles incoming packets one at a time and sends PUBACK (QoS 1) or
 * PUBREC (QoS 2, MQTT 5 through `customHandleAcks`) only when our callback
 * runs, so a held acknowledgement also holds the next message: each QoS 1/2
 * message is flushed as its own batch and waits for the spool commit.
 * With MQTT 3.1.1 the hook is `handleMessage`, which mqtt.js calls after
 * PUBREC for QoS 2: there only QoS 1 is held until the spool.
 *
 * With `sparkplug.host_id` the source is a Sparkplug host: its Will is the
 * offline STATE, it subscribes first and then publishes the online STATE with
 * the Will's timestamp, republishes it on seeing its own offline STATE, and
 * publishes offline on a clean stop.
 */
import mqtt, { type IPublishPacket, type MqttClient } from "mqtt";
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { describeMqttError } from "./errors.ts";
import { compileMessageReader } from "./messages.ts";
import { brokerUrl, clientIdOf, clientOptions, securityDetail, TLS_UNVERIFIED } from "./options.ts";
import type { MqttSourceConfig } from "./schema.ts";
import { NAMESPACE } from "./sparkplug/topic.ts";
import { SparkplugHost } from "./sparkplug/host.ts";
import { parseState, statePayload, stateTopic, stateWill } from "./sparkplug/state.ts";

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const PREVIEW_CHARS = 2000;
/** How long a clean stop waits for the broker to acknowledge the offline STATE. */
const OFFLINE_STATE_WAIT_MS = 2000;

function mqttDriver(cfg: MqttSourceConfig, kit: SourceKit): SourceDriver {
  const read = compileMessageReader(cfg);
  const url = brokerUrl(cfg);
  const v5 = cfg.mqtt_version === "5";
  const preview = new TextDecoder();
  const security = securityDetail(cfg, url);
  let client: MqttClient | undefined;
  let stopping = false;
  let backoffMs = BACKOFF_MIN_MS;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let lastError: string | undefined;
  let dropped = 0;
  // Messages on spBv1.0/ topics go to the Sparkplug B host application.
  const sparkplug = new SparkplugHost({
    contextMapping: cfg.sparkplug?.context_mapping,
    rebirthIntervalMs: cfg.sparkplug?.rebirth_interval_ms,
  });
  const hostId = cfg.sparkplug?.host_id;
  const ownState = hostId === undefined ? undefined : stateTopic(hostId);
  /** Timestamp of this connection's Will and online STATE. */
  let stateT = Date.now();
  /** True once the online STATE of the current connection was published. */
  let online = false;

  /** Publishes this host's STATE (retained, QoS 1) with the connection's timestamp. */
  function publishState(c: MqttClient, isOnline: boolean): Promise<void> {
    return new Promise((resolve) => {
      c.publish(ownState!, statePayload(isOnline, stateT), { qos: 1, retain: true }, (err) => {
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

  /** Readings of one message: Sparkplug B on its namespace, else the payload rules. */
  function readingsOf(topic: string, payload: Uint8Array, flags: { qos: number; retain: boolean }) {
    if (!topic.startsWith(`${NAMESPACE}/`)) return read(topic, payload, flags);
    if (topic === ownState) {
      onOwnState(payload);
      return { ok: true as const, readings: [] };
    }
    const out = sparkplug.handle(topic, payload, Date.now());
    if (out.rebirth) {
      kit.log("info", "requesting a Sparkplug rebirth", {
        topic: out.rebirth.topic,
        reason: out.rebirth.reason,
      });
      client?.publish(out.rebirth.topic, out.rebirth.payload as never, { qos: 0, retain: false });
    }
    return out.deadLetter !== undefined
      ? { ok: false as const, reason: out.deadLetter }
      : { ok: true as const, readings: out.readings };
  }

  /** Emits a message's readings (or dead-letters it); with `hold`, waits for the spool. */
  async function handle(topic: string, payload: Uint8Array, packet: IPublishPacket, hold: boolean) {
    if (stopping) return;
    const flags = { qos: packet.qos, retain: packet.retain === true };
    const res = readingsOf(topic, payload, flags);
    if (!res.ok) {
      kit.counters.errors++;
      kit.deadLetter(
        res.reason,
        preview.decode(payload.subarray(0, PREVIEW_CHARS * 4)).slice(
          0,
          PREVIEW_CHARS,
        ),
        { topic, qos: flags.qos, retained: flags.retain, bytes: payload.length },
      );
      return;
    }
    await kit.waitForCredit();
    for (const r of res.readings) kit.emit(r);
    if (!hold || res.readings.length === 0) return;
    kit.flush();
    if (!(await kit.whenCommitted()) && !stopping) {
      dropped++;
      kit.log("warning", "records of an MQTT message were dropped by the spool; acknowledged", {
        topic,
        dropped_messages: dropped,
      });
    }
  }

  function connect(opts: mqtt.IClientOptions): void {
    kit.status("connecting", undefined, { broker: url, client_id: opts.clientId, ...security });
    const c = mqtt.connect(url, {
      ...opts,
      customHandleAcks: (topic, message, packet, done) => {
        handle(topic, message, packet, true).then(
          () => done(null as unknown as Error, 0),
          () => done(null as unknown as Error, 0),
        );
      },
    });
    c.handleMessage = (packet, done) => {
      // MQTT 5 QoS 1/2 messages were handled in customHandleAcks already.
      if (v5 && packet.qos > 0) return done();
      const topic = typeof packet.topic === "string" ? packet.topic : String(packet.topic);
      const payload = typeof packet.payload === "string"
        ? new TextEncoder().encode(packet.payload)
        : packet.payload;
      handle(topic, payload, packet, packet.qos > 0).then(() => done(), () => done());
    };
    c.on("connect", (connack) => {
      backoffMs = BACKOFF_MIN_MS;
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
      for (const r of sparkplug.markAllStale("broker connection lost", Date.now())) kit.emit(r);
      const wait = backoffMs / 2 + Math.random() * backoffMs / 2;
      backoffMs = Math.min(BACKOFF_MAX_MS, backoffMs * 2);
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
      const c = client;
      client = undefined;
      if (!c) return;
      if (online && c.connected) {
        // A clean stop says offline itself; the Will covers a crash.
        online = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          publishState(c, false),
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
