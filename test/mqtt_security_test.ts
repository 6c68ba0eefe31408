/**
 * The MQTT source in its real Worker against Mosquitto with a password file,
 * a TLS listener (certificates generated here with openssl), mutual TLS and
 * `server_name` (an IP endpoint, a certificate for a DNS name):
 * the right settings receive messages, wrong ones give a clear status and the
 * source keeps retrying.
 */
import type { MqttClient } from "mqtt";
import { assert, assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import {
  connected,
  makeTestCerts,
  mosquittoPath,
  publisher,
  type Running,
  runSource,
  startMosquitto,
  type TestCerts,
  toolPath,
  writePasswordFile,
} from "./mosquitto.ts";

const missing = (tools: string[]) => {
  const gone = tools.filter((t) =>
    (t === "mosquitto" ? mosquittoPath() : toolPath(t)) === undefined
  );
  return gone.length === 0 ? "" : ` (ignored: ${gone.join(" and ")} not installed)`;
};
const needsAuth = missing(["mosquitto", "mosquitto_passwd"]);
const needsTls = missing(["mosquitto", "openssl"]);

/** Waits until the source subscribed, publishes `value` on `topic` and checks its row. */
async function deliver(
  src: Running,
  pub: MqttClient,
  topic: string,
  value: string,
) {
  await connected(src);
  await pub.publishAsync(topic, value, { qos: 1 });
  const row = await waitFor(
    () => src.rows.find((r) => r.address === topic),
    `a row for ${topic}`,
  );
  assertEquals(String(row.value_num ?? row.value_str), value);
}

/** Waits until the status has an error containing `text` and the source has retried once. */
async function refusedAndRetrying(src: Running, text: string): Promise<string> {
  const err = await waitFor(
    () => src.status()?.last_error?.includes(text) ? src.status().last_error : undefined,
    `an error with '${text}'`,
  );
  await waitFor(() => src.status().counters.reconnects >= 1, "a retry");
  await waitFor(
    () => src.status().last_error?.includes(text) && src.status().state !== "connected",
    "still refused",
  );
  assertEquals(src.status().restarts, 0, "the worker did not crash");
  return err;
}

Deno.test({
  name:
    `mqtt auth: right credentials receive, wrong ones are refused with a clear status${needsAuth}`,
  ignore: needsAuth !== "",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "mqtt_auth_" });
    await writePasswordFile(`${dir}/passwd`, "agent", "s3cret");
    const broker = await startMosquitto("", { anonymous: false, passwordFile: `${dir}/passwd` });
    const pub = await publisher(broker.url, { username: "agent", password: "s3cret" });
    let good: Running | undefined;
    let bad: Running | undefined;
    try {
      good = await runSource({
        endpoint: broker.url,
        topics: ["auth/#"],
        username: "agent",
        password: "s3cret",
      });
      await deliver(good, pub, "auth/x/temp", "21");
      assertEquals(good.status().detail.username, "agent");

      bad = await runSource({
        endpoint: broker.url,
        topics: ["auth/#"],
        username: "agent",
        password: "wrong",
        client_id: "bad_client",
      });
      const err = await refusedAndRetrying(bad, "username or password was refused");
      assert(err.includes("username 'agent'"), err);
      assert(err.includes("${credential:"), err);
    } finally {
      await good?.host.stopAll();
      await bad?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs `fn` with fresh certificates and a TLS broker; cleans both up. */
async function withTlsBroker(
  requireCertificate: boolean,
  fn: (url: string, certs: TestCerts) => Promise<void>,
  serverAltNames?: string,
) {
  const dir = await Deno.makeTempDir({ prefix: "mqtt_tls_" });
  try {
    const certs = await makeTestCerts(dir, serverAltNames);
    const broker = await startMosquitto("", {
      tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey, requireCertificate },
    });
    try {
      await fn(broker.url, certs);
    } finally {
      await broker.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    `mqtt TLS: ca_file verifies the broker; no CA is a certificate error; insecure connects${needsTls}`,
  ignore: needsTls !== "",
  async fn() {
    await withTlsBroker(false, async (url, certs) => {
      const pub = await publisher(url, { ca: await Deno.readTextFile(certs.ca) });
      const plainUrl = url.replace("mqtts://", "mqtt://");
      const running: Running[] = [];
      try {
        // use_tls upgrades mqtt:// to mqtts://; the Worker reads ca_file itself.
        const ok = await runSource({
          endpoint: plainUrl,
          use_tls: true,
          ca_file: certs.ca,
          topics: ["tls/#"],
        });
        running.push(ok);
        await deliver(ok, pub, "tls/a/level", "7");
        assertEquals(ok.status().detail.tls, "on, server certificate verified");

        const noCa = await runSource({ endpoint: url, topics: ["tls/#"], client_id: "no_ca" });
        running.push(noCa);
        const err = await refusedAndRetrying(noCa, "TLS certificate error");
        assert(err.includes("not trusted") && err.includes("set ca_file"), err);

        const insecure = await runSource({
          endpoint: url,
          insecure: true,
          topics: ["tls/#"],
          client_id: "lab",
        });
        running.push(insecure);
        await deliver(insecure, pub, "tls/b/level", "8");
        assert(String(insecure.status().detail.tls).includes("verification OFF"));
      } finally {
        for (const r of running) await r.host.stopAll();
        await pub.endAsync();
      }
    });
  },
});

Deno.test({
  name: `mqtt mutual TLS: cert_file and key_file are accepted; without them refused${needsTls}`,
  ignore: needsTls !== "",
  async fn() {
    await withTlsBroker(true, async (url, certs) => {
      const pub = await publisher(url, {
        ca: await Deno.readTextFile(certs.ca),
        cert: await Deno.readTextFile(certs.clientCert),
        key: await Deno.readTextFile(certs.clientKey),
      });
      const running: Running[] = [];
      try {
        const ok = await runSource({
          endpoint: url,
          ca_file: certs.ca,
          cert_file: certs.clientCert,
          key_file: certs.clientKey,
          topics: ["mtls/#"],
        });
        running.push(ok);
        await deliver(ok, pub, "mtls/a/speed", "1200");
        assertEquals(ok.status().detail.client_certificate, true);

        const noCert = await runSource({
          endpoint: url,
          ca_file: certs.ca,
          topics: ["mtls/#"],
          client_id: "no_cert",
        });
        running.push(noCert);
        const err = await refusedAndRetrying(noCert, "requires a client certificate");
        assert(err.includes("cert_file and key_file"), err);
      } finally {
        for (const r of running) await r.host.stopAll();
        await pub.endAsync();
      }
    });
  },
});

Deno.test({
  name:
    `mqtt TLS: server_name verifies a certificate for broker.plant.local on 127.0.0.1${needsTls}`,
  ignore: needsTls !== "",
  async fn() {
    await withTlsBroker(false, async (url, certs) => {
      const ca = await Deno.readTextFile(certs.ca);
      const pub = await publisher(url, { ca, servername: "broker.plant.local" });
      const running: Running[] = [];
      try {
        const named = await runSource({
          endpoint: url,
          ca_file: certs.ca,
          server_name: "broker.plant.local",
          topics: ["sni/#"],
        });
        running.push(named);
        await deliver(named, pub, "sni/a/level", "5");
        assertEquals(named.status().detail.server_name, "broker.plant.local");
        assertEquals(named.status().detail.tls, "on, server certificate verified");

        // The certificate does not carry 127.0.0.1: without server_name it is refused.
        const byIp = await runSource({
          endpoint: url,
          ca_file: certs.ca,
          topics: ["sni/#"],
          client_id: "by_ip",
        });
        running.push(byIp);
        const err = await refusedAndRetrying(byIp, "does not name this host");
        assert(err.includes("set server_name"), err);

        const wrong = await runSource({
          endpoint: url,
          ca_file: certs.ca,
          server_name: "other.plant.local",
          topics: ["sni/#"],
          client_id: "wrong_name",
        });
        running.push(wrong);
        await refusedAndRetrying(wrong, "does not name this host");
      } finally {
        for (const r of running) await r.host.stopAll();
        await pub.endAsync();
      }
    }, "DNS:broker.plant.local");
  },
});

Deno.test("mqtt TLS: a missing ca_file is reported by key and path", async () => {
  const src = await runSource({
    endpoint: "mqtts://127.0.0.1:1",
    ca_file: "/nonexistent/otedge/ca.pem",
    topics: ["a/#"],
  });
  try {
    const st = await waitFor(
      () => src.status()?.state === "error" ? src.status() : undefined,
      "the error",
    );
    assertEquals(st.last_error, "cannot read ca_file /nonexistent/otedge/ca.pem: no such file");
  } finally {
    await src.host.stopAll();
  }
});
