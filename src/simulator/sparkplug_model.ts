/**
 * The devices of the simulator's Sparkplug B edge node and their metrics:
 * name, alias (unique across the edge node), datatype, unit and a value model
 * (sine, ramp, random walk, step and counters, like the simulated sensors).
 */

/** Datatypes the simulator's metrics use. */
export type MetricType = "Int32" | "Int64" | "Float" | "Double" | "Boolean" | "String";

/** A metric value. */
export type MetricValue = number | boolean | string;

/** One metric: how it is declared and how its value moves with time (ms). */
export interface MetricSpec {
  name: string;
  alias: number;
  type: MetricType;
  unit?: string;
  value(nowMs: number): MetricValue;
}

/** A device: its metrics and its `Device Control/Online` command metric. */
export interface EdgeDevice {
  name: string;
  metrics: MetricSpec[];
  online: MetricSpec;
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/** A random walk between `lo` and `hi`, one step per call. */
function randomWalk(start: number, lo: number, hi: number, step: number): () => number {
  let v = start;
  return () => {
    v = Math.min(hi, Math.max(lo, v + (Math.random() - 0.5) * step));
    return round(v, 2);
  };
}

/** A counter that grows by one every `periodMs` from the start of the simulator. */
function counter(periodMs: number): (nowMs: number) => number {
  const t0 = Date.now();
  return (now) => Math.floor((now - t0) / periodMs);
}

/** Fresh devices (their random walks and counters start now). */
export function edgeDevices(): EdgeDevice[] {
  const welds = counter(2000);
  const items = counter(700);
  const speed = randomWalk(30, 20, 40, 0.8);
  const online = (alias: number): MetricSpec => ({
    name: "Device Control/Online",
    alias,
    type: "Boolean",
    value: () => true,
  });
  return [
    {
      name: "welder1",
      online: online(19),
      metrics: [
        {
          name: "Motor/Current",
          alias: 10,
          type: "Double",
          unit: "A",
          value: (t) => round(11.5 + 2 * Math.sin(t / 20_000), 3),
        },
        {
          name: "Motor/Temperature",
          alias: 11,
          type: "Float",
          unit: "degC",
          value: (t) => round(45 + 5 * Math.sin(t / 60_000), 1),
        },
        { name: "Weld Count", alias: 12, type: "Int64", value: welds },
        {
          name: "Running",
          alias: 13,
          type: "Boolean",
          value: (t) => Math.floor(t / 30_000) % 4 !== 3,
        },
        {
          name: "Program",
          alias: 14,
          type: "String",
          value: (t) => ["P100-door", "P200-roof"][Math.floor(t / 45_000) % 2],
        },
      ],
    },
    {
      name: "conveyor2",
      online: online(29),
      metrics: [
        { name: "Belt/Speed", alias: 20, type: "Double", unit: "m/min", value: speed },
        {
          name: "Belt/Load",
          alias: 21,
          type: "Int32",
          unit: "%",
          value: (t) => Math.floor(t / 1000 * 2) % 100,
        },
        { name: "Jam", alias: 22, type: "Boolean", value: (t) => Math.floor(t / 20_000) % 5 === 4 },
        { name: "Item Count", alias: 23, type: "Int64", value: items },
        {
          name: "Recipe",
          alias: 24,
          type: "String",
          value: (t) => ["standard", "fragile"][Math.floor(t / 60_000) % 2],
        },
      ],
    },
  ];
}
