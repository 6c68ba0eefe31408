/**
 * A Sparkplug B edge node of the simulator (group `assembly`, edge node
 * `line4`, devices `welder1` and `conveyor2`), an mqtt.js client of the
 * embedded broker, following the Sparkplug 3.0 rules:
 *
 * - CONNECT with clean session and a Will on `spBv1.0/assembly/NDEATH/line4`
 *   (QoS 1, not retained) carrying the `bdSeq` metric; bdSeq counts 0..255,
 *   one step per new connection;
 * - NBIRTH (seq 0, `bdSeq` equal to the Will's, `Node Control/Rebirth` false)
 *   then one DBIRTH per online device; every metric with name, alias, datatype
 *   and timestamp; BIRTHs QoS 0, not retained;
 * - DDATA about once per second with the metrics that changed, by alias only
 *   (no name, no datatype); seq +1 per message, 255 wraps to 0; NDEATH has none;
 * - NCMD `Node Control/Rebirth` = true: a new NBIRTH (seq 0, same bdSeq) and
 *   DBIRTHs; a clean stop publishes NDEATH before DISCONNECT.
 *
 * Simulator controls (declared in the BIRTHs like any metric):
 * NCMD `Node Control/Simulate Connection Loss` = true drops the TCP connection
 * without DISCONNECT, so the broker publishes the Will (NDEATH), and the node
 * reconnects with the next bdSeq; DCMD `Device Control/Online` = false sends
 * DDEATH for that device and stops its data, true brings it back with a DBIRTH.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { get } from "sparkplug-payload";
import spProto from "sparkplug-payload/lib/sparkplugPayloadProto.js";
import {
  type EdgeDevice,
  edgeDevices,
  type MetricSpec,
  type MetricValue,
} from "./sparkplug_model.ts";

/** Sparkplug group id of the simulator's edge node. */
export const EDGE_GROUP = "assembly";
/** Edge node id. */
export const EDGE_NODE = "line4";

/** Node metric names. */
export const REBIRTH = "Node Control/Rebirth";
export const CONNECTION_LOSS = "Node Control/Simulate Connection Loss";
export const DEVICE_ONLINE = "Device Control/Online";

// deno-lint-ignore no-explicit-any
const Payload = (spProto as any).org.eclipse.tahu.protobuf.Payload;
const sparkplug = get("spBv1.0")!;
const { encodePayload, decodePayload } = sparkplug;
type UMetric = NonNullable<ReturnType<typeof decodePayload>["metrics"]>[number];

const NODE_METRICS: MetricSpec[] = [
  { name: "bdSeq", alias: 0, type: "Int64", value: () => 0 },
  { name: REBIRTH, alias: 1, type: "Boolean", value: () => false },
  { name: CONNECTION_LOSS, alias: 2, type: "Boolean", value: () => false },
  { name: "Properties/Software", alias: 3, type: "String", value: () => "otedge simulate" },
];

/** A running edge node. */
export interface SparkplugEdgeNode {
  /** The bdSeq of the current (or next) connection. */
  bdSeq(): number;
  /** Messages published so far, by type (NBIRTH, DBIRTH, DDATA, DDEATH, NDEATH). */
  counts(): Record<string, number>;
  /** Publishes NDEATH, disconnects cleanly and stops the data timer. */
  stop(): Promise<void>;
}

/** Topic of a Sparkplug message of this node (device for D* types). */
export function edgeTopic(type: string, device?: string): string {
  return `spBv1.0/${EDGE_GROUP}/${type}/${EDGE_NODE}${device ? `/${device}` : ""}`;
}

/** The NDEATH payload: the bdSeq metric only, no seq. */
export function ndeathPayload(bdSeq: number, timestampMs = Date.now()): Uint8Array {
  return encodePayload({
    timestamp: timestampMs,
    metrics: [{ name: "bdSeq", type: "Int64", value: bdSeq }],
  });
}

/** Starts the edge node against `endpoint`; resolves once the first births are out. */
export async function startEdgeNode(
  opts: { endpoint: string; intervalMs?: number },
): Promise<SparkplugEdgeNode> {
  const devices = edgeDevices();
  const online = new Map(devices.map((d) => [d.name, true]));
  const last = new Map<string, MetricValue>();
  const counts: Record<string, number> = {};
  let bdSeq = 0;
  let seq = 0;
  let born = false;
  const nextSeq = () => {
    const s = seq;
    seq = (seq + 1) & 0xff;
    return s;
  };
  const client = mqtt.connect(opts.endpoint, {
    clientId: `otedge_sim_${EDGE_GROUP}_${EDGE_NODE}`,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
    will: willOf(0),
  });
  const send = (type: string, payload: Uint8Array, device?: string, qos: 0 | 1 = 0) => {
    counts[type] = (counts[type] ?? 0) + 1;
    client.publish(edgeTopic(type, device), Buffer.from(payload), { qos, retain: false });
  };

  const birthMetric = (m: MetricSpec, v: MetricValue, ts: number): UMetric => {
    const out: UMetric = { name: m.name, alias: m.alias, type: m.type, value: v, timestamp: ts };
    if (m.unit) out.properties = { engUnit: { type: "String", value: m.unit } };
    return out;
  };
  const dbirth = (d: EdgeDevice) => {
    const now = Date.now();
    const metrics = d.metrics.map((m) => {
      const v = m.value(now);
      last.set(`${d.name}/${m.alias}`, v);
      return birthMetric(m, v, now);
    });
    metrics.push(birthMetric(d.online, true, now));
    send("DBIRTH", encodePayload({ timestamp: now, seq: nextSeq(), metrics }), d.name);
  };
  const births = () => {
    const now = Date.now();
    seq = 0;
    const metrics = NODE_METRICS.map((m) =>
      birthMetric(m, m.name === "bdSeq" ? bdSeq : m.value(now), now)
    );
    send("NBIRTH", encodePayload({ timestamp: now, seq: nextSeq(), metrics }));
    for (const d of devices) if (online.get(d.name)) dbirth(d);
    born = true;
  };
  const ddata = () => {
    if (!born || !client.connected) return;
    const now = Date.now();
    for (const d of devices) {
      if (!online.get(d.name)) continue;
      const changed = [];
      for (const m of d.metrics) {
        const v = m.value(now);
        const key = `${d.name}/${m.alias}`;
        if (last.get(key) === v) continue;
        last.set(key, v);
        changed.push(dataMetric(m, v, now));
      }
      if (changed.length === 0) continue;
      const payload = Payload.encode(
        Payload.create({ timestamp: now, seq: nextSeq(), metrics: changed }),
      )
        .finish();
      send("DDATA", payload, d.name);
    }
  };
  const setOnline = (d: EdgeDevice, on: boolean) => {
    if (online.get(d.name) === on) return;
    online.set(d.name, on);
    if (on) dbirth(d);
    else {send(
        "DDEATH",
        encodePayload({ timestamp: Date.now(), seq: nextSeq(), metrics: [] }),
        d.name,
      );}
  };
  const onCommand = (topic: string, payload: Uint8Array) => {
    let metrics: UMetric[];
    try {
      metrics = decodePayload(payload).metrics ?? [];
    } catch {
      return; // not a Sparkplug payload: ignored, as an edge node would
    }
    const named = (m: UMetric, spec: MetricSpec) =>
      m.name === spec.name || (m.name == null && Number(m.alias) === spec.alias);
    if (topic === edgeTopic("NCMD")) {
      for (const m of metrics) {
        if (named(m, NODE_METRICS[1]) && m.value === true) births();
        if (named(m, NODE_METRICS[2]) && m.value === true) dropConnection();
      }
      return;
    }
    const device = devices.find((d) => topic === edgeTopic("DCMD", d.name));
    if (!device) return;
    for (const m of metrics) {
      if (named(m, device.online) && typeof m.value === "boolean") setOnline(device, m.value);
    }
  };
  const dropConnection = () => {
    born = false;
    // No DISCONNECT: the broker sees the socket die and publishes the Will.
    client.stream?.destroy();
  };

  client.on("close", () => {
    born = false;
    bdSeq = (bdSeq + 1) & 0xff;
    client.options.will = willOf(bdSeq);
  });
  client.on("message", (topic, payload) => onCommand(topic, new Uint8Array(payload)));
  const firstBirth = new Promise<void>((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`the Sparkplug edge node could not connect to ${opts.endpoint}`)),
      10_000,
    );
    client.on("connect", async () => {
      try {
        await client.subscribeAsync([edgeTopic("NCMD"), edgeTopic("DCMD", "+")], { qos: 1 });
      } catch {
        return; // the connection dropped again; the next connect retries
      }
      births();
      clearTimeout(t);
      resolve();
    });
  });
  try {
    await firstBirth;
  } catch (e) {
    await client.endAsync(true);
    throw e;
  }
  const timer = setInterval(ddata, opts.intervalMs ?? 1000);

  let stopped: Promise<void> | undefined;
  return {
    bdSeq: () => bdSeq,
    counts: () => ({ ...counts }),
    stop() {
      stopped ??= (async () => {
        clearInterval(timer);
        born = false;
        if (client.connected) {
          counts.NDEATH = (counts.NDEATH ?? 0) + 1;
          await client.publishAsync(edgeTopic("NDEATH"), Buffer.from(ndeathPayload(bdSeq)), {
            qos: 1,
            retain: false,
          }).catch(() => {});
        }
        await client.endAsync();
      })();
      return stopped;
    },
  };
}

function willOf(bdSeq: number) {
  return {
    topic: edgeTopic("NDEATH"),
    payload: Buffer.from(ndeathPayload(bdSeq)),
    qos: 1 as const,
    retain: false,
  };
}

/** A DATA metric: alias, timestamp and value only (the BIRTH has name and datatype). */
function dataMetric(m: MetricSpec, v: MetricValue, ts: number): unknown {
  const field: Record<MetricSpec["type"], string> = {
    Int32: "intValue",
    Int64: "longValue",
    Float: "floatValue",
    Double: "doubleValue",
    Boolean: "booleanValue",
    String: "stringValue",
  };
  return Payload.Metric.create({ alias: m.alias, timestamp: ts, [field[m.type]]: v });
}
