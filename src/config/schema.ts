/**
 * The agent configuration: one zod schema per section, strict everywhere
 * (unknown keys are errors), with defaults so that `{}` is a valid config.
 * Source entries come from the protocol schemas registered in
 * `../sources/catalog.ts`.
 */
import { z } from "zod";
import { sourceSchema } from "../sources/catalog.ts";
import { GENERIC_SEGMENTS } from "../normalize/rules.ts";

/** An integer; unlike `z.int()` a failure does not hide problems elsewhere in the file. */
const int = () => z.number().multipleOf(1);

/** Checks that run even when other keys are invalid, so every problem shows at once. */
const ALWAYS = { when: () => true };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** True for an absolute http:// or https:// URL with a host. */
export function isHttpUrl(value: string): boolean {
  if (!/^https?:\/\/[^\s/?#]+/i.test(value)) return false;
  try {
    return new URL(value).host !== "";
  } catch {
    return false;
  }
}

const httpUrl = z.string().refine(isHttpUrl, "expected an http:// or https:// URL");

// ---------------------------------------------------------------- connector

/** Log levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;

/** Lower-cases a log level and maps `warn` to `warning`; other values pass through. */
export function normalizeLogLevel(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const v = value.trim().toLowerCase();
  return v === "warn" ? "warning" : v;
}

/** `connector`: identity, data directory and log level. */
export const connectorSchema = z.strictObject({
  name: z.string().min(1).default("ot-edge-agent"),
  /** Spool, credentials and other state live here. */
  data_dir: z.string().min(1).default("./data"),
  log_level: z.preprocess(normalizeLogLevel, z.enum(LOG_LEVELS)).default("info"),
});

// --------------------------------------------------------------------- http

/** `http`: where the web UI, REST API and metrics listen. */
export const httpSchema = z.strictObject({
  host: z.string().min(1).default("127.0.0.1"),
  port: int().min(1).max(65535).default(8080),
});

// ------------------------------------------------------------------ zerobus

const ident = z.string().regex(
  /^[A-Za-z0-9_-]{1,255}$/,
  "expected letters, digits, '_' or '-'",
);

/** A Unity Catalog table: `catalog.schema.table`. */
export const targetSchema = z.strictObject({
  catalog: ident,
  schema: ident,
  table: ident,
  /** Row encoding for this table; defaults to `zerobus.record_type`. */
  record_type: z.enum(["json", "proto"]).optional(),
});

/** `zerobus.default_target`: a table, and (as in the original config) the workspace URL. */
const defaultTargetSchema = targetSchema.extend({ workspace_host: httpUrl.optional() });

function checkZerobus(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value) || value.enabled !== true) return;
  const required = (path: (string | number)[], hint = "") =>
    ctx.addIssue({
      code: "custom",
      path,
      message: `required when zerobus.enabled is true${hint}`,
    });
  if (value.default_target === undefined) required(["default_target"]);
  // `auth` defaults to {}, so a missing section shows up as its two keys.
  const auth = isRecord(value.auth) ? value.auth : {};
  if (auth.client_id === undefined) required(["auth", "client_id"]);
  if (auth.client_secret === undefined) required(["auth", "client_secret"]);
  const dt = value.default_target;
  const host = value.workspace_host ?? (isRecord(dt) ? dt.workspace_host : undefined);
  if (value.zerobus_endpoint === undefined && host === undefined) {
    required(
      ["zerobus_endpoint"],
      " (set zerobus.zerobus_endpoint and/or zerobus.workspace_host)",
    );
  }
}

/** `zerobus`: the Databricks Zerobus sink. */
export const zerobusSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** Workspace URL, used for OAuth. Falls back to `default_target.workspace_host`. */
  workspace_host: httpUrl.optional(),
  /** Zerobus ingest endpoint (gRPC); `http://` means plaintext, for local stand-ins. */
  zerobus_endpoint: httpUrl.optional(),
  default_target: defaultTargetSchema.optional(),
  /** Source name → table, for sources that do not go to `default_target`. */
  source_targets: z.record(z.string(), targetSchema).default(() => ({})),
  auth: z.strictObject({
    client_id: z.string().min(1).optional(),
    client_secret: z.string().min(1).optional(),
  }).prefault({}),
  batch: z.strictObject({
    max_records: int().min(1).max(10_000).default(1000),
    max_bytes: int().min(1024).max(4_000_000).default(2_000_000),
    linger_ms: int().min(0).max(60_000).default(50),
  }).prefault({}),
  /** Row encoding: JSON text, or the record's protobuf message (`otedge schema --proto`). */
  record_type: z.enum(["json", "proto"]).default("json"),
  streams_per_target: int().min(1).max(16).default(1),
  max_inflight_requests: int().min(1).max(100_000).default(64),
  ack_timeout_s: z.number().positive().max(3600).default(60),
}).superRefine(checkZerobus, ALWAYS).transform((zb) => {
  const { default_target: dt, ...rest } = zb;
  const target: z.output<typeof targetSchema> | undefined = dt === undefined ? undefined : {
    catalog: dt.catalog,
    schema: dt.schema,
    table: dt.table,
    ...(dt.record_type ? { record_type: dt.record_type } : {}),
  };
  return {
    ...rest,
    workspace_host: zb.workspace_host ?? dt?.workspace_host,
    default_target: target,
  };
});

// ------------------------------------------------------------ normalization

/** Protocols a record can carry in `source_protocol`. */
export const RECORD_PROTOCOLS = ["opcua", "mqtt", "sparkplug", "modbus", "generator"] as const;

const codes = z.array(int()).default(() => []);

function checkQualityClasses(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value)) return;
  const seen = new Map<number, string>();
  for (const cls of ["good", "uncertain", "bad"]) {
    const list = value[cls];
    if (!Array.isArray(list)) continue;
    list.forEach((code, i) => {
      if (typeof code !== "number") return;
      const other = seen.get(code);
      if (other !== undefined && other !== cls) {
        ctx.addIssue({
          code: "custom",
          path: [cls, i],
          message: `code ${code} is already in ${other}`,
        });
      }
      seen.set(code, cls);
    });
  }
}

const qualityClasses = z.strictObject({ good: codes, uncertain: codes, bad: codes })
  .superRefine(checkQualityClasses, ALWAYS);

const regex = z.string().superRefine((value, ctx) => {
  try {
    new RegExp(value);
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).replace(
      /^Invalid regular expression: /,
      "",
    );
    ctx.addIssue({ code: "custom", message: `invalid regular expression: ${why}` });
  }
});

/** Record fields a normalization rule may set. */
export const RULE_FIELDS = [
  "site",
  "area",
  "line",
  "equipment",
  "tag_name",
  "signal_type",
  "unit",
  "value_type",
] as const;

/** A routing/context rule: records matching every given key get the `set` values. */
export const ruleSchema = z.strictObject({
  match: z.strictObject({
    protocol: z.enum(RECORD_PROTOCOLS).optional(),
    source: z.string().min(1).optional(),
    /** Regular expression (JavaScript syntax, no flags) on the record address. */
    address: regex.optional(),
    /** Glob on the browse path (OPC UA) or topic: `*` within a segment, `**` across segments. */
    browse_path: z.string().min(1).optional(),
  }),
  /** Fields to set; `$1`, `$<name>` insert capture groups of the address (else browse path) match. */
  /** `value_type: int | float` makes numeric text of matching tags a number. */
  set: z.partialRecord(z.enum(RULE_FIELDS), z.string()).refine(
    (set) => Object.keys(set).length > 0,
    "set at least one of " + RULE_FIELDS.join(", "),
  ).refine((set) => set.value_type === undefined || ["int", "float"].includes(set.value_type), {
    path: ["value_type"],
    message: "must be int or float (numeric text of matching tags becomes a number)",
  }),
});

const contextValue = z.string().min(1).optional();

/** Placeholders a `path_template` may use. */
export const PATH_TEMPLATE_FIELDS = [
  "site",
  "area",
  "line",
  "equipment",
  "signal_type",
  "tag_name",
  "unit",
  "address",
  "browse_path",
  "source_name",
  "source_protocol",
  "endpoint",
] as const;

/** Refuses `{name}` placeholders the normalizer does not know (they would silently be empty). */
function checkPathTemplate(template: string, ctx: z.RefinementCtx): void {
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    if (!(PATH_TEMPLATE_FIELDS as readonly string[]).includes(m[1])) {
      ctx.addIssue({
        code: "custom",
        message: `unknown placeholder {${m[1]}}; use one of ` +
          PATH_TEMPLATE_FIELDS.map((f) => `{${f}}`).join(", "),
      });
    }
  }
}

/** `normalization`: ISA-95 paths, context defaults, quality tables and rules. */
export const normalizationSchema = z.strictObject({
  enabled: z.boolean().default(true),
  path_template: z.string().min(1).superRefine(checkPathTemplate).default(
    "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
  ),
  /** Context for sources that do not set their own. */
  default_context: z.strictObject({
    site: contextValue,
    area: contextValue,
    line: contextValue,
    equipment: contextValue,
  }).prefault({}),
  /** Used for a path segment that has no value. */
  missing_placeholder: z.string().min(1).default("unassigned"),
  /** Record protocol → native codes per unified quality; adds to the built-in tables. */
  quality_mapping: z.partialRecord(z.enum(RECORD_PROTOCOLS), qualityClasses).default(() => ({})),
  rules: z.array(ruleSchema).default(() => []),
  /**
   * Browse-path segments (case-insensitive) that name the OPC UA address space,
   * not the plant: dropped before rules' `browse_path` globs and `{browse_path}` see the path.
   */
  generic_segments: z.array(z.string().min(1)).default(() => [...GENERIC_SEGMENTS]),
});

// ------------------------------------------------------------- backpressure

/** `backpressure`: memory queue, disk spool and what to do when both are full. */
export const backpressureSchema = z.strictObject({
  max_queue_size: int().min(1).max(100_000_000).default(50_000),
  disk_spool: z.strictObject({
    enabled: z.boolean().default(true),
    max_size_mb: z.number().positive().default(500),
    max_records: int().min(1).default(10_000_000),
  }).prefault({}),
  on_full: z.enum(["block", "drop_newest", "drop_oldest"]).default("block"),
});

// ---------------------------------------------------------------- discovery

/** True for an IPv4 CIDR block such as `192.168.1.0/24`. */
export function isIpv4Cidr(value: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(value);
  if (m === null) return false;
  return m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
}

/** `discovery`: scanning the network for OPC UA, MQTT and Modbus servers. */
export const discoverySchema = z.strictObject({
  enabled: z.boolean().default(false),
  network: z.strictObject({
    scan_enabled: z.boolean().default(false),
    subnets: z.array(
      z.string().refine(isIpv4Cidr, "expected an IPv4 CIDR block like 192.168.1.0/24"),
    ).default(() => []),
    /** Ports to probe; the protocols' well-known ports when absent. */
    ports: z.array(int().min(1).max(65535)).optional(),
  }).prefault({}),
  timeout_ms: int().min(1).max(600_000).default(1000),
});

// --------------------------------------------------------------------- root

function checkAcrossSections(value: unknown, ctx: z.RefinementCtx): void {
  if (!isRecord(value)) return;
  const names = new Map<string, number>();
  if (Array.isArray(value.sources)) {
    value.sources.forEach((s, i) => {
      if (!isRecord(s) || typeof s.name !== "string") return;
      const first = names.get(s.name);
      if (first === undefined) {
        names.set(s.name, i);
      } else {
        ctx.addIssue({
          code: "custom",
          path: ["sources", i, "name"],
          message: `duplicate source name '${s.name}' (already used by sources[${first}])`,
        });
      }
    });
  }
  const zb = value.zerobus;
  if (isRecord(zb) && isRecord(zb.source_targets)) {
    const known = [...names.keys()];
    for (const name of Object.keys(zb.source_targets)) {
      if (names.has(name)) continue;
      ctx.addIssue({
        code: "custom",
        path: ["zerobus", "source_targets", name],
        message: `no source named '${name}' is configured` +
          (known.length > 0 ? ` (sources: ${known.join(", ")})` : " (sources is empty)"),
      });
    }
  }
}

/** The whole configuration file. */
export const agentConfigSchema = z.strictObject({
  connector: connectorSchema.prefault({}),
  http: httpSchema.prefault({}),
  sources: z.array(sourceSchema).default(() => []),
  zerobus: zerobusSchema.prefault({}),
  normalization: normalizationSchema.prefault({}),
  backpressure: backpressureSchema.prefault({}),
  discovery: discoverySchema.prefault({}),
}).superRefine(checkAcrossSections, ALWAYS);

/** The validated configuration, defaults applied. */
export type AgentConfig = z.output<typeof agentConfigSchema>;
/** One `sources[]` entry, any protocol. */
export type SourceConfig = AgentConfig["sources"][number];
/** A generator source entry. */
export type GeneratorSourceConfig = Extract<SourceConfig, { protocol: "generator" }>;
/** An OPC UA source entry. */
export type OpcuaSourceConfig = Extract<SourceConfig, { protocol: "opcua" }>;
/** An MQTT source entry. */
export type MqttSourceConfig = Extract<SourceConfig, { protocol: "mqtt" }>;
/** A Modbus source entry. */
export type ModbusSourceConfig = Extract<SourceConfig, { protocol: "modbus" }>;
/** The `connector` section. */
export type ConnectorConfig = AgentConfig["connector"];
/** The `http` section. */
export type HttpConfig = AgentConfig["http"];
/** The `zerobus` section; `workspace_host` already falls back to the default target's. */
export type ZerobusConfig = AgentConfig["zerobus"];
/** A target table. */
export type TargetConfig = z.output<typeof targetSchema>;
/** The `normalization` section. */
export type NormalizationConfig = AgentConfig["normalization"];
/** One normalization rule. */
export type RuleConfig = NormalizationConfig["rules"][number];
/** The `backpressure` section. */
export type BackpressureConfig = AgentConfig["backpressure"];
/** The `discovery` section. */
export type DiscoveryConfig = AgentConfig["discovery"];

/** The table a source's records go to: its `source_targets` entry, else `default_target`. */
export function targetFor(config: AgentConfig, sourceName: string): TargetConfig | undefined {
  const own = Object.hasOwn(config.zerobus.source_targets, sourceName)
    ? config.zerobus.source_targets[sourceName]
    : undefined;
  return own ?? config.zerobus.default_target;
}

/** `catalog.schema.table` of a target. */
export function tableFullName(target: TargetConfig): string {
  return `${target.catalog}.${target.schema}.${target.table}`;
}
