/**
 * Loads the agent configuration: YAML text → environment overrides →
 * `${env:...}` / `${credential:...}` placeholders → zod validation.
 *
 * Every problem is reported at once, each as `<key path>: <message>` with
 * paths like `sources[2].endpoint`; YAML syntax errors give line and column.
 */
import { LineCounter, parseDocument } from "yaml";
import type { z } from "zod";
import { type AgentConfig, agentConfigSchema } from "./schema.ts";

/** Looks up a stored credential; undefined when it is not stored. */
export type CredentialResolver = (key: string) => string | undefined;

/** Options of `loadConfigText` and `loadConfigFile`. */
export interface LoadOptions {
  /** Environment for overrides and `${env:...}`; defaults to `Deno.env.toObject()`. */
  env?: Record<string, string>;
  /** Resolves `${credential:key}`; without it every credential placeholder is an error. */
  credential?: CredentialResolver;
  /** Named in YAML syntax errors. */
  fileName?: string;
}

/** A validated config, or every problem found. */
export type LoadResult = { ok: true; config: AgentConfig } | { ok: false; errors: string[] };

type Path = (string | number)[];

/** A value type an environment override is converted to. */
export type EnvValueType = "string" | "integer" | "boolean";

/** Environment variables that win over the file: variable → key path and type. */
export const ENV_OVERRIDES: readonly { env: string; path: Path; type: EnvValueType }[] = [
  { env: "CONNECTOR_LOG_LEVEL", path: ["connector", "log_level"], type: "string" },
  { env: "CONNECTOR_DATA_DIR", path: ["connector", "data_dir"], type: "string" },
  { env: "CONNECTOR_HTTP_HOST", path: ["http", "host"], type: "string" },
  { env: "CONNECTOR_HTTP_PORT", path: ["http", "port"], type: "integer" },
  { env: "CONNECTOR_ZEROBUS_ENABLED", path: ["zerobus", "enabled"], type: "boolean" },
  { env: "CONNECTOR_ZEROBUS_CLIENT_ID", path: ["zerobus", "auth", "client_id"], type: "string" },
  {
    env: "CONNECTOR_ZEROBUS_CLIENT_SECRET",
    path: ["zerobus", "auth", "client_secret"],
    type: "string",
  },
  { env: "CONNECTOR_ZEROBUS_WORKSPACE_HOST", path: ["zerobus", "workspace_host"], type: "string" },
  { env: "CONNECTOR_ZEROBUS_ENDPOINT", path: ["zerobus", "zerobus_endpoint"], type: "string" },
];

/** `sources[2].endpoint` style text for a key path; `(root)` for the empty path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += out === "" ? String(seg) : `.${String(seg)}`;
  }
  return out === "" ? "(root)" : out;
}

/** Text for the CLI: a heading and one indented line per problem. */
export function formatErrors(errors: readonly string[], fileName?: string): string {
  const where = fileName === undefined ? "" : ` in ${fileName}`;
  const count = errors.length === 1 ? "1 problem" : `${errors.length} problems`;
  return `Invalid configuration${where} (${count}):\n${errors.map((e) => `  - ${e}`).join("\n")}`;
}

/** Parses, overrides, resolves and validates a YAML config text. */
export function loadConfigText(text: string, opts: LoadOptions = {}): LoadResult {
  const parsed = parseYaml(text, opts.fileName);
  if (!parsed.ok) return parsed;
  return loadConfigValue(parsed.value, opts);
}

/** Reads a YAML config file and loads it like `loadConfigText`. */
export async function loadConfigFile(path: string, opts: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "file not found"
      : `cannot read: ${e instanceof Error ? e.message : e}`;
    return { ok: false, errors: [`${path}: ${why}`] };
  }
  return loadConfigText(text, { ...opts, fileName: opts.fileName ?? path });
}

/**
 * Loads an already parsed config (for example JSON from the API): applies
 * environment overrides and placeholders, then validates. Does not modify `value`.
 */
export function loadConfigValue(value: unknown, opts: LoadOptions = {}): LoadResult {
  const env = opts.env ?? Deno.env.toObject();
  const tree = dropNulls(structuredClone(value ?? {}));
  if (!isRecord(tree)) {
    return { ok: false, errors: [`(root): expected a mapping of sections, got ${kind(tree)}`] };
  }
  const problems: string[] = [];
  const blocked: string[] = [];
  const fromEnv = applyEnvOverrides(tree, env, problems, blocked);
  const whole = new Set<string>();
  resolvePlaceholders(tree, [], { env, credential: opts.credential }, {
    problems,
    blocked,
    whole,
    skip: new Set(fromEnv.keys()),
  });

  let result = agentConfigSchema.safeParse(tree, { error: issueMessage });
  if (!result.success && coercePlaceholderValues(tree, result.error.issues, whole)) {
    result = agentConfigSchema.safeParse(tree, { error: issueMessage });
  }
  if (result.success && problems.length === 0) return { ok: true, config: result.data };
  const reported = new Set<string>();
  for (const iss of result.success ? [] : result.error.issues) {
    for (const [path, message] of issueLines(iss)) {
      const key = formatPath(path);
      if (blocked.some((b) => key === b || key.startsWith(`${b}.`) || key.startsWith(`${b}[`))) {
        continue;
      }
      // One problem per key: a fractional `0.5` is "expected an integer", not also "must be >= 1".
      if (reported.has(key)) continue;
      reported.add(key);
      const source = fromEnv.get(key);
      problems.push(`${key}: ${message}${source === undefined ? "" : ` (from ${source})`}`);
    }
  }
  return { ok: false, errors: problems };
}

/**
 * Validates a value against any schema with the same messages as the config
 * loader, key paths prefixed with `prefix` (e.g. `["sources", 3]`).
 */
export function validateWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  prefix: Path = [],
): { ok: true; data: z.output<S> } | { ok: false; errors: string[] } {
  const result = schema.safeParse(value, { error: issueMessage });
  if (result.success) return { ok: true, data: result.data };
  const errors = result.error.issues.flatMap((iss) =>
    issueLines(iss).map(([path, message]) => `${formatPath([...prefix, ...path])}: ${message}`)
  );
  return { ok: false, errors };
}

// --------------------------------------------------------------------- YAML

function parseYaml(
  text: string,
  fileName: string | undefined,
): { ok: true; value: unknown } | { ok: false; errors: string[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const errors = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      const where = fileName === undefined
        ? `line ${line}, column ${col}`
        : `${fileName}:${line}:${col}`;
      const message = e.code === "MULTIPLE_DOCS"
        ? "a config file holds one YAML document; remove the '---' separator"
        : e.message.split("\n")[0];
      return `${where}: YAML syntax error: ${message}`;
    });
    return { ok: false, errors };
  }
  try {
    return { ok: true, value: doc.toJS() };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return { ok: false, errors: [`${fileName ?? "(yaml)"}: YAML error: ${message}`] };
  }
}

// ------------------------------------------------------------ tree helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Removes null mapping values (an empty `key:` in YAML), so they count as absent. */
function dropNulls(value: unknown): unknown {
  if (Array.isArray(value)) {
    value.forEach(dropNulls);
  } else if (isRecord(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (v === null) delete value[k];
      else dropNulls(v);
    }
  }
  return value;
}

function getAt(tree: unknown, path: Path): unknown {
  let node = tree;
  for (const seg of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

/** Sets a value, creating missing mappings; false when an intermediate is not a mapping. */
function setAt(tree: Record<string, unknown>, path: Path, value: unknown): boolean {
  let node: Record<string | number, unknown> = tree;
  for (const seg of path.slice(0, -1)) {
    if (node[seg] === undefined) node[seg] = {};
    const next = node[seg];
    if (typeof next !== "object" || next === null) return false;
    node = next as Record<string | number, unknown>;
  }
  node[path[path.length - 1]] = value;
  return true;
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return "a string";
  if (typeof v === "number") return Number.isInteger(v) ? "an integer" : "a number";
  if (typeof v === "boolean") return "a boolean";
  return typeof v;
}

function show(v: unknown): string {
  const text = typeof v === "string" ? JSON.stringify(v) : String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ------------------------------------------------------ environment overrides

function convertEnv(raw: string, type: EnvValueType): unknown {
  if (type === "integer") return /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : undefined;
  if (type === "boolean") {
    const v = raw.trim().toLowerCase();
    if (["true", "1", "yes", "on"].includes(v)) return true;
    if (["false", "0", "no", "off"].includes(v)) return false;
    return undefined;
  }
  return raw;
}

/** Applies `ENV_OVERRIDES`; returns formatted key path → variable name for those applied. */
function applyEnvOverrides(
  tree: Record<string, unknown>,
  env: Record<string, string>,
  problems: string[],
  blocked: string[],
): Map<string, string> {
  const applied = new Map<string, string>();
  for (const o of ENV_OVERRIDES) {
    const raw = env[o.env];
    if (raw === undefined || raw === "") continue;
    const key = formatPath(o.path);
    const value = convertEnv(raw, o.type);
    if (value === undefined) {
      const expected = o.type === "integer" ? "an integer" : "true or false";
      problems.push(`${key}: ${o.env} must be ${expected}, got ${show(raw)}`);
      blocked.push(key);
      continue;
    }
    if (setAt(tree, o.path, value)) applied.set(key, o.env);
  }
  return applied;
}

// ------------------------------------------------------------- placeholders

const PLACEHOLDER = /(\$?)\$\{(env|credential):([^}]*)\}/g;
const WHOLE_PLACEHOLDER = /^\$\{(?:env|credential):[^}]*\}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

interface Sources {
  env: Record<string, string>;
  credential?: CredentialResolver;
}

interface PlaceholderState {
  problems: string[];
  /** Key paths with a problem already; schema issues there are not repeated. */
  blocked: string[];
  /** Key paths whose whole value was one placeholder. */
  whole: Set<string>;
  /** Key paths set from the environment; not resolved. */
  skip: Set<string>;
}

function resolveOne(kindName: string, body: string, src: Sources): string {
  if (kindName === "env") {
    const colon = body.indexOf(":");
    const name = colon < 0 ? body : body.slice(0, colon);
    if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name ${show(name)}`);
    const value = src.env[name];
    if (value !== undefined) return value;
    if (colon >= 0) return body.slice(colon + 1);
    throw new Error(
      `environment variable ${name} is not set; export it or give a default as \${env:${name}:<default>}`,
    );
  }
  const key = body.trim();
  if (key === "") throw new Error("empty credential key in ${credential:}");
  if (src.credential === undefined) {
    throw new Error(
      `credential '${key}' cannot be read: no credential store is open; set ` +
        `CONNECTOR_MASTER_PASSWORD and run 'otedge credentials set ${key}'`,
    );
  }
  let value: string | undefined;
  try {
    value = src.credential(key);
  } catch (e) {
    throw new Error(`credential '${key}' cannot be read: ${e instanceof Error ? e.message : e}`);
  }
  if (value === undefined) {
    throw new Error(
      `credential '${key}' is not stored; run 'otedge credentials set ${key}'`,
    );
  }
  return value;
}

/** Replaces placeholders in every string value, in place. `$${` stays a literal `${`. */
function resolvePlaceholders(
  node: unknown,
  path: Path,
  src: Sources,
  state: PlaceholderState,
): unknown {
  if (typeof node === "string") {
    const key = formatPath(path);
    if (state.skip.has(key) || !node.includes("${")) return node;
    let failed = false;
    const out = node.replace(PLACEHOLDER, (match, escape: string, kindName: string, body) => {
      if (escape === "$") return match.slice(1);
      try {
        return resolveOne(kindName, body, src);
      } catch (e) {
        if (!failed) state.problems.push(`${key}: ${(e as Error).message}`);
        failed = true;
        return match;
      }
    });
    if (failed) state.blocked.push(key);
    else if (WHOLE_PLACEHOLDER.test(node)) state.whole.add(key);
    return out;
  }
  if (Array.isArray(node)) {
    node.forEach((v, i) => node[i] = resolvePlaceholders(v, [...path, i], src, state));
  } else if (isRecord(node)) {
    for (const [k, v] of Object.entries(node)) {
      node[k] = resolvePlaceholders(v, [...path, k], src, state);
    }
  }
  return node;
}

/**
 * A value that was one whole placeholder is text; where the schema wants a
 * number or boolean and the text is one, converts it. True when anything changed.
 */
function coercePlaceholderValues(
  tree: Record<string, unknown>,
  issues: readonly z.core.$ZodIssue[],
  whole: Set<string>,
): boolean {
  let changed = false;
  for (const iss of issues) {
    if (iss.code !== "invalid_type" || !whole.has(formatPath(iss.path))) continue;
    const raw = getAt(tree, iss.path as Path);
    if (typeof raw !== "string") continue;
    let value: unknown;
    if (iss.expected === "number" || iss.expected === "int") {
      if (/^\s*-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s*$/.test(raw)) value = Number(raw);
    } else if (iss.expected === "boolean") {
      const v = raw.trim().toLowerCase();
      if (v === "true" || v === "false") value = v === "true";
    }
    if (value !== undefined && setAt(tree, iss.path as Path, value)) changed = true;
  }
  return changed;
}

// ----------------------------------------------------------------- messages

function list(values: readonly unknown[]): string {
  return values.map((v) => typeof v === "string" ? v : show(v)).join(", ");
}

const EXPECTED: Record<string, string> = {
  object: "a mapping",
  array: "a list",
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
};

/** Error map for every config parse: short messages without zod jargon. */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const input = iss.input;
  switch (iss.code) {
    case "invalid_type": {
      if (input === undefined) return "required";
      const expected = EXPECTED[iss.expected] ?? iss.expected;
      const hint = iss.expected === "string" && ["number", "boolean"].includes(typeof input)
        ? " (put it in quotes)"
        : "";
      return `expected ${expected}, got ${kind(input)}${hint}`;
    }
    case "invalid_value":
      return iss.values.length === 1
        ? `expected ${show(iss.values[0])}, got ${show(input)}`
        : `expected one of ${list(iss.values)}, got ${show(input)}`;
    case "too_small":
    case "too_big": {
      const small = iss.code === "too_small";
      const bound = small
        ? (iss as z.core.$ZodIssueTooSmall).minimum
        : (iss as z.core.$ZodIssueTooBig).maximum;
      const inclusive = iss.inclusive !== false;
      if (iss.origin === "array") {
        return small ? `needs at least ${bound} item(s)` : `allows at most ${bound} item(s)`;
      }
      if (iss.origin === "string") {
        if (small && Number(bound) === 1) return "must not be empty";
        return small ? `needs at least ${bound} characters` : `allows at most ${bound} characters`;
      }
      const op = small ? (inclusive ? ">=" : ">") : (inclusive ? "<=" : "<");
      return `must be ${op} ${bound}, got ${show(input)}`;
    }
    case "invalid_union": {
      const options = (iss as { options?: unknown[] }).options;
      const disc = (iss as { discriminator?: string }).discriminator;
      if (iss.note === "No matching discriminator" && options !== undefined && disc) {
        const value = typeof input === "object" && input !== null
          ? (input as Record<string, unknown>)[disc]
          : undefined;
        return value === undefined
          ? `required (one of ${list(options)})`
          : `expected one of ${list(options)}, got ${show(value)}`;
      }
      return undefined;
    }
    case "not_multiple_of":
      return Number(iss.divisor) === 1
        ? `expected an integer, got ${show(input)}`
        : `must be a multiple of ${iss.divisor}, got ${show(input)}`;
    case "unrecognized_keys":
      return "unknown key";
    case "invalid_key":
      return "invalid key";
  }
  return undefined;
}

/** One issue as [path, message] lines; unknown keys become one line per key. */
function issueLines(iss: z.core.$ZodIssue): [Path, string][] {
  const path = iss.path as Path;
  if (iss.code === "unrecognized_keys") return iss.keys.map((k) => [[...path, k], "unknown key"]);
  return [[path, iss.message]];
}
