import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  CredentialError,
  credentialsCommand,
  credentialsPath,
  generatePassword,
  openCredentialStore,
  PBKDF2_ITERATIONS,
} from "../src/config/credentials.ts";
import { base64UrlDecode } from "../src/config/fernet.ts";
import { loadConfigText } from "../src/config/load.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "otedge-cred-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs the CLI with captured output; `input` becomes stdin. */
async function run(args: string[], dataDir: string, env: Record<string, string>, input = "") {
  let stdout = "";
  let stderr = "";
  const code = await credentialsCommand(args, {
    dataDir,
    env,
    stdin: ReadableStream.from([new TextEncoder().encode(input)]),
    stdout: (t) => stdout += t,
    stderr: (t) => stderr += t,
  });
  return { code, stdout, stderr };
}

Deno.test("generatePassword: 32 random bytes as base64url", () => {
  const a = generatePassword();
  const b = generatePassword();
  ok(/^[A-Za-z0-9_-]{43}$/.test(a), a);
  strictEqual(base64UrlDecode(a).length, 32);
  ok(a !== b);
});

Deno.test("store: set, get, list, delete, reopen; file is 0600 and holds no plaintext", async () => {
  await withTempDir(async (dir) => {
    const path = credentialsPath(`${dir}/data/`);
    strictEqual(path, `${dir}/data/credentials.json`);
    const store = await openCredentialStore(path, "master-1");
    deepStrictEqual(store.list(), []);
    strictEqual(store.get("zerobus.client_id"), undefined);

    await store.set("zerobus.client_secret", "very-secret-value");
    await store.set("zerobus.client_id", "client-123");
    await store.set("zerobus.client_id", "client-456");
    strictEqual(store.get("zerobus.client_id"), "client-456");
    deepStrictEqual(store.list(), ["zerobus.client_id", "zerobus.client_secret"]);

    if (Deno.build.os !== "windows") strictEqual((await Deno.stat(path)).mode! & 0o777, 0o600);
    const text = await Deno.readTextFile(path);
    ok(!text.includes("very-secret-value") && !text.includes("client-456"));
    const file = JSON.parse(text);
    strictEqual(file.kdf.name, "PBKDF2-SHA256");
    ok(file.kdf.iterations >= 600_000);
    strictEqual(file.kdf.iterations, PBKDF2_ITERATIONS);
    strictEqual(base64UrlDecode(file.kdf.salt).length, 16);
    deepStrictEqual(Object.keys(file.credentials).sort(), [
      "zerobus.client_id",
      "zerobus.client_secret",
    ]);

    strictEqual(await store.delete("zerobus.client_id"), true);
    strictEqual(await store.delete("zerobus.client_id"), false);

    const again = await openCredentialStore(path, "master-1");
    deepStrictEqual(again.list(), ["zerobus.client_secret"]);
    strictEqual(again.get("zerobus.client_secret"), "very-secret-value");
  });
});

Deno.test("store: wrong master password is named as such", async () => {
  await withTempDir(async (dir) => {
    const path = credentialsPath(dir);
    await (await openCredentialStore(path, "right")).set("k", "v");
    await rejects(openCredentialStore(path, "wrong"), (e: unknown) => {
      ok(e instanceof CredentialError);
      strictEqual(
        e.message,
        `wrong master password for ${path}: CONNECTOR_MASTER_PASSWORD is not the password ` +
          "the store was created with",
      );
      return true;
    });
    await rejects(openCredentialStore(path, ""), /master password is empty/);
  });
});

Deno.test("store: writers do not lose each other's keys", async () => {
  await withTempDir(async (dir) => {
    const path = credentialsPath(dir);
    await (await openCredentialStore(path, "pw")).set("first", "1");
    const a = await openCredentialStore(path, "pw");
    const b = await openCredentialStore(path, "pw");
    await a.set("from_a", "A");
    await b.set("from_b", "B");
    const c = await openCredentialStore(path, "pw");
    deepStrictEqual(c.list(), ["first", "from_a", "from_b"]);
    strictEqual(c.get("from_a"), "A");
  });
});

Deno.test("store: damaged or weakened files are refused", async () => {
  await withTempDir(async (dir) => {
    const path = credentialsPath(dir);
    await Deno.writeTextFile(path, "{not json");
    await rejects(openCredentialStore(path, "pw"), /is not valid JSON/);

    await Deno.remove(path);
    await (await openCredentialStore(path, "pw")).set("k", "v");
    const file = JSON.parse(await Deno.readTextFile(path));
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...file, kdf: { ...file.kdf, iterations: 1000 } }),
    );
    await rejects(openCredentialStore(path, "pw"), /fewer than 600000/);

    file.credentials.k = file.credentials.k.slice(0, -8) + "AAAAAAA=";
    await Deno.writeTextFile(path, JSON.stringify(file));
    await rejects(openCredentialStore(path, "pw"), /credential 'k' .* is damaged/);
    await rejects((await openCredentialStore(`${dir}/x.json`, "pw")).set("bad key", "v"), (e) => {
      ok(e instanceof CredentialError && e.message.startsWith("invalid credential key 'bad key'"));
      return true;
    });
  });
});

Deno.test("store resolver feeds ${credential:...} in the config", async () => {
  await withTempDir(async (dir) => {
    const store = await openCredentialStore(credentialsPath(dir), "pw");
    await store.set("zerobus.client_id", "the-id");
    await store.set("zerobus.client_secret", "the-secret");
    const text = await Deno.readTextFile(
      new URL("./fixtures/config/quickstart.yaml", import.meta.url),
    );
    const result = loadConfigText(text, { env: {}, credential: store.resolver });
    if (!result.ok) throw new Error(result.errors.join("\n"));
    deepStrictEqual(result.config.zerobus.auth, {
      client_id: "the-id",
      client_secret: "the-secret",
    });
  });
});

Deno.test("CLI: help, usage errors and a missing master password", async () => {
  await withTempDir(async (dir) => {
    const help = await run(["--help"], dir, {});
    strictEqual(help.code, 0);
    ok(help.stdout.startsWith("Usage: otedge credentials <command>"));

    for (
      const [args, problem] of [
        [[], "missing command"],
        [["frobnicate"], "unknown command 'frobnicate'"],
        [["get"], "'get' takes KEY"],
        [["set", "a", "b", "c"], "'set' takes KEY [VALUE]"],
        [["list", "x"], "'list' takes no arguments"],
        [["get", "no spaces"], "invalid credential key 'no spaces'"],
      ] as [string[], string][]
    ) {
      const r = await run(args, dir, { CONNECTOR_MASTER_PASSWORD: "pw" });
      strictEqual(r.code, 2, args.join(" "));
      ok(r.stderr.startsWith(`otedge credentials: ${problem}`), r.stderr);
    }

    const noPassword = await run(["list"], dir, {});
    strictEqual(noPassword.code, 1);
    strictEqual(
      noPassword.stderr,
      "CONNECTOR_MASTER_PASSWORD is not set; run 'otedge credentials generate-password' and export it\n",
    );

    const generated = await run(["generate-password"], dir, {});
    strictEqual(generated.code, 0);
    ok(/^[A-Za-z0-9_-]{43}\n$/.test(generated.stdout));
  });
});

Deno.test("CLI: set (argument and stdin), get, list, delete, wrong password", async () => {
  await withTempDir(async (dir) => {
    const env = { CONNECTOR_MASTER_PASSWORD: "pw" };
    const path = credentialsPath(dir);

    const empty = await run(["list"], dir, env);
    deepStrictEqual([empty.code, empty.stdout], [0, ""]);
    strictEqual(empty.stderr, `no credentials stored in ${path}\n`);

    const set = await run(["store", "zerobus.client_id", "id-1"], dir, env);
    deepStrictEqual([set.code, set.stdout], [
      0,
      `stored credential 'zerobus.client_id' in ${path}\n`,
    ]);
    strictEqual((await run(["set", "zerobus.client_secret"], dir, env, "s3cr3t\n")).code, 0);
    strictEqual((await run(["set", "nothing"], dir, env, "")).code, 1);

    deepStrictEqual(await run(["get", "zerobus.client_secret"], dir, env), {
      code: 0,
      stdout: "s3cr3t\n",
      stderr: "",
    });
    deepStrictEqual(await run(["list"], dir, env), {
      code: 0,
      stdout: "zerobus.client_id\nzerobus.client_secret\n",
      stderr: "",
    });
    deepStrictEqual(await run(["get", "missing.key"], dir, env), {
      code: 1,
      stdout: "",
      stderr: "credential 'missing.key' is not stored; run 'otedge credentials set missing.key'\n",
    });

    strictEqual((await run(["delete", "zerobus.client_id"], dir, env)).code, 0);
    strictEqual((await run(["delete", "zerobus.client_id"], dir, env)).code, 1);
    strictEqual((await run(["list"], dir, env)).stdout, "zerobus.client_secret\n");

    const wrong = await run(["list"], dir, { CONNECTOR_MASTER_PASSWORD: "nope" });
    strictEqual(wrong.code, 1);
    ok(wrong.stderr.startsWith(`wrong master password for ${path}`), wrong.stderr);
  });
});
