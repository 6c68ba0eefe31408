/**
 * Data-driven source tests, one per `src/sources/<protocol>/testcases/<name>/`
 * folder: `config.yaml` (a config whose first source is under test) and either
 * `expected.jsonl` (records in order; only the keys given are compared) or
 * `expected_error.txt` (each line must appear in the config errors).
 * The source runs in its real Worker under the real host.
 */
import { assert, assertEquals } from "./assert.ts";
import { type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import { loadConfigText } from "../src/config/load.ts";

const sourcesDir = new URL("../src/sources/", import.meta.url);

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

async function collect(yaml: string, want: number): Promise<Row[]> {
  const run = await runSourceUnderHost(yaml);
  try {
    await waitFor(() => run.rows.length >= want, `${want} records`, 20_000).catch(() => {});
    return run.rows.slice();
  } finally {
    await run.stop();
  }
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
