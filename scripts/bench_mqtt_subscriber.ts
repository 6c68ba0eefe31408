/**
 * The MQTT benchmark's bare subscriber, in its own process so that it can be
 * placed on a core of its own like the agent: MQTT 5, QoS 1, receive window
 * 1000 (as the agent's source), acknowledges at once and does nothing else.
 *
 * `deno run --allow-all scripts/bench_mqtt_subscriber.ts <url> <filter>`
 * prints `{"event":"ready"}` once subscribed, then `{"received":N}` every
 * 100 ms on stdout, until SIGTERM.
 */
import mqtt from "mqtt";

const [url, filter] = Deno.args;
const sub = await mqtt.connectAsync(url, {
  clientId: `bench_limit_sub_${Deno.pid}`,
  reconnectPeriod: 0,
  protocolVersion: 5,
  properties: { receiveMaximum: 1000 },
});
let received = 0;
sub.on("message", () => received++);
await sub.subscribeAsync(filter, { qos: 1 });
console.log(JSON.stringify({ event: "ready" }));
const timer = setInterval(() => console.log(JSON.stringify({ received })), 100);
Deno.addSignalListener("SIGTERM", () => {
  clearInterval(timer);
  sub.end(true);
  Deno.exit(0);
});
