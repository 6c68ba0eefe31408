import { assert, assertEquals } from "./assert.ts";
import { createLogger, redact } from "../src/log.ts";

Deno.test("log: secrets are never written", () => {
  const lines: string[] = [];
  const log = createLogger("info", "t", (l) => lines.push(l), false);
  log.info("connecting", {
    endpoint: "https://x",
    client_secret: "s3cr3t",
    auth: { password: "hunter2", token: "abc", user: "bob" },
  });
  const out = JSON.parse(lines[0]);
  assertEquals(out.client_secret, "***");
  assertEquals(out.auth, { password: "***", token: "***", user: "bob" });
  assert(!lines[0].includes("s3cr3t") && !lines[0].includes("hunter2"));
  assertEquals(redact({ authorization: "Bearer x" }), { authorization: "***" });
});

Deno.test("log: level filter and the two output forms", () => {
  const json: string[] = [];
  const log = createLogger("warning", "sink", (l) => json.push(l), false);
  log.info("hidden");
  log.warning("shown", { n: 1 });
  assertEquals(json.length, 1);
  const rec = JSON.parse(json[0]);
  assertEquals([rec.level, rec.component, rec.msg, rec.n], ["warning", "sink", "shown", 1]);
  const pretty: string[] = [];
  createLogger("debug", "api", (l) => pretty.push(l), true).error("boom");
  assert(/ ERROR +\[api\] boom$/.test(pretty[0]), pretty[0]);
});
