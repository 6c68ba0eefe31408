/** Value models of the generator source, kept apart from the Worker so they can be tested. */
import type { Reading } from "../worker_protocol.ts";
import type { GeneratorSourceConfig } from "./schema.ts";

/** The generator's settings after defaults, as plain numbers. */
export interface GeneratorPlan {
  tags: number;
  /** Total records per second; 0 = as fast as credit allows. */
  recordsPerS: number;
  maxRecords?: number;
  models: readonly Model[];
  prefix: string;
  unit?: string;
  signalType?: string;
}

type Model = "sine" | "ramp" | "random_walk" | "step";

const MODEL_UNITS: Record<Model, string> = {
  sine: "degC",
  ramp: "%",
  random_walk: "bar",
  step: "rpm",
};

/** Derives the plan from a generator source config. */
export function planGenerator(cfg: GeneratorSourceConfig): GeneratorPlan {
  const recordsPerS = cfg.records_per_s ?? cfg.tags * 1000 / cfg.interval_ms;
  return {
    tags: cfg.tags,
    recordsPerS,
    maxRecords: cfg.max_records,
    models: cfg.models.length > 0 ? cfg.models : ["sine", "ramp", "random_walk", "step"],
    prefix: cfg.tag_prefix,
    unit: cfg.unit,
    signalType: cfg.signal_type,
  };
}

/**
 * Returns a function producing the next reading, tags in round-robin order.
 * Deterministic apart from the random walk's noise.
 */
export function createGeneratorModel(plan: GeneratorPlan): (nowMicros: number) => Reading {
  const width = Math.max(4, String(plan.tags - 1).length);
  const names = Array.from(
    { length: plan.tags },
    (_, i) => `${plan.prefix}_${String(i).padStart(width, "0")}`,
  );
  const seq = new Float64Array(plan.tags);
  const walk = new Float64Array(plan.tags).fill(50);
  let tag = 0;
  return (now: number): Reading => {
    const i = tag;
    tag = (tag + 1) % plan.tags;
    const model = plan.models[i % plan.models.length];
    const t = now / 1e6;
    let value: number;
    switch (model) {
      case "sine":
        value = 50 + (i % 10) * 5 + 10 * Math.sin((2 * Math.PI * t) / (60 + (i % 30)));
        break;
      case "ramp":
        value = (t * 2 + i) % 100;
        break;
      case "random_walk":
        walk[i] = Math.min(100, Math.max(0, walk[i] + (Math.random() - 0.5)));
        value = walk[i];
        break;
      default:
        value = (Math.floor(t / 10 + i) % 4) * 25;
    }
    const s = seq[i]++;
    return {
      address: `gen/${names[i]}`,
      tag_name: names[i],
      value: Math.round(value * 1000) / 1000,
      event_time: now,
      quality_code: 0,
      quality: "good",
      unit: plan.unit ?? MODEL_UNITS[model],
      signal_type: plan.signalType,
      metadata: `{"seq":${s},"model":"${model}"}`,
    };
  };
}
