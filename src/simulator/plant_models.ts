/**
 * Simulated plants of four industries (mining, utilities, manufacturing, oil
 * and gas): their sensors with unit, range and value model. Pure data and
 * arithmetic, no protocol library; `opcua_plant.ts` serves them over OPC UA.
 *
 * A value is nominal + slow cycle + drift (a mean-reverting random walk) +
 * noise, clamped to the sensor's range; rare spikes push it towards a range
 * limit, and the status turns Uncertain or Bad now and then for a few steps.
 */

/** An engineering unit: UNECE common code, display symbol, long name. */
export interface PlantUnit {
  code: string;
  symbol: string;
  name: string;
}

/** Units the plants use, by key. */
export const PLANT_UNITS = {
  celsius: { code: "CEL", symbol: "°C", name: "degree Celsius" },
  bar: { code: "BAR", symbol: "bar", name: "bar [unit of pressure]" },
  kilopascal: { code: "KPA", symbol: "kPa", name: "kilopascal" },
  percent: { code: "P1", symbol: "%", name: "percent" },
  kilowatt: { code: "KWT", symbol: "kW", name: "kilowatt" },
  megawatt: { code: "MAW", symbol: "MW", name: "megawatt" },
  ampere: { code: "AMP", symbol: "A", name: "ampere" },
  kilovolt: { code: "KVT", symbol: "kV", name: "kilovolt" },
  hertz: { code: "HTZ", symbol: "Hz", name: "hertz" },
  rpm: { code: "RPM", symbol: "r/min", name: "revolutions per minute" },
  mm_per_s: { code: "C16", symbol: "mm/s", name: "millimetre per second" },
  m_per_s: { code: "MTS", symbol: "m/s", name: "metre per second" },
  tonne_per_hour: { code: "E18", symbol: "t/h", name: "tonne per hour" },
  m3_per_hour: { code: "MQH", symbol: "m³/h", name: "cubic metre per hour" },
  m3_per_min: { code: "G53", symbol: "m³/min", name: "cubic metre per minute" },
  litre_per_hour: { code: "E32", symbol: "l/h", name: "litre per hour" },
  metre: { code: "MTR", symbol: "m", name: "metre" },
  millimetre: { code: "MMT", symbol: "mm", name: "millimetre" },
  kilonewton: { code: "B47", symbol: "kN", name: "kilonewton" },
  newton_metre: { code: "NU", symbol: "N·m", name: "newton metre" },
  tonne_per_m3: { code: "D41", symbol: "t/m³", name: "tonne per cubic metre" },
  ph: { code: "C62", symbol: "pH", name: "pH" },
  ntu: { code: "C62", symbol: "NTU", name: "nephelometric turbidity unit" },
  mg_per_litre: { code: "M1", symbol: "mg/l", name: "milligram per litre" },
  ppm: { code: "59", symbol: "ppm", name: "part per million" },
  per_minute: { code: "C94", symbol: "1/min", name: "reciprocal minute" },
  second: { code: "SEC", symbol: "s", name: "second" },
} as const satisfies Record<string, PlantUnit>;

/** A unit key of `PLANT_UNITS`. */
export type PlantUnitKey = keyof typeof PLANT_UNITS;

/** One simulated sensor, placed at `<industry>/<site>/<area>/<equipment>/<name>`. */
export interface PlantSensor {
  industry: string;
  site: string;
  area: string;
  equipment: string;
  name: string;
  unit: PlantUnitKey;
  low: number;
  high: number;
  nominal: number;
}

/** [area, equipment, sensor, unit, low, high, nominal] */
type Row = [string, string, string, PlantUnitKey, number, number, number];

const PLANTS: Array<{ industry: string; site: string; rows: Row[] }> = [
  {
    industry: "Mining",
    site: "PilbaraIronOre",
    rows: [
      ["Crushing", "PrimaryCrusher", "PowerDraw", "kilowatt", 0, 800, 520],
      ["Crushing", "PrimaryCrusher", "FeedRate", "tonne_per_hour", 0, 4000, 2600],
      ["Crushing", "PrimaryCrusher", "BearingTemperature", "celsius", 0, 120, 68],
      ["Crushing", "PrimaryCrusher", "Vibration", "mm_per_s", 0, 25, 4.2],
      ["Crushing", "PrimaryCrusher", "GapSetting", "millimetre", 100, 250, 165],
      ["Conveying", "ConveyorCV01", "BeltSpeed", "m_per_s", 0, 6, 4.5],
      ["Conveying", "ConveyorCV01", "MotorCurrent", "ampere", 0, 600, 380],
      ["Conveying", "ConveyorCV01", "BeltTension", "kilonewton", 0, 200, 120],
      ["Conveying", "ConveyorCV01", "Throughput", "tonne_per_hour", 0, 4000, 2550],
      ["Processing", "BallMill01", "MotorPower", "megawatt", 0, 20, 12.5],
      ["Processing", "BallMill01", "MillSpeed", "rpm", 0, 20, 13.8],
      ["Processing", "BallMill01", "SlurryDensity", "tonne_per_m3", 1, 2.2, 1.65],
      ["Processing", "BallMill01", "PulpLevel", "percent", 0, 100, 62],
      ["Processing", "Flotation01", "AirFlow", "m3_per_hour", 0, 3000, 1800],
      ["Processing", "Flotation01", "FrothDepth", "millimetre", 0, 500, 220],
      ["Processing", "Flotation01", "PH", "ph", 0, 14, 10.2],
      ["Dewatering", "TailingsPump01", "DischargePressure", "bar", 0, 40, 22],
      ["Dewatering", "TailingsPump01", "Flow", "m3_per_hour", 0, 2000, 1200],
    ],
  },
  {
    industry: "Utilities",
    site: "NorthgateWaterworks",
    rows: [
      ["Intake", "RawWaterPump01", "Flow", "m3_per_hour", 0, 5000, 3200],
      ["Intake", "RawWaterPump01", "DischargePressure", "bar", 0, 16, 6.8],
      ["Intake", "RawWaterPump01", "MotorTemperature", "celsius", 0, 140, 72],
      ["Intake", "RawWaterPump01", "Vibration", "mm_per_s", 0, 20, 2.8],
      ["Treatment", "Clarifier01", "Turbidity", "ntu", 0, 100, 3.5],
      ["Treatment", "Clarifier01", "SludgeLevel", "metre", 0, 5, 1.2],
      ["Treatment", "Filter01", "DifferentialPressure", "kilopascal", 0, 250, 85],
      ["Treatment", "Filter01", "Turbidity", "ntu", 0, 10, 0.18],
      ["Treatment", "ChlorineDosing", "FreeChlorine", "mg_per_litre", 0, 5, 1.1],
      ["Treatment", "ChlorineDosing", "PH", "ph", 0, 14, 7.4],
      ["Treatment", "ChlorineDosing", "DosingRate", "litre_per_hour", 0, 200, 42],
      ["Distribution", "Reservoir01", "Level", "metre", 0, 12, 8.5],
      ["Distribution", "Reservoir01", "OutletFlow", "m3_per_hour", 0, 4000, 2800],
      ["Substation", "Transformer01", "Voltage", "kilovolt", 0, 15, 11],
      ["Substation", "Transformer01", "Load", "megawatt", 0, 25, 14],
      ["Substation", "Transformer01", "OilTemperature", "celsius", 0, 120, 58],
      ["Substation", "Transformer01", "Frequency", "hertz", 49, 51, 50],
    ],
  },
  {
    industry: "Manufacturing",
    site: "ColumbusAssembly",
    rows: [
      ["PressShop", "Press01", "Force", "kilonewton", 0, 8000, 5200],
      ["PressShop", "Press01", "HydraulicPressure", "bar", 0, 350, 210],
      ["PressShop", "Press01", "OilTemperature", "celsius", 0, 90, 48],
      ["PressShop", "Press01", "StrokeRate", "per_minute", 0, 40, 18],
      ["PaintShop", "Oven01", "Zone1Temperature", "celsius", 0, 250, 180],
      ["PaintShop", "Oven01", "Zone2Temperature", "celsius", 0, 250, 190],
      ["PaintShop", "Oven01", "ExhaustFlow", "m3_per_hour", 0, 20000, 12000],
      ["PaintShop", "Oven01", "Humidity", "percent", 0, 100, 45],
      ["BodyShop", "Robot07", "JointTorque", "newton_metre", 0, 500, 220],
      ["BodyShop", "Robot07", "MotorCurrent", "ampere", 0, 50, 18],
      ["BodyShop", "Robot07", "WeldCurrent", "ampere", 0, 15000, 9500],
      ["BodyShop", "Robot07", "CycleTime", "second", 0, 120, 54],
      ["Utilities", "Compressor02", "OutletPressure", "bar", 0, 12, 7.5],
      ["Utilities", "Compressor02", "Power", "kilowatt", 0, 250, 160],
      ["Utilities", "Compressor02", "DewPoint", "celsius", -70, 10, -40],
      ["Utilities", "Compressor02", "AirFlow", "m3_per_min", 0, 50, 28],
    ],
  },
  {
    industry: "OilAndGas",
    site: "NorthSeaAlpha",
    rows: [
      ["Wellhead", "Well01", "TubingPressure", "bar", 0, 400, 180],
      ["Wellhead", "Well01", "CasingPressure", "bar", 0, 300, 95],
      ["Wellhead", "Well01", "WellheadTemperature", "celsius", 0, 150, 78],
      ["Wellhead", "Well01", "ChokePosition", "percent", 0, 100, 42],
      ["Separation", "Separator01", "Pressure", "bar", 0, 100, 45],
      ["Separation", "Separator01", "Level", "percent", 0, 100, 50],
      ["Separation", "Separator01", "OilFlow", "m3_per_hour", 0, 800, 420],
      ["Separation", "Separator01", "GasFlow", "m3_per_hour", 0, 60000, 38000],
      ["Separation", "Separator01", "WaterCut", "percent", 0, 100, 22],
      ["Compression", "GasCompressor01", "SuctionPressure", "bar", 0, 60, 28],
      ["Compression", "GasCompressor01", "DischargePressure", "bar", 0, 200, 120],
      ["Compression", "GasCompressor01", "ShaftSpeed", "rpm", 0, 12000, 9200],
      ["Compression", "GasCompressor01", "Vibration", "mm_per_s", 0, 25, 3.1],
      ["Export", "Pipeline01", "Pressure", "bar", 0, 150, 96],
      ["Export", "Pipeline01", "Flow", "m3_per_hour", 0, 1500, 880],
      ["Export", "Pipeline01", "H2S", "ppm", 0, 50, 4],
    ],
  },
];

/** Every sensor of every plant. */
export const PLANT_SENSORS: readonly PlantSensor[] = PLANTS.flatMap((p) =>
  p.rows.map(([area, equipment, name, unit, low, high, nominal]) => ({
    industry: p.industry,
    site: p.site,
    area,
    equipment,
    name,
    unit,
    low,
    high,
    nominal,
  }))
);

/** The industries, in order. */
export const PLANT_INDUSTRIES: readonly string[] = PLANTS.map((p) => p.industry);

/** `<industry>/<site>/<area>/<equipment>/<name>` of a sensor. */
export function sensorPath(s: PlantSensor): string {
  return `${s.industry}/${s.site}/${s.area}/${s.equipment}/${s.name}`;
}

/** Quality of a simulated reading. */
export type PlantStatus = "good" | "uncertain" | "bad";

/** One step of a sensor: its value (always within range) and status. */
export interface PlantSample {
  value: number;
  status: PlantStatus;
}

/** A small seeded PRNG (mulberry32), so every run of the simulator behaves alike. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Odds per step. */
const SPIKE_ODDS = 1 / 2000;
const UNCERTAIN_ODDS = 1 / 1500;
const BAD_ODDS = 1 / 6000;

/**
 * The value model of one sensor: call it once per step with the time in
 * seconds since the start. Seeded by the sensor's path (and `seed`).
 */
export function sensorModel(s: PlantSensor, seed = 1): (t: number) => PlantSample {
  const h = hashOf(sensorPath(s));
  const random = seededRandom(h ^ seed);
  const span = s.high - s.low;
  const cycle = span * (0.02 + 0.03 * ((h % 97) / 97));
  const periodS = 120 + (h % 780);
  const phase = ((h >>> 8) % 628) / 100;
  const noise = span * 0.004;
  let drift = 0;
  let statusLeft = 0;
  let status: PlantStatus = "good";
  let spikeLeft = 0;
  let spike = 0;
  return (t) => {
    drift = drift * 0.995 + (random() - 0.5) * span * 0.004;
    if (spikeLeft > 0) spikeLeft--;
    else if (random() < SPIKE_ODDS) {
      spikeLeft = 1 + Math.floor(random() * 3);
      spike = (random() < 0.5 ? -1 : 1) * span * (0.3 + 0.3 * random());
    }
    if (statusLeft > 0) statusLeft--;
    else {
      const r = random();
      status = r < BAD_ODDS ? "bad" : r < BAD_ODDS + UNCERTAIN_ODDS ? "uncertain" : "good";
      if (status !== "good") statusLeft = 2 + Math.floor(random() * 5);
    }
    const gauss = (random() + random() + random() - 1.5) * 2;
    const raw = s.nominal + cycle * Math.sin((2 * Math.PI * t) / periodS + phase) + drift +
      noise * gauss + (spikeLeft > 0 ? spike : 0);
    const value = Math.min(s.high, Math.max(s.low, raw));
    return { value: Math.round(value * 1000) / 1000, status };
  };
}
