/**
 * Per-unit state of the Modbus source: each unit id's timeout, and its
 * back-off after repeated timeouts, so one dead unit never stalls the others.
 */
import type { ReadRequest } from "./plan.ts";
import { unitBackoffMs } from "./timing.ts";

/** The keys of a source entry the unit settings need. */
export interface ModbusUnitsConfig {
  timeout_ms: number;
  polling_interval_ms: number;
  slaves?: Array<{ unit_id: number; timeout_ms?: number }>;
}

/** One unit id: its reads in plan order, timeout and health. */
export interface UnitState {
  unitId: number;
  timeoutMs: number;
  reads: ReadRequest[];
  /** Consecutive polls that timed out. */
  failures: number;
  /** performance.now() before which the unit is skipped (back-off). */
  resumeAt: number;
}

/** Groups the plan's reads per unit id (in plan order) with each unit's timeout. */
export function unitsOf(reads: readonly ReadRequest[], cfg: ModbusUnitsConfig): UnitState[] {
  const timeouts = new Map((cfg.slaves ?? []).map((s) => [s.unit_id, s.timeout_ms]));
  const units = new Map<number, UnitState>();
  for (const req of reads) {
    let u = units.get(req.unitId);
    if (!u) {
      const timeoutMs = timeouts.get(req.unitId) ?? cfg.timeout_ms;
      u = { unitId: req.unitId, timeoutMs, reads: [], failures: 0, resumeAt: 0 };
      units.set(req.unitId, u);
    }
    u.reads.push(req);
  }
  return [...units.values()];
}

/** True when the unit is to be polled at `now` (not in back-off). */
export function isDue(unit: UnitState, now: number): boolean {
  return now >= unit.resumeAt;
}

/** Records a poll in which the unit timed out; returns the back-off started (0: none). */
export function unitTimedOut(unit: UnitState, now: number, intervalMs: number): number {
  unit.failures++;
  const pause = unitBackoffMs(unit.failures, intervalMs);
  unit.resumeAt = now + pause;
  return pause;
}

/** Records a poll in which the unit answered; returns true when it had been failing. */
export function unitAnswered(unit: UnitState): boolean {
  const was = unit.failures > 0;
  unit.failures = 0;
  unit.resumeAt = 0;
  return was;
}
