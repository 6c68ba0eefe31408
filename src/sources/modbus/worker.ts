/**
 * Modbus source Worker (Modbus TCP, RTU frames over TCP, or RTU on a serial
 * line): connects with `modbus-serial` (`connectTCP`; RTU through our own port
 * in `rtu_port.ts`, see `client.ts`), polls the
 * optimized read plan on a fixed schedule that does not drift, and emits one
 * reading per tag per poll. Failed reads give bad readings for every tag they
 * serve (exception code, or the codes in `readings.ts`); a lost connection is
 * retried with backoff and jitter capped at 30 s. Each unit id has its own
 * timeout, and a unit that keeps timing out is polled at a back-off rate
 * (`units.ts`) while the others keep theirs.
 */
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { ModbusClient, openClient, rtuClient } from "./client.ts";
import { type ModbusTarget, modbusTarget, targetText } from "./endpoint.ts";
import type { Reading } from "../worker_protocol.ts";
import { MalformedFrames } from "./frames.ts";
import { type PollGroup, pollGroupsOf, type UnitTurn } from "./groups.ts";
import { planReads, type ReadRequest, tagsOf } from "./plan.ts";
import {
  errorCode,
  errorText,
  failedReadings,
  MODBUS_BAD_RESPONSE_CODE,
  MODBUS_DISCONNECTED_CODE,
  MODBUS_TIMEOUT_CODE,
  readingsOf,
} from "./readings.ts";
import type { ModbusSourceConfig } from "./schema.ts";
import { Session } from "./session.ts";
import { nextTick, reconnectDelayMs } from "../schedule.ts";
import { isDue, unitAnswered, unitsOf, type UnitState, unitTimedOut } from "./units.ts";

type Client = ModbusClient;

/** First reconnect delay: a PLC that dropped the connection is usually back at once. */
const MODBUS_RECONNECT_MIN_MS = 500;

/** What one request gave: values, a failure (`lost`: the connection is gone), or nothing (stopping). */
type Outcome =
  | { kind: "data"; data: ArrayLike<number | boolean> }
  | { kind: "error"; code: number; text: string; lost?: boolean }
  | { kind: "skipped" };

/** Sends one read of the plan; a reply with fewer values than asked for is a malformed frame. */
async function read(client: Client, req: ReadRequest): Promise<ArrayLike<number | boolean>> {
  client.setID(req.unitId);
  const data = await fetchValues(client, req);
  if (data.length < req.count) {
    throw new RangeError(`response carries ${data.length} values, ${req.count} were requested`);
  }
  return data;
}

/**
 * Bytes the Modbus TCP port holds that do not form a whole MBAP frame yet
 * (`modbus-serial` 8.0.25's receive buffer; 0 for other ports).
 */
function pendingBytes(client: Client): number {
  return portOf(client)?._clientRcvData?.length ?? 0;
}

/** Bytes the RTU port (`rtu_port.ts`) skipped so far as no answer (bad CRC, foreign frames); 0 for TCP. */
function skippedBytes(client: Client): number {
  return portOf(client)?.skippedBytes ?? 0;
}

function portOf(client: Client) {
  type Port = { _clientRcvData?: { length: number }; skippedBytes?: number };
  return (client as unknown as { _port?: Port })._port;
}

async function fetchValues(client: Client, req: ReadRequest) {
  switch (req.table) {
    case "holding":
      return (await client.readHoldingRegisters(req.address, req.count)).data;
    case "input":
      return (await client.readInputRegisters(req.address, req.count)).data;
    case "coil":
      return (await client.readCoils(req.address, req.count)).data;
    case "discrete":
      return (await client.readDiscreteInputs(req.address, req.count)).data;
  }
}

/** A driver that only reports why it cannot run (e.g. a transport not implemented yet). */
function failedDriver(kit: SourceKit, error: string): SourceDriver {
  return { start: () => kit.status("error", error), stop: () => {} };
}

function modbusDriver(cfg: ModbusSourceConfig, kit: SourceKit): SourceDriver {
  let target: ModbusTarget;
  try {
    target = modbusTarget(cfg.endpoint, cfg.serial);
  } catch (e) {
    return failedDriver(kit, errorText(e));
  }
  const where = targetText(target);
  const reads = planReads(tagsOf(cfg), cfg.max_gap);
  const units = unitsOf(reads, cfg);
  const groups = pollGroupsOf(cfg, reads, units);
  const frames = new MalformedFrames((fields) =>
    kit.log("warning", "modbus device sent malformed frames; their tags get quality 258", fields)
  );
  let session: Session | undefined;
  const detail = {
    tags: reads.reduce((n, r) => n + r.tags.length, 0),
    reads: reads.length,
    unit_ids: [...new Set(reads.map((r) => r.unitId))],
  };
  let stopped = false;
  let client: Client | undefined;
  let wake: () => void = () => {};
  let done: Promise<void> = Promise.resolve();

  /** Sleeps `ms` unless stop() wakes it first. */
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  function closeClient(): void {
    const c = client;
    client = undefined;
    if (c) {
      try {
        c.close(() => {});
      } catch { /* already closed */ }
    }
  }

  async function connect(): Promise<void> {
    const c = target.transport === "tcp" ? new ModbusClient() : rtuClient(target);
    client = c;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${cfg.timeout_ms} ms`)),
        cfg.timeout_ms,
      );
    });
    try {
      const opened = target.transport === "tcp"
        ? c.connectTCP(target.host, { port: target.port })
        : openClient(c);
      await Promise.race([opened, timeout]);
    } finally {
      clearTimeout(timer);
    }
    // After connecting: a timeout set before would also become the socket's idle timeout.
    c.setTimeout(cfg.timeout_ms);
  }

  /** Emits the readings of `req` that the group's reporting lets through. */
  function report(g: PollGroup, req: ReadRequest, list: Reading[], tick: number): void {
    for (let i = 0; i < list.length; i++) {
      if (g.report.pass(req.tags[i], list[i], tick)) kit.emit(list[i]);
    }
  }

  /** Bad readings for every read of `list` with `code`. */
  function failAll(
    g: PollGroup,
    list: readonly ReadRequest[],
    code: number,
    text: string,
    at: number,
    tick: number,
  ): void {
    for (const req of list) report(g, req, failedReadings(req, code, text, at), tick);
  }

  /** Closes the connection and opens a new one (after a malformed frame: resynchronizes the stream). */
  async function resync(): Promise<boolean> {
    closeClient();
    try {
      await connect();
      kit.counters.reconnects++;
      return true;
    } catch (e) {
      closeClient();
      kit.log("warning", "modbus reconnect after a malformed frame failed", {
        endpoint: where,
        error: errorText(e),
      });
      return false;
    }
  }

  /**
   * Sends one read on the shared connection. A malformed frame is counted and,
   * on Modbus TCP, the connection is reopened (the MBAP stream may be out of
   * step); a reply whose MBAP length never completes shows up as a timeout
   * with bytes left in the receive buffer and counts as malformed too.
   */
  function request(unit: UnitState, req: ReadRequest, s: Session): Promise<Outcome> {
    return s.exclusive(async (): Promise<Outcome> => {
      const c = client;
      if (stopped || s.over || !c) return { kind: "skipped" };
      const skipped = skippedBytes(c);
      try {
        c.setTimeout(unit.timeoutMs);
        return { kind: "data", data: await read(c, req) };
      } catch (e) {
        let code = c.isOpen ? errorCode(e) : MODBUS_DISCONNECTED_CODE;
        let text = errorText(e);
        if (code === MODBUS_TIMEOUT_CODE && pendingBytes(c) > 0) {
          code = MODBUS_BAD_RESPONSE_CODE;
          text = `incomplete frame: ${pendingBytes(c)} bytes received, no complete response ` +
            `within ${unit.timeoutMs} ms`;
        } else if (code === MODBUS_TIMEOUT_CODE && skippedBytes(c) > skipped) {
          code = MODBUS_BAD_RESPONSE_CODE;
          text = `${skippedBytes(c) - skipped} bytes received that answer nothing (bad CRC or ` +
            `unexpected frame), no valid response within ${unit.timeoutMs} ms`;
        }
        if (code !== MODBUS_BAD_RESPONSE_CODE) return { kind: "error", code, text };
        frames.seen(performance.now(), {
          unit_id: req.unitId,
          table: req.table,
          address: req.address,
          count: req.count,
          error: text,
        });
        const open = target.transport !== "tcp" || stopped || await resync();
        return { kind: "error", code, text, lost: !open };
      }
    });
  }

  /**
   * Polls one unit's reads of a group. A timeout ends the unit's turn (its
   * other reads get the timeout code too), so it delays the others by at most
   * its own timeout. Returns false when the connection was lost.
   */
  async function pollTurn(
    g: PollGroup,
    turn: UnitTurn,
    s: Session,
    eventTime: number,
    tick: number,
  ): Promise<boolean> {
    const unit = turn.unit;
    let answered = false;
    const n = turn.reads.length;
    let next: Promise<Outcome> | undefined;
    for (let i = 0; i < n; i++) {
      const req = turn.reads[i];
      const out = await (next ?? request(unit, req, s));
      // The next read goes out before this answer is decoded and emitted.
      next = out.kind === "data" && i + 1 < n ? request(unit, turn.reads[i + 1], s) : undefined;
      if (out.kind === "skipped") return true;
      if (out.kind === "data") {
        answered = true;
        report(g, req, readingsOf(req, out.data, eventTime), tick);
        continue;
      }
      const { code, text } = out;
      if (code === MODBUS_DISCONNECTED_CODE || out.lost) {
        report(g, req, failedReadings(req, code, text, eventTime), tick);
        const lost = `connection to ${where} lost: ${text}`;
        failAll(g, turn.reads.slice(i + 1), MODBUS_DISCONNECTED_CODE, lost, eventTime, tick);
        return false;
      }
      if (code === MODBUS_TIMEOUT_CODE) {
        const why = `unit ${unit.unitId}: no answer within ${unit.timeoutMs} ms`;
        failAll(g, turn.reads.slice(i), code, why, eventTime, tick);
        const pause = unitTimedOut(unit, performance.now(), g.intervalMs);
        if (pause > 0) {
          kit.log("warning", "modbus unit does not answer; polling it less often", {
            unit_id: unit.unitId,
            failures: unit.failures,
            next_poll_in_ms: pause,
          });
        }
        return true;
      }
      answered = true;
      report(g, req, failedReadings(req, code, text, eventTime), tick);
      if (code !== MODBUS_BAD_RESPONSE_CODE) {
        kit.log("warning", "modbus read failed", {
          unit_id: req.unitId,
          table: req.table,
          address: req.address,
          count: req.count,
          quality_code: code,
          error: text,
        });
      }
    }
    if (answered && unitAnswered(unit)) {
      kit.log("info", "modbus unit answers again", { unit_id: unit.unitId });
    }
    return true;
  }

  /** One poll of a group over its units not in back-off; false when the connection was lost. */
  async function pollGroup(g: PollGroup, s: Session, eventTime: number, tick: number) {
    for (let i = 0; i < g.turns.length; i++) {
      if (stopped || s.over) return true;
      if (!isDue(g.turns[i].unit, performance.now())) continue;
      if (!await pollTurn(g, g.turns[i], s, eventTime, tick)) {
        const lost = `connection to ${where} lost`;
        for (const rest of g.turns.slice(i + 1)) {
          failAll(g, rest.reads, MODBUS_DISCONNECTED_CODE, lost, eventTime, tick);
        }
        return false;
      }
    }
    return true;
  }

  /** The status detail with the current counters and poll figures. */
  function detailNow(): Record<string, unknown> {
    return {
      ...detail,
      malformed_frames: frames.count,
      poll_groups: groups.map((g) => ({
        name: g.name,
        interval_ms: g.intervalMs,
        report_by_exception: g.report.policy.byException,
        reads: g.reads.length,
        ...g.stats.figures(),
      })),
    };
  }

  let publishedAt = 0;
  /** Posts the status with fresh figures, at most once per second. */
  function publish(s: Session): void {
    const now = performance.now();
    if (s.over || now - publishedAt < 1000) return;
    publishedAt = now;
    kit.status("connected", undefined, detailNow());
  }

  /** Polls a group on its own grid `start + k * interval` until the session ends. */
  async function runGroup(g: PollGroup, s: Session): Promise<void> {
    const start = performance.now();
    let tick = start;
    while (!s.over) {
      await kit.waitForCredit();
      if (s.over) return;
      const began = performance.now();
      const ok = await pollGroup(g, s, Date.now() * 1000, tick);
      const ended = performance.now();
      g.stats.record(began - tick, ended - began, g.intervalMs);
      if (!ok) return s.end(g.name);
      const next = nextTick(start, g.intervalMs, Math.max(tick, ended));
      g.stats.skipped(Math.round((next - tick) / g.intervalMs) - 1);
      tick = next;
      publish(s);
      await s.sleep(tick - performance.now());
    }
  }

  /** Polls every group while the connection lasts; tags of the other groups go bad when it is lost. */
  async function pollWhileConnected(): Promise<void> {
    const s = new Session();
    session = s;
    await Promise.all(groups.map((g) => runGroup(g, s)));
    if (stopped || s.lostBy === undefined) return;
    const lost = `connection to ${where} lost`;
    const at = Date.now() * 1000;
    for (const g of groups) {
      if (g.name !== s.lostBy) {
        failAll(g, g.reads, MODBUS_DISCONNECTED_CODE, lost, at, performance.now());
      }
    }
    kit.status("disconnected", lost, detailNow());
  }

  async function loop(): Promise<void> {
    let attempt = 0;
    while (!stopped) {
      kit.status("connecting", undefined, detail);
      try {
        await connect();
      } catch (e) {
        closeClient();
        if (stopped) return;
        kit.status("error", `connect to ${where} failed: ${errorText(e)}`, detail);
        await sleep(reconnectDelayMs(attempt++, Math.random(), MODBUS_RECONNECT_MIN_MS));
        continue;
      }
      if (stopped) break;
      if (attempt > 0) kit.counters.reconnects++;
      attempt = 0;
      kit.status("connected", undefined, detail);
      await pollWhileConnected();
      closeClient();
      if (!stopped) {
        await sleep(reconnectDelayMs(attempt++, Math.random(), MODBUS_RECONNECT_MIN_MS));
      }
    }
    closeClient();
  }

  return {
    start() {
      done = loop().catch((e) => kit.status("error", `modbus source failed: ${errorText(e)}`));
    },
    async stop() {
      stopped = true;
      wake();
      session?.end();
      closeClient();
      await done;
    },
  };
}

runSourceWorker((source, kit) => modbusDriver(source as unknown as ModbusSourceConfig, kit));
