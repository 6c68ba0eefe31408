/**
 * Our own reader for the hot path: PUBLISH packets of QoS 0 and 1 are taken
 * off the broker's byte stream before mqtt.js sees them, and handed to the
 * source directly; every other packet (CONNACK, SUBACK, PINGRESP, QoS 2
 * PUBLISH and its PUBREL, MQTT 5 PUBLISH with properties such as a topic
 * alias, anything malformed or over 64 KiB) goes on to mqtt.js byte for byte,
 * in order.
 *
 * Why: mqtt.js parses each packet into an object through a buffer list, then
 * schedules its handling on a nextTick and passes it through several
 * callbacks; that was most of the source Worker's cost per message (the MQTT
 * benchmark). Connecting, subscribing, keep-alive, TLS, WebSocket, QoS 2
 * and reconnects stay with mqtt.js. The packet layout is MQTT 3.1.1 §3.3
 * and MQTT 5 §3.3: fixed header (type 3, DUP, QoS, RETAIN; remaining length
 * as a variable byte integer), topic name (2-byte length, UTF-8), packet id
 * (QoS > 0), MQTT 5 property length (variable byte integer), payload.
 *
 * The reader takes a PUBLISH only while the client is connected (mqtt.js has
 * handled CONNACK; before, PUBLISH packets go to mqtt.js), once mqtt.js has
 * handled everything passed to it before (so messages are handled in the
 * order they came, whichever path they take), and while the source may take
 * one; otherwise it stops in the middle of the bytes it has and goes on from
 * there later, which stops the socket being read (backpressure), as mqtt.js
 * does while a handler waits.
 */
import { Buffer } from "node:buffer";
import { Writable } from "node:stream";
import type { MqttClient } from "mqtt";

/** A PUBLISH the reader took: QoS 0 or 1, no MQTT 5 properties. */
export interface TakenPublish {
  cmd: "publish";
  topic: string;
  /** A view into the received bytes (not copied). */
  payload: Uint8Array;
  qos: 0 | 1;
  retain: boolean;
  dup: boolean;
  messageId?: number;
}

/** Largest packet (fixed header included) the reader takes; bigger ones go to mqtt.js. */
export const MAX_TAKEN_PACKET = 64 * 1024;

// A leading U+FEFF is part of the topic (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4), as mqtt.js reads it.
const topicDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Splits bytes from the broker into PUBLISH packets to take and bytes to
 * forward to mqtt.js; keeps an incomplete packet for the next chunk.
 */
export class PublishSplitter {
  #buf: Uint8Array = new Uint8Array(0);
  #off = 0;
  /** Bytes still to forward of a packet that goes to mqtt.js. */
  #passing = 0;

  /** `v5`: the connection speaks MQTT 5 (PUBLISH carries a property length). */
  constructor(readonly v5: boolean) {}

  /** Bytes received and not yet taken or forwarded. */
  get pending(): number {
    return this.#buf.length - this.#off;
  }

  /** Adds received bytes after what is pending. */
  feed(chunk: Uint8Array): void {
    if (this.#off >= this.#buf.length) {
      this.#buf = chunk;
    } else {
      const rest = this.#buf.subarray(this.#off);
      const joined = new Uint8Array(rest.length + chunk.length);
      joined.set(rest);
      joined.set(chunk, rest.length);
      this.#buf = joined;
    }
    this.#off = 0;
  }

  /**
   * Goes through the pending bytes: `forward` gets the bytes of packets for
   * mqtt.js (in order, possibly a packet in several pieces), `take` each
   * PUBLISH the reader may take, as `route()` says for each: "take", "pass"
   * (to mqtt.js) or "wait". Returns false when it stopped on "wait" (bytes
   * remain), true when everything complete was handled.
   */
  run(
    route: () => "take" | "pass" | "wait",
    take: (p: TakenPublish) => void,
    forward: (bytes: Uint8Array) => void,
  ): boolean {
    const buf = this.#buf;
    const end = buf.length;
    let off = this.#off;
    let passFrom = -1; // start of bytes to forward in one piece
    const flushPass = (to: number) => {
      if (passFrom >= 0 && to > passFrom) forward(buf.subarray(passFrom, to));
      passFrom = -1;
    };
    let stopped = false;
    while (off < end) {
      if (this.#passing > 0) {
        const n = Math.min(this.#passing, end - off);
        if (passFrom < 0) passFrom = off;
        off += n;
        this.#passing -= n;
        continue;
      }
      const head = readHeader(buf, off, end);
      if (!head) break; // header incomplete
      const total = head.headerLength + head.remaining;
      const type = buf[off] >> 4;
      const qos = (buf[off] >> 1) & 3;
      if (type !== 3 || qos > 1 || total > MAX_TAKEN_PACKET) {
        this.#passing = total;
        continue;
      }
      if (end - off < total) break; // wait for the whole PUBLISH
      const p = parsePublish(buf, off, head.headerLength, total, qos as 0 | 1, this.v5);
      if (!p) {
        this.#passing = total;
        continue;
      }
      // What goes to mqtt.js before this PUBLISH goes first, so that `route` sees it.
      flushPass(off);
      const way = route();
      if (way === "pass") {
        this.#passing = total;
        continue;
      }
      if (way === "wait") {
        stopped = true;
        break;
      }
      take(p);
      off += total;
    }
    flushPass(off);
    this.#off = off;
    return !stopped;
  }
}

/** Fixed header length and remaining length at `off`, or undefined when incomplete. */
function readHeader(
  buf: Uint8Array,
  off: number,
  end: number,
): { headerLength: number; remaining: number } | undefined {
  let remaining = 0;
  let mult = 1;
  for (let i = 1; i <= 4; i++) {
    if (off + i >= end) return undefined;
    const b = buf[off + i];
    remaining += (b & 0x7f) * mult;
    if ((b & 0x80) === 0) return { headerLength: 1 + i, remaining };
    mult *= 128;
  }
  // A fifth length byte is malformed: let mqtt.js see the bytes and fail the connection.
  return { headerLength: 5, remaining: 0 };
}

/** A PUBLISH without properties at `off`, or undefined when it has properties or is not valid. */
function parsePublish(
  buf: Uint8Array,
  off: number,
  headerLength: number,
  total: number,
  qos: 0 | 1,
  v5: boolean,
): TakenPublish | undefined {
  const end = off + total;
  let p = off + headerLength;
  if (p + 2 > end) return undefined;
  const topicLength = (buf[p] << 8) | buf[p + 1];
  p += 2;
  if (topicLength === 0 || p + topicLength > end) return undefined;
  let topic: string;
  try {
    topic = topicDecoder.decode(buf.subarray(p, p + topicLength));
  } catch {
    return undefined; // not UTF-8: mqtt.js decides
  }
  p += topicLength;
  let messageId: number | undefined;
  if (qos === 1) {
    if (p + 2 > end) return undefined;
    messageId = (buf[p] << 8) | buf[p + 1];
    p += 2;
    if (messageId === 0) return undefined;
  }
  if (v5) {
    if (p + 1 > end || buf[p] !== 0) return undefined; // properties: mqtt.js handles them
    p += 1;
  }
  const flags = buf[off];
  return {
    cmd: "publish",
    topic,
    payload: buf.subarray(p, end),
    qos,
    retain: (flags & 1) === 1,
    dup: (flags & 8) === 8,
    messageId,
  };
}

/** What the reader asks of the source for each PUBLISH it could take. */
export interface PublishTaker {
  /** "take" now, "pass" to mqtt.js, or "wait" until `whenMayTake`. */
  route(): "take" | "pass" | "wait";
  /** Resolves when `route` may say "take" again. */
  whenMayTake(): Promise<void>;
  /**
   * Handles one message taken off `connection`; a QoS 1 message is
   * acknowledged on that connection only.
   */
  take(p: TakenPublish, connection: unknown): void;
}

/**
 * Puts the reader between every socket mqtt.js opens (on connect and each
 * reconnect) and mqtt.js' packet parser. Call before the client connects
 * (`manualConnect`).
 */
export function installPublishReader(client: MqttClient, taker: PublishTaker): void {
  const c = client as unknown as {
    streamBuilder: (c: MqttClient) => NodeJS.ReadableStream;
    options: { protocolVersion?: number };
  };
  const build = c.streamBuilder;
  c.streamBuilder = (cl) => {
    const stream = build(cl);
    const pipe = stream.pipe.bind(stream);
    // mqtt.js pipes the socket into its parser once per connection.
    stream.pipe = ((parser: NodeJS.WritableStream) => {
      const v5 = c.options.protocolVersion === 5;
      pipe(readerSink(client, stream, v5, taker, parser) as unknown as NodeJS.WritableStream);
      return parser;
    }) as typeof stream.pipe;
    return stream;
  };
}

/**
 * What the socket `connection` is piped into: takes PUBLISH packets and
 * writes everything else to mqtt.js' `parser`. mqtt.js calls a write back
 * once it has handled every packet in it, so a message is taken only when
 * nothing passed before it is still waiting in mqtt.js (messages are handled
 * in the order they came), and the next bytes are read only then (mqtt.js'
 * backpressure, e.g. while it waits for credit, holds the socket too).
 */
function readerSink(
  client: MqttClient,
  connection: unknown,
  v5: boolean,
  taker: PublishTaker,
  parser: NodeJS.WritableStream,
): Writable {
  const splitter = new PublishSplitter(v5);
  let inMqttjs = 0; // writes to mqtt.js not handled yet
  let handled = () => {};
  const forward = (bytes: Uint8Array) => {
    inMqttjs++;
    parser.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), () => {
      if (--inMqttjs === 0) handled();
    });
  };
  const mqttjsDone = () =>
    inMqttjs === 0 ? Promise.resolve() : new Promise<void>((r) => handled = r);
  const current = () =>
    client.connected && (client as unknown as { stream: unknown }).stream === connection;
  // Before CONNACK is handled, or once the client moved to a new connection, mqtt.js decides.
  const route = () => !current() ? "pass" : inMqttjs > 0 ? "wait" : taker.route();
  const take = (p: TakenPublish) => taker.take(p, connection);
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      splitter.feed(chunk);
      const go = (): Promise<void> => {
        if (splitter.run(route, take, forward)) return mqttjsDone().then(() => done());
        return (inMqttjs > 0 ? mqttjsDone() : taker.whenMayTake()).then(go);
      };
      // A failure (a bug) fails this connection's stream rather than leaving it unread.
      Promise.resolve().then(go).catch(done);
    },
  });
}
