/**
 * Config keys of the generator source: synthetic tags at a set rate, used by
 * the demo, the tests and the benchmark. The keys every source has (name,
 * enabled, site, ...) are added in `../catalog.ts`.
 */
import { z } from "zod";
import type { SOURCE_SCHEMAS } from "../catalog.ts";

/** An integer; unlike `z.int()` a failure does not hide problems elsewhere in the file. */
const int = () => z.number().multipleOf(1);

/** Value models, cycled over the tags. */
export const GENERATOR_MODELS = ["sine", "ramp", "random_walk", "step"] as const;

/** Generator-specific keys of a source entry. */
export const generatorFields = {
  /** Defaults to `generator://<name>`. */
  endpoint: z.string().regex(/^generator:\/\/\S*$/, "expected a generator:// URL").optional(),
  tags: int().min(1).max(1_000_000).default(10),
  /** Each tag produces one value per interval. */
  interval_ms: int().min(1).default(1000),
  /** Total rate across all tags; overrides interval_ms. 0 = as fast as possible. */
  records_per_s: z.number().min(0).optional(),
  models: z.array(z.enum(GENERATOR_MODELS)).min(1).default(() => [...GENERATOR_MODELS]),
  /** Stop after this many records in total. */
  max_records: int().min(1).optional(),
  tag_prefix: z.string().regex(
    /^[A-Za-z0-9_.-]{1,64}$/,
    "expected 1 to 64 letters, digits, '_', '.' or '-'",
  ).default("tag"),
  unit: z.string().optional(),
  signal_type: z.string().optional(),
};

/** Fills the endpoint default, which depends on the source name. */
export function finishGenerator<T extends { name: string; endpoint?: string }>(
  source: T,
): T & { endpoint: string } {
  return { ...source, endpoint: source.endpoint ?? `generator://${source.name}` };
}

/** A generator source entry after validation and defaults. */
export type GeneratorSourceConfig = z.output<typeof SOURCE_SCHEMAS.generator>;
