/**
 * The MQTT benchmark's bare subscriber, in its own process like the agent
 * (not in the publisher's thread): MQTT 5, QoS 1, receive window 1000 (as the
 * agent's source), acknowledges at once and does nothing else.
 *
 * `deno run --allow-all scripts/bench_mqtt_subscriber.ts <url> <filter> [client id]`
 * prints `{"received":N,"at":ms}` (`at`: Date.now() of the latest message)
 * every 20 ms on stdout from the start and
 * `{"event":"ready"}` once subscribed, until SIGTERM. With a client id the session is
 * persistent (as the agent's), so messages published while it was stopped
 * wait in Mosquitto for its next start.
 */
import mqtt from "mqtt";
import { exitWithParent } from "../src/self.ts";

exitWithParent(); // a benchmark killed with SIGKILL leaves no subscriber behind

const [url, filter, clientId] = Deno.args;
const sub = mqtt.connect(url, {
  clientId: clientId ?? `bench_limit_sub_${Deno.pid}`,
  clean: clientId === undefined,
  reconnectPeriod: 0,
  protocolVersion: 5,
  properties: { receiveMaximum: 1000, ...(clientId ? { sessionExpiryInterval: 3600 } : {}) },
});
let received = 0;
let at = 0; // Date.now() of the latest message
sub.on("message", () => { // before CONNACK: queued messages follow it at once
  received++;
  at = Date.now();
});
const timer = setInterval(() => console.log(JSON.stringify({ received, at })), 20);
await new Promise((r) => sub.once("connect", r));
await sub.subscribeAsync(filter, { qos: 1 });
console.log(JSON.stringify({ event: "ready" }));
Deno.addSignalListener("SIGTERM", () => {
  clearInterval(timer);
  sub.end(true);
  Deno.exit(0);
});
