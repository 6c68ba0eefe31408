/**
 * `kill -9` of the agent while a QoS 1 publisher streams numbered messages
 * through Mosquitto: after a restart every number arrives in the stand-in's
 * table (acknowledged only after the spool commit; the persistent session keeps
 * the rest at the broker). Duplicates are allowed and counted. The agent and the
 * stand-in run as their own processes.
 */
import { assertEquals } from "./assert.ts";
import { agentConfigYaml, freePort, readTables, startStandIn, waitFor } from "./helpers.ts";
import { mosquittoPath, publisher, startMosquitto } from "./mosquitto.ts";
import { spawnSelf } from "../src/self.ts";

const hasMosquitto = mosquittoPath() !== undefined;
const N = 3000;
const TABLE = "main.iot_data.sensor_readings";

/** How often each message number arrived in the stand-in's table. */
async function arrivals(dir: string): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  for (const r of (await readTables(dir)).get(TABLE) ?? []) {
    if (r.tag_name !== "counter") continue;
    const n = r.value_num as number;
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  return counts;
}

Deno.test({
  name: `mqtt crash: kill -9 mid-stream, restart, every QoS 1 message arrives${
    hasMosquitto ? "" : " (ignored: mosquitto is not installed)"
  }`,
  ignore: !hasMosquitto,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "otedge-mqtt-crash-" });
    // No cap on the messages Mosquitto queues for the offline persistent session.
    const broker = await startMosquitto("max_queued_messages 0\n");
    const standIn = await startStandIn(dir);
    const pub = await publisher(broker.url);
    const port = freePort();
    const cfgFile = `${dir}/agent.yaml`;
    await Deno.writeTextFile(
      cfgFile,
      agentConfigYaml({
        dataDir: `${dir}/agent`,
        port,
        standIn,
        sources: `  - name: mqtt_line
    protocol: mqtt
    endpoint: ${broker.url}
    topics: ["crash/#"]
    qos: 1
    client_id: otedge_crash_test
    site: s1
`,
      }),
    );
    const metrics = async () => await (await fetch(`http://127.0.0.1:${port}/api/metrics`)).json();
    let agent: Awaited<ReturnType<typeof spawnSelf>> | undefined;
    let publishing: Promise<void> | undefined;
    try {
      agent = await spawnSelf(["run", "--config", cfgFile], "ready");
      await waitFor(
        async () =>
          (await (await fetch(`http://127.0.0.1:${port}/api/status`)).json()).sources?.mqtt_line
            ?.state === "connected",
        "the source connected",
      );
      // The first half streams in; the agent is killed once a fifth of all is spooled;
      // the second half is published while it is dead.
      const publish = async (from: number, to: number) => {
        for (let i = from; i <= to; i++) {
          await pub.publishAsync("crash/line1/counter", JSON.stringify({ value: i }), { qos: 1 });
        }
      };
      publishing = publish(1, N / 2);
      await waitFor(
        async () => (await metrics()).bridge.records_enqueued >= N / 5,
        "a fifth of the messages spooled",
      );
      const spooledAtKill = (await metrics()).bridge.records_enqueued;
      agent.child.kill("SIGKILL");
      await agent.child.status;
      await publishing;
      await publish(N / 2 + 1, N);

      agent = await spawnSelf(["run", "--config", cfgFile], "ready");
      const counts = await waitFor(
        async () => {
          const c = await arrivals(dir);
          return c.size >= N ? c : undefined;
        },
        `all ${N} message numbers in the table`,
        90_000,
      ).catch(async (e) => {
        const c = await arrivals(dir);
        const missing = [...Array(N).keys()].map((i) => i + 1).filter((i) => !c.has(i));
        throw new Error(`${e.message}; missing ${missing.length}: ${missing.slice(0, 20)}`);
      });
      const duplicates = [...counts.values()].reduce((a, n) => a + n - 1, 0);
      const missing = [...Array(N).keys()].map((i) => i + 1).filter((i) => !counts.has(i));
      console.log(
        `killed with ${spooledAtKill} of ${N} spooled; ${duplicates} duplicates after the restart`,
      );
      assertEquals(
        missing,
        [],
        `${missing.length} message numbers lost (${duplicates} duplicates, allowed)`,
      );
    } finally {
      await publishing?.catch(() => {});
      await agent?.stop();
      await pub.endAsync();
      await standIn.stop();
      await broker.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
