/**
 * Sparkplug B through the MQTT source against Mosquitto: births, alias
 * resolution in DDATA, a seq gap answered with one rebirth request (NCMD),
 * an invalid payload dead-lettered, and the reorder window (out-of-order
 * messages put back in seq order; an unfilled gap gives one rebirth).
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
      src = await runSource({
        endpoint: broker.url,
        topics: ["spBv1.0/#"],
        qos: 0,
        max_payload_bytes: 2000,
      });
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
      assertEquals(data.source_protocol, "sparkplug", "Sparkplug rules and quality tables apply");

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
      // A payload over max_payload_bytes is not decoded at all.
      await pub.publishAsync(
        `${node}/DDATA/Line4/Welder2`,
        enc(5, [{ name: "Note", type: "String", value: "x".repeat(3000) }]) as never,
      );
      await waitFor(() => src!.deadLetters.length >= 2, "the oversized payload dead-lettered");
      assert(
        /exceeds max_payload_bytes 2000/.test(src.deadLetters[1].reason),
        src.deadLetters[1].reason,
      );
      assertEquals(src.deadLetters[1].detail?.topic, `${node}/DDATA/Line4/Welder2`);
      await new Promise((r) => setTimeout(r, 300));
      assertEquals(commands.length, 1, "rebirth requests are throttled");
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});

Deno.test({
  name:
    `sparkplug over mqtt: the reorder window puts messages back in seq order; a gap gives one rebirth${
      hasMosquitto ? "" : " (ignored: mosquitto is not installed)"
    }`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    const commands: string[] = [];
    let src: Running | undefined;
    try {
      await pub.subscribeAsync("spBv1.0/+/NCMD/#");
      pub.on("message", (topic) => commands.push(topic));
      src = await runSource({
        endpoint: broker.url,
        topics: ["spBv1.0/#"],
        qos: 1,
        // Wide enough that a busy machine never stalls three publishes past it.
        sparkplug: { reorder_timeout_ms: 3000, rebirth_interval_ms: 0 },
      });
      await connected(src);
      const birth = async (node: string) => {
        await pub.publishAsync(
          `spBv1.0/Plant/NBIRTH/${node}`,
          enc(0, [{ name: "bdSeq", type: "Int64", value: 0 }]) as never,
          { qos: 1 },
        );
        await pub.publishAsync(
          `spBv1.0/Plant/DBIRTH/${node}/Pump`,
          enc(1, [{ name: "flow", alias: 3, type: "Double", value: 1 }]) as never,
          { qos: 1 },
        );
      };
      const data = (node: string, seq: number) =>
        pub.publishAsync(
          `spBv1.0/Plant/DDATA/${node}/Pump`,
          enc(seq, [{ alias: 3, type: "Double", value: seq * 10 }]) as never,
          { qos: 1 },
        );
      const flows = (node: string) =>
        src!.rows.filter((r) => String(r.address).startsWith(`spBv1.0/Plant/${node}/Pump/`))
          .map((r) => r.value_num);

      // Line A: seq 3 and 4 overtake 2; 2 arrives within the window.
      await birth("LineA");
      for (const seq of [3, 4, 2]) await data("LineA", seq);
      await waitFor(() => flows("LineA").length >= 4, "LineA's data", 10_000);
      assertEquals(flows("LineA"), [1, 20, 30, 40], "in seq order");

      // Line B: 3 and 5 never come. The window (started after Line A's was closed) ends once.
      await birth("LineB");
      for (const seq of [2, 4, 6]) await data("LineB", seq);
      await waitFor(() => commands.length >= 1, "a rebirth request", 10_000);
      await waitFor(() => flows("LineB").length >= 4, "LineB's data", 10_000);
      assertEquals(flows("LineB"), [1, 20, 40, 60], "the data after the gap, in seq order");
      await new Promise((r) => setTimeout(r, 500));
      assertEquals(commands, ["spBv1.0/Plant/NCMD/LineB"], "one rebirth, only for the gap");
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});
