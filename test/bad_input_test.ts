/**
 * The agent facing what the field gets wrong: a refused token, a table the
 * server refuses, an endpoint nobody listens on, a damaged spool file. The
 * agent runs in-process (short sink backoffs); the stand-in is its own process.
 * In every case the agent keeps running, says what is wrong and what to check,
 * and keeps the data in the spool until it can be delivered.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  agentConfigYaml,
  distinctIds,
  freePort,
  readTables,
  seqHoles,
  type StandIn,
  startStandIn,
  waitFor,
} from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { type RunningAgent, startAgent } from "../src/run.ts";

const quiet = createLogger("error", "test", () => {});
const fastRetry = { sink: { backoffMinMs: 100, backoffMaxMs: 500, fatalRetryMs: 500 } };
const TABLE = "main.iot_data.sensor_readings";
const RECORDS = 300;

/** A generator that produces RECORDS records at once, then stops. */
const SOURCE = `  - name: gen_bad
    protocol: generator
    site: s1
    area: a1
    line: l1
    equipment: e1
    tags: 10
    records_per_s: 0
    max_records: ${RECORDS}
`;

interface Ctx {
  dir: string;
  standIn: StandIn;
  running: RunningAgent;
  status(): Promise<any>;
  metrics(): Promise<any>;
  health(): Promise<{ code: number; body: any }>;
}

/**
 * Starts the stand-in (with `standInArgs`) and the agent, runs `fn`, stops both.
 * `endpoint` replaces the Zerobus endpoint the agent is given; `prepare` runs
 * before the agent starts.
 */
async function scenario(
  opts: {
    standInArgs?: string[];
    endpoint?: string;
    prepare?: (agentDir: string) => Promise<void>;
  },
  fn: (ctx: Ctx) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "otedge-bad-" });
  const standIn = await startStandIn(dir, opts.standInArgs ?? []);
  let running: RunningAgent | undefined;
  try {
    const agentDir = `${dir}/agent`;
    await opts.prepare?.(agentDir);
    const yaml = agentConfigYaml({
      dataDir: agentDir,
      port: freePort(),
      standIn: opts.endpoint ? { ...standIn, endpoint: opts.endpoint } : standIn,
      sources: SOURCE,
    });
    const res = loadConfigText(yaml, { env: {} });
    if (!res.ok) throw new Error(res.errors.join("\n"));
    running = await startAgent(res.config, quiet, fastRetry);
    const url = running.url;
    await fn({
      dir,
      standIn,
      running,
      status: async () => await (await fetch(`${url}/api/status`)).json(),
      metrics: async () => await (await fetch(`${url}/api/metrics`)).json(),
      health: async () => {
        const r = await fetch(`${url}/health`);
        return { code: r.status, body: await r.json() };
      },
    });
  } finally {
    await running?.stop();
    await standIn.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Waits until the generator's records are all committed to the spool. */
async function allSpooled(ctx: Ctx): Promise<void> {
  await waitFor(
    async () => (await ctx.metrics()).bridge.records_enqueued === RECORDS,
    `${RECORDS} records enqueued`,
  );
}

/** Asserts the records are all in the spool and none was acknowledged. */
async function assertAllInSpool(ctx: Ctx): Promise<void> {
  const st = await ctx.status();
  const m = await ctx.metrics();
  assertEquals(m.bridge.records_enqueued, RECORDS);
  assertEquals(st.spool.records, m.bridge.records_enqueued, "every record is still in the spool");
  assertEquals(m.bridge.records_acked, 0, "nothing was acknowledged");
  assertEquals(st.targets[TABLE].records_acked, 0);
  assertEquals(st.status, "running", "the agent keeps running");
  assertEquals(st.sources.gen_bad.restarts, 0, "the source was not disturbed");
  assertEquals(distinctIds(await readTables(ctx.dir)).size, 0, "no row reached the stand-in");
}

Deno.test("bad input: a refused token is reported with what to check, the breaker opens, data stays", async () => {
  await scenario({ standInArgs: ["--client-secret", "other"] }, async (ctx) => {
    await allSpooled(ctx);
    const st = await waitFor(
      async () => {
        const s = await ctx.status();
        // Not while a fourth attempt runs ("connecting", breaker "half_open").
        const t = s.targets[TABLE];
        return t?.consecutive_failures >= 3 && t.state !== "connecting" ? s : undefined;
      },
      "three failed attempts, between attempts",
    );
    const t = st.targets[TABLE];
    assert(["error", "backoff"].includes(t.state), `target state ${t.state}`);
    assertEquals(t.state, "error", "a refused token is not fixed by retrying at once");
    assert(
      t.last_error.includes("token endpoint refused (401)"),
      `last_error names the refusal: ${t.last_error}`,
    );
    assert(
      t.last_error.includes("check zerobus.auth.client_id and client_secret"),
      `last_error says what to check: ${t.last_error}`,
    );
    assert(!t.last_error.includes("local-secret"), "the secret is not shown");
    assert(st.circuit_breaker_state !== "closed", `breaker ${st.circuit_breaker_state}`);
    assertEquals(st.zerobus_connected, false);
    // The breaker is "half_open" only while an attempt runs; /health turns 503 when open.
    const h = await waitFor(
      async () => {
        const r = await ctx.health();
        return r.code === 503 ? r : undefined;
      },
      "/health 503",
    );
    assertEquals(h.body.status, "degraded");
    assertEquals(h.body.zerobus_connected, false);
    await assertAllInSpool(ctx);
  });
});

Deno.test("bad input: a table the server refuses is reported (INVALID_ARGUMENT, check the table); lifting the fault delivers every record", async (t) => {
  await scenario({ standInArgs: ["--reject-table", TABLE] }, async (ctx) => {
    await t.step("refused: reported with what to check, breaker open, data stays", async () => {
      await allSpooled(ctx);
      const st = await waitFor(
        async () => {
          const s = await ctx.status();
          // Not while a fourth attempt runs ("connecting", breaker "half_open").
          const t = s.targets[TABLE];
          return t?.consecutive_failures >= 3 && t.state !== "connecting" ? s : undefined;
        },
        "three failed attempts, between attempts",
      );
      const tg = st.targets[TABLE];
      assertEquals(tg.state, "error", "INVALID_ARGUMENT is not retryable at once");
      assert(tg.last_error.includes("INVALID_ARGUMENT"), `last_error: ${tg.last_error}`);
      assert(
        tg.last_error.includes("check that the target table exists"),
        `last_error says to check the table: ${tg.last_error}`,
      );
      assertEquals(tg.dead_lettered ?? 0, 0, "a refused table dead-letters nothing");
      assertEquals(tg.breaker, "open", "three failures in a row open the breaker");
      await assertAllInSpool(ctx);
    });

    await t.step("fault lifted at runtime: every spooled record arrives", async () => {
      const res = await fetch(`${ctx.standIn.workspaceUrl}/faults`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ reject_tables: null }),
      });
      assertEquals(res.status, 200);
      assertEquals((await res.json()).faults.reject_tables, undefined, "the fault is cleared");
      await waitFor(
        async () => (await ctx.status()).spool.records === 0,
        "the spool to drain",
      );
      const rows = (await readTables(ctx.dir)).get(TABLE) ?? [];
      assertEquals(new Set(rows.map((r) => r.record_id)).size, RECORDS, "every record arrived");
      assertEquals(seqHoles(rows), [], "no sequence holes");
      const after = await ctx.status();
      assertEquals(after.targets[TABLE].state, "streaming");
      assertEquals(after.targets[TABLE].records_acked, RECORDS);
      assertEquals(after.zerobus_connected, true);
      assertEquals((await ctx.metrics()).bridge.records_acked, RECORDS);
      assertEquals((await ctx.health()).code, 200);
    });

    await t.step("delivering again closes the breaker and resets the failure count", async () => {
      const after = await ctx.status();
      assertEquals(after.targets[TABLE].records_acked, RECORDS, "the target acknowledged again");
      assertEquals(
        after.circuit_breaker_state,
        "closed",
        "a stream that is acknowledging again is a successful trial: the breaker closes",
      );
      assertEquals(after.targets[TABLE].breaker, "closed");
      assertEquals(after.targets[TABLE].consecutive_failures, 0);
    });
  });
});

Deno.test("bad input: an endpoint nobody listens on is retried with backoff (UNAVAILABLE), data stays", async () => {
  const nobody = freePort();
  await scenario({ endpoint: `http://127.0.0.1:${nobody}` }, async (ctx) => {
    await allSpooled(ctx);
    const st = await waitFor(
      async () => {
        const s = await ctx.status();
        const t = s.targets[TABLE];
        return t?.consecutive_failures >= 3 && t.state === "backoff" ? s : undefined;
      },
      "three failed attempts, in backoff",
    );
    const t = st.targets[TABLE];
    assert(
      /UNAVAILABLE|ECONNREFUSED|connection refused|failed to connect/i.test(t.last_error),
      `last_error names the connection failure: ${t.last_error}`,
    );
    assert(t.last_error.startsWith(`${TABLE}: `), `last_error names the table: ${t.last_error}`);
    assertEquals(st.zerobus_connected, false);
    assertEquals(t.stream_ids, []);
    await assertAllInSpool(ctx);
  });
});

Deno.test("bad input: a spool file that is not a database is kept aside, a new spool starts, data flows", async () => {
  const garbage = "this is not a database, just some bytes\n".repeat(200);
  await scenario({
    prepare: async (agentDir) => {
      await Deno.mkdir(`${agentDir}/spool`, { recursive: true });
      await Deno.writeTextFile(`${agentDir}/spool/spool.sqlite3`, garbage);
    },
  }, async (ctx) => {
    const spoolPath = `${ctx.dir}/agent/spool/spool.sqlite3`;
    const st = await ctx.status();
    const kept = st.spool.recovered_from_corrupt_file;
    assert(typeof kept === "string", `recovered_from_corrupt_file is set: ${kept}`);
    assert(
      kept.startsWith(`${spoolPath}.corrupt-`),
      `the kept file sits next to the spool: ${kept}`,
    );
    assertEquals(await Deno.readTextFile(kept), garbage, "the damaged file is kept unchanged");
    assertEquals(st.spool.path, spoolPath);

    await waitFor(
      async () => distinctIds(await readTables(ctx.dir)).size >= RECORDS,
      `${RECORDS} records delivered`,
    );
    const rows = (await readTables(ctx.dir)).get(TABLE)!;
    assertEquals(new Set(rows.map((r) => r.record_id)).size, RECORDS);
    assertEquals(seqHoles(rows), []);
    await waitFor(async () => (await ctx.status()).spool.records === 0, "spool drained");
    // The new spool is a working database and the kept file is still there.
    assertEquals((await Deno.stat(kept)).isFile, true);
    assertEquals((await ctx.status()).spool.recovered_from_corrupt_file, kept);
  });
});
