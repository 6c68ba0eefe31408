/**
 * The simulator's plant on Modbus TCP: two units whose registers follow
 * simulated sensors once a second, in the encodings field devices use.
 *
 * Unit 1, boiler house:
 *   holding 10..11 float32 ABCD  boiler temperature (degC)
 *   holding 12..13 float32 CDAB  steam pressure (bar)
 *   holding 14     int16 x10     tank level (%)
 *   holding 16..17 float32 DCBA  flue gas O2 (%)
 *   holding 18..19 float32 BADC  feedwater flow (m3/h)
 *   coil 10                      burner on
 *   discrete 10                  low water alarm
 * Unit 2, pump station:
 *   holding 10..11 float32 ABCD  pump speed (rpm)
 *   holding 12     int16 x10     motor current (A)
 *   input 10       uint16        running hours
 *   coil 10                      pump running
 *   discrete 10                  high vibration alarm
 *
 * A unit can be made silent (never answers) or slow (answers after a delay)
 * to try the agent's per-unit timeouts.
 */
import {
  float32Words,
  int16Word,
  type ModbusSimulator,
  startModbusSimulator,
} from "./modbus_server.ts";

/** Options of the simulator's Modbus plant. */
export interface ModbusPlantOptions {
  host: string;
  port: number;
  /** A unit id that never answers. */
  silentUnit?: number;
  /** A unit id that answers after `ms`. */
  slowUnit?: { unit: number; ms: number };
}

/** A running Modbus plant. */
export interface ModbusPlant {
  port: number;
  endpoint: string;
  stop(): Promise<void>;
}

/** The register values of both units at time `t` (seconds). */
function follow(sim: ModbusSimulator, t: number): void {
  const temperature = 80 + 5 * Math.sin(t / 30);
  const level = 50 + 20 * Math.sin(t / 60);
  sim.setHolding(1, 10, float32Words(temperature, "ABCD"));
  sim.setHolding(1, 12, float32Words(11.5 + 0.3 * Math.sin(t / 7), "CDAB"));
  sim.setHolding(1, 14, [int16Word(Math.round(level * 10))]);
  sim.setHolding(1, 16, float32Words(3.2 + 0.4 * Math.sin(t / 45), "DCBA"));
  sim.setHolding(1, 18, float32Words(12 + 2 * Math.sin(t / 20), "BADC"));
  sim.setCoils(1, 10, [temperature < 82]);
  sim.setDiscrete(1, 10, [level < 35]);
  const speed = 1450 + 30 * Math.sin(t / 15);
  sim.setHolding(2, 10, float32Words(speed, "ABCD"));
  sim.setHolding(2, 12, [int16Word(Math.round((42 + 3 * Math.sin(t / 9)) * 10))]);
  sim.setInput(2, 10, [Math.floor(t / 3600) & 0xffff]);
  sim.setCoils(2, 10, [true]);
  sim.setDiscrete(2, 10, [Math.sin(t / 120) > 0.95]);
}

/** Starts the Modbus plant on `host:port` and keeps its registers following the sensors. */
export async function startModbusPlant(opts: ModbusPlantOptions): Promise<ModbusPlant> {
  const sim = await startModbusSimulator({ host: opts.host, port: opts.port });
  if (opts.silentUnit !== undefined) sim.setSilent(opts.silentUnit, true);
  if (opts.slowUnit) sim.setDelay(opts.slowUnit.unit, opts.slowUnit.ms);
  const tick = () => follow(sim, Date.now() / 1000);
  tick();
  const timer = setInterval(tick, 1000);
  return {
    port: sim.port,
    endpoint: `modbus://${opts.host}:${sim.port}`,
    async stop() {
      clearInterval(timer);
      await sim.stop();
    },
  };
}
