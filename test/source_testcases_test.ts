/**
 * Data-driven source tests, one per `src/sources/<protocol>/testcases/<name>/`
 * folder: `config.yaml` (a config whose first source is under test) and either
 * `expected.jsonl` (records in order; only the keys given are compared) or
 * `expected_error.txt` (each line must appear in the config errors).
 * The source runs in its real Worker under the real host.
 */
import { assert, assertEquals } from "./assert.ts";
import { loadConfigText } from "../src/config/load.ts";
import { createLogger } from "../src/log.ts";
import { type RecordBatch, SourceHost } from "../src/sources/host.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";

const sourcesDir = new URL("../src/sources/", import.meta.url);

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

async function collect(yaml: string, want: number): Promise<Record<string, unknown>[]> {
  const res = loadConfigText(yaml, { env: {} });
  if (!res.ok) throw new Error(res.errors.join("\n"));
  const rows: Record<string, unknown>[] = [];
  const dec = new TextDecoder();
  let done: () => void = () => {};
  const enough = new Promise<void>((r) => (done = r));
  const host = new SourceHost(
    (_src, batch: RecordBatch) => {
      for (const r of splitRows(batch.rows)) rows.push(JSON.parse(dec.decode(r)));
      if (rows.length >= want) done();
      return Promise.resolve(true);
    },
    () => {},
    createLogger("error", "test", () => {}),
    {
      dataDir: await Deno.makeTempDir(),
      normalization: res.config.normalization,
      maxRows: 100,
      recordType: () => "json",
    },
  );
  await host.start(res.config.sources[0] as never);
  const timeout = setTimeout(done, 20_000);
  await enough;
  clearTimeout(timeout);
  await host.stopAll();
  return rows;
}

for await (const proto of Deno.readDir(sourcesDir)) {
  const casesDir = new URL(`${proto.name}/testcases/`, sourcesDir);
  if (!proto.isDirectory || !(await exists(casesDir))) continue;
  for await (const tc of Deno.readDir(casesDir)) {
    const dir = new URL(`${tc.name}/`, casesDir);
    Deno.test(`source testcase ${proto.name}/${tc.name}`, async () => {
      const yaml = await Deno.readTextFile(new URL("config.yaml", dir));
      if (await exists(new URL("expected_error.txt", dir))) {
        const res = loadConfigText(yaml, { env: {} });
        assert(!res.ok, "config must be rejected");
        const errors = res.errors.join("\n");
        const lines = (await Deno.readTextFile(new URL("expected_error.txt", dir))).split("\n")
          .filter((l) => l);
        for (const line of lines) {
          assert(errors.includes(line), `missing error '${line}' in:\n${errors}`);
        }
        return;
      }
      const expected = (await Deno.readTextFile(new URL("expected.jsonl", dir))).split("\n")
        .filter((l) => l.trim()).map((l) => JSON.parse(l));
      const rows = await collect(yaml, expected.length);
      assertEquals(rows.length, expected.length, "record count");
      expected.forEach((want, i) => {
        const got = Object.fromEntries(Object.keys(want).map((k) => [k, rows[i][k]]));
        assertEquals(got, want, `record ${i}`);
      });
      for (const r of rows) assert(/^[0-9a-f]{32}$/.test(r.record_id as string), "record ids");
    });
  }
}
