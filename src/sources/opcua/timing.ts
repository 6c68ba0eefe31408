/** Schedules of the OPC UA source: the non-drifting poll clock and reconnect backoff. */

/** The first tick of `start + k * interval` strictly after `now` (missed ticks are skipped). */
export function nextPollAt(start: number, interval: number, now: number): number {
  return start + (Math.floor((now - start) / interval) + 1) * interval;
}

/** Delay before connect attempt `attempt` (0-based): 1 s doubling to 30 s, ±20 % jitter. */
export function backoffMs(attempt: number, random = Math.random): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
  return Math.round(base * (0.8 + 0.4 * random()));
}
