/**
 * Modbus source Worker (Modbus TCP, or RTU frames over TCP): connects with
 * `modbus-serial` (`connectTCP`, or `connectTelnet` for RTU over TCP), polls the
 * optimized read plan on a fixed schedule that does not drift, and emits one
 * reading per tag per poll. Failed reads give bad readings for every tag they
 * serve (exception code, or the codes in `readings.ts`); a lost connection is
 * retried with backoff and jitter capped at 30 s. Each unit id has its own
 * timeout, and a unit that keeps timing out is polled at a back-off rate
 * (`units.ts`) while the others keep theirs.
 */
import { runSourceWorker, type SourceDriver, type SourceKit } from "../worker_kit.ts";
import { ModbusClient } from "./client.ts";
import { type ModbusTarget, modbusTarget } from "./endpoint.ts";
import { planReads, type ReadRequest, tagsOf } from "./plan.ts";
import {
  errorCode,
  errorText,
  failedReadings,
  MODBUS_DISCONNECTED_CODE,
  MODBUS_TIMEOUT_CODE,
  readingsOf,
} from "./readings.ts";
import type { ModbusSourceConfig } from "./schema.ts";
import { backoffMs, nextTick } from "./timing.ts";
import { isDue, unitAnswered, unitsOf, type UnitState, unitTimedOut } from "./units.ts";

type Client = ModbusClient;

/** Sends one read of the plan. */
async function read(client: Client, req: ReadRequest): Promise<ArrayLike<number | boolean>> {
  client.setID(req.unitId);
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
    target = modbusTarget(cfg.endpoint);
  } catch (e) {
    return failedDriver(kit, errorText(e));
  }
  const where = `${target.host}:${target.port}`;
  const reads = planReads(tagsOf(cfg), cfg.max_gap);
  const units = unitsOf(reads, cfg);
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
    const c = new ModbusClient();
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
        : c.connectTelnet(target.host, { port: target.port });
      await Promise.race([opened, timeout]);
    } finally {
      clearTimeout(timer);
    }
    // After connecting: a timeout set before would also become the socket's idle timeout.
    c.setTimeout(cfg.timeout_ms);
  }

  /** Bad readings for every read of `list` with `code`. */
  function failAll(list: readonly ReadRequest[], code: number, text: string, at: number): void {
    for (const req of list) {
      for (const r of failedReadings(req, code, text, at)) kit.emit(r);
    }
  }

  /**
   * Polls one unit's reads. A timeout ends the unit's turn (its other reads get
   * the timeout code too), so it delays the others by at most its own timeout.
   * Returns false when the connection was lost.
   */
  async function pollUnit(unit: UnitState, eventTime: number): Promise<boolean> {
    let answered = false;
    for (let i = 0; i < unit.reads.length; i++) {
      const req = unit.reads[i];
      const c = client;
      if (stopped || !c) return true;
      try {
        c.setTimeout(unit.timeoutMs);
        const data = await read(c, req);
        answered = true;
        for (const r of readingsOf(req, data, eventTime)) kit.emit(r);
      } catch (e) {
        const code = c.isOpen ? errorCode(e) : MODBUS_DISCONNECTED_CODE;
        const text = errorText(e);
        if (code === MODBUS_DISCONNECTED_CODE) {
          failAll(unit.reads.slice(i), code, `connection to ${where} lost: ${text}`, eventTime);
          return false;
        }
        if (code === MODBUS_TIMEOUT_CODE) {
          const why = `unit ${unit.unitId}: no answer within ${unit.timeoutMs} ms`;
          failAll(unit.reads.slice(i), code, why, eventTime);
          const pause = unitTimedOut(unit, performance.now(), cfg.polling_interval_ms);
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
        for (const r of failedReadings(req, code, text, eventTime)) kit.emit(r);
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

  /** One poll cycle over the units not in back-off; returns false when the connection was lost. */
  async function pollOnce(eventTime: number): Promise<boolean> {
    for (let i = 0; i < units.length; i++) {
      if (stopped || !client) return true;
      if (!isDue(units[i], performance.now())) continue;
      if (!await pollUnit(units[i], eventTime)) {
        const lost = `connection to ${where} lost`;
        for (const rest of units.slice(i + 1)) {
          failAll(rest.reads, MODBUS_DISCONNECTED_CODE, lost, eventTime);
        }
        kit.status("disconnected", lost, detail);
        return false;
      }
    }
    return true;
  }

  async function pollWhileConnected(): Promise<void> {
    const start = performance.now();
    let tick = start;
    while (!stopped) {
      await kit.waitForCredit();
      if (stopped) return;
      const ok = await pollOnce(Date.now() * 1000);
      if (!ok || stopped) return;
      tick = nextTick(start, cfg.polling_interval_ms, Math.max(tick, performance.now()));
      await sleep(tick - performance.now());
    }
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
        await sleep(backoffMs(attempt++));
        continue;
      }
      if (stopped) break;
      if (attempt > 0) kit.counters.reconnects++;
      attempt = 0;
      kit.status("connected", undefined, detail);
      await pollWhileConnected();
      closeClient();
      if (!stopped) await sleep(backoffMs(attempt++));
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
      closeClient();
      await done;
    },
  };
}

runSourceWorker((source, kit) => modbusDriver(source as unknown as ModbusSourceConfig, kit));
