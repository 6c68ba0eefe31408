/**
 * Staying connected: how the OPC UA source notices a dead link and a silent
 * subscription, and how it notices that a lost server listens again. No
 * node-opcua here: the worker hands in the probe and the reactions.
 *
 * - The link is alive while something arrives from the server (data, a
 *   subscription keep-alive, a read answer). After `SILENCE_MS` of silence the
 *   source reads the server's clock; no answer within `PROBE_TIMEOUT_MS` (or
 *   an error) and the link is dead. That also catches a half-open TCP
 *   connection, where the peer vanished without FIN or RST.
 * - A subscription is silent when neither data nor a keep-alive came for
 *   `WATCHDOG_PERIODS` keep-alive periods while the session still answers.
 */

/** Silence on the link (ms) before the source asks the server whether it is still there. */
export const SILENCE_MS = 3000;
/** How long that question may take (ms) before the link counts as dead. */
export const PROBE_TIMEOUT_MS = 4000;
/** How often the watch looks (ms). */
export const TICK_MS = 1000;
/** Keep-alive period (ms) the source asks for its subscriptions. */
export const KEEPALIVE_TARGET_MS = 2000;
/** Keep-alive periods without anything before a subscription is rebuilt. */
export const WATCHDOG_PERIODS = 3;
/** node-opcua transport timeout (ms): a connect whose HEL/ACK does not finish in half of it fails. */
export const TRANSPORT_TIMEOUT_MS = 10_000;

/** Resolves with the outcome of `p`, or `timeout` after `ms`. */
export function settleWithin<T>(
  p: Promise<T>,
  ms: number,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown } | "timeout"> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const timer = new Promise<"timeout">((r) => (t = setTimeout(() => r("timeout"), ms)));
  const settled = p.then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
  );
  return Promise.race([settled, timer]).finally(() => clearTimeout(t));
}

/** Watches one connection: silence, then a probe, then `onDead` once. */
export class LinkWatch {
  #lastHeard = performance.now();
  #probing = false;
  #dead = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly probe: () => Promise<unknown>,
    private readonly onDead: (reason: string) => void,
    private readonly onTick: (watch: LinkWatch) => void = () => {},
  ) {}

  /** Something arrived from the server. */
  heard(): void {
    this.#lastHeard = performance.now();
  }

  /** Milliseconds since something arrived from the server. */
  get silentMs(): number {
    return performance.now() - this.#lastHeard;
  }

  /** True until the link was declared dead. */
  get alive(): boolean {
    return !this.#dead;
  }

  start(): void {
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Declares the link dead (once) and stops watching. */
  dead(reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.stop();
    this.onDead(reason);
  }

  async #tick(): Promise<void> {
    if (this.#dead) return;
    this.onTick(this);
    if (this.#probing || this.silentMs < SILENCE_MS) return;
    this.#probing = true;
    const silent = Math.round(this.silentMs / 1000);
    const r = await settleWithin(this.probe(), PROBE_TIMEOUT_MS);
    this.#probing = false;
    if (r !== "timeout" && r.ok) return this.heard();
    const why = r === "timeout"
      ? `no answer from the server for ${silent + PROBE_TIMEOUT_MS / 1000} s ` +
        "(network down or server gone without closing the connection)"
      : `the server stopped answering: ${r.error instanceof Error ? r.error.message : r.error}`;
    this.dead(`${why}; reconnecting (if this persists, check the network path and the server)`);
  }
}

/** Host and port of an `opc.tcp://host[:port]/...` endpoint (port 4840 when absent). */
export function hostPortOf(endpoint: string): { hostname: string; port: number } {
  const m = /^opc\.tcp:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?/.exec(endpoint);
  if (!m) throw new Error(`not an opc.tcp endpoint: ${endpoint}`);
  return { hostname: m[1].replace(/^\[|\]$/g, ""), port: m[2] ? Number(m[2]) : 4840 };
}

/**
 * An OPC UA Hello (OPC 10000-6, 7.1.2.3) for `endpoint`: "HELF", size,
 * protocol version 0, 64 KiB buffers, no message or chunk limit, the URL.
 */
export function helloMessage(endpoint: string): Uint8Array {
  const url = new TextEncoder().encode(endpoint);
  const msg = new Uint8Array(32 + url.length);
  const view = new DataView(msg.buffer);
  msg.set(new TextEncoder().encode("HELF"), 0);
  view.setUint32(4, msg.length, true);
  view.setUint32(8, 0, true);
  view.setUint32(12, 65_536, true);
  view.setUint32(16, 65_536, true);
  view.setUint32(20, 0, true);
  view.setUint32(24, 0, true);
  view.setInt32(28, url.length, true);
  msg.set(url, 32);
  return msg;
}

/** Says Hello and reads the first bytes of the answer; true for an Acknowledge. */
async function acknowledges(conn: Deno.Conn, endpoint: string): Promise<boolean> {
  await conn.write(helloMessage(endpoint));
  const head = new Uint8Array(3);
  let off = 0;
  while (off < head.length) {
    const n = await conn.read(head.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return new TextDecoder().decode(head) === "ACK";
}

/**
 * True when an OPC UA server answers a Hello at the endpoint within `ms`
 * (the connection is closed right after). A relay or proxy that accepts
 * connections while the server behind it is gone gives false.
 */
export async function serverAnswers(endpoint: string, ms = 1000): Promise<boolean> {
  let conn: Deno.Conn | undefined;
  let over = false;
  const close = () => {
    try {
      conn?.close();
    } catch { /* already closed */ }
  };
  const attempt = (async () => {
    conn = await Deno.connect({ ...hostPortOf(endpoint), transport: "tcp" });
    if (over) return false;
    return await acknowledges(conn, endpoint);
  })();
  const r = await settleWithin(attempt, ms);
  over = true;
  close();
  if (r === "timeout") attempt.then(close, () => {});
  return r !== "timeout" && r.ok && r.value;
}
