/**
 * Our PUBLISH reader on a real connection to Mosquitto: QoS 0/1 messages are
 * taken by the reader, QoS 2, MQTT 5 messages with properties and messages
 * over 64 KiB reach mqtt.js; every QoS 1/2 message is acknowledged exactly
 * once on its connection, so the persistent session redelivers none of them.
 */
import mqtt from "mqtt";
import { assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import { mosquittoPath, publisher, startMosquitto } from "./mosquitto.ts";
import { AckGate } from "../src/sources/mqtt/acks.ts";
import { installPublishReader, MAX_TAKEN_PACKET } from "../src/sources/mqtt/publish_reader.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const needs = hasMosquitto ? "" : " (ignored: mosquitto is not installed)";
if (!hasMosquitto) console.log("mqtt_publish_reader_test: mosquitto not installed; ignored");

const BIG = "x".repeat(MAX_TAKEN_PACKET + 10);

/** Topics and payload sizes seen on one path, sorted by topic. */
type Seen = Array<{ topic: string; qos: number; bytes: number }>;
const sorted = (s: Seen) => [...s].sort((a, b) => a.topic.localeCompare(b.topic));

for (const version of [5, 4] as const) {
  const label = version === 5 ? "5" : "3.1.1";
  Deno.test({
    name:
      `mqtt ${label} reader: QoS 0/1 taken by our reader, QoS 2, properties and big messages through mqtt.js, all acknowledged once${needs}`,
    ignore: !hasMosquitto,
    async fn() {
      const broker = await startMosquitto();
      const pub = await publisher(broker.url);
      const clientId = `reader_test_${version}`;
      const session = {
        clientId,
        clean: false,
        protocolVersion: version,
        reconnectPeriod: 0,
        ...(version === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}),
      };
      const taken: Seen = [];
      const viaMqttjs: Seen = [];
      try {
        const gate = new AckGate(1000);
        const client = mqtt.connect(broker.url, { ...session, manualConnect: true });
        installPublishReader(client, {
          route: () => "take",
          whenMayTake: () => Promise.resolve(),
          take(p, connection) {
            taken.push({ topic: p.topic, qos: p.qos, bytes: p.payload.length });
            if (p.qos === 1) gate.ackAfter(p.messageId!, undefined, connection);
          },
        });
        gate.attach(client);
        client.on("message", (topic, payload, packet) => {
          viaMqttjs.push({ topic, qos: packet.qos, bytes: payload.length });
        });
        client.connect();
        await new Promise((r) => client.once("connect", r));
        await client.subscribeAsync("t/#", { qos: 2 });

        await pub.publishAsync("t/q0", "a", { qos: 0 });
        await pub.publishAsync("t/q1", "bb", { qos: 1 });
        await pub.publishAsync("t/q2", "ccc", { qos: 2 });
        await pub.publishAsync("t/props", "dddd", {
          qos: 1,
          properties: { userProperties: { line: "1" }, contentType: "text/plain" },
        });
        await pub.publishAsync("t/big", BIG, { qos: 1 });
        await waitFor(() => taken.length + viaMqttjs.length >= 5, "all 5 messages arrived");
        await client.endAsync();

        // Mosquitto passes properties on to an MQTT 5 subscriber only.
        const props = { topic: "t/props", qos: 1, bytes: 4 };
        assertEquals(sorted(taken), [
          ...(version === 5 ? [] : [props]),
          { topic: "t/q0", qos: 0, bytes: 1 },
          { topic: "t/q1", qos: 1, bytes: 2 },
        ]);
        assertEquals(sorted(viaMqttjs), [
          { topic: "t/big", qos: 1, bytes: BIG.length },
          ...(version === 5 ? [props] : []),
          { topic: "t/q2", qos: 2, bytes: 3 },
        ]);

        // The session again, with plain mqtt.js: nothing comes back but a new message.
        const again = mqtt.connect(broker.url, session);
        const redelivered: string[] = [];
        again.on("message", (topic) => redelivered.push(topic)); // before CONNACK: redeliveries follow it
        await new Promise((r) => again.once("connect", r));
        await pub.publishAsync("t/marker", "m", { qos: 1 });
        await waitFor(() => redelivered.includes("t/marker"), "the marker message arrived");
        await again.endAsync();
        assertEquals(redelivered, ["t/marker"]);
      } finally {
        await pub.endAsync();
        await broker.stop();
      }
    },
  });
}
