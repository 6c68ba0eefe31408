/**
 * Config keys of the OPC UA source. The keys every source has (name, enabled,
 * site, ...) are added in `../catalog.ts`.
 */
import { z } from "zod";
import type { SOURCE_SCHEMAS } from "../catalog.ts";

/** An integer; unlike `z.int()` a failure does not hide problems elsewhere in the file. */
const int = () => z.number().multipleOf(1);

/** Message security modes. */
export const OPCUA_SECURITY_MODES = ["None", "Sign", "SignAndEncrypt"] as const;

/** Deprecated security policies (SHA-1): only with `allow_deprecated_policies: true`. */
export const OPCUA_DEPRECATED_POLICIES = ["Basic128Rsa15", "Basic256"] as const;

/** Security policies, by their short names. */
export const OPCUA_SECURITY_POLICIES = [
  "None",
  "Basic256Sha256",
  "Aes128_Sha256_RsaOaep",
  "Aes256_Sha256_RsaPss",
  "Basic128Rsa15",
  "Basic256",
] as const;

const ENDPOINT = /^opc\.tcp:\/\/(?:\[[0-9A-Fa-f:.]+\]|[^\s/:?#[\]]+)(?::(\d{1,5}))?(?:\/\S*)?$/;
const NODE_ID = /^(?:(?:ns=\d+|nsu=[^;]+);)?[isgb]=.+$/;

/** True for `opc.tcp://host[:port][/path]` with a port in 1..65535. */
export function isOpcuaEndpoint(value: string): boolean {
  const m = ENDPOINT.exec(value);
  return m !== null && (m[1] === undefined || (Number(m[1]) >= 1 && Number(m[1]) <= 65535));
}

const interval = int().min(1).max(86_400_000);

/** Which changes a monitored item reports (OPC UA DataChangeTrigger). */
export const OPCUA_DATA_CHANGE_TRIGGERS = [
  "status",
  "status_value",
  "status_value_timestamp",
] as const;
/** Deadband of a monitored item. */
export const OPCUA_DEADBAND_TYPES = ["none", "absolute", "percent"] as const;

const ROOT_HINT = "expected a NodeId (nsu=<uri>;s=Plant1, i=85) or a browse path from Objects";

/** True for a discovery root: a NodeId or a browse path `Objects[/<name>...]`. */
export function isDiscoveryRoot(value: string): boolean {
  return NODE_ID.test(value) || /^Objects(\/[^/]+)*$/.test(value);
}

const nodeId = z.string().regex(NODE_ID, "expected a NodeId like ns=2;s=Temperature");
const text = z.string().min(1).optional();

/** A browse path from Objects: `Objects/<BrowseName>/...` (at least one name). */
export const NODE_BROWSE_PATH = /^Objects(\/[^/]+)+$/;

/** One `nodes` entry as an object: where the node is, and what its readings carry. */
const nodeEntry = z.strictObject({
  /** The node's NodeId (`nsu=<uri>;s=...` is resolved on every connect). */
  node_id: nodeId.optional(),
  /** Or its browse path, resolved with TranslateBrowsePathsToNodeIds on every connect. */
  browse_path: z.string().regex(
    NODE_BROWSE_PATH,
    "expected a browse path from Objects like Objects/Plant1/Line1/Press1/Temperature",
  ).optional(),
  /** Namespace URI of the browse path's names (default: every namespace but 0 is tried). */
  namespace: text,
  /** Tag name of the readings (default: the node's BrowseName). */
  name: text,
  site: text,
  area: text,
  line: text,
  equipment: text,
  signal_type: text,
  /** Unit of the readings (default: the node's EngineeringUnits). */
  unit: text,
});

/** A `nodes` entry as an object. */
export type OpcuaNodeEntry = z.output<typeof nodeEntry>;

/** Where discovery browses (without `nodes`). */
const discoveryFields = z.strictObject({
  /** Folders to browse from: NodeIds or browse paths from Objects. */
  roots: z.array(z.string().refine(isDiscoveryRoot, ROOT_HINT)).min(1).default(["Objects"]),
  /** Folder levels below a root that are browsed (0: only the root's own variables). */
  max_depth: int().min(0).max(64).default(16),
  /** Browse-path globs (`*` one segment, `**` any); a variable must match one when given. */
  include: z.array(z.string().min(1)).default([]),
  /** Browse-path globs; matching variables and folders are skipped. */
  exclude: z.array(z.string().min(1)).default([]),
});

/** Subscription and discovery keys. */
const acquisitionFields = {
  /** Values the server keeps per monitored item between publishes. */
  queue_size: int().min(1).max(100_000).default(10),
  /** When the queue is full: drop the oldest value (true) or the newest. */
  discard_oldest: z.boolean().default(true),
  data_change_trigger: z.enum(OPCUA_DATA_CHANGE_TRIGGERS).default("status_value"),
  deadband_type: z.enum(OPCUA_DEADBAND_TYPES).default("none"),
  /** Absolute: in the value's unit; percent: of the EURange span (0..100). */
  deadband_value: z.number().min(0).default(0),
  /** Absent: browse everything below Objects (the defaults above). */
  discovery: discoveryFields.optional(),
};

/**
 * Cross-key checks of the subscription and discovery keys: a deadband needs a
 * value trigger and subscription mode, a percent deadband is at most 100,
 * `discovery` does not go with `nodes`.
 */
export function checkOpcuaAcquisition(s: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const type = s.deadband_type ?? "none";
  const issue = (path: string, message: string) =>
    ctx.addIssue({ code: "custom", path: [path], message });
  if (type !== "none") {
    if (s.data_change_trigger === "status") {
      issue(
        "deadband_type",
        "a deadband needs data_change_trigger status_value or status_value_timestamp",
      );
    }
    if (s.polling_mode === true) {
      issue(
        "deadband_type",
        "a deadband applies to subscriptions; remove it or set polling_mode: false",
      );
    }
  }
  if (type === "percent" && typeof s.deadband_value === "number" && s.deadband_value > 100) {
    issue("deadband_value", "a percent deadband is 0..100 (% of the EURange span)");
  }
  if (s.discovery !== undefined && Array.isArray(s.nodes) && s.nodes.length > 0) {
    issue("discovery", "discovery applies only without nodes; remove one of them");
  }
  checkNodeEntries(s.nodes, ctx);
}

/** Each object entry of `nodes` names its node once: `node_id` or `browse_path`. */
function checkNodeEntries(nodes: unknown, ctx: z.RefinementCtx): void {
  if (!Array.isArray(nodes)) return;
  nodes.forEach((e, i) => {
    if (typeof e !== "object" || e === null) return;
    const id = "node_id" in e, path = "browse_path" in e;
    if (id === path) {
      ctx.addIssue({
        code: "custom",
        path: ["nodes", i],
        message: id
          ? "give node_id or browse_path, not both"
          : "needs node_id (ns=2;s=Temperature) or browse_path (Objects/Plant1/...)",
      });
    }
    if (id && "namespace" in e) {
      ctx.addIssue({
        code: "custom",
        path: ["nodes", i, "namespace"],
        message: "applies to browse_path only; put the namespace in the NodeId (nsu=<uri>;...)",
      });
    }
  });
}

/** OPC UA-specific keys of a source entry. */
export const opcuaFields = {
  endpoint: z.string().refine(isOpcuaEndpoint, "expected an opc.tcp:// URL"),
  security_mode: z.enum(OPCUA_SECURITY_MODES).default("None"),
  security_policy: z.enum(OPCUA_SECURITY_POLICIES).default("None"),
  /** Basic128Rsa15 and Basic256 are refused unless this is true. */
  allow_deprecated_policies: z.boolean().default(false),
  /** `manual`: an unknown server certificate stays rejected until trusted; `auto`: lab use. */
  trust_server_certificate: z.enum(["manual", "auto"]).default("manual"),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  /** X.509 user identity: certificate (PEM or DER) and its unencrypted PEM private key. */
  user_certificate: z.string().min(1).optional(),
  user_private_key: z.string().min(1).optional(),
  /** Read values periodically instead of subscribing. */
  polling_mode: z.boolean().default(false),
  polling_interval_ms: interval.default(1000),
  /** Most variables the source reads or monitors. */
  variable_limit: int().min(1).max(1_000_000).default(1000),
  publishing_interval_ms: interval.optional(),
  sampling_interval_ms: int().min(0).max(86_400_000).optional(),
  /**
   * Nodes to read: NodeIds (`ns=2;s=Temperature`) or entries with a NodeId or
   * a browse path and per-tag context; browse the address space when absent.
   */
  nodes: z.array(
    z.union([nodeId, nodeEntry], {
      error: "expected a NodeId (ns=2;s=Temperature) or an entry {node_id | browse_path, ...}",
    }),
  ).optional(),
  ...acquisitionFields,
};

/**
 * Cross-key checks: a security mode other than None needs a policy other than
 * None and the other way round; a password needs a username. Runs on
 * partly invalid input too, so it only looks at keys of the right type.
 */
export function checkOpcua(source: unknown, ctx: z.RefinementCtx): void {
  if (typeof source !== "object" || source === null) return;
  const s = source as Record<string, unknown>;
  checkOpcuaAcquisition(s, ctx);
  const mode = s.security_mode ?? "None";
  const policy = s.security_policy ?? "None";
  if (typeof mode === "string" && typeof policy === "string") {
    if (mode !== "None" && policy === "None") {
      ctx.addIssue({
        code: "custom",
        path: ["security_policy"],
        message: `security_mode ${mode} needs a security_policy other than None`,
      });
    } else if (mode === "None" && policy !== "None") {
      ctx.addIssue({
        code: "custom",
        path: ["security_mode"],
        message: `security_policy ${policy} needs security_mode Sign or SignAndEncrypt`,
      });
    }
  }
  if (s.password !== undefined && s.username === undefined) {
    ctx.addIssue({ code: "custom", path: ["username"], message: "required with password" });
  }
  checkOpcuaIdentity(s, ctx);
}

/** Deprecated policies need `allow_deprecated_policies`; one user identity at a time. */
function checkOpcuaIdentity(s: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const policy = s.security_policy;
  if (
    (OPCUA_DEPRECATED_POLICIES as readonly unknown[]).includes(policy) &&
    s.allow_deprecated_policies !== true
  ) {
    ctx.addIssue({
      code: "custom",
      path: ["security_policy"],
      message: `${policy} is deprecated (SHA-1, broken); use Basic256Sha256, ` +
        "Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss, or set allow_deprecated_policies: true",
    });
  }
  const cert = s.user_certificate !== undefined, key = s.user_private_key !== undefined;
  if (cert !== key) {
    ctx.addIssue({
      code: "custom",
      path: [cert ? "user_private_key" : "user_certificate"],
      message: `required with ${cert ? "user_certificate" : "user_private_key"}`,
    });
  }
  if (cert && s.username !== undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["user_certificate"],
      message: "use either username/password or user_certificate, not both",
    });
  }
}

/** An OPC UA source entry after validation and defaults. */
export type OpcuaSourceConfig = z.output<typeof SOURCE_SCHEMAS.opcua>;
