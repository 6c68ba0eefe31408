/**
 * The simulator's MQTT side, as a user meets it: `otedge simulate` runs as its
 * own process; plain mqtt.js clients and the agent's MQTT source (in its real
 * Worker under a SourceHost) talk to its embedded broker. Covers the JSON and
 * Kepware publishers, the Sparkplug B edge node (births, aliases, seq, rebirth,
 * NDEATH by Will, DDEATH), and 20,000 QoS 1 messages through the broker.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { get } from "sparkplug-payload";
import { assert, assertEquals } from "./assert.ts";
import { type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import { type SelfProcess, spawnSelf } from "../src/self.ts";
import { KEPWARE_IDS, KEPWARE_TOPIC, sensorTopic } from "../src/simulator/mqtt_publishers.ts";
import { startBroker } from "../src/simulator/mqtt_broker.ts";
import {
  CONNECTION_LOSS,
  DEVICE_ONLINE,
  edgeTopic,
  REBIRTH,
  startEdgeNode,
} from "../src/simulator/sparkplug_edge.ts";
import { decodeSparkplug, type SparkplugMetric } from "../src/sources/mqtt/sparkplug/decode.ts";

const sp = get("spBv1.0")!;
const TAGS = 4;

interface Simulator {
  proc: SelfProcess;
  endpoint: string;
  url: string;
}

/** Starts `otedge simulate` on free ports (stopped by the caller with proc.stop()). */
async function startSimulator(): Promise<Simulator> {
  const proc = await spawnSelf(
    ["simulate", "--port", "0", "--modbus-port", "0", "--mqtt-port", "0", "--tags", String(TAGS)],
    "ready",
  );
  const r = proc.ready as { mqtt_endpoint: string; url: string };
  return { proc, endpoint: r.mqtt_endpoint, url: r.url };
}

/** Runs `body` with a simulator process; stops it by pid afterwards. */
async function withSimulator(body: (sim: Simulator) => Promise<void>): Promise<void> {
  const sim = await startSimulator();
  try {
    await body(sim);
  } finally {
    await sim.proc.stop();
  }
}

function client(endpoint: string, opts: mqtt.IClientOptions = {}) {
  return mqtt.connectAsync(endpoint, { protocolVersion: 4, reconnectPeriod: 0, ...opts });
}

/** A Sparkplug message as a subscriber saw it. */
interface Seen {
  type: string;
  device?: string;
  seq?: number;
  metrics: SparkplugMetric[];
}

/** Subscribes to the edge node's topics and decodes what arrives, in order. */
async function sparkplugWatcher(endpoint: string) {
  const c = await client(endpoint);
  const seen: Seen[] = [];
  c.on("message", (topic, payload) => {
    const [, , type, , device] = topic.split("/");
    if (type === "NCMD" || type === "DCMD") return;
    const d = decodeSparkplug(new Uint8Array(payload));
    if (!d.ok) throw new Error(`undecodable Sparkplug payload on ${topic}: ${d.reason}`);
    seen.push({ type, device, seq: d.payload.seq, metrics: d.payload.metrics });
  });
  await c.subscribeAsync("spBv1.0/assembly/#", { qos: 1 });
  const command = (type: "NCMD" | "DCMD", name: string, value: boolean, device?: string) =>
    c.publishAsync(
      edgeTopic(type, device),
      Buffer.from(sp.encodePayload({
        timestamp: Date.now(),
        metrics: [{ name, type: "Boolean", value }],
      })),
      { qos: 0 },
    );
  return { client: c, seen, command };
}

const bdSeqOf = (m: Seen) => Number(m.metrics.find((x) => x.name === "bdSeq")?.value);
const after = (seen: Seen[], from: number, pred: (m: Seen) => boolean) =>
  seen.slice(from).find(pred);

Deno.test("simulate mqtt: JSON sensors and the Kepware message reach a plain subscriber", async () => {
  await withSimulator(async (sim) => {
    const c = await client(sim.endpoint);
    const got = new Map<string, Record<string, unknown>>();
    try {
      c.on("message", (topic, payload) => got.set(topic, JSON.parse(payload.toString())));
      await c.subscribeAsync("plant/#", { qos: 1 });
      const sensors = (await (await fetch(`${sim.url}/api/sensors`)).json()).sensors as {
        name: string;
        unit: string;
      }[];
      assertEquals(sensors.length, TAGS);
      const topics = [...sensors.map((s) => sensorTopic(s.name)), KEPWARE_TOPIC];
      await waitFor(
        () => topics.every((t) => got.has(t)),
        "every sensor topic and Kepware",
        10_000,
      );
      for (const s of sensors) {
        const doc = got.get(sensorTopic(s.name))!;
        assertEquals(Object.keys(doc).sort(), ["timestamp", "unit", "value"]);
        assertEquals(typeof doc.value, "number");
        assertEquals(doc.unit, s.unit);
        assert(Math.abs((doc.timestamp as number) - Date.now()) < 60_000, "timestamp in ms");
      }
      assertEquals(
        sensorTopic("sensor_0000"),
        "plant/columbus/paint_shop/line2/oven1/sensor_0000",
      );
      const kep = got.get(KEPWARE_TOPIC)! as { timestamp: number; values: Row[] };
      assertEquals(kep.values.map((v) => v.id), [...KEPWARE_IDS]);
      for (const v of kep.values) {
        assertEquals(v.q, true);
        assertEquals(v.t, kep.timestamp);
      }
      assertEquals(kep.values.map((v) => typeof v.v), ["number", "number", "number", "boolean"]);

      // aedes 1.x speaks MQTT 3.1.1 only: an MQTT 5 client is refused, and says so.
      const v5 = await mqtt.connectAsync(sim.endpoint, { protocolVersion: 5, reconnectPeriod: 0 })
        .then((x) => x.endAsync().then(() => "connected"), (e: Error) => e.message);
      assert(/protocol version/i.test(v5), `MQTT 5 refused with a reason: ${v5}`);
    } finally {
      await c.endAsync();
    }
  });
});

Deno.test("simulate mqtt: the agent's MQTT source reads JSON and Kepware with ISA-95 paths", async () => {
  await withSimulator(async (sim) => {
    const src = await runSourceUnderHost(`sources:
  - name: sim_json
    protocol: mqtt
    endpoint: ${sim.endpoint}
    mqtt_version: "3.1.1"
    site: nowhere
    topics: ["plant/#"]
    topic_template: "plant/{site}/{area}/{line}/{equipment}/{tag_name}"
`);
    try {
      await waitFor(
        () =>
          src.rows.some((r) => r.tag_name === "sensor_0001") &&
          src.rows.some((r) => r.tag_name === "channel1_device1_running"),
        "a JSON sensor row and a Kepware row",
      );
      const json = src.rows.find((r) => r.tag_name === "sensor_0001")!;
      assertEquals(
        [json.site, json.area, json.line, json.equipment],
        ["columbus", "paint_shop", "line2", "oven1"],
      );
      assertEquals(json.address, "plant/columbus/paint_shop/line2/oven1/sensor_0001");
      assert(
        (json.tag_path as string).startsWith("columbus/paint_shop/line2/oven1/"),
        `${json.tag_path}`,
      );
      assertEquals(json.unit, "%");
      assertEquals(typeof json.value_num, "number");
      assertEquals(JSON.parse(json.metadata as string).qos, 1);
      const running = src.rows.find((r) => r.tag_name === "channel1_device1_running")!;
      assertEquals([running.area, running.equipment], ["stamping", "press2"]);
      assertEquals(running.value_type, "bool");
      assertEquals(running.quality, "good");
      const strokes = src.rows.find((r) => r.tag_name === "channel1_device1_stroke_count")!;
      assertEquals(strokes.value_type, "int");
    } finally {
      await src.stop();
    }
  });
});

Deno.test("simulate mqtt: Sparkplug births, aliases-only DDATA, rebirth on NCMD, NDEATH by Will, DDEATH", async () => {
  await withSimulator(async (sim) => {
    const w = await sparkplugWatcher(sim.endpoint);
    try {
      // DATA messages carry aliases only: no names, no datatypes.
      const data = await waitFor(() => w.seen.find((m) => m.type === "DDATA"), "a DDATA", 10_000);
      for (const m of data.metrics) {
        assert(m.alias !== undefined && m.name === undefined, "DDATA metric by alias only");
        assertEquals(m.datatype, undefined, "DDATA metric without datatype");
        assert(m.timestamp !== undefined, "DDATA metric with a timestamp");
      }

      // Rebirth: NBIRTH seq 0 then DBIRTHs, seq +1 per message from there.
      let from = w.seen.length;
      await w.command("NCMD", REBIRTH, true);
      const births = await waitFor(
        () => {
          const i = w.seen.findIndex((m, k) => k >= from && m.type === "NBIRTH");
          const rest = i < 0 ? [] : w.seen.slice(i);
          return rest.filter((m) => m.type === "DBIRTH").length >= 2 && rest.length >= 5
            ? rest
            : undefined;
        },
        "NBIRTH and two DBIRTHs after the rebirth request",
        10_000,
      );
      const nbirth = births[0];
      assertEquals(nbirth.seq, 0);
      const bdSeq = bdSeqOf(nbirth);
      assert(Number.isInteger(bdSeq), "NBIRTH has a bdSeq metric");
      const rebirth = nbirth.metrics.find((m) => m.name === REBIRTH)!;
      assertEquals([rebirth.datatype, rebirth.value], [11, false]);
      assertEquals(births.slice(1, 3).map((m) => [m.type, m.seq]), [["DBIRTH", 1], ["DBIRTH", 2]]);
      assertEquals(births.slice(1, 3).map((m) => m.device).sort(), ["conveyor2", "welder1"]);
      const types = new Set<number>();
      const aliases = new Set<string>();
      for (const m of births.slice(0, 3).flatMap((b) => b.metrics)) {
        assert(m.name !== undefined && m.alias !== undefined && m.datatype !== undefined, m.name);
        assert(!aliases.has(String(m.alias)), `alias ${m.alias} unique across the edge node`);
        aliases.add(String(m.alias));
        types.add(m.datatype);
      }
      for (const t of [4, 9, 10, 11, 12]) assert(types.has(t), `a metric of datatype ${t}`);
      for (let i = 1; i < births.length; i++) {
        assertEquals(births[i].seq, (births[i - 1].seq! + 1) & 0xff, `seq of message ${i}`);
      }

      // A second rebirth keeps the bdSeq (same MQTT connection).
      from = w.seen.length;
      await w.command("NCMD", REBIRTH, true);
      const again = await waitFor(() => after(w.seen, from, (m) => m.type === "NBIRTH"), "NBIRTH");
      assertEquals(bdSeqOf(again), bdSeq);

      // The connection dies without DISCONNECT: the broker publishes the Will,
      // an NDEATH with this connection's bdSeq; the node comes back with bdSeq + 1.
      from = w.seen.length;
      await w.command("NCMD", CONNECTION_LOSS, true);
      const death = await waitFor(() => after(w.seen, from, (m) => m.type === "NDEATH"), "NDEATH");
      assertEquals(bdSeqOf(death), bdSeq);
      assertEquals(death.seq, undefined, "NDEATH has no seq");
      assertEquals(death.metrics.length, 1);
      const reborn = await waitFor(
        () => after(w.seen, from, (m) => m.type === "NBIRTH"),
        "NBIRTH after the reconnect",
        10_000,
      );
      assertEquals(bdSeqOf(reborn), (bdSeq + 1) & 0xff);
      assertEquals(reborn.seq, 0);
      // The new connection registered a Will with the new bdSeq.
      from = w.seen.length;
      await w.command("NCMD", CONNECTION_LOSS, true);
      const death2 = await waitFor(() => after(w.seen, from, (m) => m.type === "NDEATH"), "NDEATH");
      assertEquals(bdSeqOf(death2), (bdSeq + 1) & 0xff);
      const reborn2 = await waitFor(
        () => after(w.seen, from, (m) => m.type === "NBIRTH"),
        "NBIRTH after the second reconnect",
        10_000,
      );
      assertEquals(bdSeqOf(reborn2), (bdSeq + 2) & 0xff);

      // A device goes offline (DDEATH, no more data) and comes back (DBIRTH).
      from = w.seen.length;
      await w.command("DCMD", DEVICE_ONLINE, false, "conveyor2");
      const ddeath = await waitFor(
        () => w.seen.findIndex((m, k) => k >= from && m.type === "DDEATH") + 1,
        "DDEATH",
      ) - 1;
      assertEquals(w.seen[ddeath].device, "conveyor2", "DDEATH of conveyor2");
      await waitFor(
        () => w.seen.slice(ddeath).filter((m) => m.device === "welder1").length >= 2,
        "welder1 data going on",
      );
      assert(
        !w.seen.slice(ddeath + 1).some((m) => m.device === "conveyor2"),
        "no conveyor2 data after its DDEATH",
      );
      from = w.seen.length;
      await w.command("DCMD", DEVICE_ONLINE, true, "conveyor2");
      await waitFor(
        () => after(w.seen, from, (m) => m.type === "DBIRTH" && m.device === "conveyor2"),
        "conveyor2 DBIRTH",
      );

      // A clean stop publishes NDEATH (with the current bdSeq) before disconnecting.
      from = w.seen.length;
      await sim.proc.stop();
      assertEquals((await sim.proc.child.status).code, 0, "simulate exits 0 on SIGTERM");
      // Sent before the exit; this process may read it from the socket a little later.
      const last = await waitFor(
        () => after(w.seen, from, (m) => m.type === "NDEATH"),
        "NDEATH on a clean stop",
      );
      assertEquals(bdSeqOf(last), (bdSeq + 2) & 0xff);
    } finally {
      await w.client.endAsync(true);
    }
  });
});

Deno.test("simulate mqtt: the agent's Sparkplug host resolves aliases with BIRTH datatypes, NDEATH makes them stale", async () => {
  await withSimulator(async (sim) => {
    const src = await runSourceUnderHost(`sources:
  - name: sim_sparkplug
    protocol: mqtt
    endpoint: ${sim.endpoint}
    mqtt_version: "3.1.1"
    site: columbus
    qos: 0
    topics: ["spBv1.0/assembly/#"]
    sparkplug: { host_id: sim_test_host, rebirth_interval_ms: 1000 }
`);
    const w = await sparkplugWatcher(sim.endpoint);
    try {
      // The host joins mid-session: DDATA before NBIRTH makes it ask for a rebirth.
      const fromData = (name: string) =>
        src.rows.find((r) =>
          r.tag_name === name && JSON.parse(r.metadata as string).sparkplug === "DDATA"
        );
      await waitFor(
        () => ["motor_current", "belt_speed", "belt_load"].every((n) => fromData(n)),
        "DDATA rows resolved from aliases",
      );
      const expect: [string, string, string][] = [
        ["motor_current", "float", "Double"],
        ["belt_speed", "float", "Double"],
        ["belt_load", "int", "Int32"],
      ];
      for (const [name, valueType, datatype] of expect) {
        const r = fromData(name)!;
        assertEquals(r.value_type, valueType, name);
        assertEquals(JSON.parse(r.metadata as string).datatype, datatype, name);
        assertEquals(typeof r.value_num, "number");
      }
      const current = fromData("motor_current")!;
      assertEquals(current.address, "spBv1.0/assembly/line4/welder1/Motor/Current");
      assertEquals(
        [current.site, current.area, current.line, current.equipment],
        ["columbus", "assembly", "line4", "welder1"],
      );
      assertEquals(current.unit, "A", "unit from the DBIRTH");
      const birth = (name: string) => src.rows.find((r) => r.tag_name === name);
      assertEquals(birth("weld_count")?.value_type, "int");
      assertEquals(birth("running")?.value_type, "bool");
      assertEquals(birth("program")?.value_type, "string");
      assertEquals(birth("motor_temperature")?.value_type, "float");

      // NDEATH by Will: the host accepts it (its bdSeq matches) and marks metrics stale.
      await w.command("NCMD", CONNECTION_LOSS, true);
      const stale = await waitFor(
        () =>
          src.rows.find((r) =>
            r.tag_name === "motor_current" && JSON.parse(r.metadata as string).stale === true
          ),
        "a stale row after NDEATH",
        10_000,
      );
      assertEquals(stale.quality, "uncertain");
      assertEquals(stale.value_num, null);
      assertEquals(JSON.parse(stale.metadata as string).reason, "NDEATH");
    } finally {
      await w.client.endAsync(true);
      await src.stop();
    }
  });
});

Deno.test("simulate mqtt: the edge node's seq wraps from 255 to 0", async () => {
  const broker = await startBroker({ host: "127.0.0.1", port: 0 });
  const w = await sparkplugWatcher(broker.endpoint);
  const node = await startEdgeNode({ endpoint: broker.endpoint, intervalMs: 5 });
  try {
    const seqs = await waitFor(
      () => {
        const s = w.seen.filter((m) => m.type !== "NDEATH").map((m) => m.seq!);
        return s.length >= 300 ? s : undefined;
      },
      "300 messages",
      30_000,
    );
    assertEquals(w.seen[0].type, "NBIRTH");
    for (let i = 1; i < seqs.length; i++) assertEquals(seqs[i], (seqs[i - 1] + 1) % 256);
    assert(seqs.includes(255) && seqs.lastIndexOf(0) > seqs.indexOf(255), "wrapped after 255");
  } finally {
    await node.stop();
    await w.client.endAsync(true);
    await broker.stop();
  }
});

Deno.test("simulate mqtt: 20,000 QoS 1 messages through the embedded broker all arrive", async () => {
  await withSimulator(async (sim) => {
    const total = 20_000;
    const sub = await client(sim.endpoint, { clientId: "load_sub" });
    const pub = await client(sim.endpoint, { clientId: "load_pub" });
    const got = new Set<number>();
    try {
      sub.on("message", (_t, payload) => got.add(Number(payload.toString())));
      await sub.subscribeAsync("load/test", { qos: 1 });
      const t0 = performance.now();
      await Promise.all(
        Array.from(
          { length: total },
          (_, i) => pub.publishAsync("load/test", String(i), { qos: 1 }),
        ),
      );
      await waitFor(() => got.size === total, `${total} distinct messages`, 120_000)
        .catch(() => {
          throw new Error(`only ${got.size} of ${total} QoS 1 messages arrived`);
        });
      const s = (performance.now() - t0) / 1000;
      console.log(`  ${total} QoS 1 messages in ${s.toFixed(2)} s (${Math.round(total / s)}/s)`);
    } finally {
      await pub.endAsync();
      await sub.endAsync();
    }
  });
});
