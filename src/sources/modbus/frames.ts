/**
 * Malformed response frames of a device (wrong length or byte count, CRC,
 * unexpected unit id or function code, an MBAP length that does not match the
 * frame): counted for the status detail and logged once per burst, not per
 * frame.
 */

/** A burst ends after this long without a malformed frame being logged. */
export const FRAME_LOG_QUIET_MS = 60_000;

/** The counter and the burst-limited log of malformed frames. */
export class MalformedFrames {
  /** Malformed frames since the source started. */
  count = 0;
  #unlogged = 0;
  #loggedAt = -Infinity;

  constructor(
    private readonly log: (fields: Record<string, unknown>) => void,
    private readonly quietMs = FRAME_LOG_QUIET_MS,
  ) {}

  /**
   * Counts one frame at `now` (ms); logs it with `fields` when it is the first
   * of a burst, i.e. no frame was logged in the last `quietMs` (the log then
   * also gives the frames counted silently since the previous log).
   */
  seen(now: number, fields: Record<string, unknown>): void {
    this.count++;
    this.#unlogged++;
    if (now - this.#loggedAt < this.quietMs) return;
    this.log({ ...fields, frames_since_last_log: this.#unlogged, malformed_frames: this.count });
    this.#loggedAt = now;
    this.#unlogged = 0;
  }
}
