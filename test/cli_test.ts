/**
 * The command line as a user runs it: `deno run -A main.ts <command> ...` as a
 * subprocess, with its exit code, stdout and stderr.
 */
import { assert, assertEquals } from "./assert.ts";
import { freePort } from "./helpers.ts";
import denoJson from "../deno.json" with { type: "json" };
import { COLUMNS } from "../src/record.ts";
import { openCredentialStore } from "../src/config/credentials.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment of this process without any CONNECTOR_* setting, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("CONNECTOR_")) env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

/**
 * Runs `deno run -A main.ts ...args` and waits for it to exit. A process still
 * running after `timeoutMs` is killed (by its pid) and the call throws.
 */
async function cli(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: cleanEnv(opts.env),
    clearEnv: true,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(opts.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    const res = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    if (timedOut) {
      throw new Error(`'${args.join(" ")}' still running after the timeout:\n${res.stderr}`);
    }
    return res;
  } finally {
    clearTimeout(timer);
  }
}

const show = (r: CliResult) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
async function listening(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

const COMMANDS = [
  "run",
  "demo",
  "simulate",
  "zerobus-local",
  "validate-config",
  "schema",
  "credentials",
  "certificates",
];

/** A valid config with a generator source; `secret` is the client_secret value. */
function validConfig(dataDir: string, port: number, secret = "local-secret"): string {
  return `connector:
  name: cli-test
  data_dir: ${JSON.stringify(dataDir)}
http:
  host: 127.0.0.1
  port: ${port}
sources:
  - name: gen_cli
    protocol: generator
    tags: 5
zerobus:
  enabled: true
  workspace_host: http://127.0.0.1:1
  zerobus_endpoint: http://127.0.0.1:1
  default_target: { catalog: main, schema: iot_data, table: sensor_readings }
  auth:
    client_id: local-client
    client_secret: ${JSON.stringify(secret)}
`;
}

/** A config with three problems in different sections. */
function invalidConfig(dataDir: string, port: number): string {
  return `connector:
  name: cli-test
  data_dir: ${JSON.stringify(dataDir)}
  colour: blue
http:
  host: 127.0.0.1
  port: ${port}
sources:
  - name: plc1
    protocol: opcua
    endpoint: http://10.0.0.1:4840
zerobus:
  enabled: false
  batch:
    max_records: 50000
`;
}

const INVALID_PROBLEMS = [
  "  - connector.colour: unknown key",
  "  - sources[0].endpoint: expected an opc.tcp:// URL",
  "  - zerobus.batch.max_records: must be <= 10000, got 50000",
];

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "otedge-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cli: --version prints 'otedge <version of deno.json>'", async () => {
  const r = await cli(["--version"]);
  assertEquals(r.code, 0, show(r));
  assertEquals(r.stdout, `otedge ${denoJson.version}\n`);
  assertEquals(r.stderr, "");
});

Deno.test("cli: --help lists every command; every command's --help exits 0 with its usage", async () => {
  const r = await cli(["--help"]);
  assertEquals(r.code, 0, show(r));
  for (const c of COMMANDS) {
    assert(
      new RegExp(`^  ${c}\\b`, "m").test(r.stdout),
      `--help lists '${c}':\n${r.stdout}`,
    );
  }
  const results = await Promise.all(COMMANDS.map((c) => cli([c, "--help"])));
  COMMANDS.forEach((c, i) => {
    const h = results[i];
    assertEquals(h.code, 0, `${c} --help: ${show(h)}`);
    assert(
      new RegExp(`^Usage: \\S+ ${c}\\b`, "m").test(h.stdout),
      `${c} --help prints its usage: ${show(h)}`,
    );
  });
});

Deno.test("cli: an unknown command or option is bad usage (exit 2)", async () => {
  const r = await cli(["frobnicate"]);
  assertEquals(r.code, 2, show(r));
  assert(r.stderr.includes("unknown command 'frobnicate'"), show(r));
  const o = await cli(["schema", "--tabel", "a.b.c"]);
  assertEquals(o.code, 2, show(o));
  assert(o.stderr.includes("Unknown option '--tabel'"), show(o));
  assertEquals(o.stdout, "");
});

Deno.test("cli: 'credentials <sub> --help' shows the usage and never touches the store", async () => {
  // README: "--help works on every command". Today `credentials set --help`
  // stores stdin as a credential named "--help" (and `get --help` prints it).
  await withTempDir(async (dir) => {
    const env = { CONNECTOR_DATA_DIR: dir, CONNECTOR_MASTER_PASSWORD: "test-password" };
    const set = await cli(["credentials", "set", "--help"], { env, stdin: "not-a-secret\n" });
    assertEquals(set.code, 0, `credentials set --help: ${show(set)}`);
    assert(set.stdout.includes("Usage: otedge credentials"), show(set));
    assertEquals(
      await exists(`${dir}/credentials.json`),
      false,
      "no credential store was written by 'credentials set --help'",
    );
  });
});

Deno.test("cli: validate-config on a valid file prints ok and a summary", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/good.yaml`;
    await Deno.writeTextFile(file, validConfig(`${dir}/data`, 18080));
    const r = await cli(["validate-config", file]);
    assertEquals(r.code, 0, show(r));
    assert(r.stdout.startsWith(`ok: ${file}\n`), show(r));
    assert(r.stdout.includes("sources: 1 (gen_cli:generator)"), show(r));
    assert(r.stdout.includes("zerobus: enabled"), show(r));
    assert(r.stdout.includes("http: 127.0.0.1:18080"), show(r));
    assertEquals(await exists(`${dir}/data`), false, "validate-config creates no data dir");
  });
});

Deno.test("cli: validate-config on an invalid file prints every problem with its key path (exit 2)", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/bad.yaml`;
    await Deno.writeTextFile(file, invalidConfig(`${dir}/data`, 18081));
    const r = await cli(["validate-config", file]);
    assertEquals(r.code, 2, show(r));
    assertEquals(r.stdout, "", "nothing on stdout, no 'ok'");
    assert(
      r.stderr.includes(`Invalid configuration in ${file} (3 problems):`),
      show(r),
    );
    for (const p of INVALID_PROBLEMS) assert(r.stderr.includes(p), `missing '${p}': ${show(r)}`);
  });
});

Deno.test("cli: run with an invalid config prints the problems, exits 2 and starts nothing", async () => {
  await withTempDir(async (dir) => {
    const port = freePort();
    const file = `${dir}/bad.yaml`;
    await Deno.writeTextFile(file, invalidConfig(`${dir}/data`, port));
    const r = await cli(["run", "--config", file]);
    assertEquals(r.code, 2, show(r));
    for (const p of INVALID_PROBLEMS) assert(r.stderr.includes(p), `missing '${p}': ${show(r)}`);
    assert(!r.stdout.includes('"event":"ready"'), `no ready line: ${show(r)}`);
    assertEquals(await listening(port), false, `nothing listens on ${port}`);
    assertEquals(await exists(`${dir}/data`), false, "no data dir, no spool was created");
  });
});

Deno.test("cli: schema prints the CREATE TABLE with every column of COLUMNS, in order", async () => {
  const r = await cli(["schema"]);
  assertEquals(r.code, 0, show(r));
  const lines = r.stdout.split("\n");
  assertEquals(lines[0], "CREATE TABLE IF NOT EXISTS main.iot_data.sensor_readings (");
  const cols = lines
    .map((l) => /^ {2}(\w+) (STRING|BIGINT|DOUBLE|BOOLEAN|INT)( NOT NULL)? COMMENT '/.exec(l))
    .filter((m) => m !== null)
    .map((m) => `${m![1]} ${m![2]}${m![3] ?? ""}`);
  assertEquals(
    cols,
    COLUMNS.map((c) => `${c.name} ${c.sql}${c.nullable ? "" : " NOT NULL"}`),
  );
  assert(r.stdout.includes("\nUSING DELTA\n"), show(r));

  const named = await cli(["schema", "--table", "cat_1.sch_2.tbl_3"]);
  assertEquals(named.code, 0, show(named));
  assertEquals(named.stdout.split("\n")[0], "CREATE TABLE IF NOT EXISTS cat_1.sch_2.tbl_3 (");

  for (const bad of ["bad", "a.b", "a.b.c.d", "a.b.c; DROP TABLE x"]) {
    const b = await cli(["schema", "--table", bad]);
    assertEquals(b.code, 2, `--table ${bad}: ${show(b)}`);
    assertEquals(b.stdout, "", `--table ${bad} prints no SQL`);
    assert(b.stderr.includes("--table must be CATALOG.SCHEMA.TABLE"), show(b));
  }

  const proto = await cli(["schema", "--proto"]);
  assertEquals(proto.code, 0, show(proto));
  assert(proto.stdout.includes('syntax = "proto2";\n'), show(proto));
  const fields = [...proto.stdout.matchAll(/^ {2}optional \w+ (\w+) = (\d+);$/gm)];
  assertEquals(
    fields.map((m) => m[1]),
    COLUMNS.map((c) => c.name),
    "one field per column, in order",
  );
  assertEquals(fields.map((m) => Number(m[2])), COLUMNS.map((_, i) => i + 1));
});

/** A config whose client_secret is `${credential:zerobus.client_secret}`. */
function credentialConfig(dataDir: string, port: number): string {
  return validConfig(dataDir, port, "${credential:zerobus.client_secret}");
}

/**
 * The situation of a user who stored the secret but forgot to export
 * CONNECTOR_MASTER_PASSWORD in this shell: the store exists and holds the key.
 */
async function storeWithSecret(dataDir: string): Promise<void> {
  const store = await openCredentialStore(`${dataDir}/credentials.json`, "the-password");
  await store.set("zerobus.client_secret", "local-secret");
}

/** Checks the answer to a `${credential:...}` config without CONNECTOR_MASTER_PASSWORD. */
function assertSaysSetThePassword(r: CliResult): void {
  assertEquals(r.code, 2, show(r));
  assert(
    r.stderr.includes("zerobus.auth.client_secret: credential 'zerobus.client_secret'"),
    `names the key path and the credential: ${show(r)}`,
  );
  assert(r.stderr.includes("CONNECTOR_MASTER_PASSWORD"), `names the variable to set: ${show(r)}`);
  assert(
    !r.stderr.includes("is not stored"),
    `the credential is stored; the message must not send the user to store it again: ${show(r)}`,
  );
}

Deno.test("cli: run with a ${credential:...} and no CONNECTOR_MASTER_PASSWORD exits 2 and says to set it", async () => {
  await withTempDir(async (dir) => {
    const port = freePort();
    await storeWithSecret(`${dir}/data`);
    const file = `${dir}/cred.yaml`;
    await Deno.writeTextFile(file, credentialConfig(`${dir}/data`, port));
    const r = await cli(["run", "--config", file]);
    assertSaysSetThePassword(r);
    assertEquals(await listening(port), false);
    assertEquals(await exists(`${dir}/data/spool`), false, "nothing started");
  });
});

Deno.test("cli: validate-config with a ${credential:...} and no CONNECTOR_MASTER_PASSWORD exits 2 and says to set it", async () => {
  await withTempDir(async (dir) => {
    await storeWithSecret(`${dir}/data`);
    const file = `${dir}/cred.yaml`;
    await Deno.writeTextFile(file, credentialConfig(`${dir}/data`, 18082));
    assertSaysSetThePassword(await cli(["validate-config", file]));
  });
});

Deno.test("cli: credentials set (stdin), list, get, then validate-config resolves ${credential:...}", async () => {
  await withTempDir(async (dir) => {
    const dataDir = `${dir}/data`;
    const gen = await cli(["credentials", "generate-password"]);
    assertEquals(gen.code, 0, show(gen));
    const password = gen.stdout.trim();
    assert(/^[A-Za-z0-9_-]{43}$/.test(password), `a 32-byte base64url password: ${password}`);
    const env = { CONNECTOR_DATA_DIR: dataDir, CONNECTOR_MASTER_PASSWORD: password };
    const secret = "s3cr3t with spaces & $ymbols";

    const set = await cli(["credentials", "set", "zerobus.client_secret"], {
      env,
      stdin: `${secret}\n`,
    });
    assertEquals(set.code, 0, show(set));
    assert(set.stdout.includes(`stored credential 'zerobus.client_secret'`), show(set));
    assert(
      !set.stdout.includes(secret) && !set.stderr.includes(secret),
      "the secret is not echoed",
    );
    const file = await Deno.readTextFile(`${dataDir}/credentials.json`);
    assert(!file.includes(secret) && !file.includes("s3cr3t"), "the file holds no plaintext");

    const list = await cli(["credentials", "list"], { env });
    assertEquals(list.code, 0, show(list));
    assertEquals(list.stdout, "zerobus.client_secret\n");

    const get = await cli(["credentials", "get", "zerobus.client_secret"], { env });
    assertEquals(get.code, 0, show(get));
    assertEquals(get.stdout, `${secret}\n`, "the trailing newline of stdin is not stored");

    const missing = await cli(["credentials", "get", "zerobus.client_id"], { env });
    assertEquals(missing.code, 1, show(missing));
    assert(missing.stderr.includes("credential 'zerobus.client_id' is not stored"), show(missing));

    const wrong = await cli(["credentials", "list"], {
      env: { ...env, CONNECTOR_MASTER_PASSWORD: "not-the-password" },
    });
    assertEquals(wrong.code, 1, show(wrong));
    assert(wrong.stderr.includes("wrong master password"), show(wrong));

    // The config names the data dir; CONNECTOR_DATA_DIR is not needed to find the store.
    const cfg = `${dir}/cred.yaml`;
    await Deno.writeTextFile(cfg, credentialConfig(dataDir, 18083));
    const ok = await cli(["validate-config", cfg], {
      env: { CONNECTOR_MASTER_PASSWORD: password },
    });
    assertEquals(ok.code, 0, show(ok));
    assert(ok.stdout.startsWith(`ok: ${cfg}\n`), show(ok));
    assert(!ok.stdout.includes(secret), "validate-config does not print the secret");
  });
});
