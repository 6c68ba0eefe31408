/**
 * OPC UA source security, in its real Worker under the real host, against
 * the simulator's node-opcua server on 127.0.0.1: every secure policy (and a
 * deprecated one once allowed) delivers values, username and X.509 user
 * logins, a wrong password or user key, a policy the server does not offer
 * (no fallback), the trust flow of an unknown server certificate (rejected,
 * trusted with the CLI, connected without restart) and a server that refuses
 * the agent's certificate. Config checks of the security keys need no server.
 */
import { OPCUACertificateManager } from "node-opcua";
import { assert, assertEquals } from "./assert.ts";
import { freePort, type HostedSource, runSourceUnderHost, waitFor } from "./helpers.ts";
import { OPCUA_SIM_NAMESPACE, startOpcuaSimulator } from "../src/simulator/opcua_server.ts";
import { loadConfigText } from "../src/config/load.ts";
import { listCertificates, opcuaPkiDir, setCertificateTrust } from "../src/sources/opcua/pki.ts";

const TEMPERATURE = `nsu=${OPCUA_SIM_NAMESPACE};s=Plant1/Line1/Press1/Temperature`;

function source(endpoint: string, extra: string): string {
  return `sources:
  - name: ua
    protocol: opcua
    endpoint: ${endpoint}
    publishing_interval_ms: 100
    nodes: ["${TEMPERATURE}"]
${extra.split("\n").map((l) => (l ? `    ${l}` : l)).join("\n")}
`;
}

const runSource = runSourceUnderHost;

/**
 * The source's status once it is `state`. Generous: a fresh data dir means a new
 * certificate, created by node-opcua in pure JS (seconds on a busy machine).
 */
function stateOf(run: HostedSource, state: string, timeoutMs = 60_000) {
  return waitFor(
    () => {
      const s = run.host.status().ua;
      return s?.state === state ? s : undefined;
    },
    `source state ${state} (now ${JSON.stringify(run.host.status().ua)})`,
    timeoutMs,
  );
}

/** Runs the source until it delivers a temperature row; returns its status then. */
async function deliversValues(yaml: string) {
  const run = await runSource(yaml);
  try {
    await waitFor(
      () => run.rows.some((r) => r.address === TEMPERATURE && r.quality === "good"),
      "a temperature row",
      60_000,
    );
    return run.host.status().ua;
  } finally {
    await run.stop();
  }
}

/** Runs the source until its status is error; returns the error text. */
async function failsWith(yaml: string): Promise<string> {
  const run = await runSource(yaml);
  try {
    const st = await stateOf(run, "error");
    assertEquals(run.rows.length, 0);
    return String(st.last_error);
  } finally {
    await run.stop();
  }
}

Deno.test("opcua security keys: deprecated policies and user identities at config load", () => {
  const errors = (extra: string) => {
    const res = loadConfigText(source("opc.tcp://127.0.0.1:4840", extra), { env: {} });
    return res.ok ? [] : res.errors;
  };
  const deprecated = errors("security_mode: SignAndEncrypt\nsecurity_policy: Basic256\n");
  assertEquals(deprecated.length, 1, deprecated.join("\n"));
  assert(deprecated[0].includes("sources[0].security_policy"), deprecated[0]);
  assert(deprecated[0].includes("allow_deprecated_policies: true"), deprecated[0]);
  assertEquals(
    errors("security_mode: Sign\nsecurity_policy: Basic128Rsa15\nallow_deprecated_policies: true"),
    [],
  );
  // The original description's keys, as written.
  assertEquals(
    errors(
      'security_mode: "SignAndEncrypt"\nsecurity_policy: "Basic256Sha256"\n' +
        'username: "admin"\npassword: "password123"',
    ),
    [],
  );
  const half = errors("user_certificate: /etc/otedge/user.pem");
  assert(half.some((e) => e.includes("sources[0].user_private_key")), half.join("\n"));
  const both = errors("username: a\nuser_certificate: u.pem\nuser_private_key: k.pem");
  assert(both.some((e) => e.includes("sources[0].user_certificate")), both.join("\n"));
  const trust = errors("trust_server_certificate: always");
  assert(trust.some((e) => e.includes("sources[0].trust_server_certificate")), trust.join("\n"));
});

Deno.test("opcua security against the simulator", async (t) => {
  const sim = await startOpcuaSimulator({
    port: freePort(),
    updateMs: 100,
    securityModes: ["Sign", "SignAndEncrypt"],
    securityPolicies: [
      "Basic256Sha256",
      "Aes128_Sha256_RsaOaep",
      "Aes256_Sha256_RsaPss",
      "Basic128Rsa15",
    ],
    users: { operator: "s3cret" },
  });
  const tmp = await Deno.makeTempDir({ prefix: "otedge-opcua-sec-" });
  try {
    for (
      const [mode, policy] of [
        ["SignAndEncrypt", "Basic256Sha256"],
        ["SignAndEncrypt", "Aes128_Sha256_RsaOaep"],
        ["SignAndEncrypt", "Aes256_Sha256_RsaPss"],
        ["Sign", "Basic256Sha256"],
      ]
    ) {
      await t.step(`${mode} ${policy} delivers values`, async () => {
        const st = await deliversValues(source(
          sim.endpoint,
          `security_mode: ${mode}\nsecurity_policy: ${policy}\ntrust_server_certificate: auto`,
        ));
        assertEquals(st.state, "connected");
        assertEquals([st.detail?.security_mode, st.detail?.security_policy], [mode, policy]);
      });
    }

    await t.step(
      "deprecated Basic128Rsa15 works once allow_deprecated_policies is set",
      async () => {
        const st = await deliversValues(source(
          sim.endpoint,
          "security_mode: SignAndEncrypt\nsecurity_policy: Basic128Rsa15\n" +
            "allow_deprecated_policies: true\ntrust_server_certificate: auto",
        ));
        assertEquals(st.detail?.security_policy, "Basic128Rsa15");
      },
    );

    const secure = "security_mode: SignAndEncrypt\nsecurity_policy: Basic256Sha256\n" +
      "trust_server_certificate: auto\n";

    await t.step("username/password login; a wrong password is a precise error", async () => {
      await deliversValues(source(sim.endpoint, `${secure}username: operator\npassword: s3cret`));
      const err = await failsWith(
        source(sim.endpoint, `${secure}username: operator\npassword: wrong`),
      );
      assert(err.includes("server refused the session for user 'operator'"), err);
      assert(err.includes("BadUserAccessDenied"), err);
      assert(err.includes("check username and password"), err);
    });

    await t.step("X.509 user certificate login", async () => {
      const cm = new OPCUACertificateManager({ rootFolder: `${tmp}/user` });
      await cm.initialize();
      const certFile = `${tmp}/user/operator.pem`;
      await cm.createSelfSignedCertificate({
        applicationUri: "urn:otedge:test:operator",
        subject: "/CN=operator",
        dns: [],
        startDate: new Date(Date.now() - 86_400_000),
        validity: 30,
        outputFile: certFile,
      });
      const keyFile = cm.privateKey;
      await cm.dispose();
      await deliversValues(source(
        sim.endpoint,
        `${secure}user_certificate: ${certFile}\nuser_private_key: ${keyFile}`,
      ));
      // A key that does not belong to the certificate: the server checks the token signature.
      const other = new OPCUACertificateManager({ rootFolder: `${tmp}/other` });
      await other.initialize();
      await other.dispose();
      const err = await failsWith(source(
        sim.endpoint,
        `${secure}user_certificate: ${certFile}\nuser_private_key: ${other.privateKey}`,
      ));
      assert(err.includes(`server refused the session for user certificate ${certFile}`), err);
      assert(err.includes("BadUserSignatureInvalid"), err);
    });

    await t.step("a mode or policy the server does not offer is an error, not None", async () => {
      const none = await failsWith(source(sim.endpoint, ""));
      assert(none.includes("does not offer security_mode None with security_policy None"), none);
      assert(none.includes("SignAndEncrypt/Basic256Sha256"), none);
      const old = await failsWith(source(
        sim.endpoint,
        "security_mode: SignAndEncrypt\nsecurity_policy: Basic256\nallow_deprecated_policies: true",
      ));
      assert(
        old.includes("does not offer security_mode SignAndEncrypt with security_policy Basic256;"),
        old,
      );
      assert(old.includes("Sign/Aes256_Sha256_RsaPss"), old);
    });

    await t.step(
      "unknown server certificate: rejected, trusted with the CLI, connects",
      async () => {
        const run = await runSource(
          source(sim.endpoint, "security_mode: SignAndEncrypt\nsecurity_policy: Basic256Sha256"),
        );
        try {
          const st = await stateOf(run, "error");
          const err = String(st.last_error);
          const pki = opcuaPkiDir(run.dataDir);
          const rejected = (await listCertificates(pki)).filter((c) => c.state === "rejected");
          assertEquals(rejected.length, 1, JSON.stringify(rejected));
          const [cert] = rejected;
          assert(cert.path.startsWith(`${pki}/rejected/`), cert.path);
          assert(cert.subject.includes("CN="), cert.subject);
          assert(err.includes(`run \`otedge certificates trust ${cert.thumbprint}\``), err);
          assert(err.includes(`move the file to ${pki}/trusted/certs/`), err);
          assertEquals(run.rows.length, 0);
          const own = `${pki}/own/certs/client_certificate.pem`;
          const ownBefore = await Deno.readTextFile(own);

          const cli = await new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "--allow-all",
              new URL("../main.ts", import.meta.url).pathname,
              "certificates",
              "trust",
              cert.thumbprint.slice(0, 12),
              "--data-dir",
              run.dataDir,
            ],
            stdout: "piped",
            stderr: "piped",
          }).output();
          const text = new TextDecoder().decode(cli.stdout) + new TextDecoder().decode(cli.stderr);
          assertEquals(cli.code, 0, text);
          assert(text.includes(`trusted: ${cert.thumbprint}`), text);

          await waitFor(() => run.rows.some((r) => r.address === TEMPERATURE), "rows", 60_000);
          assertEquals(run.host.status().ua.state, "connected");
          // The agent's certificate was created once and reused by every attempt.
          assertEquals(await Deno.readTextFile(own), ownBefore);
          const after = await listCertificates(pki);
          assertEquals(after.map((c) => [c.state, c.thumbprint]), [["trusted", cert.thumbprint]]);
          // The same store function by file name, the other way.
          const back = await setCertificateTrust(pki, after[0].file, "rejected");
          assertEquals([back.state, back.path], ["rejected", `${pki}/rejected/${after[0].file}`]);
          assertEquals((await listCertificates(pki)).map((c) => c.state), ["rejected"]);
        } finally {
          await run.stop();
        }
      },
    );
  } finally {
    await sim.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("opcua security: a server that refuses the agent's certificate", async () => {
  const sim = await startOpcuaSimulator({
    port: freePort(),
    acceptClientCertificates: false,
    securityModes: ["SignAndEncrypt"],
    securityPolicies: ["Basic256Sha256"],
  });
  try {
    const err = await failsWith(source(
      sim.endpoint,
      "security_mode: SignAndEncrypt\nsecurity_policy: Basic256Sha256\ntrust_server_certificate: auto",
    ));
    assert(err.includes("the server refused the secure channel (BadSecurityChecksFailed)"), err);
    assert(err.includes("/pki/opcua/own/certs/client_certificate.pem"), err);
  } finally {
    await sim.stop();
  }
});
