/**
 * The MQTT source when its broker dies: Mosquitto is killed by pid while a
 * source (a JSON topic and a Sparkplug B host with `host_id`) runs, then
 * started again on the same port. The source reports the loss, marks the
 * Sparkplug metrics stale, reconnects, resubscribes and publishes a new online
 * STATE.
 */
import { get } from "sparkplug-payload";
import { assert, assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import {
  connected,
  type Mosquitto,
  mosquittoPath,
  publisher,
  retainedOn,
  type Row,
  type Running,
  runSource,
  startMosquitto,
} from "./mosquitto.ts";
import { type HostState, parseState, stateTopic } from "../src/sources/mqtt/sparkplug/state.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const needs = hasMosquitto ? "" : " (ignored: mosquitto is not installed)";
if (!hasMosquitto) console.log("mqtt_broker_restart_test: mosquitto not installed; ignored");

const sp = get("spBv1.0")!;
const spPayload = (seq: number, metrics: unknown[]) =>
  sp.encodePayload({ timestamp: Date.now(), seq, metrics: metrics as never }) as never;

const HOST_ID = "scada_restart";
const STATE_TOPIC = stateTopic(HOST_ID);
const NODE = "spBv1.0/Plant/NBIRTH/Edge1";
const DEVICE = "spBv1.0/Plant/DBIRTH/Edge1/Pump";

/** The retained online STATE of the host on the broker at `url`, once there is one. */
function onlineState(url: string, notTimestamp?: number): Promise<HostState> {
  return waitFor(async () => {
    const m = await retainedOn(url, STATE_TOPIC);
    const st = m && parseState(m.payload);
    return m?.retain && st?.online && st.timestamp !== notTimestamp ? st : undefined;
  }, "a retained online STATE");
}

/** Publishes an NBIRTH (bdSeq, one node metric) and a DBIRTH of two device metrics. */
async function births(url: string): Promise<void> {
  const pub = await publisher(url);
  try {
    await pub.publishAsync(
      NODE,
      spPayload(0, [
        { name: "bdSeq", type: "Int64", value: 0 },
        { name: "Uptime", alias: 1, type: "Int32", value: 5 },
      ]),
      { qos: 1 },
    );
    await pub.publishAsync(
      DEVICE,
      spPayload(1, [
        {
          name: "Flow",
          alias: 2,
          type: "Double",
          value: 12.5,
          properties: { engUnit: { type: "String", value: "m3/h" } },
        },
        { name: "Running", alias: 3, type: "Boolean", value: true },
      ]),
      { qos: 1 },
    );
  } finally {
    await pub.endAsync();
  }
}

/** Publishes one JSON reading on the source's JSON topic. */
async function publishJson(url: string, value: number): Promise<void> {
  const pub = await publisher(url);
  try {
    await pub.publishAsync("json/line1/temp", JSON.stringify({ value }), { qos: 1 });
  } finally {
    await pub.endAsync();
  }
}

const sparkplugRows = (rows: Row[]) => rows.filter((r) => String(r.address).startsWith("spBv1.0/"));

Deno.test({
  name:
    `mqtt: broker killed and restarted on the same port: disconnected, stale Sparkplug metrics, reconnect, resubscribe, new STATE${needs}`,
  ignore: !hasMosquitto,
  async fn() {
    let broker: Mosquitto | undefined = await startMosquitto();
    const port = broker.port;
    const url = broker.url;
    let src: Running | undefined;
    try {
      src = await runSource({
        endpoint: url,
        topics: ["json/#", "spBv1.0/#"],
        qos: 1,
        sparkplug: { host_id: HOST_ID },
      });
      await connected(src);
      const first = await onlineState(url);
      assertEquals(src.status().counters.reconnects, 0);

      // Before the restart: a JSON reading and the births of a node and a device.
      await publishJson(url, 20.5);
      await births(url);
      await waitFor(
        () => src!.rows.some((r) => r.value_num === 20.5) && sparkplugRows(src!.rows).length >= 3,
        "the JSON reading and the birth metrics",
      );
      const born = new Set(sparkplugRows(src.rows).map((r) => r.address as string));
      assert(born.has("spBv1.0/Plant/Edge1/Pump/Flow"), [...born].join(", "));
      assert(born.has("spBv1.0/Plant/Edge1/Pump/Running"), [...born].join(", "));
      assert(born.has("spBv1.0/Plant/Edge1/Uptime"), [...born].join(", "));
      const beforeKill = src.rows.length;

      // Kill -9 of the broker: no DISCONNECT, the source's socket just closes.
      const killedAt = Date.now();
      await broker.kill();
      await waitFor(() => src!.status().state === "disconnected", "the disconnected state");

      // Every metric of the births is marked stale, stamped with the host clock.
      const stale = await waitFor(() => {
        const got = src!.rows.slice(beforeKill).filter((r) =>
          String(r.metadata).includes("broker connection lost")
        );
        return got.length >= born.size ? got : undefined;
      }, "the stale Sparkplug metrics");
      const seenAt = Date.now();
      assertEquals(new Set(stale.map((r) => r.address as string)), born);
      assertEquals(stale.length, born.size, "one stale row per metric");
      for (const r of stale) {
        assertEquals(JSON.parse(r.metadata as string), {
          stale: true,
          reason: "broker connection lost",
        });
        assertEquals([r.quality, r.quality_code], ["uncertain", 500], String(r.address));
        assertEquals([r.value_num, r.value_str, r.value_bool], [null, null, null]);
        const t = r.event_time as number;
        assert(t >= killedAt * 1000 && t <= seenAt * 1000, `${r.address}: event_time ${t}`);
      }
      const flow = stale.find((r) => r.address === "spBv1.0/Plant/Edge1/Pump/Flow")!;
      assertEquals([flow.value_type, flow.unit], ["float", "m3/h"]);
      assertEquals(
        src.rows.slice(beforeKill).length,
        stale.length,
        "nothing but stale rows while the broker is gone",
      );

      // The same port again: the source reconnects and subscribes anew.
      broker = await startMosquitto("", { port });
      await waitFor(
        () => src!.status().state === "connected" && src!.status().counters.reconnects > 0,
        "the reconnect",
        60_000,
      );
      assert(src.status().counters.reconnects >= 1);
      assertEquals(src.status().detail.subscriptions, [
        "json/# (QoS 1)",
        "spBv1.0/# (QoS 1)",
        `${STATE_TOPIC} (QoS 1)`,
      ]);

      // A new session, a new online STATE (the restarted broker had no retained messages).
      const second = await onlineState(url, first.timestamp);
      assert(second.timestamp >= killedAt, `${second.timestamp} is after the kill ${killedAt}`);
      assert(second.timestamp > first.timestamp);

      // Fresh messages after the restart arrive (the subscription is back).
      const afterRestart = src.rows.length;
      await publishJson(url, 21.5);
      const fresh = await waitFor(
        () => src!.rows.slice(afterRestart).find((r) => r.value_num === 21.5),
        "a JSON reading published after the restart",
      );
      assertEquals([fresh.address, fresh.tag_name, fresh.quality], [
        "json/line1/temp",
        "temp",
        "good",
      ]);
      await births(url);
      await waitFor(
        () => sparkplugRows(src!.rows.slice(afterRestart)).length >= born.size,
        "the births after the restart",
      );
      const reborn = sparkplugRows(src.rows.slice(afterRestart));
      assert(reborn.every((r) => r.quality === "good"), JSON.stringify(reborn));
      assertEquals(src.deadLetters, []);
    } finally {
      await src?.host.stopAll();
      await broker?.stop();
    }
  },
});
