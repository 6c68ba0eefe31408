/**
 * Poll groups: sets of reads with their own schedule and reporting. The
 * source's own group (`polling_interval_ms`) holds the tags without a
 * `poll_group`; each `poll_groups` entry with tags is another. Groups share
 * the units' health (timeouts, back-off) and the one connection.
 */
import type { ReadRequest } from "./plan.ts";
import { PollStats } from "./poll_stats.ts";
import { ExceptionReport } from "./report.ts";
import type { UnitState } from "./units.ts";

/** Heartbeat of report by exception when none is configured. */
export const DEFAULT_HEARTBEAT_S = 60;

/** Name of the source's own group in status details. */
export const DEFAULT_GROUP = "default";

/** The keys of a source entry the groups need. */
export interface ModbusGroupsConfig {
  polling_interval_ms: number;
  report_by_exception?: boolean;
  heartbeat_s?: number;
  poll_groups?: Array<{
    name: string;
    polling_interval_ms: number;
    report_by_exception?: boolean;
    heartbeat_s?: number;
  }>;
}

/** One unit's reads within a group, in plan order. */
export interface UnitTurn {
  unit: UnitState;
  reads: ReadRequest[];
}

/** A group as the Worker polls it. */
export interface PollGroup {
  /** `default` for the source's own schedule, else the poll group's name. */
  name: string;
  intervalMs: number;
  report: ExceptionReport;
  turns: UnitTurn[];
  reads: ReadRequest[];
  stats: PollStats;
}

/** Splits the plan into poll groups (only groups with tags), with shared unit states. */
export function pollGroupsOf(
  cfg: ModbusGroupsConfig,
  reads: readonly ReadRequest[],
  units: readonly UnitState[],
): PollGroup[] {
  const byId = new Map(units.map((u) => [u.unitId, u]));
  const settings = [
    { name: undefined as string | undefined, polling_interval_ms: cfg.polling_interval_ms },
    ...(cfg.poll_groups ?? []),
  ] as Array<{ name?: string; polling_interval_ms: number } & Partial<ModbusGroupsConfig>>;
  const groups: PollGroup[] = [];
  for (const s of settings) {
    const own = reads.filter((r) => r.group === s.name);
    if (own.length === 0) continue;
    const turns: UnitTurn[] = [];
    for (const req of own) {
      const last = turns.at(-1);
      if (last && last.unit.unitId === req.unitId) last.reads.push(req);
      else turns.push({ unit: byId.get(req.unitId)!, reads: [req] });
    }
    const heartbeatS = s.heartbeat_s ?? cfg.heartbeat_s ?? DEFAULT_HEARTBEAT_S;
    groups.push({
      name: s.name ?? DEFAULT_GROUP,
      intervalMs: s.polling_interval_ms,
      report: new ExceptionReport({
        byException: s.report_by_exception ?? cfg.report_by_exception ?? false,
        heartbeatMs: heartbeatS * 1000,
      }),
      turns,
      reads: own,
      stats: new PollStats(),
    });
  }
  return groups;
}
