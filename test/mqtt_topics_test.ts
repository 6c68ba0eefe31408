/** MQTT topic → tag mapping with templates; template validation. */
import { assertEquals } from "./assert.ts";
import { compileTopicMapper, topicTemplateProblem } from "../src/sources/mqtt/topics.ts";

const ISA = "plant/{site}/{area}/{line}/{equipment}/{tag_name}";

const cases: Array<
  [string, string | undefined, string, ReturnType<ReturnType<typeof compileTopicMapper>>]
> = [
  ["full match", ISA, "plant/s1/a1/l1/e1/temp", {
    tag_name: "temp",
    context: { site: "s1", area: "a1", line: "l1", equipment: "e1" },
  }],
  ["literal mismatch falls back", ISA, "factory/s1/a1/l1/e1/temp", { tag_name: "temp" }],
  ["too few levels fall back", ISA, "plant/s1/temp", { tag_name: "temp" }],
  ["too many levels fall back", ISA, "plant/s1/a1/l1/e1/temp/raw", { tag_name: "raw" }],
  ["empty captured level falls back", ISA, "plant//a1/l1/e1/temp", { tag_name: "temp" }],
  ["no template: last level", undefined, "sensors/line1/pressure", { tag_name: "pressure" }],
  ["no template, trailing slash", undefined, "sensors/flow/", { tag_name: "flow" }],
  ["+ skips a level, # the rest", "{site}/+/{equipment}/#", "s2/x/pump1/a/b/c", {
    tag_name: "c",
    context: { site: "s2", equipment: "pump1" },
  }],
  ["# needs the fixed levels", "{site}/+/{equipment}/#", "s2/x", { tag_name: "x" }],
  ["template without tag_name uses the last level", "{site}/{line}/+", "s/l/speed", {
    tag_name: "speed",
    context: { site: "s", line: "l" },
  }],
];

for (const [name, template, topic, want] of cases) {
  Deno.test(`mqtt topics: ${name}`, () => {
    assertEquals(compileTopicMapper(template)(topic), want);
  });
}

Deno.test("mqtt topics: invalid templates are explained", () => {
  assertEquals(topicTemplateProblem(ISA), undefined);
  assertEquals(
    topicTemplateProblem("plant/{cell}/{tag_name}"),
    "unknown field {cell}; expected one of site, area, line, equipment, tag_name",
  );
  assertEquals(topicTemplateProblem("{site}/{site}"), "field {site} appears twice");
  assertEquals(topicTemplateProblem("#/{site}"), "'#' must be the last level of the template");
  assertEquals(topicTemplateProblem("plant/x{site}"), "invalid template level 'x{site}'");
  assertEquals(topicTemplateProblem(""), "topic template must not be empty");
});
