/** Agent-level behaviour without a sink: spool caps and the full-spool policies. */
import { assert, assertEquals } from "./assert.ts";
import { freePort, waitFor } from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { startAgent } from "../src/run.ts";
import { WORKER_MAX_INFLIGHT } from "../src/sources/host.ts";

const quiet = createLogger("error", "test", () => {});

function config(dir: string, onFull: string): string {
  return `connector: { data_dir: ${JSON.stringify(dir)} }
http: { port: ${freePort()} }
sources:
  - { name: fast, protocol: generator, tags: 10, records_per_s: 20000, site: s, area: a, line: l, equipment: e }
zerobus:
  enabled: false
  default_target: { catalog: main, schema: iot, table: t }
  # At most 100 records per batch, whatever a busy machine does to the generator's slices.
  batch: { max_records: 100 }
backpressure:
  disk_spool: { max_records: 500 }
  on_full: ${onFull}
`;
}

async function run(onFull: string, check: (m: ReturnType<typeof metricsOf>) => void) {
  const dir = await Deno.makeTempDir({ prefix: "otedge-agent-" });
  const res = loadConfigText(config(dir, onFull), { env: {} });
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const running = await startAgent(res.config, quiet);
  try {
    await waitFor(() => running.agent.spool.isFull(), "a full spool");
    // A blocked source stops once its Worker has used up its credit (WORKER_MAX_INFLIGHT batches).
    // Settled when nothing arrived over five checks in a row: a busy machine may stall one.
    let last = -1;
    let still = 0;
    await waitFor(
      async () => {
        await new Promise((r) => setTimeout(r, 300));
        const now = running.agent.bridge.records_received;
        still = now === last ? still + 1 : 0;
        last = now;
        return still >= 5 || onFull !== "block";
      },
      "the source to settle",
    );
    const a = metricsOf(await (await fetch(`${running.url}/api/metrics`)).json());
    if (onFull === "block") await new Promise((r) => setTimeout(r, 500));
    else {
      await waitFor(
        () => running.agent.bridge.records_received > a.received,
        "the source to keep running",
      );
    }
    // Batches taken before the spool filled up may still be committing.
    if (onFull === "drop_newest") await running.agent.spool.flush();
    const b = metricsOf(await (await fetch(`${running.url}/api/metrics`)).json());
    check({ ...b, growth: b.received - a.received });
    const health = await fetch(`${running.url}/health`);
    await health.body?.cancel();
    // drop_oldest keeps making room, so only the other policies leave the spool full.
    if (onFull !== "drop_oldest") {
      assertEquals(health.status, 503, "a full spool makes /health degraded");
    }
  } finally {
    await running.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function metricsOf(m: any) {
  return {
    received: m.bridge.records_received as number,
    enqueued: m.bridge.records_enqueued as number,
    dropped: m.bridge.records_dropped as number,
    droppedOldest: (m.backpressure.dropped.spool_full_oldest ?? 0) as number,
    spool: m.backpressure.spool_records as number,
    growth: 0,
  };
}

Deno.test("agent: on_full drop_newest keeps the cap and counts every dropped record", async () => {
  await run("drop_newest", (m) => {
    assert(m.spool <= 600, `cap held (within one batch): ${m.spool}`);
    assert(m.dropped > 0, "drops counted");
    assertEquals(
      m.received,
      m.enqueued + m.dropped,
      "every record is either spooled or counted as dropped",
    );
    assert(m.growth > 0, "the source keeps running");
  });
});

Deno.test("agent: on_full block pauses the source instead of dropping", async () => {
  await run("block", (m) => {
    assert(m.spool <= 600, `cap held: ${m.spool}`);
    assertEquals(m.dropped, 0);
    assertEquals(m.growth, 0, "no new records once the Worker ran out of credit");
    // At most the cap, the Worker's credit of batches of at most 100, and one partial batch
    // (posted by the Worker's batch timer without credit).
    assert(m.received <= 600 + (WORKER_MAX_INFLIGHT + 1) * 100, `bounded: ${m.received}`);
  });
});

Deno.test("agent: on_full drop_oldest makes just enough room for new records", async () => {
  await run("drop_oldest", (m) => {
    assert(m.spool <= 600, `cap held: ${m.spool}`);
    assert(m.spool >= 400, `only the oldest few were dropped, not the whole spool: ${m.spool}`);
    assert(m.droppedOldest > 0, "drops counted");
    // Records being committed are in the spool already but not yet counted as enqueued;
    // drops are counted together with the spool's totals.
    const uncounted = m.spool - (m.enqueued - m.droppedOldest);
    assert(
      uncounted >= 0 && uncounted <= 1000,
      `every spooled record is kept or counted: ${uncounted}`,
    );
    assert(m.growth > 0, "the source keeps running");
  });
});
