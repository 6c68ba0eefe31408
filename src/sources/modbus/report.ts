/**
 * Report by exception: a tag's reading is emitted only when its value or its
 * quality code changed since the tag's last emitted reading, or when the
 * heartbeat is due (every tag at least every `heartbeat_s`). Values compare
 * exactly (ints, bools, strings, floats; NaN equals NaN), or for numbers with
 * a `deadband` when they moved more than the deadband from the last emitted one.
 */
import type { Reading } from "../worker_protocol.ts";
import type { ModbusTag } from "./plan.ts";

/** How a poll group reports. */
export interface ReportPolicy {
  /** Off: every reading is emitted. */
  byException: boolean;
  /** Longest time between two emitted readings of a tag (0: no heartbeat). */
  heartbeatMs: number;
}

interface LastEmitted {
  value: unknown;
  code: number;
  at: number;
}

function sameValue(a: unknown, b: unknown, deadband: number | undefined): boolean {
  if (typeof a === "number" && typeof b === "number") {
    if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
    return deadband === undefined ? a === b : Math.abs(a - b) <= deadband;
  }
  if (typeof a === "bigint" && typeof b === "bigint" && deadband !== undefined) {
    return Math.abs(Number(a - b)) <= deadband;
  }
  return a === b;
}

/** The last emitted reading per tag, and the decision to emit the next one. */
export class ExceptionReport {
  #last = new Map<ModbusTag, LastEmitted>();

  constructor(readonly policy: ReportPolicy) {}

  /**
   * True when `reading` of `tag` is to be emitted at `now` (ms on the poll grid);
   * records it as the tag's last emitted reading then.
   */
  pass(tag: ModbusTag, reading: Reading, now: number): boolean {
    if (!this.policy.byException) return true;
    const last = this.#last.get(tag);
    const due = last === undefined ||
      last.code !== reading.quality_code ||
      (this.policy.heartbeatMs > 0 && now - last.at >= this.policy.heartbeatMs) ||
      !sameValue(last.value, reading.value, tag.deadband);
    if (due) this.#last.set(tag, { value: reading.value, code: reading.quality_code, at: now });
    return due;
  }
}
