/** Sparkplug B topics: `spBv1.0/<group>/<type>/<edge node>[/<device>]` and `spBv1.0/STATE/<host>`. */

/** The namespace of Sparkplug B topics. */
export const NAMESPACE = "spBv1.0";

/** Message types carried on node and device topics. */
export type MessageType =
  | "NBIRTH"
  | "NDEATH"
  | "NDATA"
  | "NCMD"
  | "DBIRTH"
  | "DDEATH"
  | "DDATA"
  | "DCMD";

const NODE_TYPES = new Set(["NBIRTH", "NDEATH", "NDATA", "NCMD"]);
const DEVICE_TYPES = new Set(["DBIRTH", "DDEATH", "DDATA", "DCMD"]);

/** A parsed Sparkplug topic, or why it is not one. */
export type SparkplugTopic =
  | { ok: true; kind: "state"; hostId: string }
  | {
    ok: true;
    kind: "message";
    group: string;
    type: MessageType;
    edgeNode: string;
    device?: string;
  }
  | { ok: false; reason: string };

/** Parses a topic of the `spBv1.0` namespace. */
export function parseTopic(topic: string): SparkplugTopic {
  const parts = topic.split("/");
  if (parts[0] !== NAMESPACE) {
    return { ok: false, reason: `topic '${topic}' is not in ${NAMESPACE}` };
  }
  if (parts[1] === "STATE") {
    if (parts.length !== 3 || parts[2] === "") {
      return { ok: false, reason: `STATE topic '${topic}' is not ${NAMESPACE}/STATE/<host_id>` };
    }
    return { ok: true, kind: "state", hostId: parts[2] };
  }
  if (parts.length < 4 || parts.length > 5 || parts.some((p) => p === "")) {
    return {
      ok: false,
      reason: `topic '${topic}' is not ${NAMESPACE}/<group>/<type>/<edge node>[/<device>]`,
    };
  }
  const [, group, type, edgeNode, device] = parts;
  if (NODE_TYPES.has(type)) {
    if (device !== undefined) return { ok: false, reason: `${type} topic '${topic}' has a device` };
    return { ok: true, kind: "message", group, type: type as MessageType, edgeNode };
  }
  if (DEVICE_TYPES.has(type)) {
    if (device === undefined) {
      return { ok: false, reason: `${type} topic '${topic}' has no device` };
    }
    return { ok: true, kind: "message", group, type: type as MessageType, edgeNode, device };
  }
  return { ok: false, reason: `unknown Sparkplug message type '${type}' in '${topic}'` };
}

/** The NCMD topic of an edge node. */
export function ncmdTopic(group: string, edgeNode: string): string {
  return `${NAMESPACE}/${group}/NCMD/${edgeNode}`;
}
