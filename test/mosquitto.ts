/** Starts a Mosquitto broker for a test on a free 127.0.0.1 port and stops it by pid. */
import { freePort, waitFor } from "./helpers.ts";

const CANDIDATES = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"];

/** Path of the mosquitto binary, or undefined when it is not installed. */
export function mosquittoPath(): string | undefined {
  for (const p of CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** A running broker. */
export interface Mosquitto {
  port: number;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Starts mosquitto with `listener <port> 127.0.0.1` and anonymous access; waits until it listens. */
export async function startMosquitto(extraConfig = ""): Promise<Mosquitto> {
  const bin = mosquittoPath();
  if (!bin) throw new Error("mosquitto is not installed");
  const dir = await Deno.makeTempDir({ prefix: "mosquitto_" });
  const port = freePort();
  const conf = `${dir}/mosquitto.conf`;
  await Deno.writeTextFile(
    conf,
    `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${extraConfig}`,
  );
  const child = new Deno.Command(bin, { args: ["-c", conf], stdout: "null", stderr: "null" })
    .spawn();
  const status = child.status;
  let exited = false;
  status.then(() => (exited = true));
  try {
    await waitFor(
      async () => {
        if (exited) throw new Error("mosquitto exited at start");
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      },
      `mosquitto on port ${port}`,
      10_000,
    );
  } catch (e) {
    if (!exited) child.kill("SIGKILL");
    await status;
    throw e;
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      if (!exited) Deno.kill(child.pid, "SIGTERM");
      await status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}
