/**
 * Generator source Worker: N synthetic tags at a configured rate, each with a
 * value model (sine, ramp, random walk, step). Used by the demo, the tests and
 * the benchmark, so it exercises the same path as a protocol source.
 *
 * Every reading carries `metadata.seq`, the tag's own sequence number from 0,
 * so tests can prove that no committed value went missing.
 */
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { createGeneratorModel, type GeneratorPlan, planGenerator } from "./models.ts";
import type { GeneratorSourceConfig } from "./schema.ts";

function generatorDriver(cfg: GeneratorSourceConfig, kit: SourceKit): SourceDriver {
  const plan: GeneratorPlan = planGenerator(cfg);
  const next = createGeneratorModel(plan);
  let stopped = false;
  let done: Promise<void> = Promise.resolve();

  async function loop(): Promise<void> {
    const t0 = performance.now();
    let produced = 0;
    while (!stopped) {
      if (plan.maxRecords !== undefined && produced >= plan.maxRecords) {
        kit.flush();
        kit.status("connected", undefined, { completed: true, produced });
        return;
      }
      await kit.waitForCredit();
      const elapsed = (performance.now() - t0) / 1000;
      let due = plan.recordsPerS === 0 ? produced + 1000 : Math.floor(elapsed * plan.recordsPerS);
      if (plan.maxRecords !== undefined) due = Math.min(due, plan.maxRecords);
      const n = Math.min(due - produced, 1000);
      if (n <= 0) {
        const wait = plan.recordsPerS === 0
          ? 0
          : Math.max(1, (produced + 1) / plan.recordsPerS * 1000 - elapsed * 1000);
        await new Promise((r) => setTimeout(r, Math.min(wait, 50)));
        continue;
      }
      const now = Date.now() * 1000;
      // A slice stops where the credit ends (a batch posted), not up to 10 batches later.
      for (let i = 0; i < n; i++) {
        kit.emit(next(now));
        produced++;
        if (!kit.hasCredit()) break;
      }
      // Yield so `committed` and `stop` messages are handled between slices.
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  return {
    start() {
      kit.status("connected", undefined, { tags: plan.tags, records_per_s: plan.recordsPerS });
      done = loop().catch((e) => kit.status("error", `generator failed: ${e}`));
    },
    async stop() {
      stopped = true;
      await done;
    },
  };
}

runSourceWorker((source, kit) => generatorDriver(source as unknown as GeneratorSourceConfig, kit));
