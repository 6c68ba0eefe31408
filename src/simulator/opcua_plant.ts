/**
 * The simulated plants (`plant_models.ts`) in a node-opcua address space:
 * `Objects/<Industry>/<Site>/<Area>/<Equipment>/<Sensor>` in the namespace
 * `urn:otedge:simulator:plant`, each sensor an AnalogItem with
 * `EngineeringUnits` and `EURange`, values moving every `updateMs` and their
 * StatusCode turning Uncertain or Bad now and then. For scale tests, `scale`
 * more Double variables under `Objects/Scale/Block<k>` change once a second
 * each (updated in ten slices, one every 100 ms, to spread the load).
 */
import {
  type AddressSpace,
  DataType,
  makeEUInformation,
  type Namespace,
  StatusCodes,
  type UAObject,
  type UAVariable,
  Variant,
} from "node-opcua";
import {
  PLANT_SENSORS,
  PLANT_UNITS,
  type PlantStatus,
  sensorModel,
  sensorPath,
} from "./plant_models.ts";

/** Namespace URI of the plants and the scale variables. */
export const OPCUA_PLANT_NAMESPACE = "urn:otedge:simulator:plant";
/** Scale variables per folder. */
const BLOCK = 1000;
/** NodeId of scale variable k: `i=<SCALE_BASE + k>`. */
const SCALE_BASE = 1_000_000;
const SLICES = 10;

const STATUS = {
  good: StatusCodes.Good,
  uncertain: StatusCodes.UncertainSensorNotAccurate,
  bad: StatusCodes.BadSensorFailure,
} as const satisfies Record<PlantStatus, unknown>;

/** The plants in a running server. */
export interface OpcuaPlant {
  /** Plant sensors served. */
  sensors: number;
  /** Scale variables served. */
  scale: number;
  /** Values the scale variables took since the start (one per variable per second). */
  scaleChanges(): number;
  stop(): void;
}

/** `Objects/...` folders of the plant namespace, created on first use. */
function folderTree(ns: Namespace, objects: UAObject): (parts: string[]) => UAObject {
  const folders = new Map<string, UAObject>();
  const folderOf = (parts: string[]): UAObject => {
    const key = parts.join("/");
    let f = folders.get(key);
    if (!f) {
      const parent = parts.length === 1 ? objects : folderOf(parts.slice(0, -1));
      f = ns.addFolder(parent, { browseName: parts[parts.length - 1], nodeId: `s=${key}` });
      folders.set(key, f);
    }
    return f;
  };
  return folderOf;
}

function addSensors(ns: Namespace, folderOf: (parts: string[]) => UAObject) {
  return PLANT_SENSORS.map((s) => {
    const path = sensorPath(s);
    const unit = PLANT_UNITS[s.unit];
    const v = ns.addAnalogDataItem({
      componentOf: folderOf(path.split("/").slice(0, -1)),
      browseName: s.name,
      nodeId: `s=${path}`,
      dataType: "Double",
      engineeringUnits: makeEUInformation(unit.code, unit.symbol, unit.name),
      engineeringUnitsRange: { low: s.low, high: s.high },
      minimumSamplingInterval: 100,
    });
    const next = sensorModel(s);
    const first = next(0);
    v.setValueFromSource(new Variant({ dataType: DataType.Double, value: first.value }));
    return { v, next };
  });
}

function addScale(ns: Namespace, folderOf: (parts: string[]) => UAObject, n: number) {
  const vars: UAVariable[] = [];
  for (let k = 0; k < n; k++) {
    const block = `Block${String(Math.floor(k / BLOCK)).padStart(3, "0")}`;
    const v = ns.addVariable({
      componentOf: folderOf(["Scale", block]),
      browseName: `V${String(k).padStart(6, "0")}`,
      nodeId: `i=${SCALE_BASE + k}`,
      dataType: "Double",
      minimumSamplingInterval: 0,
    });
    v.setValueFromSource(new Variant({ dataType: DataType.Double, value: k }));
    vars.push(v);
  }
  return vars;
}

/** Adds the plants (and `scale` scale variables) to `space` and starts moving their values. */
export function addPlant(
  space: AddressSpace,
  opts: { scale?: number; updateMs?: number } = {},
): OpcuaPlant {
  const ns = space.registerNamespace(OPCUA_PLANT_NAMESPACE);
  const folderOf = folderTree(ns, space.rootFolder.objects);
  const sensors = addSensors(ns, folderOf);
  const scale = addScale(ns, folderOf, opts.scale ?? 0);
  const t0 = Date.now();
  const plantTimer = setInterval(() => {
    const t = (Date.now() - t0) / 1000;
    const now = new Date();
    for (const s of sensors) {
      const { value, status } = s.next(t);
      s.v.setValueFromSource(
        new Variant({ dataType: DataType.Double, value }),
        STATUS[status],
        now,
      );
    }
  }, opts.updateMs ?? 1000);
  let tick = 0;
  let changes = 0;
  const per = Math.ceil(scale.length / SLICES);
  const scaleTimer = scale.length === 0 ? undefined : setInterval(() => {
    const slice = tick % SLICES;
    const round = Math.floor(tick / SLICES) + 1;
    tick++;
    const now = new Date();
    const end = Math.min(scale.length, (slice + 1) * per);
    for (let k = slice * per; k < end; k++) {
      scale[k].setValueFromSource(
        new Variant({ dataType: DataType.Double, value: k + round }),
        StatusCodes.Good,
        now,
      );
    }
    changes += Math.max(0, end - slice * per);
  }, 1000 / SLICES);
  return {
    sensors: sensors.length,
    scale: scale.length,
    scaleChanges: () => changes,
    stop() {
      clearInterval(plantTimer);
      clearInterval(scaleTimer);
    },
  };
}
