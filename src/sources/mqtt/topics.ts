/**
 * Topic → tag mapping. A template such as
 * `plant/{site}/{area}/{line}/{equipment}/{tag_name}` matches topics level by
 * level: `{name}` captures one level, `+` matches any one level, `#` (last)
 * any remaining levels, anything else must be equal.
 */
import type { TagContext } from "../worker_protocol.ts";

/** Names a template may capture. */
export const TEMPLATE_FIELDS = ["site", "area", "line", "equipment", "tag_name"] as const;

/** What a topic says about its tag. */
export interface TopicTag {
  tag_name: string;
  /** Context from the topic; undefined when the template did not match. */
  context?: TagContext;
}

type Level =
  | { kind: "field"; name: (typeof TEMPLATE_FIELDS)[number] }
  | { kind: "literal"; text: string }
  | { kind: "any" }
  | { kind: "rest" };

/** Why a topic template is invalid, or undefined when it is valid. */
export function topicTemplateProblem(template: string): string | undefined {
  try {
    parseTemplate(template);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function parseTemplate(template: string): Level[] {
  if (template === "") throw new Error("topic template must not be empty");
  const levels = template.split("/");
  const seen = new Set<string>();
  return levels.map((text, i): Level => {
    if (text === "#") {
      if (i !== levels.length - 1) throw new Error("'#' must be the last level of the template");
      return { kind: "rest" };
    }
    if (text === "+") return { kind: "any" };
    const m = /^\{([^}]*)\}$/.exec(text);
    if (m) {
      const name = m[1] as (typeof TEMPLATE_FIELDS)[number];
      if (!(TEMPLATE_FIELDS as readonly string[]).includes(name)) {
        throw new Error(`unknown field {${m[1]}}; expected one of ${TEMPLATE_FIELDS.join(", ")}`);
      }
      if (seen.has(name)) throw new Error(`field {${name}} appears twice`);
      seen.add(name);
      return { kind: "field", name };
    }
    if (/[{}+#]/.test(text)) throw new Error(`invalid template level '${text}'`);
    return { kind: "literal", text };
  });
}

/** The last level of a topic (the fallback tag name). */
export function lastLevel(topic: string): string {
  const levels = topic.split("/").filter((l) => l !== "");
  return levels.length > 0 ? levels[levels.length - 1] : topic;
}

/**
 * Compiles a template (or none) into a topic → tag function. Unmatched topics
 * (or no template) give the topic's last level as tag name and no context, so
 * the source's own context applies.
 */
export function compileTopicMapper(template?: string): (topic: string) => TopicTag {
  if (template === undefined) return (topic) => ({ tag_name: lastLevel(topic) });
  const levels = parseTemplate(template);
  const hasRest = levels[levels.length - 1].kind === "rest";
  return (topic) => {
    const parts = topic.split("/");
    const fixed = hasRest ? levels.length - 1 : levels.length;
    if (hasRest ? parts.length < fixed : parts.length !== fixed) {
      return { tag_name: lastLevel(topic) };
    }
    const context: TagContext = {};
    let tagName: string | undefined;
    for (let i = 0; i < fixed; i++) {
      const level = levels[i];
      const part = parts[i];
      if (level.kind === "literal") {
        if (part !== level.text) return { tag_name: lastLevel(topic) };
      } else if (level.kind === "field") {
        if (part === "") return { tag_name: lastLevel(topic) };
        if (level.name === "tag_name") tagName = part;
        else context[level.name] = part;
      }
    }
    return { tag_name: tagName ?? lastLevel(topic), context };
  };
}
