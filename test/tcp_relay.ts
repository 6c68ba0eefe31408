/**
 * A TCP relay on 127.0.0.1 for tests of dead links: forwards bytes between a
 * client and a target, and can freeze (stop forwarding without closing, like
 * a peer that vanished without FIN or RST) and thaw (drop the frozen
 * connections, forward new ones again).
 */

/** A running relay. */
export interface TcpRelay {
  port: number;
  /** Stops forwarding on every connection, open or new; nothing is closed. */
  freeze(): void;
  /** Closes the connections opened before, forwards again. */
  thaw(): void;
  /** Connections accepted so far. */
  accepted: number;
  close(): Promise<void>;
}

interface Pair {
  a: Deno.Conn;
  b?: Deno.Conn;
  closed: boolean;
}

/** Starts a relay to `targetPort` on 127.0.0.1. */
export function startTcpRelay(targetPort: number): TcpRelay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const pairs = new Set<Pair>();
  let gate: Promise<void> | undefined;
  let open = () => {};
  const tasks: Promise<void>[] = [];
  const close = (p: Pair) => {
    if (p.closed) return;
    p.closed = true;
    for (const c of [p.a, p.b]) {
      try {
        c?.close();
      } catch { /* already closed */ }
    }
    pairs.delete(p);
  };
  const pump = async (p: Pair, from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (!p.closed) {
        const n = await from.read(buf);
        if (n === null) break;
        while (gate && !p.closed) await gate;
        if (p.closed) break;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* closed under us */ }
    close(p);
  };
  const relay: TcpRelay = {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: 0,
    freeze() {
      gate ??= new Promise<void>((r) => (open = r));
    },
    thaw() {
      for (const p of [...pairs]) close(p);
      gate = undefined;
      open();
    },
    async close() {
      listener.close();
      for (const p of [...pairs]) close(p);
      gate = undefined;
      open();
      await Promise.allSettled(tasks);
    },
  };
  const serve = async () => {
    for await (const a of listener) {
      relay.accepted++;
      const p: Pair = { a, closed: false };
      pairs.add(p);
      tasks.push((async () => {
        try {
          p.b = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        } catch {
          return close(p);
        }
        if (p.closed) return close(p);
        await Promise.all([pump(p, p.a, p.b), pump(p, p.b, p.a)]);
      })());
    }
  };
  tasks.push(serve().catch(() => {}));
  return relay;
}
