/** MQTT source config: the original description's keys, defaults, and the new keys. */
import { assert, assertEquals } from "./assert.ts";
import { loadConfigText, loadConfigValue } from "../src/config/load.ts";
import {
  brokerUrl,
  cleanSessionOf,
  type ClientConfig,
  clientIdOf,
  clientOptions,
} from "../src/sources/mqtt/options.ts";

Deno.test("mqtt schema: the description's example loads with defaults", async () => {
  const yaml = await Deno.readTextFile(
    new URL("./fixtures/config/source_mqtt.yaml", import.meta.url),
  );
  const res = loadConfigText(yaml, { env: {} });
  assert(res.ok, res.ok ? "" : res.errors.join("\n"));
  const s = res.config.sources[0] as Record<string, unknown>;
  assertEquals(s.topics, ["sensors/#", "alarms/#"]);
  assertEquals([s.username, s.password, s.use_tls], ["mqtt_user", "mqtt_password", false]);
  assertEquals([s.qos, s.mqtt_version, s.retained_as_uncertain], [1, "5", true]);
  assertEquals(s.payload, { format: "auto" });
  assertEquals(s.max_payload_bytes, 1_048_576);
  const cfg = s as { name: string; qos: 1; endpoint: string; use_tls: boolean };
  assertEquals(cleanSessionOf(cfg), false, "QoS 1 keeps a persistent session");
  assertEquals(cleanSessionOf({ qos: 0 }), true);
  assertEquals(
    cleanSessionOf({ qos: 1, sparkplug: { host_id: "scada" } }),
    true,
    "a Sparkplug primary host connects clean (Sparkplug 3.0)",
  );
  assertEquals(
    cleanSessionOf({ qos: 1, clean_session: false, sparkplug: { host_id: "scada" } }),
    false,
  );
  assertEquals(clientIdOf(cfg), "otedge_plant_mqtt_broker");
});

Deno.test("mqtt schema: every new key is accepted", () => {
  const res = loadConfigValue({
    sources: [{
      name: "b",
      protocol: "mqtt",
      endpoint: "ws://broker.local:9001/mqtt",
      topics: ["plant/+/+/+/+/+"],
      qos: 2,
      mqtt_version: "3.1.1",
      client_id: "edge-1",
      clean_session: true,
      session_expiry_s: 600,
      topic_template: "plant/{site}/{area}/{line}/{equipment}/{tag_name}",
      payload: {
        format: "json",
        value_path: "data.v",
        timestamp_path: "data.ts",
        quality_path: "data.q",
        unit_path: "data.unit",
      },
      retained_as_uncertain: false,
      max_payload_bytes: 4096,
      use_tls: true,
      ca_file: "/etc/otedge/ca.pem",
      cert_file: "/etc/otedge/client.pem",
      key_file: "/etc/otedge/client.key",
      insecure: false,
    }],
  }, { env: {} });
  assert(res.ok, res.ok ? "" : res.errors.join("\n"));
  assertEquals(
    brokerUrl(res.config.sources[0] as { endpoint: string; use_tls: boolean }),
    "wss://broker.local:9001/mqtt",
  );
  assertEquals(
    brokerUrl({ endpoint: "mqtt://10.0.0.1:8883", use_tls: true }),
    "mqtts://10.0.0.1:8883",
  );
});

Deno.test("mqtt schema: receive_maximum and server_name reach the client options", async () => {
  const load = (extra: Record<string, unknown>) =>
    loadConfigValue({
      sources: [{
        name: "t",
        protocol: "mqtt",
        endpoint: "mqtts://10.0.4.20:8883",
        topics: ["a/#"],
        ...extra,
      }],
    }, { env: {} });
  const res = load({ server_name: "broker.plant.local", receive_maximum: 250 });
  assert(res.ok, res.ok ? "" : res.errors.join("\n"));
  const opts = await clientOptions(res.config.sources[0] as unknown as ClientConfig);
  assertEquals(opts.servername, "broker.plant.local");
  assertEquals(opts.properties?.receiveMaximum, 250);
  const dflt = load({});
  assert(dflt.ok);
  assertEquals((dflt.config.sources[0] as Record<string, unknown>).receive_maximum, 1000);
  for (
    const bad of [{ server_name: "bad name" }, { receive_maximum: 0 }, { receive_maximum: 70000 }]
  ) {
    const r = load(bad);
    assert(!r.ok, `accepted ${JSON.stringify(bad)}`);
    assert(r.errors.join("\n").includes(Object.keys(bad)[0]), r.errors.join("\n"));
  }
});
