/**
 * MQTT over WebSockets: the MQTT source in its real Worker under the real
 * host (config through the YAML loader) reads JSON messages at QoS 1 from a
 * Mosquitto websockets listener, over ws:// and over wss:// (test CA made with
 * openssl); a wss:// broker whose CA is not given is a clear certificate error.
 */
import { assert, assertEquals } from "./assert.ts";
import { type HostedSource, type Row, runSourceUnderHost, waitFor } from "./helpers.ts";
import {
  makeTestCerts,
  mosquittoPath,
  publisher,
  startMosquitto,
  type TestCerts,
  toolPath,
} from "./mosquitto.ts";

const needsWs = mosquittoPath() === undefined ? " (ignored: mosquitto not installed)" : "";
const needsWss = needsWs !== ""
  ? needsWs
  : toolPath("openssl") === undefined
  ? " (ignored: openssl not installed)"
  : "";

const MESSAGES = 50;

/** YAML of one MQTT source on `endpoint` subscribed to `ws/#` at QoS 1. */
function sourceYaml(endpoint: string, extra = ""): string {
  return `sources:
  - name: m
    protocol: mqtt
    endpoint: "${endpoint}"
    topics: ["ws/#"]
    qos: 1
    topic_template: "ws/{equipment}/{tag_name}"${extra}
`;
}

/** The source's status entry under the host. */
function statusOf(src: HostedSource) {
  return src.host.status().m;
}

/** Waits until the source subscribed (a timeout names the last error). */
function subscribed(src: HostedSource) {
  return waitFor(
    () => {
      const st = statusOf(src);
      if (st?.state === "connected" && st.detail.subscriptions) return true;
      throw new Error(`state ${st?.state}, last error ${st?.last_error}`);
    },
    "the source connected and subscribed",
  );
}

/**
 * Publishes MESSAGES JSON messages at QoS 1 on the plain listener and checks
 * that every one became a row with its value, unit and topic context.
 */
async function deliverJson(src: HostedSource, pubUrl: string, pubOpts = {}): Promise<Row[]> {
  await subscribed(src);
  const pub = await publisher(pubUrl, pubOpts);
  try {
    for (let i = 0; i < MESSAGES; i++) {
      await pub.publishAsync(
        `ws/pump${i % 5}/flow`,
        JSON.stringify({ value: i, unit: "m3/h", timestamp: 1_700_000_000_000 + i }),
        { qos: 1 },
      );
    }
  } finally {
    await pub.endAsync();
  }
  // QoS 1 is at least once: a source stopped right after its last rows may not have acked them
  // yet, and the broker hands them to the next session with the same client id (persistent).
  const distinct = () => [...new Set(src.rows.map((r) => Number(r.value_num)))];
  await waitFor(() => distinct().length >= MESSAGES, `${MESSAGES} distinct rows`);
  assertEquals(distinct().sort((a, b) => a - b), Array.from({ length: MESSAGES }, (_, i) => i));
  const row = src.rows.find((r) => r.value_num === 7)!;
  assertEquals(row.address, "ws/pump2/flow");
  assertEquals(row.tag_name, "flow");
  assertEquals(row.equipment, "pump2");
  assertEquals(row.unit, "m3/h");
  assertEquals(row.event_time, (1_700_000_000_000 + 7) * 1000);
  assertEquals(JSON.parse(String(row.metadata)).qos, 1);
  return src.rows;
}

Deno.test({
  name: `mqtt websockets: JSON at QoS 1 over ws:// (path in the URL)${needsWs}`,
  ignore: needsWs !== "",
  async fn() {
    const broker = await startMosquitto("", { websockets: "ws" });
    let src: HostedSource | undefined;
    try {
      // mqtt.js requests the URL's path (default "/"); Mosquitto accepts any path.
      src = await runSourceUnderHost(sourceYaml(`${broker.wsUrl}/mqtt`));
      await deliverJson(src, broker.url);
      const st = statusOf(src);
      assertEquals(st.detail.broker, `${broker.wsUrl}/mqtt`);
      assertEquals(st.detail.tls, "off");
      assertEquals(st.restarts, 0);
    } finally {
      await src?.stop();
      await broker.stop();
    }
  },
});

/** Runs `fn` with fresh certificates and a broker with a TLS and a wss listener. */
async function withWssBroker(
  fn: (wssUrl: string, tcpUrl: string, certs: TestCerts) => Promise<void>,
  serverAltNames?: string,
) {
  const dir = await Deno.makeTempDir({ prefix: "mqtt_wss_" });
  try {
    const certs = await makeTestCerts(dir, serverAltNames);
    const broker = await startMosquitto("", {
      tls: { ca: certs.ca, cert: certs.serverCert, key: certs.serverKey },
      websockets: "wss",
    });
    try {
      await fn(broker.wsUrl!, broker.url, certs);
    } finally {
      await broker.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    `mqtt websockets: JSON at QoS 1 over wss:// with ca_file; use_tls upgrades ws://${needsWss}`,
  ignore: needsWss !== "",
  async fn() {
    await withWssBroker(async (wssUrl, tcpUrl, certs) => {
      const ca = await Deno.readTextFile(certs.ca);
      let src: HostedSource | undefined;
      try {
        src = await runSourceUnderHost(sourceYaml(wssUrl, `\n    ca_file: "${certs.ca}"`));
        await deliverJson(src, tcpUrl, { ca });
        assertEquals(statusOf(src).detail.tls, "on, server certificate verified");
        await src.stop();

        // ws:// with use_tls: true connects with wss:// to the same host and port.
        const wsUrl = wssUrl.replace("wss://", "ws://");
        src = await runSourceUnderHost(
          sourceYaml(wsUrl, `\n    use_tls: true\n    ca_file: "${certs.ca}"`),
        );
        await deliverJson(src, tcpUrl, { ca });
        assertEquals(statusOf(src).detail.broker, wssUrl);
      } finally {
        await src?.stop();
      }
    });
  },
});

Deno.test({
  name: `mqtt websockets: wss:// without the broker's CA is a certificate error${needsWss}`,
  ignore: needsWss !== "",
  async fn() {
    await withWssBroker(async (wssUrl) => {
      const src = await runSourceUnderHost(sourceYaml(wssUrl));
      try {
        const err = await waitFor(
          () => statusOf(src)?.last_error?.includes("TLS") ? statusOf(src).last_error : undefined,
          "a TLS error in the status",
        );
        assert(err.includes("not trusted") && err.includes("set ca_file"), err);
        assertEquals(src.rows.length, 0);
        assertEquals(statusOf(src).restarts, 0, "the worker did not crash");
      } finally {
        await src.stop();
      }
    });
  },
});

Deno.test({
  name: `mqtt websockets: server_name verifies a wss:// certificate for a DNS name${needsWss}`,
  ignore: needsWss !== "",
  async fn() {
    await withWssBroker(async (wssUrl, tcpUrl, certs) => {
      const ca = await Deno.readTextFile(certs.ca);
      let src: HostedSource | undefined;
      try {
        const extra = `\n    ca_file: "${certs.ca}"\n    server_name: broker.plant.local`;
        src = await runSourceUnderHost(sourceYaml(wssUrl, extra));
        await deliverJson(src, tcpUrl, { ca, servername: "broker.plant.local" });
        assertEquals(statusOf(src).detail.server_name, "broker.plant.local");
        await src.stop();

        // The certificate does not carry 127.0.0.1: without server_name it is refused.
        src = await runSourceUnderHost(sourceYaml(wssUrl, `\n    ca_file: "${certs.ca}"`));
        const err = await waitFor(
          () => statusOf(src!)?.last_error?.includes("TLS") ? statusOf(src!).last_error : undefined,
          "a TLS error in the status",
        );
        assert(err.includes("does not name this host") && err.includes("server_name"), err);
      } finally {
        await src?.stop();
      }
    }, "DNS:broker.plant.local");
  },
});
