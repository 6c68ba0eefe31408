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
  | "unit";

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

/** Replaces `$1`..`$9` and `$<name>` with the groups of a match (missing groups become ""). */
function substitute(template: string, m: RegExpExecArray | null): string {
  if (!m) return template;
  return template.replace(
    /\$(\d|<(\w+)>)/g,
    (_all, d: string, name?: string) => (name ? m.groups?.[name] : m[Number(d)]) ?? "",
  );
}

/** Compiles rules into one function from (source name, protocol, reading) to the fields they set. */
export function compileRules(
  rules: readonly Rule[],
): (source: { name: string; protocol: string }, r: Reading) => RuleResult {
  const compiled = rules.map((rule) => ({
    protocol: rule.match.protocol,
    source: rule.match.source,
    address: rule.match.address === undefined ? undefined : new RegExp(rule.match.address),
    browse: rule.match.browse_path === undefined ? undefined : globToRegExp(rule.match.browse_path),
    set: Object.entries(rule.set) as [RuleField, string][],
  }));
  if (compiled.length === 0) return () => ({});
  return (source, r) => {
    const out: RuleResult = {};
    for (const c of compiled) {
      if (c.protocol !== undefined && c.protocol !== source.protocol) continue;
      if (c.source !== undefined && c.source !== source.name) continue;
      const byAddress = c.address ? c.address.exec(r.address) : null;
      if (c.address && !byAddress) continue;
      const byBrowse = c.browse ? c.browse.exec(r.browse_path ?? "") : null;
      if (c.browse && !byBrowse) continue;
      for (const [field, template] of c.set) {
        out[field] = substitute(template, byAddress ?? byBrowse);
      }
    }
    return out;
  };
}
