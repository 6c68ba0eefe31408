/**
 * `otedge demo` as a user runs it: a subprocess in an empty working directory,
 * data flowing into both demo tables, then Ctrl-C (SIGINT) stops everything.
 */
import { parse as parseYaml } from "yaml";
import { assert, assertEquals } from "./assert.ts";
import { freePort, readTables, seqHoles, waitFor } from "./helpers.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DEMO_YAML = new URL("../config/demo.yaml", import.meta.url);

interface TableRef {
  catalog: string;
  schema: string;
  table: string;
}

/** Source name → full table name, read from config/demo.yaml itself. */
async function demoTables(): Promise<Map<string, string>> {
  const doc = parseYaml(await Deno.readTextFile(DEMO_YAML)) as {
    sources: { name: string }[];
    zerobus: { default_target: TableRef; source_targets?: Record<string, TableRef> };
  };
  const full = (t: TableRef) => `${t.catalog}.${t.schema}.${t.table}`;
  const out = new Map<string, string>();
  for (const s of doc.sources) {
    const t = doc.zerobus.source_targets?.[s.name] ?? doc.zerobus.default_target;
    out.set(s.name, full(t));
  }
  return out;
}

/** The protocols of the sources in config/demo.yaml. */
async function demoProtocols(): Promise<Set<string>> {
  const doc = parseYaml(await Deno.readTextFile(DEMO_YAML)) as { sources: { protocol: string }[] };
  return new Set(doc.sources.map((s) => s.protocol));
}

/** The parent pid of a process, or undefined when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** Every descendant of `root` (children, their children, ...), from /proc. */
function descendants(root: number): number[] {
  const parents = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const ppid = parentOf(Number(e.name));
    if (ppid !== undefined) parents.set(Number(e.name), ppid);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const p = todo.pop()!;
    for (const [pid, ppid] of parents) {
      if (ppid === p && !out.includes(pid)) {
        out.push(pid);
        todo.push(pid);
      }
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

/** Collects a stream's text (keeps the pipe drained so the child never blocks). */
function collect(stream: ReadableStream<Uint8Array>): { text: () => string; done: Promise<void> } {
  let text = "";
  const done = (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  })().catch(() => {});
  return { text: () => text, done };
}

/** Rows left in the spool (KV segments), parsed, per target lane. */
async function spooledRows(path: string): Promise<Map<string, Record<string, unknown>[]>> {
  const kv = await Deno.openKv(path);
  const out = new Map<string, Record<string, unknown>[]>();
  const dec = new TextDecoder();
  try {
    for await (const e of kv.list<{ rows: Uint8Array }>({ prefix: ["seg"] })) {
      const lane = e.key[1] as string;
      const rows = out.get(lane) ?? [];
      for (const r of splitRows(e.value.rows)) rows.push(JSON.parse(dec.decode(r)));
      out.set(lane, rows);
    }
  } finally {
    kv.close();
  }
  return out;
}

Deno.test("demo: every source streams into its table, and Ctrl-C stops every process cleanly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "otedge-demo-" });
  const dataDir = `${dir}/data`;
  const port = freePort();
  const tables = await demoTables();
  const protocols = await demoProtocols();
  for (const p of ["generator", "modbus", "mqtt", "opcua"]) {
    assert(protocols.has(p), `config/demo.yaml has a ${p} source`);
  }
  assert(tables.has("assembly_sparkplug"), "config/demo.yaml has a Sparkplug B source");
  assertEquals(new Set(tables.values()).size, tables.size, "each demo source has its own table");

  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("CONNECTOR_")),
  );
  const demo = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "demo", "--port", String(port), "--data-dir", dataDir],
    cwd: dir,
    env: { ...env, NO_COLOR: "1" },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(demo.stdout);
  const stderr = collect(demo.stderr);
  let exited = false;
  const status = demo.status.then((s) => {
    exited = true;
    return s;
  });
  let children: number[] = [];
  const logs = () => `\nstdout:\n${stdout.text()}\nstderr (end):\n${stderr.text().slice(-3000)}`;
  try {
    const api = `http://127.0.0.1:${port}`;
    const st = await waitFor(
      async () => {
        if (exited) throw new Error(`the demo exited early${logs()}`);
        const s = await (await fetch(`${api}/api/status`)).json();
        const connected = [...tables.keys()].every((n) => s.sources?.[n]?.state === "connected");
        return connected && s.zerobus_connected === true ? s : undefined;
      },
      // Generous: the simulator and the agent create their OPC UA certificates in pure JS.
      "every demo source connected and zerobus_connected",
      120_000,
    );
    for (const [name, table] of tables) {
      assertEquals(st.sources[name].target, table, `${name} goes to ${table}`);
      assertEquals(st.targets[table].state, "streaming");
    }
    assert(stdout.text().includes(`API:           ${api}`), `the demo prints its API${logs()}`);

    // Rows of every table land in <data-dir>/zerobus-local/<table>.jsonl.
    const landed = await waitFor(
      async () => {
        const t = await readTables(dataDir);
        return [...tables.values()].every((name) => (t.get(name)?.length ?? 0) >= 10)
          ? t
          : undefined;
      },
      "rows in every demo table",
      60_000,
    );
    for (const [source, table] of tables) {
      const rows = landed.get(table)!;
      const sources = [...new Set(rows.map((r) => r.source_name))];
      assertEquals(sources, [source], `${table} holds rows of ${source} only`);
    }
    assertEquals([...landed.keys()].sort(), [...tables.values()].sort(), "no other table");
    // The simulator's MQTT publishers: JSON sensors and Kepware (context from the
    // topic), and the Sparkplug B edge node's two devices (context from its ids).
    await waitFor(
      async () => {
        const t = await readTables(dataDir);
        const has = (source: string, key: string, value: string) =>
          (t.get(tables.get(source)!) ?? []).some((r) => r[key] === value);
        return has("plant_mqtt", "area", "paint_shop") && has("plant_mqtt", "area", "stamping") &&
          has("assembly_sparkplug", "equipment", "welder1") &&
          has("assembly_sparkplug", "equipment", "conveyor2");
      },
      "JSON, Kepware and both Sparkplug devices' rows",
      60_000,
    );
    // The OPC UA source: context and tag names from browse paths, units from EngineeringUnits.
    const opcuaRows = landed.get(tables.get("plant_opcua")!)!;
    const oil = opcuaRows.find((r) =>
      r.tag_path === "columbusassembly/pressshop/assembly/press01/temperature/oiltemperature"
    );
    assert(oil, `an OPC UA row with its browse-path tag path: ${opcuaRows[0]?.tag_path}`);
    assertEquals([oil.unit, oil.value_type], ["°C", "float"]);
    assert(!opcuaRows.some((r) => r.area === "utilities"), "excluded by discovery.exclude");

    children = descendants(demo.pid);
    assert(children.length >= 1, "the demo runs the stand-in as a child process");
    assert(
      children.some((pid) => cmdline(pid).includes("zerobus-local")),
      `a child is the stand-in: ${children.map((p) => `${p}: ${cmdline(p)}`).join("; ")}`,
    );

    // Ctrl-C: the demo stops the agent, then the stand-in, and exits 0.
    Deno.kill(demo.pid, "SIGINT");
    const timeout = new Promise<"timeout">((r) => {
      const t = setTimeout(() => r("timeout"), 30_000);
      status.finally(() => clearTimeout(t));
    });
    const end = await Promise.race([status, timeout]);
    assert(end !== "timeout", `the demo did not exit within 30 s of SIGINT${logs()}`);
    await Promise.all([stdout.done, stderr.done]);
    assertEquals(end.code, 0, `exit code after SIGINT${logs()}`);
    assert(stderr.text().includes('"msg":"agent stopped"'), `the agent stopped cleanly${logs()}`);
    await waitFor(() => children.every((p) => !alive(p)), "the demo's children to be gone", 10_000)
      .catch(() => {
        throw new Error(
          `orphans left by the demo: ${
            children.filter(alive).map((p) => `${p}: ${cmdline(p)}`).join("; ")
          }`,
        );
      });

    // A clean stop does not drain the spool: the sender stops taking new
    // segments when the stop begins, so records committed after that stay in
    // the spool (resent at the next start). Whatever is left, nothing is lost:
    // per table, delivered ∪ spooled has no sequence holes.
    const delivered = await readTables(dataDir);
    const spooled = await spooledRows(`${dataDir}/spool/spool.sqlite3`);
    for (const lane of spooled.keys()) {
      assert([...tables.values()].includes(lane), `spool lane ${lane} is a demo table`);
    }
    for (const [source, table] of tables) {
      const rows = [...(delivered.get(table) ?? []), ...(spooled.get(table) ?? [])];
      // Only generator records carry a sequence number (metadata.seq) to check.
      if (!rows.every((r) => "seq" in JSON.parse(r.metadata as string))) continue;
      assertEquals(seqHoles(rows), [], `${table}: no record of ${source} lost`);
      for (const r of spooled.get(table) ?? []) assertEquals(r.source_name, source);
    }
  } finally {
    if (!exited) {
      children = [...new Set([...children, ...descendants(demo.pid)])];
      try {
        Deno.kill(demo.pid, "SIGKILL");
      } catch { /* gone */ }
      await status;
    }
    for (const pid of children) {
      if (alive(pid)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    await Promise.all([stdout.done, stderr.done]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("demo: killed with SIGKILL, its stand-in child exits on its own (no orphan)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "otedge-demo-kill-" });
  const port = freePort();
  const demo = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "demo", "--port", String(port), "--data-dir", `${dir}/data`],
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let children: number[] = [];
  try {
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${port}/health`)).status === 200,
      "the demo",
      120_000,
    );
    children = descendants(demo.pid);
    assert(children.some((pid) => cmdline(pid).includes("zerobus-local")), "the stand-in runs");
    assert(children.some((pid) => cmdline(pid).includes("simulate")), "the simulator runs");
    Deno.kill(demo.pid, "SIGKILL");
    await demo.status;
    await waitFor(
      () => children.every((p) => !alive(p)),
      "the stand-in to notice and exit",
      15_000,
    );
  } finally {
    for (const p of children.filter(alive)) Deno.kill(p, "SIGKILL");
    try {
      Deno.kill(demo.pid, "SIGKILL");
    } catch { /* gone */ }
    await demo.status;
    await Deno.remove(dir, { recursive: true });
  }
});
