/** The back-off of a Modbus unit that does not answer (schedules shared by sources: `../schedule.ts`). */

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
