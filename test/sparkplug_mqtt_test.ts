/**
 * Sparkplug B through the MQTT source against Mosquitto: births, alias
 * resolution in DDATA, a seq gap answered with one rebirth request (NCMD),
 * and an invalid payload dead-lettered.
 */
import { get } from "sparkplug-payload";
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
import { decodeSparkplug } from "../src/sources/mqtt/sparkplug/decode.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const sp = get("spBv1.0")!;
const enc = (seq: number, metrics: unknown[]) =>
  sp.encodePayload({ timestamp: Date.now(), seq, metrics: metrics as never });

Deno.test({
  name: `sparkplug over mqtt: births, aliases, a rebirth on a seq gap, a dead letter${
    hasMosquitto ? "" : " (ignored: mosquitto is not installed)"
  }`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    const commands: Uint8Array[] = [];
    let src: Running | undefined;
    try {
      await pub.subscribeAsync("spBv1.0/+/NCMD/#");
      pub.on("message", (_t, payload) => commands.push(new Uint8Array(payload)));
      src = await runSource({ endpoint: broker.url, topics: ["spBv1.0/#"], qos: 0 });
      await connected(src);
      const node = "spBv1.0/Assembly";
      await pub.publishAsync(
        `${node}/NBIRTH/Line4`,
        enc(0, [{ name: "bdSeq", type: "Int64", value: 0 }]) as never,
      );
      await pub.publishAsync(
        `${node}/DBIRTH/Line4/Welder2`,
        enc(1, [{
          name: "Motor/Current",
          alias: 7,
          type: "Double",
          value: 11.5,
          properties: { engUnit: { type: "String", value: "A" } },
        }]) as never,
      );
      await pub.publishAsync(
        `${node}/DDATA/Line4/Welder2`,
        enc(2, [{ alias: 7, type: "Double", value: 12.25 }]) as never,
      );
      const data = await waitFor(
        () => src!.rows.find((r) => r.value_num === 12.25),
        "the DDATA value, its alias resolved",
        10_000,
      );
      assertEquals(data.tag_name, "motor_current");
      assertEquals(data.unit, "A", "the BIRTH's unit carries over");
      assertEquals(data.address, "spBv1.0/Assembly/Line4/Welder2/Motor/Current");
      assertEquals([data.area, data.line, data.equipment], ["assembly", "line4", "welder2"]);
      assertEquals(data.signal_type, "current");

      // seq 3 is skipped: the host asks the edge node to rebirth, once.
      await pub.publishAsync(
        `${node}/DDATA/Line4/Welder2`,
        enc(4, [{ alias: 7, type: "Double", value: 13 }]) as never,
      );
      await waitFor(() => commands.length >= 1, "an NCMD rebirth request", 10_000);
      const cmd = decodeSparkplug(commands[0]);
      assert(cmd.ok);
      const rebirth = cmd.payload.metrics.find((m) => m.name === "Node Control/Rebirth");
      assertEquals(rebirth?.value, true);

      await pub.publishAsync(
        `${node}/DDATA/Line4/Welder2`,
        new Uint8Array([0xff, 0xff, 0x01]) as never,
      );
      await waitFor(
        () => src!.deadLetters.length >= 1,
        "the invalid payload dead-lettered",
        10_000,
      );
      assert(src.deadLetters[0].reason.includes("Sparkplug"), src.deadLetters[0].reason);
      await new Promise((r) => setTimeout(r, 300));
      assertEquals(commands.length, 1, "rebirth requests are throttled");
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});
