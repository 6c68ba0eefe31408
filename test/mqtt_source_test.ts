/**
 * The MQTT source in its real Worker under the real host, against Mosquitto
 * started here on a free 127.0.0.1 port: QoS 0/1/2 delivery, topic template,
 * Kepware shape, retained values, dead letters, and acknowledgement only
 * after the spool commit (redelivery from a persistent session), with many
 * messages in flight sharing commits.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort, waitFor } from "./helpers.ts";
import {
  connected,
  mosquittoPath,
  publisher,
  type Row,
  type Running,
  runSource,
  startMosquitto,
} from "./mosquitto.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const needs = hasMosquitto ? "" : " (ignored: mosquitto is not installed)";
if (!hasMosquitto) console.log("mqtt_source_test: mosquitto not installed; broker tests ignored");

const byTag = (rows: Row[], tag: string) => rows.find((r) => r.tag_name === tag);

Deno.test({
  name: `mqtt: JSON, numbers, booleans, Kepware, retained and a dead letter at QoS 0/1/2${needs}`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    let src: Running | undefined;
    try {
      await pub.publishAsync("plant/s1/a1/l1/e1/level", "42", { qos: 1, retain: true });
      src = await runSource({
        endpoint: broker.url,
        topics: ["plant/#"],
        qos: 2,
        site: "fallback_site",
        topic_template: "plant/{site}/{area}/{line}/{equipment}/{tag_name}",
      });
      await connected(src);
      await pub.publishAsync(
        "plant/s1/a1/l1/e1/temp",
        JSON.stringify({ value: 21.5, unit: "degC", timestamp: "2024-01-02T03:04:05Z" }),
        { qos: 0 },
      );
      await pub.publishAsync("plant/s1/a1/l1/e1/pressure", "3.25", { qos: 1 });
      await pub.publishAsync("plant/s1/a1/l1/e1/running", "true", { qos: 2 });
      await pub.publishAsync(
        "plant/kepware",
        JSON.stringify({
          timestamp: 1700000000000,
          values: [
            { id: "Channel1.Device1.Speed", v: 1200, q: true, t: 1700000000123 },
            { id: "Channel1.Device1.Mode", v: "auto", q: false, t: 1700000000456 },
          ],
        }),
        { qos: 1 },
      );
      await pub.publishAsync("plant/s1/a1/l1/e1/broken", '{"value": 1,', { qos: 1 });
      await waitFor(() => src!.rows.length >= 6 && src!.deadLetters.length >= 1, "6 rows");
      const rows = src.rows;

      const level = byTag(rows, "level")!;
      assertEquals([level.value_num, level.quality, level.quality_code], [42, "uncertain", 1]);
      assert(String(level.metadata).includes('"retained":true'));

      const temp = byTag(rows, "temp")!;
      assertEquals(temp.tag_path, "s1/a1/l1/e1/temperature/temp");
      assertEquals([temp.value_num, temp.unit, temp.quality], [21.5, "degC", "good"]);
      assertEquals(temp.event_time, Date.parse("2024-01-02T03:04:05Z") * 1000);
      assertEquals(temp.address, "plant/s1/a1/l1/e1/temp");

      const pressure = byTag(rows, "pressure")!;
      assertEquals([pressure.value_num, pressure.value_type], [3.25, "float"]);
      assert(String(pressure.metadata).includes('"qos":1'));

      const running = byTag(rows, "running")!;
      assertEquals([running.value_bool, running.value_type], [true, "bool"]);
      assert(String(running.metadata).includes('"qos":2'));

      const speed = byTag(rows, "channel1_device1_speed")!;
      assertEquals([speed.value_num, speed.quality, speed.event_time], [
        1200,
        "good",
        1700000000123000,
      ]);
      assertEquals(speed.site, "fallback_site", "unmatched topic: source context");
      const mode = byTag(rows, "channel1_device1_mode")!;
      assertEquals([mode.value_str, mode.quality], ["auto", "bad"]);

      assertEquals(src.deadLetters.length, 1);
      assert(src.deadLetters[0].reason.startsWith("payload is not valid JSON"));
      assertEquals(src.deadLetters[0].item, '{"value": 1,');
      assertEquals(src.deadLetters[0].detail?.topic, "plant/s1/a1/l1/e1/broken");
      assertEquals(rows.length, 6, "nothing else arrived");
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});

for (const [version, qos] of [["5", 1], ["5", 2], ["3.1.1", 1], ["3.1.1", 2]] as const) {
  Deno.test({
    name:
      `mqtt ${version}: QoS ${qos} is acknowledged only after the spool commit (redelivered after a restart)${needs}`,
    ignore: !hasMosquitto,
    async fn() {
      const broker = await startMosquitto();
      const pub = await publisher(broker.url);
      const source = {
        endpoint: broker.url,
        topics: ["hold/#"],
        qos,
        mqtt_version: version,
        client_id: `hold_${qos}_${version}`,
      };
      let held: Running | undefined;
      let again: Running | undefined;
      let third: Running | undefined;
      try {
        // Run 1: the spool never answers, so the message must stay unacknowledged.
        held = await runSource(source, () => new Promise<boolean>(() => {}));
        await connected(held);
        await pub.publishAsync("hold/x/counter", "7", { qos });
        await waitFor(() => held!.rows.length === 1, "the held batch");
        await held.host.stopAll();

        // Run 2, same client id and persistent session: the broker redelivers; now it is committed.
        again = await runSource(source);
        await waitFor(() => again!.rows.length >= 1, "the redelivered message");
        assertEquals([again.rows[0].tag_name, again.rows[0].value_num], ["counter", 7]);
        // Stopping sends the acks of committed messages before its DISCONNECT.
        await again.host.stopAll();

        // Run 3: it was acknowledged after the commit, so nothing comes back.
        third = await runSource(source);
        await connected(third);
        await pub.publishAsync("hold/x/counter", "8", { qos });
        await waitFor(() => third!.rows.length >= 1, "the next message");
        await new Promise((r) => setTimeout(r, 300));
        assertEquals(third.rows.map((r) => r.value_num), [8]);
      } finally {
        await held?.host.stopAll();
        await again?.host.stopAll();
        await third?.host.stopAll();
        await pub.endAsync();
        await broker.stop();
      }
    },
  });
}

for (const [version, qos] of [["5", 1], ["5", 2], ["3.1.1", 1]] as const) {
  Deno.test({
    name:
      `mqtt ${version}: QoS ${qos} messages stay in flight together and share commits; none is acknowledged before its commit${needs}`,
    ignore: !hasMosquitto,
    async fn() {
      const N = 60;
      // Mosquitto sends MQTT 3.1.1 clients at most max_inflight_messages (default 20) unacknowledged.
      const broker = await startMosquitto("max_inflight_messages 100\n");
      const pub = await publisher(broker.url);
      const source = {
        endpoint: broker.url,
        topics: ["pipe/#"],
        qos,
        mqtt_version: version,
        client_id: `pipe_${qos}_${version}`,
      };
      const values = (rows: Row[]) => new Set(rows.map((r) => r.value_num));
      let held: Running | undefined;
      let again: Running | undefined;
      let third: Running | undefined;
      try {
        // Run 1: the spool never answers. All N messages still reach the host: mqtt.js
        // reads on while their acks wait (one message at a time would stop at the first).
        let batches = 0;
        held = await runSource(source, () => {
          batches++;
          return new Promise<boolean>(() => {});
        });
        await connected(held);
        for (let i = 1; i <= N; i++) await pub.publishAsync("pipe/x/n", String(i), { qos });
        await waitFor(() => values(held!.rows).size === N, `all ${N} messages in flight`)
          .catch((e) => {
            throw new Error(`${e.message}: got ${values(held!.rows).size}, ${batches} batches`);
          });
        assert(batches < N, `${batches} batches for ${N} messages`);
        await held.host.stopAll();

        // Run 2: nothing was acknowledged, so all N come back. The spool answers only
        // once all are in, so every ack follows a commit that covers many messages.
        let release = () => {};
        const gate = new Promise<void>((r) => release = r);
        let commits = 0;
        again = await runSource(source, async () => {
          await gate;
          commits++;
          return true;
        });
        await waitFor(() => values(again!.rows).size === N, `all ${N} redelivered`);
        release();
        await waitFor(() => commits > 0 && commits === again!.batches, "the commits");
        assert(commits < N, `${commits} commits for ${N} messages`);
        // Stopping sends the acks of committed messages before its DISCONNECT.
        await again.host.stopAll();

        // Run 3: all were acknowledged after their commit: nothing comes back.
        third = await runSource(source);
        await connected(third);
        await pub.publishAsync("pipe/x/n", String(N + 1), { qos });
        await waitFor(() => third!.rows.length >= 1, "the next message");
        await new Promise((r) => setTimeout(r, 300));
        assertEquals(third.rows.map((r) => r.value_num), [N + 1]);
      } finally {
        await held?.host.stopAll();
        await again?.host.stopAll();
        await third?.host.stopAll();
        await pub.endAsync();
        await broker.stop();
      }
    },
  });
}

Deno.test({
  name: `mqtt: payloads over max_payload_bytes go to the dead-letter store${needs}`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    let src: Running | undefined;
    try {
      src = await runSource({
        endpoint: broker.url,
        topics: ["big/#"],
        qos: 1,
        clean_session: true,
        max_payload_bytes: 16,
      });
      await connected(src);
      await pub.publishAsync("big/a", "x".repeat(17), { qos: 1 });
      await pub.publishAsync("big/b", "small", { qos: 1 });
      await waitFor(() => src!.rows.length >= 1 && src!.deadLetters.length >= 1, "both");
      assertEquals(src.rows.map((r) => [r.tag_name, r.value_str]), [["b", "small"]]);
      assertEquals(src.deadLetters[0].reason, "payload of 17 bytes exceeds max_payload_bytes 16");
      assertEquals(src.deadLetters[0].detail?.topic, "big/a");
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});

Deno.test("mqtt: a broker that is not there is reported as connection refused", async () => {
  const src = await runSource({ endpoint: `mqtt://127.0.0.1:${freePort()}`, topics: ["a/#"] });
  try {
    const st = await waitFor(
      () => src.status()?.last_error?.includes("connection refused") ? src.status() : undefined,
      "the refused connection",
    );
    assert(st.last_error!.startsWith("connection refused by mqtt://127.0.0.1:"), st.last_error!);
  } finally {
    await src.host.stopAll();
  }
});
