import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  formatErrors,
  loadConfigFile,
  loadConfigText,
  type LoadResult,
  validateWith,
} from "../src/config/load.ts";
import { type AgentConfig, tableFullName, targetFor } from "../src/config/schema.ts";
import { SOURCE_PROTOCOLS, sourceSchema } from "../src/sources/catalog.ts";

const FIXTURES = new URL("./fixtures/config/", import.meta.url);
const fixture = (name: string) => Deno.readTextFileSync(new URL(name, FIXTURES));

const CREDENTIALS: Record<string, string> = {
  "zerobus.client_id": "id-from-store",
  "zerobus.client_secret": "secret-from-store",
};
const fromStore = (key: string) => CREDENTIALS[key];

function valid(result: LoadResult): AgentConfig {
  if (!result.ok) throw new Error(`expected a valid config, got:\n${result.errors.join("\n")}`);
  return result.config;
}

function errorsOf(result: LoadResult): string[] {
  if (result.ok) throw new Error("expected errors, the config is valid");
  return result.errors;
}

/** Loads with an empty environment, so the test runner's env never leaks in. */
function load(text: string, env: Record<string, string> = {}) {
  return loadConfigText(text, { env, credential: fromStore });
}

Deno.test("an empty config is valid and gets every default", () => {
  for (const text of ["", "{}", "# only a comment\n"]) {
    const c = valid(load(text));
    deepStrictEqual(c.connector, { name: "ot-edge-agent", data_dir: "./data", log_level: "info" });
    deepStrictEqual(c.http, { host: "127.0.0.1", port: 8080 });
    deepStrictEqual(c.sources, []);
    strictEqual(c.zerobus.enabled, false);
    deepStrictEqual(c.zerobus.batch, { max_records: 1000, max_bytes: 2_000_000, linger_ms: 50 });
    strictEqual(c.zerobus.record_type, "json");
    strictEqual(c.zerobus.streams_per_target, 1);
    strictEqual(c.zerobus.max_inflight_requests, 64);
    strictEqual(c.zerobus.ack_timeout_s, 60);
    strictEqual(
      c.normalization.path_template,
      "{site}/{area}/{line}/{equipment}/{signal_type}/{tag_name}",
    );
    strictEqual(c.normalization.missing_placeholder, "unassigned");
    deepStrictEqual(c.normalization.rules, []);
    deepStrictEqual(c.backpressure, {
      max_queue_size: 50_000,
      disk_spool: { enabled: true, max_size_mb: 500, max_records: 10_000_000 },
      on_full: "block",
    });
    deepStrictEqual(c.discovery, {
      enabled: false,
      network: { scan_enabled: false, subnets: [] },
      timeout_ms: 1000,
    });
  }
});

Deno.test("empty sections (null in YAML) count as absent", () => {
  const c = valid(load("connector:\nzerobus:\n  auth:\nsources:\n"));
  strictEqual(c.connector.name, "ot-edge-agent");
  deepStrictEqual(c.zerobus.auth, {});
  deepStrictEqual(c.sources, []);
});

Deno.test("description example: quick start config loads with stored credentials", () => {
  const c = valid(load(fixture("quickstart.yaml")));
  strictEqual(c.discovery.enabled, true);
  strictEqual(c.discovery.network.scan_enabled, true);
  deepStrictEqual(c.discovery.network.subnets, ["192.168.1.0/24", "172.17.0.0/24"]);
  strictEqual(c.zerobus.enabled, true);
  deepStrictEqual(c.zerobus.default_target, {
    catalog: "main",
    schema: "iot_data",
    table: "sensor_readings",
  });
  // default_target.workspace_host stands in for zerobus.workspace_host.
  strictEqual(c.zerobus.workspace_host, "https://adb-xxx.azuredatabricks.net");
  deepStrictEqual(c.zerobus.auth, {
    client_id: "id-from-store",
    client_secret: "secret-from-store",
  });
  strictEqual(c.normalization.enabled, true);
});

Deno.test("description example: OPC UA source block", () => {
  const [s] = valid(load(fixture("source_opcua.yaml"))).sources;
  if (s.protocol !== "opcua") throw new Error("expected opcua");
  strictEqual(s.name, "plant_opcua_server");
  strictEqual(s.endpoint, "opc.tcp://192.168.1.100:4840");
  strictEqual(s.security_mode, "SignAndEncrypt");
  strictEqual(s.security_policy, "Basic256Sha256");
  strictEqual(s.username, "admin");
  strictEqual(s.password, "password123");
  deepStrictEqual([s.site, s.area, s.line, s.equipment], ["plant1", "production", "line1", "plc1"]);
  strictEqual(s.polling_mode, true);
  strictEqual(s.polling_interval_ms, 500);
  strictEqual(s.variable_limit, 500);
});

Deno.test("description example: MQTT source block", () => {
  const [s] = valid(load(fixture("source_mqtt.yaml"))).sources;
  if (s.protocol !== "mqtt") throw new Error("expected mqtt");
  deepStrictEqual(s.topics, ["sensors/#", "alarms/#"]);
  strictEqual(s.username, "mqtt_user");
  strictEqual(s.use_tls, false);
  strictEqual(s.qos, 1);
});

Deno.test("description example: Modbus source block", () => {
  const [s] = valid(load(fixture("source_modbus.yaml"))).sources;
  if (s.protocol !== "modbus") throw new Error("expected modbus");
  strictEqual(s.slave_id, 1);
  deepStrictEqual(s.registers, [{ address: 0, count: 100, type: "holding", data_type: "float" }]);
  strictEqual(s.polling_interval_ms, 1000);
  strictEqual(s.timeout_ms, 1000);
});

Deno.test("description example: per-source targets with its three sources", () => {
  const env = {
    CONNECTOR_ZEROBUS_CLIENT_ID: "env-id",
    CONNECTOR_ZEROBUS_CLIENT_SECRET: "env-secret",
  };
  const c = valid(load(fixture("per_source_targets.yaml"), env));
  deepStrictEqual(c.sources.map((s) => s.protocol), ["opcua", "mqtt", "modbus"]);
  const tables = ["plant_opcua_server", "plant_mqtt_broker", "plant_modbus_plc", "other"]
    .map((name) => {
      const t = targetFor(c, name);
      return t === undefined ? undefined : tableFullName(t);
    });
  deepStrictEqual(tables, [
    "manufacturing.plant1.opcua_data",
    "manufacturing.plant1.mqtt_data",
    "manufacturing.plant1.modbus_data",
    "main.iot_data.sensor_readings",
  ]);
  deepStrictEqual(c.zerobus.auth, { client_id: "env-id", client_secret: "env-secret" });
});

Deno.test("description example: per-source targets block alone names undefined sources", () => {
  deepStrictEqual(errorsOf(load(fixture("zerobus_source_targets.yaml"))), [
    "zerobus.auth.client_id: required when zerobus.enabled is true",
    "zerobus.auth.client_secret: required when zerobus.enabled is true",
    "zerobus.source_targets.plant_opcua_server: no source named 'plant_opcua_server' is configured (sources is empty)",
    "zerobus.source_targets.plant_mqtt_broker: no source named 'plant_mqtt_broker' is configured (sources is empty)",
    "zerobus.source_targets.plant_modbus_plc: no source named 'plant_modbus_plc' is configured (sources is empty)",
  ]);
});

Deno.test("description example: normalization with quality mapping", () => {
  const n = valid(load(fixture("normalization.yaml"))).normalization;
  deepStrictEqual(n.default_context, {
    site: "plant1",
    area: "production",
    line: "line1",
    equipment: "default",
  });
  deepStrictEqual(n.quality_mapping, {
    opcua: { good: [0], uncertain: [64, 65, 66], bad: [128, 129, 130] },
  });
});

Deno.test("description examples: troubleshooting snippets", () => {
  deepStrictEqual(valid(load(fixture("discovery_subnets.yaml"))).discovery.network.subnets, [
    "172.20.0.0/16",
  ]);
  strictEqual(valid(load(fixture("backpressure_queue.yaml"))).backpressure.max_queue_size, 10000);
  deepStrictEqual(valid(load(fixture("backpressure_spool.yaml"))).backpressure.disk_spool, {
    enabled: true,
    max_size_mb: 500,
    max_records: 10_000_000,
  });
});

Deno.test("description example: the REST API's add-source body is a valid source", () => {
  const body = {
    name: "plant_opcua_server",
    protocol: "opcua",
    endpoint: "opc.tcp://192.168.1.100:4840",
    enabled: true,
  };
  const r = validateWith(sourceSchema, body, ["sources", 0]);
  if (!r.ok) throw new Error(r.errors.join("\n"));
  strictEqual(r.data.protocol, "opcua");
  deepStrictEqual(validateWith(sourceSchema, { ...body, endpoint: "tcp://x" }, ["sources", 4]), {
    ok: false,
    errors: ["sources[4].endpoint: expected an opc.tcp:// URL"],
  });
});

Deno.test("the catalog registers the four protocols", () => {
  deepStrictEqual(SOURCE_PROTOCOLS, ["generator", "opcua", "mqtt", "modbus"]);
});

Deno.test("generator source defaults", () => {
  const [s] = valid(load("sources:\n  - {name: demo, protocol: generator}\n")).sources;
  deepStrictEqual(s, {
    name: "demo",
    protocol: "generator",
    endpoint: "generator://demo",
    enabled: true,
    tags: 10,
    interval_ms: 1000,
    models: ["sine", "ramp", "random_walk", "step"],
    tag_prefix: "tag",
  });
  const [t] = valid(load(`sources:
  - name: bench
    protocol: generator
    endpoint: generator://custom
    tags: 1000000
    records_per_s: 0
    max_records: 5
    models: [step]
`)).sources;
  if (t.protocol !== "generator") throw new Error("expected generator");
  deepStrictEqual([t.endpoint, t.tags, t.records_per_s, t.max_records, t.models], [
    "generator://custom",
    1_000_000,
    0,
    5,
    ["step"],
  ]);
});

Deno.test("modbus register defaults follow the data type", () => {
  const [s] = valid(load(`sources:
  - name: plc
    protocol: modbus
    endpoint: modbusrtu:///dev/ttyUSB0
    registers:
      - {address: 10, type: input}
      - {address: 20, type: holding, data_type: float64}
      - {address: 5, type: coil}
`)).sources;
  if (s.protocol !== "modbus") throw new Error("expected modbus");
  deepStrictEqual(s.registers, [
    { address: 10, type: "input", data_type: "uint16", count: 1 },
    { address: 20, type: "holding", data_type: "float64", count: 4 },
    { address: 5, type: "coil", data_type: "bool", count: 1 },
  ]);
});

Deno.test("log level is case-insensitive and accepts warn", () => {
  const levels = ["DEBUG", "Info", "warn", "WARNING", "error"].map((l) =>
    valid(load(`connector: {log_level: ${l}}`)).connector.log_level
  );
  deepStrictEqual(levels, ["debug", "info", "warning", "warning", "error"]);
  deepStrictEqual(errorsOf(load("connector: {log_level: loud}")), [
    'connector.log_level: expected one of debug, info, warning, error, got "loud"',
  ]);
});

Deno.test("unknown keys are errors at every level", () => {
  deepStrictEqual(
    errorsOf(load(`
colour: blue
http: {port: 80, portt: 81}
sources:
  - {name: a, protocol: generator, tagz: 3}
zerobus:
  batch: {max_record: 10}
`)),
    [
      "http.portt: unknown key",
      "sources[0].tagz: unknown key",
      "zerobus.batch.max_record: unknown key",
      "colour: unknown key",
    ],
  );
});

Deno.test("wrong types name the expected type", () => {
  deepStrictEqual(
    errorsOf(load(`
http: {port: "eighty"}
sources: {name: a}
zerobus: {enabled: "yes please", auth: {client_id: 12345}}
discovery: {network: {subnets: "10.0.0.0/8"}}
backpressure: {max_queue_size: 1.5}
`)),
    [
      "http.port: expected a number, got a string",
      "sources: expected a list, got a mapping",
      "zerobus.enabled: expected true or false, got a string",
      "zerobus.auth.client_id: expected a string, got an integer (put it in quotes)",
      "backpressure.max_queue_size: expected an integer, got 1.5",
      "discovery.network.subnets: expected a list, got a string",
    ],
  );
});

Deno.test("endpoint schemes are checked per protocol", () => {
  deepStrictEqual(
    errorsOf(load(`
sources:
  - {name: o, protocol: opcua, endpoint: "http://192.168.1.100:4840"}
  - {name: m, protocol: mqtt, endpoint: "tcp://broker:1883", topics: [a]}
  - {name: b, protocol: modbus, endpoint: "modbus://plc:99999", registers: [{address: 0, type: coil}]}
  - {name: g, protocol: generator, endpoint: "gen://x"}
  - {name: p, protocol: profinet, endpoint: "x"}
`)),
    [
      "sources[0].endpoint: expected an opc.tcp:// URL",
      "sources[1].endpoint: expected an mqtt://, mqtts://, ws:// or wss:// URL",
      "sources[2].endpoint: expected modbus://host[:port], modbusrtu+tcp://host:port or modbusrtu:///dev/<device>",
      "sources[3].endpoint: expected a generator:// URL",
      'sources[4].protocol: expected one of generator, opcua, mqtt, modbus, got "profinet"',
    ],
  );
  const accepted = valid(load(`
sources:
  - {name: o, protocol: opcua, endpoint: "opc.tcp://[::1]:4840/UA/Server"}
  - {name: m, protocol: mqtt, endpoint: "wss://broker.example:443/mqtt", topics: [a/+/b]}
  - {name: r, protocol: modbus, endpoint: "modbusrtu+tcp://gw:4001", registers: [{address: 0, type: input}]}
`));
  deepStrictEqual(accepted.sources.map((s) => s.endpoint), [
    "opc.tcp://[::1]:4840/UA/Server",
    "wss://broker.example:443/mqtt",
    "modbusrtu+tcp://gw:4001",
  ]);
});

Deno.test("duplicate source names are reported on the later entry", () => {
  deepStrictEqual(
    errorsOf(load(`
sources:
  - {name: line1, protocol: generator}
  - {name: line2, protocol: generator}
  - {name: line1, protocol: generator}
`)),
    ["sources[2].name: duplicate source name 'line1' (already used by sources[0])"],
  );
});

Deno.test("source_targets must name a configured source", () => {
  deepStrictEqual(
    errorsOf(load(`
sources:
  - {name: a, protocol: generator}
  - {name: b, protocol: generator}
zerobus:
  source_targets:
    a: {catalog: c, schema: s, table: t}
    ghost: {catalog: c, schema: s, table: t}
`)),
    ["zerobus.source_targets.ghost: no source named 'ghost' is configured (sources: a, b)"],
  );
});

Deno.test("zerobus enabled needs a target, auth and an endpoint", () => {
  deepStrictEqual(errorsOf(load("zerobus: {enabled: true}")), [
    "zerobus.default_target: required when zerobus.enabled is true",
    "zerobus.auth.client_id: required when zerobus.enabled is true",
    "zerobus.auth.client_secret: required when zerobus.enabled is true",
    "zerobus.zerobus_endpoint: required when zerobus.enabled is true (set zerobus.zerobus_endpoint and/or zerobus.workspace_host)",
  ]);
  deepStrictEqual(
    errorsOf(load(`
zerobus:
  enabled: true
  zerobus_endpoint: "http://127.0.0.1:50051"
  default_target: {catalog: main, schema: iot, table: "bad.name"}
  auth: {client_id: abc}
`)),
    [
      "zerobus.default_target.table: expected letters, digits, '_' or '-'",
      "zerobus.auth.client_secret: required when zerobus.enabled is true",
    ],
  );
  const c = valid(load(`
zerobus:
  enabled: true
  zerobus_endpoint: "http://127.0.0.1:50051"
  workspace_host: "http://127.0.0.1:50052"
  default_target: {catalog: main, schema: iot, table: readings, workspace_host: "https://ignored"}
  auth: {client_id: abc, client_secret: def}
  batch: {max_records: 10000, max_bytes: 4000000}
`));
  strictEqual(c.zerobus.workspace_host, "http://127.0.0.1:50052");
  strictEqual(c.zerobus.zerobus_endpoint, "http://127.0.0.1:50051");
  strictEqual(c.zerobus.batch.max_records, 10000);
});

Deno.test("YAML syntax errors give line and column", () => {
  deepStrictEqual(errorsOf(load("http:\n  port: 8080\n host: x\n")), [
    "line 3, column 1: YAML syntax error: All mapping items must start at the same column",
  ]);
  deepStrictEqual(
    errorsOf(loadConfigText("a: 1\na: 2\n", { env: {}, fileName: "config.yaml" })),
    ["config.yaml:2:1: YAML syntax error: Map keys must be unique"],
  );
  deepStrictEqual(errorsOf(load("a: 1\n---\nb: 2\n")), [
    "line 2, column 1: YAML syntax error: a config file holds one YAML document; remove the '---' separator",
  ]);
  deepStrictEqual(errorsOf(load("- just\n- a list\n")), [
    "(root): expected a mapping of sections, got a list",
  ]);
});

Deno.test("rule regular expressions must compile", () => {
  deepStrictEqual(
    errorsOf(load(`
normalization:
  rules:
    - match: {address: "^ns=2;s=Line1\\\\..*"}
      set: {line: line1}
    - match: {protocol: opcua, address: "([a-z"}
      set: {line: x}
`)),
    [
      "normalization.rules[1].match.address: invalid regular expression: /([a-z/: Unterminated character class",
    ],
  );
});

Deno.test("path_template placeholders must be known", () => {
  deepStrictEqual(
    errorsOf(load(`
normalization:
  path_template: "{site}/{browse_path}/{tagname}"
`)),
    [
      "normalization.path_template: unknown placeholder {tagname}; use one of {site}, {area}, " +
      "{line}, {equipment}, {signal_type}, {tag_name}, {unit}, {address}, {browse_path}, " +
      "{source_name}, {source_protocol}, {endpoint}",
    ],
  );
});

Deno.test("every problem is reported at once with exact key paths", () => {
  deepStrictEqual(
    errorsOf(load(`
connector: {log_level: verbose}
http: {port: 70000}
sources:
  - {name: "bad name!", protocol: generator, tags: 0}
  - name: plc
    protocol: modbus
    endpoint: "modbus://10.0.0.5"
    slave_id: 300
    registers:
      - {address: 0, type: holding, data_type: float, count: 3}
      - {address: 1, type: coil, data_type: int16}
  - {name: opc, protocol: opcua, endpoint: "opc.tcp://h:4840", security_mode: Sign, nodes: ["Temperature"]}
  - {name: broker, protocol: mqtt, endpoint: "mqtt://b", topics: ["a/#/b"], qos: 3}
zerobus:
  batch: {max_records: 20000, max_bytes: 5000000}
  streams_per_target: 0
normalization:
  quality_mapping:
    opcua: {good: [0], bad: [0]}
    opcau: {good: [1]}
backpressure: {on_full: explode}
discovery: {network: {subnets: ["10.0.0.0/33"], ports: [0]}}
`)),
    [
      'connector.log_level: expected one of debug, info, warning, error, got "verbose"',
      "http.port: must be <= 65535, got 70000",
      "sources[0].name: expected 1 to 64 letters, digits, '_', '.' or '-'",
      "sources[0].tags: must be >= 1, got 0",
      "sources[1].slave_id: must be <= 247, got 300",
      "sources[1].registers[0].count: float takes 2 registers per value; count 3 is not a multiple of 2",
      "sources[1].registers[1].data_type: coil registers hold bits; use data_type bool or leave it out",
      "sources[2].nodes[0]: expected a NodeId like ns=2;s=Temperature",
      "sources[2].security_policy: security_mode Sign needs a security_policy other than None",
      "sources[3].topics[0]: '#' must be a whole level at the end of the filter: a/#/b",
      "sources[3].qos: expected one of 0, 1, 2, got 3",
      "zerobus.batch.max_records: must be <= 10000, got 20000",
      "zerobus.batch.max_bytes: must be <= 4000000, got 5000000",
      "zerobus.streams_per_target: must be >= 1, got 0",
      "normalization.quality_mapping.opcua.bad[0]: code 0 is already in good",
      "normalization.quality_mapping.opcau: unknown key",
      'backpressure.on_full: expected one of block, drop_newest, drop_oldest, got "explode"',
      "discovery.network.subnets[0]: expected an IPv4 CIDR block like 192.168.1.0/24",
      "discovery.network.ports[0]: must be >= 1, got 0",
    ],
  );
});

Deno.test("cross-section checks still run when a value elsewhere is not an integer", () => {
  deepStrictEqual(
    errorsOf(load(`
sources:
  - {name: a, protocol: generator, tags: 2.5}
  - {name: a, protocol: generator}
`)),
    [
      "sources[0].tags: expected an integer, got 2.5",
      "sources[1].name: duplicate source name 'a' (already used by sources[0])",
    ],
  );
});

Deno.test("placeholders: env, env default, credential, escapes", () => {
  const c = valid(load(
    `
connector:
  name: "agent-\${env:SITE}-\${env:MISSING_OK:dflt}"
  data_dir: "\${env:DATA_DIR:/var/lib/otedge}"
http:
  port: "\${env:PORT:9090}"
zerobus:
  enabled: "\${env:ZB_ON:false}"
  auth:
    client_id: "\${credential:zerobus.client_id}"
    client_secret: "prefix-\${credential:zerobus.client_secret}"
normalization:
  missing_placeholder: "$\${env:NOT_RESOLVED}"
`,
    { SITE: "berlin", DATA_DIR: "/data" },
  ));
  strictEqual(c.connector.name, "agent-berlin-dflt");
  strictEqual(c.connector.data_dir, "/data");
  strictEqual(c.http.port, 9090);
  strictEqual(c.zerobus.enabled, false);
  deepStrictEqual(c.zerobus.auth, {
    client_id: "id-from-store",
    client_secret: "prefix-secret-from-store",
  });
  strictEqual(c.normalization.missing_placeholder, "${env:NOT_RESOLVED}");
});

Deno.test("placeholders: a whole-value placeholder that is not a number stays an error", () => {
  deepStrictEqual(errorsOf(load('http: {port: "${env:PORT}"}', { PORT: "http" })), [
    "http.port: expected a number, got a string",
  ]);
});

Deno.test("placeholders: missing env var or credential says what to do", () => {
  const text = `
connector:
  data_dir: "\${env:OTEDGE_DATA}"
zerobus:
  auth:
    client_id: "\${credential:zerobus.client_id}"
    client_secret: "\${credential:zerobus.client_secret}"
`;
  const stored = (key: string) => key === "zerobus.client_id" ? "x" : undefined;
  deepStrictEqual(errorsOf(loadConfigText(text, { env: {}, credential: stored })), [
    "connector.data_dir: environment variable OTEDGE_DATA is not set; export it or give a default as ${env:OTEDGE_DATA:<default>}",
    "zerobus.auth.client_secret: credential 'zerobus.client_secret' is not stored; run 'otedge credentials set zerobus.client_secret'",
  ]);
  deepStrictEqual(errorsOf(loadConfigText(text, { env: { OTEDGE_DATA: "/d" } })), [
    "zerobus.auth.client_id: credential 'zerobus.client_id' cannot be read: no credential store is open; set CONNECTOR_MASTER_PASSWORD and run 'otedge credentials set zerobus.client_id'",
    "zerobus.auth.client_secret: credential 'zerobus.client_secret' cannot be read: no credential store is open; set CONNECTOR_MASTER_PASSWORD and run 'otedge credentials set zerobus.client_secret'",
  ]);
});

Deno.test("environment overrides win over the file", () => {
  const text = `
connector: {log_level: info, data_dir: ./from-file}
http: {host: 127.0.0.1, port: 8080}
zerobus:
  enabled: false
  workspace_host: "https://file.example"
  default_target: {catalog: main, schema: iot, table: t}
  auth:
    client_id: "\${credential:not.stored}"
    client_secret: "\${credential:not.stored.either}"
`;
  const c = valid(loadConfigText(text, {
    env: {
      CONNECTOR_LOG_LEVEL: "DEBUG",
      CONNECTOR_DATA_DIR: "/var/lib/otedge",
      CONNECTOR_HTTP_HOST: "0.0.0.0",
      CONNECTOR_HTTP_PORT: "9000",
      CONNECTOR_ZEROBUS_ENABLED: "true",
      CONNECTOR_ZEROBUS_CLIENT_ID: "env-id",
      CONNECTOR_ZEROBUS_CLIENT_SECRET: "env-secret",
      CONNECTOR_ZEROBUS_WORKSPACE_HOST: "https://env.example",
      CONNECTOR_ZEROBUS_ENDPOINT: "https://123.zerobus.us-west-2.cloud.databricks.com",
    },
  }));
  deepStrictEqual(c.connector, {
    name: "ot-edge-agent",
    data_dir: "/var/lib/otedge",
    log_level: "debug",
  });
  deepStrictEqual(c.http, { host: "0.0.0.0", port: 9000 });
  strictEqual(c.zerobus.enabled, true);
  deepStrictEqual(c.zerobus.auth, { client_id: "env-id", client_secret: "env-secret" });
  strictEqual(c.zerobus.workspace_host, "https://env.example");
  strictEqual(c.zerobus.zerobus_endpoint, "https://123.zerobus.us-west-2.cloud.databricks.com");
});

Deno.test("bad environment override values are reported with the variable", () => {
  deepStrictEqual(
    errorsOf(load("{}", {
      CONNECTOR_HTTP_PORT: "eighty",
      CONNECTOR_ZEROBUS_ENABLED: "maybe",
      CONNECTOR_LOG_LEVEL: "chatty",
    })),
    [
      'http.port: CONNECTOR_HTTP_PORT must be an integer, got "eighty"',
      'zerobus.enabled: CONNECTOR_ZEROBUS_ENABLED must be true or false, got "maybe"',
      'connector.log_level: expected one of debug, info, warning, error, got "chatty" (from CONNECTOR_LOG_LEVEL)',
    ],
  );
  deepStrictEqual(errorsOf(load("{}", { CONNECTOR_HTTP_PORT: "70000" })), [
    "http.port: must be <= 65535, got 70000 (from CONNECTOR_HTTP_PORT)",
  ]);
  // Empty variables are ignored.
  strictEqual(valid(load("{}", { CONNECTOR_HTTP_PORT: "" })).http.port, 8080);
});

Deno.test("loadConfigFile reads a file and names a missing one", async () => {
  const c = valid(
    await loadConfigFile(new URL("quickstart.yaml", FIXTURES).pathname, {
      env: {},
      credential: fromStore,
    }),
  );
  strictEqual(c.zerobus.enabled, true);
  const missing = errorsOf(await loadConfigFile("/nonexistent/config.yaml", { env: {} }));
  deepStrictEqual(missing, ["/nonexistent/config.yaml: file not found"]);
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/broken.yaml`;
    await Deno.writeTextFile(path, "http: [\n");
    const errors = errorsOf(await loadConfigFile(path, { env: {} }));
    strictEqual(errors.length, 1);
    ok(errors[0].startsWith(`${path}:2:1: YAML syntax error: `), errors[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("formatErrors lists every problem", () => {
  strictEqual(
    formatErrors(["a: x", "b[0]: y"], "config.yaml"),
    "Invalid configuration in config.yaml (2 problems):\n  - a: x\n  - b[0]: y",
  );
  strictEqual(formatErrors(["a: x"]), "Invalid configuration (1 problem):\n  - a: x");
});

Deno.test("targetFor falls back to default_target, or undefined without one", () => {
  const c = valid(load("sources: [{name: a, protocol: generator}]"));
  strictEqual(targetFor(c, "a"), undefined);
  strictEqual(
    tableFullName({ catalog: "main", schema: "iot_data", table: "sensor_readings" }),
    "main.iot_data.sensor_readings",
  );
});

Deno.test("config: record_type json or proto", () => {
  strictEqual(valid(load("zerobus:\n  record_type: proto\n")).zerobus.record_type, "proto");
  deepStrictEqual(errorsOf(load("zerobus:\n  record_type: avro\n")), [
    'zerobus.record_type: expected one of json, proto, got "avro"',
  ]);
});

Deno.test("config: a rule sets only known fields, and at least one", () => {
  deepStrictEqual(
    errorsOf(load(`
normalization:
  rules:
    - match: {address: "^x"}
      set: {plant: p1}
    - match: {address: "^y"}
      set: {}
    - match: {address: "^z"}
      set: {value_type: bool}
`)),
    [
      "normalization.rules[0].set.plant: unknown key",
      // the allowed keys are named too, which is what a user needs after a typo
      "normalization.rules[0].set: set at least one of site, area, line, equipment, tag_name, signal_type, unit, value_type",
      "normalization.rules[1].set: set at least one of site, area, line, equipment, tag_name, signal_type, unit, value_type",
      "normalization.rules[2].set.value_type: must be int or float (numeric text of matching tags becomes a number)",
    ],
  );
});
