/**
 * Sparkplug B host STATE: the payload codec, the `sparkplug` config block,
 * the Will in the client options, and against Mosquitto the retained online
 * STATE, its republish on an offline STATE for the host id, the offline
 * STATE of a clean stop, and the Will the broker sends when the agent is killed.
 */
import type { IPublishPacket } from "mqtt";
import { assert, assertEquals } from "./assert.ts";
import { freePort, waitFor } from "./helpers.ts";
import { spawnSelf } from "../src/self.ts";
import {
  connected,
  mosquittoPath,
  publisher,
  type Running,
  runSource,
  startMosquitto,
} from "./mosquitto.ts";
import { loadConfigValue } from "../src/config/load.ts";
import { type ClientConfig, clientOptions } from "../src/sources/mqtt/options.ts";
import {
  type HostState,
  parseState,
  statePayload,
  stateTopic,
} from "../src/sources/mqtt/sparkplug/state.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const enc = (s: string) => new TextEncoder().encode(s);

function load(sparkplug: unknown) {
  return loadConfigValue({
    sources: [{
      name: "s",
      protocol: "mqtt",
      endpoint: "mqtt://127.0.0.1:1883",
      topics: ["spBv1.0/#"],
      sparkplug,
    }],
  }, { env: {} });
}

Deno.test("sparkplug state: payload round trip and rejects", () => {
  assertEquals(stateTopic("scada1"), "spBv1.0/STATE/scada1");
  assertEquals(statePayload(true, 5), '{"online":true,"timestamp":5}');
  assertEquals(parseState(enc('{"online": false, "timestamp": 7}')), {
    online: false,
    timestamp: 7,
  });
  assertEquals(parseState(enc("OFFLINE")), undefined);
  assertEquals(parseState(enc('{"online": "no", "timestamp": 7}')), undefined);
  assertEquals(parseState(enc('{"online": true}')), undefined);
});

Deno.test("sparkplug state: the sparkplug block of the schema", () => {
  const ok = load({ host_id: "scada1", context_mapping: { site: "group" } });
  assert(ok.ok, ok.ok ? "" : ok.errors.join("\n"));
  const s = ok.config.sources[0] as Record<string, unknown>;
  assertEquals(s.sparkplug, {
    host_id: "scada1",
    context_mapping: { site: "group" },
    rebirth_interval_ms: 5000,
    reorder_timeout_ms: 2000,
  });
  for (const bad of [{ host_id: "a/b" }, { host_id: "" }, { host_id: "a+" }, { hostid: "x" }]) {
    const res = load(bad);
    assert(!res.ok, `accepted ${JSON.stringify(bad)}`);
  }
  assert(!load({ context_mapping: { site: "topic" } }).ok, "unknown context source accepted");
});

Deno.test("sparkplug state: the Will is the retained QoS 1 offline STATE", async () => {
  const res = load({ host_id: "scada1" });
  assert(res.ok);
  const opts = await clientOptions(res.config.sources[0] as unknown as ClientConfig, 1234);
  assertEquals(opts.will, {
    topic: "spBv1.0/STATE/scada1",
    payload: '{"online":false,"timestamp":1234}',
    qos: 1,
    retain: true,
  });
  const plain = load(undefined);
  assert(plain.ok);
  const none = await clientOptions(plain.config.sources[0] as unknown as ClientConfig);
  assertEquals(none.will, undefined, "no Will without host_id");
});

Deno.test({
  name: `sparkplug state over mqtt: online retained, republished, offline on stop${
    hasMosquitto ? "" : " (ignored: mosquitto is not installed)"
  }`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const pub = await publisher(broker.url);
    const seen: Array<HostState & { retain: boolean }> = [];
    let src: Running | undefined;
    try {
      const topic = stateTopic("scada1");
      src = await runSource({
        endpoint: broker.url,
        topics: ["spBv1.0/#"],
        qos: 1,
        sparkplug: { host_id: "scada1" },
      });
      await connected(src);
      // A late subscriber gets the online STATE as a retained message.
      await waitFor(
        async () => {
          const probe = await publisher(broker.url);
          try {
            const got = new Promise<IPublishPacket | undefined>((resolve) => {
              probe.on("message", (_t, _p, packet) => resolve(packet));
              setTimeout(() => resolve(undefined), 500);
            });
            await probe.subscribeAsync(topic, { qos: 1 });
            const packet = await got;
            const st = packet && parseState(new Uint8Array(packet.payload as Uint8Array));
            return packet?.retain === true && st?.online === true;
          } finally {
            await probe.endAsync();
          }
        },
        "a retained online STATE",
      );

      pub.on("message", (_t, payload, packet) => {
        const st = parseState(new Uint8Array(payload));
        if (st) seen.push({ ...st, retain: packet.retain });
      });
      await pub.subscribeAsync(topic, { qos: 1 });
      const first = await waitFor(() => seen.find((s) => s.online), "the online STATE");
      assert(first.timestamp > Date.now() - 60_000 && first.timestamp <= Date.now());

      // Another client says this host is offline: the host answers online, same timestamp.
      seen.length = 0;
      await pub.publishAsync(topic, statePayload(false, Date.now()), { qos: 1, retain: true });
      const again = await waitFor(() => seen.find((s) => s.online), "the online republish");
      assertEquals(again.timestamp, first.timestamp, "the session's timestamp is kept");

      // A clean stop publishes offline with the current time (Sparkplug 3.0,
      // host-topic-phid-death-payload-disconnect-clean), not the Will's timestamp.
      seen.length = 0;
      const beforeStop = Date.now();
      await src.host.stopAll();
      const off = await waitFor(
        () => seen.find((s) => !s.online),
        "the offline STATE of a clean stop",
      );
      assert(off.timestamp >= beforeStop, `${off.timestamp} is the time of the stop`);
      assertEquals(src.rows.length, 0, "STATE messages produce no readings");
      assertEquals(src.deadLetters.length, 0);
    } finally {
      await src?.host.stopAll();
      await pub.endAsync();
      await broker.stop();
    }
  },
});

Deno.test({
  name: `sparkplug state: kill -9 of the agent, the broker sends the offline Will${
    hasMosquitto ? "" : " (ignored: mosquitto is not installed)"
  }`,
  ignore: !hasMosquitto,
  async fn() {
    const broker = await startMosquitto();
    const dir = await Deno.makeTempDir({ prefix: "otedge-state-" });
    const watcher = await publisher(broker.url);
    const seen: HostState[] = [];
    let agent: Awaited<ReturnType<typeof spawnSelf>> | undefined;
    try {
      const topic = stateTopic("scada_kill");
      watcher.on("message", (_t, payload) => {
        const st = parseState(new Uint8Array(payload));
        if (st) seen.push(st);
      });
      await watcher.subscribeAsync(topic, { qos: 1 });
      await Deno.writeTextFile(
        `${dir}/agent.yaml`,
        `connector: { data_dir: ${JSON.stringify(`${dir}/data`)}, log_level: warning }
http: { host: 127.0.0.1, port: ${freePort()} }
sources:
  - name: plant_sparkplug
    protocol: mqtt
    endpoint: ${broker.url}
    topics: ["spBv1.0/#"]
    sparkplug: { host_id: scada_kill }
zerobus:
  enabled: false
  default_target: { catalog: main, schema: iot, table: t }
`,
      );
      agent = await spawnSelf(["run", "--config", `${dir}/agent.yaml`], "ready");
      const online = await waitFor(() => seen.find((s) => s.online), "the online STATE", 60_000);
      agent.child.kill("SIGKILL");
      await agent.child.status;
      // No DISCONNECT was sent: the broker publishes the Will, stamped like the online STATE.
      const will = await waitFor(() => seen.find((s) => !s.online), "the offline Will", 20_000);
      assertEquals(will, { online: false, timestamp: online.timestamp });
    } finally {
      await agent?.stop();
      await watcher.endAsync();
      await broker.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
