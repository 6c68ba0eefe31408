/**
 * Schedules the source Workers share: reconnect backoff with jitter and the
 * non-drifting poll grid.
 */

/** Reconnect delays: from `RECONNECT_MIN_MS` doubling per failed attempt, capped at 30 s. */
export const RECONNECT_MIN_MS = 1000;
export const RECONNECT_MAX_MS = 30_000;

/**
 * Delay before reconnect attempt `attempt` (0 = first retry): `minMs` doubling
 * per attempt, ±20 % jitter (`random` in [0, 1)), never over `RECONNECT_MAX_MS`.
 */
export function reconnectDelayMs(
  attempt: number,
  random: number = Math.random(),
  minMs = RECONNECT_MIN_MS,
): number {
  const base = Math.min(RECONNECT_MAX_MS, minMs * 2 ** Math.min(attempt, 16));
  return Math.round(Math.min(RECONNECT_MAX_MS, base * (0.8 + 0.4 * random)));
}

/**
 * The next poll time on the fixed grid `start + k * interval` strictly after
 * `now`: polls never drift, and a cycle that overran skips the ticks it missed.
 */
export function nextTick(start: number, interval: number, now: number): number {
  return start + (Math.floor((now - start) / interval) + 1) * interval;
}
