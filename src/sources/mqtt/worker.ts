/**
 * MQTT source Worker on mqtt.js: subscribes to the configured topic filters,
 * turns messages into readings, and acknowledges QoS 1/2 messages to the
 * broker only after their records are committed to the spool.
 *
 * QoS 0/1 PUBLISH packets are taken off the socket by our reader
 * (`publish_reader.ts`); the rest (QoS 2, MQTT 5 properties, ...) come
 * through mqtt.js `customHandleAcks` and `handleMessage` (`hooks.ts`). A
 * PUBACK/PUBREC waits in the AckGate (`acks.ts`) for the commit
 * (`commits.ts`) while reading goes on, so many messages share one spool
 * commit (at most `receive_maximum` unacknowledged). Messages become readings
 * or dead letters in `handle.ts`.
 *
 * With `sparkplug.host_id` the source is a Sparkplug host: its Will is the
 * offline STATE, it subscribes first and then publishes the online STATE
 * (`sparkplug/host_state.ts`). This module connects, subscribes, reconnects
 * and stops.
 */
import mqtt, { type IConnackPacket, type MqttClient } from "mqtt";
import { reconnectDelayMs } from "../schedule.ts";
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { AckGate } from "./acks.ts";
import { BatchCommits } from "./commits.ts";
import { describeMqttError } from "./errors.ts";
import { MessageHandler } from "./handle.ts";
import { attachHooks } from "./hooks.ts";
import { brokerUrl, clientIdOf, clientOptions, securityDetail, TLS_UNVERIFIED } from "./options.ts";
import type { MqttRun } from "./run.ts";
import type { MqttSourceConfig } from "./schema.ts";
import { SparkplugHost } from "./sparkplug/host.ts";
import { OwnHostState } from "./sparkplug/host_state.ts";
import { ReorderAcks } from "./sparkplug/reorder_acks.ts";

/** One MQTT source: its client, reconnects and the parts that handle messages. */
class MqttSource implements SourceDriver {
  readonly run: MqttRun;
  readonly security: Record<string, unknown>;
  /** Messages on spBv1.0/ topics go to the Sparkplug B host application. */
  readonly sparkplug: SparkplugHost;
  readonly gate: AckGate;
  readonly commits: BatchCommits;
  readonly reorder: ReorderAcks;
  /** This host's STATE (with `sparkplug.host_id`). */
  readonly own?: OwnHostState;
  readonly handler: MessageHandler;
  /** Failed connects since the last good one (reconnect backoff). */
  attempt = 0;
  retryTimer: ReturnType<typeof setTimeout> | undefined;
  lastError: string | undefined;

  constructor(cfg: MqttSourceConfig, kit: SourceKit) {
    const url = brokerUrl(cfg);
    this.run = { cfg, kit, url, stopping: false };
    this.security = securityDetail(cfg, url);
    this.sparkplug = new SparkplugHost({
      contextMapping: cfg.sparkplug?.context_mapping,
      rebirthIntervalMs: cfg.sparkplug?.rebirth_interval_ms,
      reorderTimeoutMs: cfg.sparkplug?.reorder_timeout_ms,
    });
    this.gate = new AckGate(cfg.receive_maximum);
    this.commits = new BatchCommits(this.run);
    this.reorder = new ReorderAcks(this.run, this.sparkplug, this.commits);
    const hostId = cfg.sparkplug?.host_id;
    if (hostId !== undefined) this.own = new OwnHostState(hostId, kit);
    this.handler = new MessageHandler(this.run, {
      commits: this.commits,
      sparkplug: this.sparkplug,
      reorder: this.reorder,
      own: this.own,
    });
  }

  /** Builds the client options, then connects (unless stopped meanwhile). */
  async start(): Promise<void> {
    const { cfg, kit, url } = this.run;
    let opts: mqtt.IClientOptions;
    try {
      opts = await clientOptions(cfg, this.own?.timestamp);
    } catch (e) {
      kit.status("error", (e as Error).message);
      return;
    }
    if (this.security.tls === TLS_UNVERIFIED) {
      kit.log("warning", "TLS certificate verification is off (insecure: true); lab use only", {
        broker: url,
      });
    }
    if (!this.run.stopping) this.connect(opts);
  }

  /** Creates the client with the hooks and its connect/error/close handlers. */
  connect(opts: mqtt.IClientOptions): void {
    const { kit, url } = this.run;
    kit.status("connecting", undefined, {
      broker: url,
      client_id: opts.clientId,
      ...this.security,
    });
    const c = mqtt.connect(url, { ...opts, manualConnect: true });
    attachHooks(c, this.run, this.gate, this.handler);
    c.connect();
    c.on("connect", (connack) => this.onConnect(c, opts, connack));
    c.on("error", (e) => {
      this.lastError = describeMqttError(e, url, this.run.cfg.mqtt_version, {
        username: this.run.cfg.username,
      });
      kit.status("error", this.lastError);
    });
    c.on("close", () => this.onClose(c));
    this.run.client = c;
  }

  /** Connected: subscribes (with the own STATE topic), then announces the host online. */
  onConnect(c: MqttClient, opts: mqtt.IClientOptions, connack: IConnackPacket): void {
    const { cfg, kit, url } = this.run;
    this.attempt = 0;
    this.lastError = undefined;
    if (this.own) this.own.online = false;
    const subs: Record<string, { qos: 0 | 1 | 2 }> = Object.fromEntries(
      cfg.topics.map((t) => [t, { qos: cfg.qos }]),
    );
    if (this.own) subs[this.own.topic] = { qos: 1 };
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
      this.own?.announceOnline(c);
      kit.status("connected", undefined, {
        broker: url,
        client_id: opts.clientId,
        session_present: connack.sessionPresent,
        subscriptions: (granted ?? []).map((g) => `${g.topic} (QoS ${g.qos})`),
      });
    });
  }

  /** Connection lost: marks Sparkplug values stale, drops held acks, reconnects after a backoff. */
  onClose(c: MqttClient): void {
    const { kit } = this.run;
    if (this.run.stopping || this.run.client !== c) return;
    // Sparkplug values are stale once the broker connection is gone.
    const discarded: number[] = [];
    for (const r of this.sparkplug.markAllStale("broker connection lost", Date.now(), discarded)) {
      kit.emit(r);
    }
    // Their acks would go to a closed connection: the broker redelivers these messages.
    this.reorder.drop(discarded);
    this.gate.reset();
    const wait = reconnectDelayMs(this.attempt++);
    kit.status("disconnected", this.lastError, { retry_in_ms: Math.round(wait) });
    this.retryTimer = setTimeout(() => this.reconnect(c), wait);
  }

  /** Reconnects the same client, with a new Will for a Sparkplug host. */
  reconnect(c: MqttClient): void {
    const { kit, url } = this.run;
    this.retryTimer = undefined;
    if (this.run.stopping || this.run.client !== c) return;
    kit.counters.reconnects++;
    kit.status("connecting", undefined, { broker: url });
    this.own?.renewWill(c);
    c.reconnect();
  }

  /** Stops: a Sparkplug host says offline, then the client ends at once. */
  async stop(): Promise<void> {
    this.run.stopping = true;
    clearTimeout(this.retryTimer);
    this.reorder.stop();
    this.commits.stop();
    this.gate.wake();
    const c = this.run.client;
    this.run.client = undefined;
    if (!c) return;
    // A Sparkplug host says offline itself; its DISCONNECT then cancels the Will (the
    // offline STATE went out before it on the same connection, so it arrived first).
    const offline = this.own?.sayOffline(c);
    if (offline) await offline;
    await endGracefully(c);
  }
}

/** How long a stopping source waits for its DISCONNECT to go out before it drops the connection. */
const STOP_GRACE_MS = 1000;

/**
 * Ends the connection with a DISCONNECT, after what was already written (the
 * acks of committed messages) has gone out; held acks are never sent, so
 * their messages stay with the broker (persistent session). Then, or after
 * STOP_GRACE_MS (a broker that is gone), or at once when not connected, the
 * socket is closed for good (a stopping source reads nothing more).
 */
function endGracefully(c: MqttClient): Promise<void> {
  type Socket = { destroy?: () => void; unpipe?: () => void; resume?: () => void };
  const socket = (c as unknown as { stream?: Socket }).stream;
  // Once the DISCONNECT is out, nothing more is read, so the broker's close is seen at once.
  // Until then mqtt.js reads on: the acks of its own publishes let `end` go on.
  c.on("packetsend", (p: { cmd: string }) => {
    if (p.cmd !== "disconnect") return;
    socket?.unpipe?.();
    socket?.resume?.();
  });
  return new Promise<void>((resolve) => {
    const close = () => {
      clearTimeout(force);
      socket?.destroy?.();
      resolve();
    };
    const force = setTimeout(close, STOP_GRACE_MS);
    c.end(false, {}, close);
  });
}

runSourceWorker((source, kit) => {
  const cfg = source as unknown as MqttSourceConfig;
  kit.log("debug", "mqtt source starting", { client_id: clientIdOf(cfg) });
  return new MqttSource(cfg, kit);
});
