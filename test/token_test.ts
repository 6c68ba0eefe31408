/** OAuth M2M tokens against the stand-in's token endpoint. */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { startZerobusLocal } from "../src/zerobus_local/server.ts";
import {
  authorizationDetails,
  TokenError,
  TokenProvider,
  workspaceIdOf,
} from "../src/sinks/zerobus/token.ts";

const table = { catalog: "main", schema: "iot", table: "readings" };

Deno.test("token: cached until shortly before expiry, then refreshed", async () => {
  const zl = await startZerobusLocal({ dataDir: await Deno.makeTempDir(), tokenTtlS: 4 });
  try {
    const p = new TokenProvider({
      workspaceUrl: zl.workspaceUrl,
      workspaceId: "1234",
      clientId: "local-client",
      clientSecret: "local-secret",
      table,
    });
    const a = await p.get();
    assertEquals(await p.get(), a, "cached");
    assertEquals(zl.stats().tokens_issued, 1);
    // Refreshed at half of a 4 s lifetime (the cached call above has 2 s to happen in).
    await new Promise((r) => setTimeout(r, 2100));
    const b = await p.get();
    assert(a !== b, "a new token after the refresh point");
    assertEquals(zl.stats().tokens_issued, 2);
  } finally {
    await zl.stop();
  }
});

Deno.test("token: refused credentials are not retried and say what to check", async () => {
  const zl = await startZerobusLocal({ dataDir: await Deno.makeTempDir() });
  try {
    const p = new TokenProvider({
      workspaceUrl: zl.workspaceUrl,
      workspaceId: "1234",
      clientId: "local-client",
      clientSecret: "wrong",
      table,
    });
    const e = await assertRejects(() => p.get(), "token endpoint refused (401)");
    assert(e instanceof TokenError && !e.retryable);
    assert(e.message.includes("check zerobus.auth.client_id and client_secret"), e.message);
  } finally {
    await zl.stop();
  }
});

Deno.test("token: an unreachable workspace is a retryable error", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const p = new TokenProvider({
    workspaceUrl: `http://127.0.0.1:${port}`,
    workspaceId: "1",
    clientId: "x",
    clientSecret: "y",
    table,
  });
  const e = await assertRejects(() => p.get(), "unreachable");
  assert(e instanceof TokenError && e.retryable);
});

Deno.test("token: authorization details grant catalog, schema and table", () => {
  const d = authorizationDetails(table) as {
    object_type: string;
    object_full_path: string;
    privileges: string[];
  }[];
  assertEquals(d.map((x) => [x.object_type, x.object_full_path]), [
    ["CATALOG", "main"],
    ["SCHEMA", "main.iot"],
    ["TABLE", "main.iot.readings"],
  ]);
  assertEquals(d[2].privileges, ["SELECT", "MODIFY"]);
  assertEquals(
    workspaceIdOf("https://1234567890.zerobus.us-west-2.cloud.databricks.com"),
    "1234567890",
  );
});
