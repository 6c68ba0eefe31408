/**
 * The simulator's OPC UA side, as a user meets it: `otedge simulate` as its
 * own process reports the OPC UA server in its ready line and /health; the
 * agent's OPC UA source (real Worker under a SourceHost) reads its plants and
 * its `--opcua-scale` variables, each of which changes once a second.
 */
import { assert, assertEquals } from "./assert.ts";
import { runSourceUnderHost, waitFor } from "./helpers.ts";
import { spawnSelf } from "../src/self.ts";
import { OPCUA_PLANT_NAMESPACE } from "../src/simulator/opcua_plant.ts";
import { PLANT_SENSORS } from "../src/simulator/plant_models.ts";

const SCALE = 200;

Deno.test("simulate opcua: ready line, /health, plants and scale variables through the source", async () => {
  const sim = await spawnSelf([
    "simulate",
    ...["--port", "0", "--modbus-port", "0", "--mqtt-port", "0", "--opcua-port", "0"],
    ...["--opcua-scale", String(SCALE)],
  ], "ready");
  try {
    const ready = sim.ready as { url: string; opcua_port: number; opcua_endpoint: string };
    assertEquals(ready.opcua_endpoint, `opc.tcp://127.0.0.1:${ready.opcua_port}`);
    const health = await (await fetch(`${ready.url}/health`)).json();
    const ua = health.servers.find((s: { protocol: string }) => s.protocol === "opcua");
    assertEquals(
      [ua.endpoint, ua.namespace, ua.sensors, ua.scale_variables],
      [ready.opcua_endpoint, OPCUA_PLANT_NAMESPACE, PLANT_SENSORS.length, SCALE],
    );

    const run = await runSourceUnderHost(`sources:
  - name: ua
    protocol: opcua
    endpoint: ${ready.opcua_endpoint}
    publishing_interval_ms: 200
    sampling_interval_ms: 0
    variable_limit: ${SCALE}
    discovery: { roots: [Objects/Scale] }
`);
    try {
      // Every variable takes at least three values, one per second, each one higher.
      const seen = await waitFor(
        () => {
          const values = new Map<string, number[]>();
          for (const r of run.rows) {
            const list = values.get(r.address as string) ?? [];
            list.push(r.value_num as number);
            values.set(r.address as string, list);
          }
          return values.size === SCALE && [...values.values()].every((v) => v.length >= 3)
            ? values
            : undefined;
        },
        "three values of every scale variable",
        60_000,
      );
      for (const [address, values] of seen) {
        for (let i = 1; i < values.length; i++) {
          assertEquals(values[i] - values[i - 1], 1, `${address}: ${values.join(", ")}`);
        }
      }
      assertEquals(run.host.status().ua.detail?.monitored_items, SCALE);
    } finally {
      await run.stop();
    }
    const changes = (await (await fetch(`${ready.url}/health`)).json()).servers
      .find((s: { protocol: string }) => s.protocol === "opcua").scale_changes;
    // Three values each are the first one and at least two changes.
    assert(changes >= SCALE * 2, `${changes} scale changes`);
  } finally {
    await sim.stop();
  }
  assertEquals((await sim.child.status).code, 0, "simulate exits 0 on SIGTERM");
});

Deno.test("simulate opcua: the secure endpoint takes SignAndEncrypt Basic256Sha256 only", async () => {
  const sim = await spawnSelf([
    "simulate",
    ...["--port", "0", "--modbus-port", "0", "--mqtt-port", "0", "--opcua-port", "0"],
    ...["--opcua-secure-port", "0"],
  ], "ready");
  const source = (security: string) =>
    `sources:
  - name: ua
    protocol: opcua
    endpoint: ${(sim.ready as { opcua_secure_endpoint: string }).opcua_secure_endpoint}
    ${security}
    variable_limit: 5
    discovery: { roots: [Objects/Mining] }
`;
  try {
    const secure = await runSourceUnderHost(source(
      `security_mode: SignAndEncrypt
    security_policy: Basic256Sha256
    trust_server_certificate: auto
    username: operator
    password: operator`,
    ));
    try {
      await waitFor(
        () => secure.rows.filter((r) => r.quality === "good").length >= 5,
        "good values over SignAndEncrypt",
        60_000,
      );
      assertEquals(secure.host.status().ua.state, "connected");
    } finally {
      await secure.stop();
    }
    const plain = await runSourceUnderHost(source("security_mode: None"));
    try {
      const error = await waitFor(
        () => String(plain.host.status().ua.last_error ?? "") || undefined,
        "an error for security None",
        60_000,
      );
      assert(error.includes("SignAndEncrypt/Basic256Sha256"), error);
      assertEquals(plain.rows.length, 0, "no fallback to None");
    } finally {
      await plain.stop();
    }
  } finally {
    await sim.stop();
  }
});
