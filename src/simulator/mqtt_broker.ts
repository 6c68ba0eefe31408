/**
 * The simulator's embedded MQTT broker: aedes 1.x (MQTT 3.1.1 only; a client
 * asking for MQTT 5 is refused with "unacceptable protocol version") on plain
 * TCP, with aedes' in-memory persistence (QoS 1/2, retained messages, Wills
 * and persistent sessions live as long as the process).
 */
import net from "node:net";
import { Aedes } from "aedes";

/** A running broker. */
export interface SimulatorBroker {
  host: string;
  port: number;
  /** `mqtt://host:port`. */
  endpoint: string;
  /** Number of connected clients. */
  clients(): number;
  /** Closes every client connection and the listener. */
  stop(): Promise<void>;
}

/** Starts the broker on `host:port` (0 = a free port). */
export async function startBroker(opts: { host: string; port: number }): Promise<SimulatorBroker> {
  const aedes = await Aedes.createBroker({ heartbeatInterval: 60_000 });
  const server = net.createServer(aedes.handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port, opts.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    await new Promise<void>((r) => aedes.close(() => r()));
    throw new Error(
      `the MQTT broker cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}` +
        " (choose another --mqtt-port, or 0 for a free port)",
    );
  }
  const port = (server.address() as net.AddressInfo).port;
  let stopped: Promise<void> | undefined;
  return {
    host: opts.host,
    port,
    endpoint: `mqtt://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${port}`,
    clients: () => aedes.connectedClients,
    stop() {
      stopped ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        await new Promise<void>((r) => aedes.close(() => r()));
        await closed;
      })();
      return stopped;
    },
  };
}
