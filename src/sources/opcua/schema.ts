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

/** OPC UA-specific keys of a source entry. */
export const opcuaFields = {
  endpoint: z.string().refine(isOpcuaEndpoint, "expected an opc.tcp:// URL"),
  security_mode: z.enum(OPCUA_SECURITY_MODES).default("None"),
  security_policy: z.enum(OPCUA_SECURITY_POLICIES).default("None"),
  username: z.string().min(1).optional(),
  password: z.string().optional(),
  /** Read values periodically instead of subscribing. */
  polling_mode: z.boolean().default(false),
  polling_interval_ms: interval.default(1000),
  /** Most variables the source reads or monitors. */
  variable_limit: int().min(1).max(1_000_000).default(1000),
  publishing_interval_ms: interval.optional(),
  sampling_interval_ms: int().min(0).max(86_400_000).optional(),
  /** NodeIds to read (`ns=2;s=Temperature`); browse the address space when absent. */
  nodes: z.array(z.string().regex(NODE_ID, "expected a NodeId like ns=2;s=Temperature"))
    .optional(),
};

/**
 * Cross-key checks: a security mode other than None needs a policy other than
 * None and the other way round; a password needs a username. Runs on
 * partly invalid input too, so it only looks at keys of the right type.
 */
export function checkOpcua(source: unknown, ctx: z.RefinementCtx): void {
  if (typeof source !== "object" || source === null) return;
  const s = source as Record<string, unknown>;
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
}

/** An OPC UA source entry after validation and defaults. */
export type OpcuaSourceConfig = z.output<typeof SOURCE_SCHEMAS.opcua>;
