/**
 * JSON publishers of the simulator, one mqtt.js client of the embedded broker
 * (MQTT 3.1.1, QoS 1, not retained), about once per `intervalMs`:
 *
 * - each simulated sensor on `plant/columbus/paint_shop/line2/oven1/<sensor>`
 *   as `{"value": v, "timestamp": ms, "unit": "..."}`;
 * - a Kepware IoT Gateway message on
 *   `plant/columbus/stamping/line1/press2/iotgateway` as
 *   `{"timestamp": ms, "values": [{"id": "Channel1.Device1.<Tag>", "v", "q", "t"}]}`.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";

/** A simulated sensor's current value. */
export interface SimulatedSensor {
  name: string;
  value: number;
  unit?: string;
}

/** ISA-95 context of the JSON sensor topics. */
export const SENSOR_CONTEXT = {
  site: "columbus",
  area: "paint_shop",
  line: "line2",
  equipment: "oven1",
} as const;

/** The topic of a sensor's JSON messages. */
export function sensorTopic(name: string): string {
  const c = SENSOR_CONTEXT;
  return `plant/${c.site}/${c.area}/${c.line}/${c.equipment}/${name}`;
}

/** The topic of the Kepware IoT Gateway messages. */
export const KEPWARE_TOPIC = "plant/columbus/stamping/line1/press2/iotgateway";

/** Tag ids of the Kepware message. */
export const KEPWARE_IDS = [
  "Channel1.Device1.Hydraulic_Pressure",
  "Channel1.Device1.Die_Temperature",
  "Channel1.Device1.Stroke_Count",
  "Channel1.Device1.Running",
] as const;

/** The Kepware IoT Gateway payload at `nowMs` (`strokes` counts since the start). */
export function kepwarePayload(nowMs: number, strokes: number): Record<string, unknown> {
  const t = nowMs / 1000;
  const values = [
    Math.round((180 + 15 * Math.sin(t / 40)) * 100) / 100,
    Math.round((62 + 4 * Math.sin(t / 90)) * 10) / 10,
    strokes,
    Math.floor(t / 30) % 5 !== 4,
  ];
  return {
    timestamp: nowMs,
    values: KEPWARE_IDS.map((id, i) => ({ id, v: values[i], q: true, t: nowMs })),
  };
}

/** Running JSON publishers. */
export interface JsonPublishers {
  /** Messages handed to the client so far. */
  published(): number;
  stop(): Promise<void>;
}

/** Connects to `endpoint` and publishes the sensors and the Kepware message every interval. */
export async function startJsonPublishers(opts: {
  endpoint: string;
  sensors: () => SimulatedSensor[];
  intervalMs?: number;
}): Promise<JsonPublishers> {
  const client = await mqtt.connectAsync(opts.endpoint, {
    clientId: "otedge_sim_json_publisher",
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
  });
  const t0 = Date.now();
  let published = 0;
  const publish = (topic: string, doc: unknown) => {
    published++;
    client.publish(topic, Buffer.from(JSON.stringify(doc)), { qos: 1, retain: false });
  };
  const tick = () => {
    // While the broker is away, skip rather than queue without bound.
    if (!client.connected) return;
    const now = Date.now();
    for (const s of opts.sensors()) {
      const doc: Record<string, unknown> = { value: s.value, timestamp: now };
      if (s.unit) doc.unit = s.unit;
      publish(sensorTopic(s.name), doc);
    }
    publish(KEPWARE_TOPIC, kepwarePayload(now, Math.floor((now - t0) / 1500)));
  };
  tick();
  const timer = setInterval(tick, opts.intervalMs ?? 1000);
  let stopped: Promise<void> | undefined;
  return {
    published: () => published,
    stop() {
      stopped ??= (async () => {
        clearInterval(timer);
        await client.endAsync();
      })();
      return stopped;
    },
  };
}
