/**
 * The state one OPC UA source shares between the modules of its Worker
 * (`worker.ts`, `client.ts`, `setup.ts`, `subscription.ts`, `supervise.ts`,
 * `reuse.ts`), and the small helpers they all use: the interruptible sleep,
 * detail counters, the status of nodes the server does not know.
 */
import type {
  ClientMonitoredItemBase,
  ClientSession,
  ClientSubscription,
  OPCUAClient,
} from "node-opcua";
import type { Buffer } from "node:buffer";
import type { SourceKit } from "../worker_kit.ts";
import type { OperationLimits, UnresolvedNode } from "./nodes.ts";
import type { OpcuaSourceConfig } from "./schema.ts";
import type { AgentPki } from "./security.ts";
import type { LinkWatch } from "./liveness.ts";
import { unknownNodesText } from "./staying.ts";
import type { TargetNode } from "./values.ts";

/** How long each close call (subscription, session, client) may take. */
export const CLOSE_TIMEOUT_MS = 2000;
/** Unknown node ids shown in the status. */
const UNKNOWN_SHOWN = 5;

/** The status detail of the source: figures and counters sent with each status. */
export type Detail = Record<string, unknown>;

/** A session (and its subscription) kept over a link loss. */
export interface Kept {
  session: ClientSession;
  subscription?: ClientSubscription;
  nodes: TargetNode[];
  /** The NamespaceArray the nodes were resolved with. */
  namespaces: string[];
  /** Monitored items of the subscription. */
  monitored: number;
  /** Attempts that activated the session but then failed. */
  failures: number;
}

/** What one OPC UA source holds while it runs. */
export interface SourceRun {
  readonly cfg: OpcuaSourceConfig;
  readonly kit: SourceKit;
  readonly dataDir: string;
  readonly detail: Detail;
  /** Set by stop(): the source reports and emits nothing more. */
  stopped: boolean;
  /** The agent's PKI, opened by the first full setup. */
  pki?: AgentPki;
  /** The client in use; only this one may end the connection. */
  client?: OPCUAClient;
  session?: ClientSession;
  subscription?: ClientSubscription;
  /** The server certificate of the endpoint in use (secure modes). */
  serverCertificate?: Buffer;
  /** The session (and subscription) kept over a link loss, to be resumed on the next connect. */
  kept?: Kept;
  /** The server's operation limits (from the last full setup). */
  limits?: OperationLimits;
  /** NodeIds with an EURange property (for a percent deadband). */
  withRange: ReadonlySet<string>;
  /** The NamespaceArray the nodes were resolved with. */
  namespaces: string[];
  /** Nodes the server does not know (yet): resolved again on a backoff (`recover.ts`). */
  unknown: UnresolvedNode[];
  /** The nodes read or monitored now (the list the acquisition uses; grows on recovery). */
  nodes: TargetNode[];
  /** The monitored item of each node in the current subscription. */
  items: Map<TargetNode, ClientMonitoredItemBase>;
  /** Nodes whose values had a status other than BadNodeIdUnknown/BadNodeIdInvalid. */
  known: WeakSet<TargetNode>;
  /** Items whose values turned BadNodeIdUnknown/BadNodeIdInvalid after being known. */
  gone: Set<TargetNode>;
  /** Discovery found problems or fewer Variables than before: it is tried again. */
  rediscover: boolean;
  /** The most Variables a discovery found so far. */
  discoveredMost: number;
  /** What the last discovery found, and how many discoveries in a row found that many. */
  discoveredLast: { count: number; times: number };
  /** Set by a BadNodeIdUnknown storm: the next connect is a full setup, nothing kept. */
  setUpAnew: boolean;
  /** An `error` status was shown while connected (a batch shrink): the next success clears it. */
  errorShown: boolean;
  deadbandWarning?: string;
  /** What the last discovery could not use (roots not on the server), while it is retried. */
  discoveryProblems?: string;
  /** The watch over the connection in use. */
  watch?: LinkWatch;
  /** When the subscription last sent data or a keep-alive (performance.now()). */
  subscriptionHeard: number;
  /** The subscription's keep-alive period. */
  keepAliveMs: number;
  /** True while the watchdog rebuilds a silent subscription or a node recovery round runs. */
  rebuilding: boolean;
  /** Set while connected: ends the connection with the reason. */
  lost: (reason: string) => void;
  /** Ends the current `sleep` at once. */
  wake: () => void;
}

/** The message of an error (or the thing thrown, as text). */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves `p`, or undefined after `ms` (errors are swallowed). */
export function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((r) => (t = setTimeout(() => r(undefined), ms)));
  return Promise.race([p.catch(() => undefined), timeout]).finally(() => clearTimeout(t));
}

/** Waits `ms`, or less when `run.wake()` is called meanwhile. */
export function sleep(run: SourceRun, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(resolve, Math.max(0, ms));
    run.wake = () => {
      clearTimeout(t);
      resolve();
    };
  });
}

/** Adds `n` to the counter `key` of the status detail. */
export function count(run: SourceRun, key: string, n = 1): void {
  run.detail[key] = (run.detail[key] as number) + n;
}

/** Sets the nodes the server does not know (yet) and shows them in the status detail. */
export function setUnknown(run: SourceRun, list: UnresolvedNode[]): void {
  run.unknown = list;
  run.detail.unknown_nodes = list.length;
  run.detail.unknown_node_ids = list.slice(0, UNKNOWN_SHOWN).map((u) => u.address);
}

/** Emits a bad reading for each node the server does not know, and counts them. */
export function reportUnresolved(run: SourceRun, list: UnresolvedNode[]): void {
  if (list.length === 0) return;
  const { kit } = run;
  setUnknown(run, [...run.unknown, ...list]);
  kit.log("warning", "opcua nodes not resolved", {
    count: list.length,
    first: list.slice(0, UNKNOWN_SHOWN).map((u) => `${u.address}: ${u.error}`),
  });
  for (const u of list) {
    kit.emit({
      address: u.address,
      tag_name: u.address,
      value: null,
      quality_code: u.code,
      event_time: Date.now() * 1000,
      metadata: { error: u.error },
    });
  }
}

/** What the `connected` status says besides the state (warnings), if anything. */
export function connectedNote(run: SourceRun): string | undefined {
  const notes = [
    unknownNodesText(run.unknown, UNKNOWN_SHOWN),
    run.discoveryProblems,
    run.deadbandWarning,
  ].filter(Boolean);
  return notes.length > 0 ? notes.join("; ") : undefined;
}
