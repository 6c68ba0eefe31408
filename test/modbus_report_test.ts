/** Report by exception, malformed-frame bursts, poll figures and per-group plans of the Modbus source. */
import { assert, assertEquals } from "./assert.ts";
import { loadConfigText } from "../src/config/load.ts";
import { MalformedFrames } from "../src/sources/modbus/frames.ts";
import { pollGroupsOf } from "../src/sources/modbus/groups.ts";
import { type ModbusTag, planReads, tagsOf } from "../src/sources/modbus/plan.ts";
import { PollStats } from "../src/sources/modbus/poll_stats.ts";
import { ExceptionReport } from "../src/sources/modbus/report.ts";
import type { ModbusSourceConfig } from "../src/sources/modbus/schema.ts";
import { unitsOf } from "../src/sources/modbus/units.ts";
import type { Reading } from "../src/sources/worker_protocol.ts";

const tag = (deadband?: number) => ({ deadband }) as ModbusTag;
const reading = (value: unknown, quality_code = 0) =>
  ({ address: "1/holding/0", tag_name: "t", value, quality_code }) as Reading;

Deno.test("modbus report: exact changes, quality changes and the heartbeat on the poll grid", () => {
  const r = new ExceptionReport({ byException: true, heartbeatMs: 1000 });
  const t = tag();
  const seq: Array<[unknown, number, number]> = [
    [1.5, 0, 0], // first: emitted
    [1.5, 0, 100], // same
    [1.5000001, 0, 200], // any change of a float
    [null, 256, 300], // good -> bad
    [null, 256, 400], // same bad
    [null, 2, 500], // another bad code
    [1.5000001, 0, 600], // bad -> good, same value as the last good
    [1.5000001, 0, 1500], // 900 ms since the last: no heartbeat yet
    [1.5000001, 0, 1600], // heartbeat
    [NaN, 0, 1700],
    [NaN, 0, 1800], // NaN equals NaN
    ["a", 0, 1900],
    ["a", 0, 2000],
    [true, 0, 2100],
    [true, 0, 2200],
  ];
  assertEquals(seq.map(([v, q, at]) => r.pass(t, reading(v, q), at)), [
    true,
    false,
    true,
    true,
    false,
    true,
    true,
    false,
    true,
    true,
    false,
    true,
    false,
    true,
    false,
  ]);
});

Deno.test("modbus report: deadband against the last emitted value; off passes all", () => {
  const r = new ExceptionReport({ byException: true, heartbeatMs: 0 });
  const t = tag(0.5);
  const values = [10, 10.4, 10.5, 10.9, 11, 11.6, -1, 2n ** 60n, 2n ** 60n, 2n ** 60n + 1n];
  assertEquals(values.map((v, i) => r.pass(t, reading(v), i * 1e6)), [
    true, // first
    false, // 0.4 from 10
    false, // 0.5: within the deadband
    true, // 0.9 from the last emitted 10
    false, // 0.1 from 10.9
    true, // 0.7 from 10.9
    true,
    true, // another type
    false, // the same bigint
    true, // 1 > 0.5
  ]);
  const off = new ExceptionReport({ byException: false, heartbeatMs: 0 });
  assert([1, 1, 1].every((v) => off.pass(t, reading(v), 0)), "every reading without RBE");
});

Deno.test("modbus frames: logged once per burst, counted always", () => {
  const logs: Array<Record<string, unknown>> = [];
  const frames = new MalformedFrames((f) => logs.push(f), 60_000);
  for (let i = 0; i < 50; i++) frames.seen(i * 100, { error: "Data length error" });
  assertEquals([frames.count, logs.length], [50, 1]);
  frames.seen(70_000, { error: "CRC error" });
  assertEquals(logs.length, 2);
  assertEquals([logs[1].frames_since_last_log, logs[1].malformed_frames], [50, 51]);
});

Deno.test("modbus poll stats: percentiles, late and missed polls", () => {
  const s = new PollStats();
  for (let i = 1; i <= 100; i++) s.record(i === 100 ? 500 : 1, i, 1000);
  s.skipped(2);
  s.skipped(0);
  const f = s.figures();
  assertEquals([f.polls, f.late, f.missed], [100, 1, 2]);
  assertEquals([f.cycle_ms_p50, f.cycle_ms_p99, f.cycle_ms_max, f.last_cycle_ms], [
    51,
    100,
    100,
    100,
  ]);
  assertEquals(new PollStats().figures().cycle_ms_p50, null);
});

Deno.test("modbus plan: tags of different poll groups never share a read", () => {
  const res = loadConfigText(
    `sources:
  - name: plc
    protocol: modbus
    endpoint: modbus://127.0.0.1:5020
    heartbeat_s: 30
    poll_groups:
      - {name: fast, polling_interval_ms: 100, report_by_exception: true}
      - {name: idle, polling_interval_ms: 100}
    registers:
      - {address: 0, type: holding, poll_group: fast}
      - {address: 1, type: holding}
      - {address: 2, type: holding, poll_group: fast}
      - {address: 0, type: holding, unit_id: 2, poll_group: fast}
`,
    { env: {} },
  );
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const cfg = res.config.sources[0] as ModbusSourceConfig;
  const reads = planReads(tagsOf(cfg), cfg.max_gap);
  assertEquals(reads.map((r) => `${r.group ?? "-"}:${r.unitId}/${r.address}+${r.count}`), [
    "-:1/1+1",
    "fast:1/0+3",
    "fast:2/0+1",
  ]);
  const groups = pollGroupsOf(cfg, reads, unitsOf(reads, cfg));
  assertEquals(
    groups.map((g) => [g.name, g.intervalMs, g.report.policy, g.turns.map((t) => t.unit.unitId)]),
    [
      ["default", 1000, { byException: false, heartbeatMs: 30_000 }, [1]],
      ["fast", 100, { byException: true, heartbeatMs: 30_000 }, [1, 2]],
    ],
  );
  assert(groups[0].turns[0].unit === groups[1].turns[0].unit, "unit 1's health is shared");
});
