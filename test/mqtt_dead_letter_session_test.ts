/**
 * Dead letters on a persistent session against Mosquitto: a QoS 1 message
 * with malformed JSON and a QoS 1 Sparkplug message with invalid protobuf go
 * to the dead-letter handler with their topic and reason, and are still
 * acknowledged: a restart with the same client id (the session present, a
 * message queued while stopped delivered) does not bring them back.
 */
import { assert, assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import {
  connected,
  mosquittoPath,
  publisher,
  type Running,
  runSource,
  startMosquitto,
} from "./mosquitto.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const needs = hasMosquitto ? "" : " (ignored: mosquitto is not installed)";
if (!hasMosquitto) console.log("mqtt_dead_letter_session_test: mosquitto not installed; ignored");

const BROKEN_JSON = '{"value": 1,';
/** Not a Sparkplug B payload: protobuf field 31 with wire type 7 (no such type). */
const BAD_PROTOBUF = new Uint8Array([0xff, 0xff, 0x01]);
const SPARKPLUG_TOPIC = "spBv1.0/Plant/DDATA/Edge1/Pump";

const values = (src: Running) => src.rows.map((r) => r.value_num);
const settle = () => new Promise((r) => setTimeout(r, 500));

for (const version of ["5", "3.1.1"] as const) {
  Deno.test({
    name:
      `mqtt ${version}: dead-lettered QoS 1 messages (bad JSON, bad Sparkplug protobuf) are acknowledged, not redelivered on the persistent session${needs}`,
    ignore: !hasMosquitto,
    async fn() {
      const broker = await startMosquitto();
      const pub = await publisher(broker.url);
      const source = {
        endpoint: broker.url,
        topics: ["dl/#", "spBv1.0/#"],
        qos: 1,
        mqtt_version: version,
        clean_session: false,
        client_id: `dead_letter_${version.replaceAll(".", "")}`,
      };
      let first: Running | undefined;
      let second: Running | undefined;
      try {
        // Run 1: two bad messages and a good one, all QoS 1.
        first = await runSource(source);
        await connected(first);
        await pub.publishAsync("dl/line1/broken", BROKEN_JSON, { qos: 1 });
        await pub.publishAsync(SPARKPLUG_TOPIC, BAD_PROTOBUF as never, { qos: 1 });
        await pub.publishAsync("dl/line1/count", "5", { qos: 1 });
        await waitFor(
          () => first!.rows.length >= 1 && first!.deadLetters.length >= 2,
          "the good row and both dead letters",
        );
        await settle();
        assertEquals(values(first), [5]);
        assertEquals(first.deadLetters.length, 2);
        const [json, spb] = first.deadLetters;
        assert(json.reason.startsWith("payload is not valid JSON"), json.reason);
        assertEquals(json.item, BROKEN_JSON);
        assertEquals([json.detail?.topic, json.detail?.qos], ["dl/line1/broken", 1]);
        assert(spb.reason.startsWith("invalid Sparkplug B payload"), spb.reason);
        assertEquals([spb.detail?.topic, spb.detail?.qos, spb.detail?.bytes], [
          SPARKPLUG_TOPIC,
          1,
          3,
        ]);
        assertEquals(first.status().state, "connected", "the source keeps running");
        await first.host.stopAll();

        // While the source is stopped the broker queues a message for its session.
        await pub.publishAsync("dl/line1/count", "6", { qos: 1 });

        // Run 2, same client id: the queued message comes, the dead-lettered ones do not.
        second = await runSource(source);
        await connected(second);
        assertEquals(second.status().detail.session_present, true, "the session was kept");
        await waitFor(() => values(second!).includes(6), "the message queued while stopped");
        await pub.publishAsync("dl/line1/count", "7", { qos: 1 });
        await waitFor(() => values(second!).includes(7), "a message after the restart");
        await settle();
        assertEquals(values(second), [6, 7]);
        assertEquals(second.deadLetters, [], "no dead letter came back");
      } finally {
        await first?.host.stopAll();
        await second?.host.stopAll();
        await pub.endAsync();
        await broker.stop();
      }
    },
  });
}

// Dead letters count in the source's errors (status and /api/status).
Deno.test({
  name: `mqtt: the source's errors counter in its status counts its dead letters${needs}`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    let src: Running | undefined;
    try {
      src = await runSource({ endpoint: broker.url, topics: ["dl/#"], qos: 1 });
      await connected(src);
      const before = src.status().counters.errors;
      await pub.publishAsync("dl/line1/broken", BROKEN_JSON, { qos: 1 });
      await pub.publishAsync("dl/line1/count", "5", { qos: 1 });
      await waitFor(() => src!.rows.length >= 1 && src!.deadLetters.length >= 1, "both");
      await settle();
      assertEquals(src.status().counters.errors, before + 1);
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});
