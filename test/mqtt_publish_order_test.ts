/**
 * Messages are handled in the order they came, whichever path they take (our
 * reader or mqtt.js), with the chunk boundaries that make it hard: several
 * packets for mqtt.js in one chunk before one for the reader; queued messages
 * in the CONNACK's chunk; a message that waits for credit in mqtt.js while
 * more arrive. A real broker does not cut its byte stream where a test needs
 * it, so the "broker" here is a stream the test writes bytes into, under a
 * real mqtt.js client with our reader installed.
 */
import mqtt from "mqtt";
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { assertEquals } from "./assert.ts";
import { waitFor } from "./helpers.ts";
import { installPublishReader } from "../src/sources/mqtt/publish_reader.ts";

const CONNACK = [0x20, 2, 0, 0];
const CONNACK_SESSION = [0x20, 2, 1, 0];

/** An MQTT 3.1.1 PUBLISH on topic "t" with a one-byte payload `n`. */
function publish(n: number, qos: 1 | 2, id: number): number[] {
  const body = [0, 1, 0x74, id >> 8, id & 0xff, 0x30 + n];
  return [0x30 | (qos << 1), body.length, ...body];
}

/** A client on a test stream; `credit` gates both paths as the source's credit does. */
function setUp() {
  const order: number[] = [];
  let socket!: Duplex;
  let credit = true;
  const waiters: Array<() => void> = [];
  const client = new mqtt.MqttClient(() => {
    socket = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
    return socket as never;
  }, { protocolVersion: 4, reconnectPeriod: 0, manualConnect: true, clientId: "order" });
  const payloadNumber = (p: Uint8Array) => p[0] - 0x30;
  installPublishReader(client, {
    route: () => credit ? "take" : "wait",
    whenMayTake: () => credit ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)),
    take: (p) => void order.push(payloadNumber(p.payload)),
  });
  client.options.customHandleAcks = ((
    _topic: string,
    payload: Uint8Array,
    _packet: unknown,
    done: (e: unknown, code: number) => void,
  ) => {
    const handle = () => {
      order.push(payloadNumber(payload));
      done(null, 0);
    };
    if (credit) handle();
    else waiters.push(handle);
  }) as never;
  client.connect();
  return {
    order,
    client,
    send: (...packets: number[][]) => socket.push(Buffer.from(packets.flat())),
    setCredit(on: boolean) {
      credit = on;
      if (on) { for (const w of waiters.splice(0)) w(); }
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 20));

/** Runs `steps` on a new client and returns the order the three messages were handled in. */
async function handlingOrder(steps: (t: ReturnType<typeof setUp>) => Promise<void>) {
  const t = setUp();
  try {
    await steps(t);
    await waitFor(() => t.order.length === 3, "three messages");
    return t.order;
  } finally {
    t.client.end(true);
  }
}

/** CONNACK (no session) handled: the client is connected. */
async function connect(t: ReturnType<typeof setUp>) {
  t.send(CONNACK);
  await waitFor(() => t.client.connected, "connected");
}

Deno.test("mqtt reader order: two QoS 2 messages for mqtt.js, then a QoS 1 for the reader, in one chunk", async () => {
  const order = await handlingOrder(async (t) => {
    await connect(t);
    t.send(publish(1, 2, 1), publish(2, 2, 2), publish(3, 1, 3));
  });
  assertEquals(order, [1, 2, 3]);
});

Deno.test("mqtt reader order: queued messages in the CONNACK's chunk, then more, while credit is short", async () => {
  const order = await handlingOrder(async (t) => {
    t.setCredit(false);
    t.send(CONNACK_SESSION, publish(1, 1, 1), publish(2, 1, 2));
    await tick();
    t.send(publish(3, 1, 3));
    await tick();
    t.setCredit(true);
  });
  assertEquals(order, [1, 2, 3]);
});

Deno.test("mqtt reader order: a QoS 2 message waits for credit in mqtt.js while a QoS 2 and a QoS 1 arrive", async () => {
  const order = await handlingOrder(async (t) => {
    await connect(t);
    t.setCredit(false);
    t.send(publish(1, 2, 1));
    await tick();
    t.send(publish(2, 2, 2), publish(3, 1, 3));
    await tick();
    t.setCredit(true);
  });
  assertEquals(order, [1, 2, 3]);
});
