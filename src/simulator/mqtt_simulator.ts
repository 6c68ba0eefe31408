/**
 * The simulator's MQTT side: the embedded broker, the JSON and Kepware
 * publishers and the Sparkplug B edge node, started and stopped together.
 */
import { startBroker } from "./mqtt_broker.ts";
import { type SimulatedSensor, startJsonPublishers } from "./mqtt_publishers.ts";
import { EDGE_GROUP, EDGE_NODE, startEdgeNode } from "./sparkplug_edge.ts";

/** The running MQTT side of the simulator. */
export interface MqttSimulator {
  port: number;
  endpoint: string;
  /** What `/health` shows about it. */
  health(): Record<string, unknown>;
  /** Stops the publishers, then the broker. */
  stop(): Promise<void>;
}

/** Starts the broker on `host:port` (0 = a free port) and its publishers. */
export async function startMqttSimulator(opts: {
  host: string;
  port: number;
  sensors: () => SimulatedSensor[];
}): Promise<MqttSimulator> {
  const broker = await startBroker({ host: opts.host, port: opts.port });
  const endpoint = broker.endpoint;
  let json;
  let edge;
  try {
    json = await startJsonPublishers({ endpoint, sensors: opts.sensors });
    edge = await startEdgeNode({ endpoint });
  } catch (e) {
    await json?.stop();
    await broker.stop();
    throw e;
  }
  const j = json;
  const n = edge;
  return {
    port: broker.port,
    endpoint,
    health: () => ({
      protocol: "mqtt",
      endpoint,
      clients: broker.clients(),
      json_messages: j.published(),
      sparkplug: {
        group: EDGE_GROUP,
        edge_node: EDGE_NODE,
        bd_seq: n.bdSeq(),
        messages: n.counts(),
      },
    }),
    async stop() {
      await Promise.all([j.stop(), n.stop()]);
      await broker.stop();
    },
  };
}
