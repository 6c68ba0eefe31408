/** Poll schedule and reconnect backoff of the Modbus source. */

/** Reconnect delays: 500 ms doubling per failed attempt, capped at 30 s, with ±20 % jitter. */
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 30_000;

/** Delay before reconnect attempt `attempt` (0 = first retry); `random` is in [0, 1). */
export function backoffMs(attempt: number, random: number = Math.random()): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  const jittered = base * (0.8 + 0.4 * random);
  return Math.round(Math.min(BACKOFF_MAX_MS, jittered));
}

/**
 * The next poll time on the fixed grid `start + k * interval` strictly after
 * `now`: polls never drift, and a cycle that overran skips the ticks it missed.
 */
export function nextTick(start: number, interval: number, now: number): number {
  const k = Math.floor((now - start) / interval) + 1;
  return start + k * interval;
}

/** Consecutive timeouts after which a unit is polled at its back-off rate. */
export const UNIT_FAILURES_BEFORE_BACKOFF = 3;
/** Longest pause between two polls of a unit that does not answer. */
export const UNIT_BACKOFF_MAX_MS = 60_000;

/**
 * Pause before the next poll of a unit after `failures` consecutive timeouts:
 * none below `UNIT_FAILURES_BEFORE_BACKOFF`, then twice the poll interval,
 * doubling per further timeout, capped at `UNIT_BACKOFF_MAX_MS`.
 */
export function unitBackoffMs(failures: number, intervalMs: number): number {
  if (failures < UNIT_FAILURES_BEFORE_BACKOFF) return 0;
  const steps = Math.min(failures - UNIT_FAILURES_BEFORE_BACKOFF + 1, 30);
  return Math.min(UNIT_BACKOFF_MAX_MS, intervalMs * 2 ** steps);
}
