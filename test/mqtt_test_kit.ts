/**
 * MQTT test helpers that `test/mosquitto.ts` lacks: a Mosquitto broker that
 * can be killed by pid and started again on the same 127.0.0.1 port, and a
 * probe that reads the retained message of a topic.
 */
import mqtt from "mqtt";
import { freePort, waitFor } from "./helpers.ts";
import { mosquittoPath } from "./mosquitto.ts";

/** A Mosquitto process on a fixed loopback port. */
export interface BrokerProcess {
  port: number;
  url: string;
  pid: number;
  /** Kills the broker with SIGKILL (no clean shutdown), waits for it to exit, removes its folder. */
  kill(): Promise<void>;
  /** Stops the broker with SIGTERM (if it still runs) and removes its folder. */
  stop(): Promise<void>;
}

/**
 * Starts Mosquitto (anonymous, no persistence) on 127.0.0.1:`port`, a free
 * port when none is given; waits until it accepts connections.
 */
export async function startBrokerOn(port = freePort()): Promise<BrokerProcess> {
  const bin = mosquittoPath();
  if (!bin) throw new Error("mosquitto is not installed");
  const dir = await Deno.makeTempDir({ prefix: "mosquitto_kit_" });
  const lines = [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false"];
  // As root mosquitto would switch to the `mosquitto` user, which cannot read our temp files.
  if (Deno.uid() === 0) lines.push("user root");
  await Deno.writeTextFile(`${dir}/mosquitto.conf`, lines.join("\n") + "\n");
  const child = new Deno.Command(bin, {
    args: ["-c", `${dir}/mosquitto.conf`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const removeDir = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  const end = async (signal: Deno.Signal) => {
    if (!exited) child.kill(signal);
    await status;
  };
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`mosquitto exited at start on port ${port}`);
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return true;
      } catch {
        return false;
      }
    }, `mosquitto on port ${port}`);
  } catch (e) {
    await end("SIGKILL");
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid,
    async kill() {
      await end("SIGKILL");
      await removeDir();
    },
    async stop() {
      await end("SIGTERM");
      await removeDir();
    },
  };
}

/** A retained message as a fresh subscriber receives it. */
export interface Retained {
  payload: Uint8Array;
  retain: boolean;
}

/**
 * Subscribes a fresh client to `topic` and returns the first message it gets
 * within `waitMs` (a retained one arrives at once), or undefined.
 */
export async function retainedOn(
  url: string,
  topic: string,
  waitMs = 500,
): Promise<Retained | undefined> {
  const probe = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0 });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const got = new Promise<Retained | undefined>((resolve) => {
      probe.on(
        "message",
        (_t, payload, packet) =>
          resolve({ payload: new Uint8Array(payload), retain: packet.retain }),
      );
      timer = setTimeout(() => resolve(undefined), waitMs);
    });
    await probe.subscribeAsync(topic, { qos: 1 });
    return await got;
  } finally {
    clearTimeout(timer);
    await probe.endAsync();
  }
}
