/**
 * MQTT 3.1.1 and 5 × QoS 0, 1 and 2 against one Mosquitto: a source with two
 * topic filters (`a/#` and `b/+/x`) gets every numbered message on both,
 * nothing from topics it did not subscribe to, and a binary (non-UTF-8)
 * payload as a `bytes` row with base64 text.
 */
import { assert, assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import {
  connected,
  type Mosquitto,
  mosquittoPath,
  publisher,
  type Row,
  type Running,
  runSource,
  startMosquitto,
} from "./mosquitto.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const needs = hasMosquitto ? "" : " (ignored: mosquitto is not installed)";
if (!hasMosquitto) console.log("mqtt_matrix_test: mosquitto not installed; ignored");

/** Messages per case, half on each filter. */
const N = 20;
/** Not UTF-8 (0xff, 0xfe, a lone continuation byte 0x80), with a NUL: read as bytes. */
const BINARY = new Uint8Array([0xff, 0xfe, 0x00, 0x80, 0x01]);
const BINARY_BASE64 = "//4AgAE=";

const CASES = (["3.1.1", "5"] as const).flatMap((version) =>
  ([0, 1, 2] as const).map((qos) => ({ version, qos }))
);

/** Topic of message `i` of a case under `prefix`: even ones match `a/#`, odd ones `b/+/x`. */
const topicOf = (prefix: string, i: number) =>
  i % 2 === 0 ? `${prefix}/a/line${i % 3}/n${i}` : `${prefix}/b/n${i}/x`;

/** Topics close to the filters that the source did not subscribe to. */
const UNSUBSCRIBED = ["c/1", "b/1/y", "b/1/x/deeper", "b/x", "ab/1", "A/1"];

async function runCase(
  broker: Mosquitto,
  c: { version: "3.1.1" | "5"; qos: 0 | 1 | 2 },
): Promise<void> {
  const prefix = `m${c.version.replaceAll(".", "")}q${c.qos}`;
  const pub = await publisher(broker.url);
  let src: Running | undefined;
  try {
    src = await runSource({
      endpoint: broker.url,
      topics: [`${prefix}/a/#`, `${prefix}/b/+/x`],
      qos: c.qos,
      mqtt_version: c.version,
      client_id: `matrix_${prefix}`,
      clean_session: true,
    });
    await connected(src);
    assertEquals(src.status().detail.subscriptions, [
      `${prefix}/a/# (QoS ${c.qos})`,
      `${prefix}/b/+/x (QoS ${c.qos})`,
    ]);
    for (let i = 1; i <= N; i++) {
      await pub.publishAsync(topicOf(prefix, i), String(i), { qos: c.qos });
      const off = UNSUBSCRIBED[i % UNSUBSCRIBED.length];
      await pub.publishAsync(`${prefix}/${off}`, String(1000 + i), { qos: c.qos });
    }
    await pub.publishAsync(`${prefix}/a/blob`, BINARY as never, { qos: c.qos });
    // A last message on the same connection: once it is in, the others were delivered too.
    await pub.publishAsync(`${prefix}/b/end/x`, "-1", { qos: c.qos });
    await waitFor(
      () => src!.rows.some((r) => r.address === `${prefix}/b/end/x`),
      `the last message of ${prefix}`,
    );
    await new Promise((r) => setTimeout(r, 200));
    checkRows(src.rows, prefix, c.qos);
    assertEquals(src.deadLetters, []);
  } finally {
    await src?.host.stopAll();
    await pub.endAsync();
  }
}

/** Every numbered message once, on its topic and QoS; the binary one as bytes; nothing else. */
function checkRows(rows: Row[], prefix: string, qos: number): void {
  const numbered = rows.filter((r) => typeof r.value_num === "number" && r.value_num > 0);
  const got = numbered.map((r) => r.value_num as number).sort((a, b) => a - b);
  assertEquals(got, Array.from({ length: N }, (_, k) => k + 1), "each numbered message once");
  for (const r of numbered) {
    assertEquals(r.address, topicOf(prefix, r.value_num as number));
    assertEquals(JSON.parse(r.metadata as string).qos, qos, String(r.address));
  }
  const blob = rows.filter((r) => r.address === `${prefix}/a/blob`);
  assertEquals(blob.length, 1, "one row for the binary payload");
  assertEquals([blob[0].value_type, blob[0].value_str, blob[0].value_num], [
    "bytes",
    BINARY_BASE64,
    null,
  ]);
  assertEquals(rows.length, N + 2, "numbered, binary and last: nothing from other topics");
  for (const r of rows) {
    const rest = String(r.address).slice(prefix.length + 1);
    assert(/^(a\/.+|b\/[^/]+\/x)$/.test(rest), `row from an unsubscribed topic: ${r.address}`);
  }
}

Deno.test({
  name: `mqtt matrix: MQTT 3.1.1 and 5 × QoS 0/1/2, two filters, a binary payload${needs}`,
  ignore: !hasMosquitto,
  async fn(t) {
    const broker = await startMosquitto();
    try {
      for (const c of CASES) {
        await t.step(`MQTT ${c.version} QoS ${c.qos}`, () => runCase(broker, c));
      }
    } finally {
      await broker.stop();
    }
  },
});
