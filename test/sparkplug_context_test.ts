/** Sparkplug names as ISA-95 context: the default mapping, a custom one, node-level metrics. */
import { assertEquals } from "./assert.ts";
import { contextOf, DEFAULT_CONTEXT_MAPPING } from "../src/sources/mqtt/sparkplug/readings.ts";

Deno.test("sparkplug context: group, edge node and device by the mapping", () => {
  const origin = { group: "Assembly", edgeNode: "Line4", device: "Welder1" };
  assertEquals(contextOf(origin, DEFAULT_CONTEXT_MAPPING), {
    area: "Assembly",
    line: "Line4",
    equipment: "Welder1",
  });
  assertEquals(contextOf(origin, { site: "group", equipment: "edge_node" }), {
    site: "Assembly",
    equipment: "Line4",
  });
  assertEquals(contextOf(origin, {}), undefined);
});

Deno.test("sparkplug context: a node-level metric's equipment is its edge node", () => {
  const origin = { group: "Assembly", edgeNode: "Line4" };
  assertEquals(contextOf(origin, DEFAULT_CONTEXT_MAPPING), {
    area: "Assembly",
    line: "Line4",
    equipment: "Line4",
  });
});
