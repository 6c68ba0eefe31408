/** The source host: Workers started, stopped, restarted after a crash, one at a time. */
import { assert, assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import { createLogger } from "../src/log.ts";
import { type HostSettings, type RecordBatch, SourceHost } from "../src/sources/host.ts";
import { workerUrlOf } from "../src/sources/catalog.ts";

const quiet = createLogger("error", "test", () => {});
const settings = (extra: Partial<HostSettings> = {}): HostSettings => ({
  dataDir: "/tmp",
  normalization: {
    enabled: true,
    path_template: "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
    missing_placeholder: "unassigned",
  },
  maxRows: 100,
  recordType: () => "json",
  ...extra,
});

function generator(name: string, tags: number) {
  return {
    name,
    protocol: "generator",
    endpoint: `generator://${name}`,
    enabled: true,
    tags,
    interval_ms: 100,
    models: ["sine"],
    tag_prefix: "tag",
  };
}

Deno.test("host: a crashing Worker is restarted with backoff; its error and dead letters are kept", async () => {
  const records: number[] = [];
  const deadLetters: string[] = [];
  const host = new SourceHost(
    (_src, b: RecordBatch) => {
      records.push(b.count);
      return Promise.resolve(true);
    },
    (source, reason) => deadLetters.push(`${source}: ${reason}`),
    quiet,
    settings({
      workerUrl: (p) =>
        p === "crashy"
          ? new URL("./fixtures/workers/crashing_worker.ts", import.meta.url)
          : undefined,
    }),
  );
  try {
    await host.start({ name: "c1", protocol: "crashy", endpoint: "x://c1", enabled: true });
    const st = await waitFor(
      () => {
        const s = host.status().c1;
        return s.restarts >= 1 && s.records >= 6 ? s : undefined;
      },
      "a restart and a second run",
    );
    assert(
      /source worker crashed: .*boom: protocol library failed/.test(st.last_error ?? ""),
      `${st.last_error}`,
    );
    assert(st.last_error_time !== null);
    assertEquals(deadLetters[0], "c1: payload is not JSON: unexpected token o at 2");
    assert(records.reduce((a, b) => a + b, 0) >= 6);
  } finally {
    await host.stopAll();
  }
  const after = host.status();
  assertEquals(Object.keys(after), [], "stopped sources are gone");
});

Deno.test("host: stopping or reconfiguring one source leaves the others running", async () => {
  const counts: Record<string, number> = {};
  const host = new SourceHost(
    (src, b) => {
      counts[src.name] = (counts[src.name] ?? 0) + b.count;
      return Promise.resolve(true);
    },
    () => {},
    quiet,
    settings(),
  );
  try {
    await host.start(generator("a", 5));
    await host.start(generator("b", 5));
    await waitFor(() => (counts.a ?? 0) > 0 && (counts.b ?? 0) > 0, "both sources producing");
    await host.stop("a");
    assertEquals(host.names(), ["b"]);
    const aStopped = counts.a;
    const bBefore = counts.b;
    await waitFor(() => counts.b > bBefore + 20, "b still producing");
    assertEquals(counts.a, aStopped, "a produces nothing after stop");
    // Reconfigure b in place: new settings, same name.
    await host.start(generator("b", 7));
    const st = await waitFor(
      () => host.status().b?.detail.tags === 7 ? host.status().b : undefined,
      "b restarted",
    );
    assertEquals(st.state, "connected");
  } finally {
    await host.stopAll();
  }
});

Deno.test("host: a protocol without a Worker reports why instead of starting", async () => {
  // Every registered protocol has a Worker; an unknown one shows what happens without.
  const host = new SourceHost(() => Promise.resolve(true), () => {}, quiet, settings());
  try {
    await host.start({
      name: "plc",
      protocol: "profinet",
      endpoint: "x://127.0.0.1:4840",
      enabled: true,
    });
    const st = host.status().plc;
    assertEquals(st.state, "error");
    assert(
      st.last_error!.includes("protocol 'profinet' has no source implementation"),
      st.last_error!,
    );
    for (const p of ["generator", "opcua", "mqtt", "modbus"]) {
      assert(workerUrlOf(p) !== undefined, `${p} has a Worker`);
    }
  } finally {
    await host.stopAll();
  }
});

Deno.test("host: a disabled source is listed but not started", async () => {
  let batches = 0;
  const host = new SourceHost(
    () => {
      batches++;
      return Promise.resolve(true);
    },
    () => {},
    quiet,
    settings(),
  );
  try {
    await host.start({ ...generator("off", 3), enabled: false });
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(host.status().off.state, "stopped");
    assertEquals(batches, 0);
  } finally {
    await host.stopAll();
  }
});

for (const stored of [true, false]) {
  Deno.test(`host: a Worker learns whether its records were stored (${stored})`, async () => {
    const host = new SourceHost(
      () => Promise.resolve(stored),
      () => {},
      quiet,
      settings({
        workerUrl: () => new URL("./fixtures/workers/acking_worker.ts", import.meta.url),
      }),
    );
    try {
      await host.start({ name: "m", protocol: "acking", endpoint: "x://m", enabled: true });
      const detail = await waitFor(
        () => "stored" in (host.status().m?.detail ?? {}) ? host.status().m.detail : undefined,
        "the worker's answer",
      );
      assertEquals(detail.stored, stored);
    } finally {
      await host.stopAll();
    }
  });
}
