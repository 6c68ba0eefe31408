/**
 * Normalization rules: an ordered list of `{match, set}` that fill or override
 * context fields, the tag name, the signal type or the unit from a reading's
 * protocol address or browse path. Compiled once; evaluated once per tag (the
 * normalizer caches the result with the tag's static fields).
 */
import type { Reading } from "../sources/worker_protocol.ts";

/** Fields a rule may set. */
export type RuleField =
  | "site"
  | "area"
  | "line"
  | "equipment"
  | "tag_name"
  | "signal_type"
  | "unit"
  | "value_type";

/** One rule as configured (`normalization.rules[]`). */
export interface Rule {
  match: { protocol?: string; source?: string; address?: string; browse_path?: string };
  set: Partial<Record<RuleField, string>>;
}

/** What rules decide for one tag: the fields set by every matching rule, later rules winning. */
export type RuleResult = Partial<Record<RuleField, string>>;

/**
 * A browse-path glob as an anchored regular expression: `**` matches across
 * `/` segments, `*` within one, `?` one character; each wildcard is a capture.
 */
export function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += "(.*)";
      i++;
    } else if (c === "*") re += "([^/]*)";
    else if (c === "?") re += "([^/])";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Browse-path segments that name the address space, not the plant; dropped by default. */
export const GENERIC_SEGMENTS: readonly string[] = ["root", "objects", "server"];

/**
 * A browse path without its generic segments (compared case-insensitively,
 * e.g. `Objects/Columbus/Line3/Press1/Temperature` → `Columbus/Line3/Press1/Temperature`).
 */
export function withoutGenericSegments(path: string, generic: ReadonlySet<string>): string {
  if (generic.size === 0) return path;
  return path.split("/").filter((s) => !generic.has(s.toLowerCase())).join("/");
}

/** Replaces `$1`..`$9` and `$<name>` with the groups of a match (missing groups become ""). */
function substitute(template: string, m: RegExpExecArray | null): string {
  if (!m) return template;
  return template.replace(
    /\$(\d|<(\w+)>)/g,
    (_all, d: string, name?: string) => (name ? m.groups?.[name] : m[Number(d)]) ?? "",
  );
}

/**
 * Compiles rules into one function from (the reading's protocol, source name,
 * reading) to the fields they set. A `browse_path` glob is matched against the browse path
 * without its generic segments (`cleanPath`), unless the glob itself starts with
 * a generic segment (`Objects/...`): then against the full path.
 */
export function compileRules(
  rules: readonly Rule[],
  generic: ReadonlySet<string> = new Set(GENERIC_SEGMENTS),
): (protocol: string, sourceName: string, r: Reading, cleanPath?: string) => RuleResult {
  const compiled = rules.map((rule) => {
    const glob = rule.match.browse_path;
    return {
      protocol: rule.match.protocol,
      source: rule.match.source,
      address: rule.match.address === undefined ? undefined : new RegExp(rule.match.address),
      browse: glob === undefined ? undefined : globToRegExp(glob),
      fullPath: glob !== undefined && generic.has(glob.split("/")[0].toLowerCase()),
      set: Object.entries(rule.set) as [RuleField, string][],
    };
  });
  if (compiled.length === 0) return () => ({});
  return (protocol, sourceName, r, cleanPath) => {
    const out: RuleResult = {};
    for (const c of compiled) {
      if (c.protocol !== undefined && c.protocol !== protocol) continue;
      if (c.source !== undefined && c.source !== sourceName) continue;
      const byAddress = c.address ? c.address.exec(r.address) : null;
      if (c.address && !byAddress) continue;
      const path = c.fullPath ? r.browse_path : cleanPath ?? r.browse_path;
      const byBrowse = c.browse ? c.browse.exec(path ?? "") : null;
      if (c.browse && !byBrowse) continue;
      for (const [field, template] of c.set) {
        out[field] = substitute(template, byAddress ?? byBrowse);
      }
    }
    return out;
  };
}
