/** Local TCP ports for the simulator's servers. */

/** True when `port` on `hostname` can be bound now. */
export function portFree(hostname: string, port: number): boolean {
  try {
    Deno.listen({ hostname, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** A free TCP port on `hostname` (bound, then released). */
export function freePort(hostname: string): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
