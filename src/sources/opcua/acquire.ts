/**
 * Acquisition of the OPC UA source: monitored items created in batches that
 * respect the server's MaxMonitoredItemsPerCall (with the configured
 * sampling, queue, trigger and deadband), and polling reads split by
 * MaxNodesPerRead. A server that still answers BadTooManyOperations gets
 * smaller batches (`inBatches` in `nodes.ts`).
 */
import {
  AttributeIds,
  type ClientMonitoredItemBase,
  ClientMonitoredItemGroup,
  type ClientSession,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  type DataValue,
  DeadbandType,
  TimestampsToReturn,
} from "node-opcua";
import { type BatchSize, inBatches, type UnresolvedNode } from "./nodes.ts";
import type { OpcuaSourceConfig } from "./schema.ts";
import type { TargetNode } from "./values.ts";

const TRIGGERS = {
  status: DataChangeTrigger.Status,
  status_value: DataChangeTrigger.StatusValue,
  status_value_timestamp: DataChangeTrigger.StatusValueTimestamp,
} as const;

const DEADBANDS = {
  none: DeadbandType.None,
  absolute: DeadbandType.Absolute,
  percent: DeadbandType.Percent,
} as const;

/** The subscription keys of a source. */
export type AcquisitionConfig = Pick<
  OpcuaSourceConfig,
  | "publishing_interval_ms"
  | "sampling_interval_ms"
  | "queue_size"
  | "discard_oldest"
  | "data_change_trigger"
  | "deadband_type"
  | "deadband_value"
>;

/** The DataChangeFilter for the configured trigger and deadband, or null for the default. */
export function dataChangeFilter(
  cfg: AcquisitionConfig,
  deadband: boolean,
): DataChangeFilter | null {
  const type = deadband ? cfg.deadband_type : "none";
  if (type === "none" && cfg.data_change_trigger === "status_value") return null;
  return new DataChangeFilter({
    trigger: TRIGGERS[cfg.data_change_trigger],
    deadbandType: DEADBANDS[type],
    deadbandValue: type === "none" ? 0 : cfg.deadband_value,
  });
}

/** Monitoring parameters of one item; `deadband` false leaves the deadband out. */
export function monitoringParameters(cfg: AcquisitionConfig, deadband: boolean) {
  return {
    samplingInterval: cfg.sampling_interval_ms ?? cfg.publishing_interval_ms ?? 1000,
    queueSize: cfg.queue_size,
    discardOldest: cfg.discard_oldest,
    filter: dataChangeFilter(cfg, deadband),
  };
}

/** What monitoring the nodes gave. */
export interface Monitored {
  /** Items the server accepted. */
  monitored: number;
  /** Items the server refused, with its StatusCode. */
  refused: UnresolvedNode[];
  /** Nodes monitored without the percent deadband because they have no EURange. */
  withoutRange: TargetNode[];
  /** CreateMonitoredItems calls that succeeded. */
  calls: number;
  /** The accepted items, by node (what deleting an item needs). */
  items: Map<TargetNode, ClientMonitoredItemBase>;
}

/** Removes the items of a failed group from the subscription's table (node-opcua keeps them). */
function forget(sub: ClientSubscription, group: ClientMonitoredItemGroup): void {
  const table = sub as unknown as { _removeMonitoredItem?: (handle: number) => void };
  for (const item of group.monitoredItems as ClientMonitoredItemBase[]) {
    table._removeMonitoredItem?.(item.monitoringParameters.clientHandle);
  }
}

/** One CreateMonitoredItems call for `part`; resolves with the group once the server answered. */
function monitorPart(
  sub: ClientSubscription,
  part: TargetNode[],
  params: ReturnType<typeof monitoringParameters>,
  onChange: (node: TargetNode, dv: DataValue) => void,
): Promise<ClientMonitoredItemGroup[]> {
  return new Promise((resolve, reject) => {
    const group = ClientMonitoredItemGroup.create(
      sub,
      part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value })),
      params,
      TimestampsToReturn.Both,
    );
    group.on("changed", (_item, dv: DataValue, index: number) => onChange(part[index], dv));
    group.once("initialized", () => resolve([group]));
    group.once("terminated", (err?: Error) => {
      forget(sub, group);
      reject(err ?? new Error("the server did not create the monitored items"));
    });
  });
}

/**
 * Monitors every node in `sub`, in CreateMonitoredItems calls of at most
 * `batch.size` items. A percent deadband is only requested for nodes in
 * `withRange` (those with an EURange); the others are monitored without it
 * and listed in `withoutRange`.
 */
export async function monitorNodes(
  sub: ClientSubscription,
  nodes: TargetNode[],
  cfg: AcquisitionConfig,
  withRange: ReadonlySet<string>,
  batch: BatchSize,
  onChange: (node: TargetNode, dv: DataValue) => void,
): Promise<Monitored> {
  const out: Monitored = {
    monitored: 0,
    refused: [],
    withoutRange: [],
    calls: 0,
    items: new Map(),
  };
  const needsRange = cfg.deadband_type === "percent";
  const ranged = needsRange ? nodes.filter((n) => withRange.has(n.nodeId)) : nodes;
  out.withoutRange = needsRange ? nodes.filter((n) => !withRange.has(n.nodeId)) : [];
  const lots: Array<[TargetNode[], boolean]> = [[ranged, true], [out.withoutRange, false]];
  for (const [list, deadband] of lots) {
    const params = monitoringParameters(cfg, deadband);
    await inBatches(list, batch, async (part) => {
      const g = await monitorPart(sub, part, params, onChange);
      out.calls++;
      g[0].monitoredItems.forEach((item, i) => {
        if (item.statusCode.isGood()) {
          out.monitored++;
          out.items.set(part[i], item);
        } else {
          out.refused.push({
            address: part[i].address,
            error: item.statusCode.toString(),
            code: item.statusCode.value,
            node: part[i],
          });
        }
      });
      return g;
    });
  }
  return out;
}

/**
 * Deletes the monitored items `items` from `sub` on the server and from the
 * subscription's table; an item the server no longer has counts as deleted.
 */
export async function unmonitor(
  session: ClientSession,
  sub: ClientSubscription,
  items: ClientMonitoredItemBase[],
  batch: BatchSize,
): Promise<void> {
  const service = session as unknown as {
    deleteMonitoredItems(r: { subscriptionId: number; monitoredItemIds: number[] }): Promise<
      { results?: unknown[] | null }
    >;
  };
  await inBatches(items, batch, async (part) => {
    const res = await service.deleteMonitoredItems({
      subscriptionId: sub.subscriptionId,
      monitoredItemIds: part.map((item) => item.monitoredItemId!),
    });
    return res.results ?? [];
  });
  const table = sub as unknown as { _removeMonitoredItem?: (handle: number) => void };
  for (const item of items) table._removeMonitoredItem?.(item.monitoringParameters.clientHandle);
}

/** Reads the Value of every node, in Read calls of at most `batch.size` nodes. */
export function readValues(
  session: ClientSession,
  nodes: TargetNode[],
  batch: BatchSize,
): Promise<DataValue[]> {
  return inBatches(
    nodes,
    batch,
    (part) =>
      session.read(part.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value })), 0),
  );
}
