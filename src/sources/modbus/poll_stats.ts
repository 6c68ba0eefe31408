/**
 * Figures of one poll group's schedule for the status detail: cycle times
 * (p50, p99, max over the last `POLL_STATS_WINDOW` cycles), polls that started
 * late, and grid ticks missed because a cycle (or the shared connection) ran
 * over.
 */

/** Cycles the percentiles cover. */
export const POLL_STATS_WINDOW = 600;

/** A poll started later than this share of its interval after its tick counts as late. */
export const LATE_SHARE = 0.1;

/** The figures of a group, as the status detail shows them. */
export interface PollFigures {
  polls: number;
  late: number;
  missed: number;
  cycle_ms_p50: number | null;
  cycle_ms_p99: number | null;
  cycle_ms_max: number | null;
  last_cycle_ms: number | null;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** Counts and cycle times of one group's polls. */
export class PollStats {
  polls = 0;
  late = 0;
  missed = 0;
  #cycles: number[] = [];
  #next = 0;
  #max = 0;
  #last: number | null = null;

  /** Records a poll that started `delayMs` after its tick and took `cycleMs`. */
  record(delayMs: number, cycleMs: number, intervalMs: number): void {
    this.polls++;
    if (delayMs > intervalMs * LATE_SHARE) this.late++;
    if (this.#cycles.length < POLL_STATS_WINDOW) this.#cycles.push(cycleMs);
    else this.#cycles[this.#next] = cycleMs;
    this.#next = (this.#next + 1) % POLL_STATS_WINDOW;
    this.#max = Math.max(this.#max, cycleMs);
    this.#last = cycleMs;
  }

  /** Records grid ticks skipped because the previous poll ended after them. */
  skipped(ticks: number): void {
    if (ticks > 0) this.missed += ticks;
  }

  /** The figures: percentiles over the window, max since the start. */
  figures(): PollFigures {
    const sorted = [...this.#cycles].sort((a, b) => a - b);
    const at = (q: number) =>
      sorted.length === 0
        ? null
        : round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
    return {
      polls: this.polls,
      late: this.late,
      missed: this.missed,
      cycle_ms_p50: at(0.5),
      cycle_ms_p99: at(0.99),
      cycle_ms_max: this.polls === 0 ? null : round(this.#max),
      last_cycle_ms: this.#last === null ? null : round(this.#last),
    };
  }
}
