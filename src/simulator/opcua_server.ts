/**
 * OPC UA simulator: a node-opcua server on 127.0.0.1 (security None) with a
 * few plant sensors under `Objects/<Site>/<Line>/<Machine>/<Signal>` in the
 * namespace `urn:otedge:simulator`. Analog signals carry `EngineeringUnits`
 * and `EURange`; values move every `updateMs`. Tests pin a value or a
 * StatusCode with `set()`. `Plant1/Types/...` holds a constant variable of
 * each data type (`opcua_types.ts`). The server's PKI lives in a temp folder that
 * `stop()` removes.
 */
import {
  DataType,
  OPCUACertificateManager,
  OPCUAServer,
  standardUnits,
  StatusCode,
  StatusCodes,
  type UAVariable,
  Variant,
  VariantArrayType,
} from "node-opcua";
import { type OpcuaSimSecurity, serverSecurityOptions } from "./opcua_security.ts";
import { addPlant, type OpcuaPlant } from "./opcua_plant.ts";
import { addTypedVariables } from "./opcua_types.ts";

/** Namespace URI of the simulator's nodes. */
export const OPCUA_SIM_NAMESPACE = "urn:otedge:simulator";

/** One simulated signal: where it lives and how its value moves. */
interface SignalSpec {
  path: string;
  dataType: DataType;
  unit?: keyof typeof standardUnits;
  range?: { low: number; high: number };
  /** The value at time `t` (seconds) and step `n`. */
  model: (t: number, n: number) => unknown;
}

const wave = (nominal: number, amp: number, periodS: number) => (t: number) =>
  Math.round((nominal + amp * Math.sin((2 * Math.PI * t) / periodS)) * 1000) / 1000;

/** The simulated plant: paths are `Site/Line/Machine/Signal`. */
const SIGNALS: SignalSpec[] = [
  {
    path: "Plant1/Line1/Press1/Temperature",
    dataType: DataType.Double,
    unit: "degree_celsius",
    range: { low: -20, high: 150 },
    model: wave(65, 5, 60),
  },
  {
    path: "Plant1/Line1/Press1/Pressure",
    dataType: DataType.Double,
    unit: "bar",
    range: { low: 0, high: 16 },
    model: wave(6.5, 0.4, 20),
  },
  { path: "Plant1/Line1/Press1/Running", dataType: DataType.Boolean, model: () => true },
  { path: "Plant1/Line1/Press1/PartCount", dataType: DataType.Int64, model: (_t, n) => n },
  {
    path: "Plant1/Line1/Pump1/FlowRate",
    dataType: DataType.Double,
    unit: "cubic_metre_per_hour",
    range: { low: 0, high: 250 },
    model: wave(120, 15, 45),
  },
  {
    path: "Plant1/Line1/Pump1/Mode",
    dataType: DataType.String,
    model: () => "AUTO",
  },
];

/** A running simulator. */
export interface OpcuaSimulator {
  /** `opc.tcp://127.0.0.1:<port>`. */
  endpoint: string;
  namespaceUri: string;
  /** Index of `namespaceUri` in this server's NamespaceArray. */
  namespaceIndex: number;
  /** The signal paths, e.g. `Plant1/Line1/Press1/Temperature` (NodeId `s=<path>`). */
  paths: string[];
  /**
   * Pins a signal's value and/or StatusCode (by name, e.g. `UncertainLastUsableValue`);
   * a pinned signal stops following its model until `release(path)`.
   */
  set(path: string, opts: { value?: unknown; status?: keyof typeof StatusCodes }): void;
  /** Lets a pinned signal follow its model again. */
  release(path: string): void;
  stop(): Promise<void>;
  /** Service requests received so far, by request type (`ReadRequest`, `CreateMonitoredItemsRequest`, ...). */
  requests: Record<string, number>;
  /** Calls `fn` with each service request the server receives (tests count operations). */
  onRequest(fn: (name: string, request: any) => void): void;
  /** The industry plants (with `plant: true`). */
  plant?: OpcuaPlant;
  /**
   * Test hook for a fault a healthy server does not produce on demand: every
   * subscription that exists now stops publishing (no data, no keep-alive)
   * while its session keeps answering. Returns how many were silenced.
   */
  silenceSubscriptions(): number;
  /** Subscriptions that exist now, over all sessions (orphaned ones too). */
  subscriptionCount(): number;
  /** How many times the signals have moved so far (one step every `updateMs`). */
  steps(): number;
  /**
   * Test hook: the server ends every session, keeping their subscriptions
   * for a transfer to another session (what a server does when a session
   * times out or is closed with deleteSubscriptions false). Returns how many.
   */
  closeSessions(): number;
  /** Test hook: deletes every subscription, keeping the sessions. Returns how many. */
  deleteSubscriptions(): number;
  /** Test hook: registers another namespace at runtime (the NamespaceArray grows). */
  addNamespace(uri: string): void;
  /**
   * Test hook: deletes the signals at `paths` (default all) from the address
   * space (a program download, an address space not loaded yet). Returns how many.
   */
  removeSignals(paths?: string[]): number;
  /** Test hook: adds the removed signals again, same NodeIds, values following their model. */
  restoreSignals(): number;
}

/** Server operation limits (0 = no limit); see `startOpcuaSimulator`. */
export interface OpcuaSimLimits {
  maxNodesPerRead?: number;
  maxNodesPerBrowse?: number;
  maxMonitoredItemsPerCall?: number;
  maxNodesPerTranslateBrowsePathsToNodeIds?: number;
}

function toVariant(spec: SignalSpec, value: unknown): Variant {
  if (spec.dataType === DataType.Int64) {
    const n = BigInt(value as number | bigint);
    const hi = Number(BigInt.asIntN(32, n >> 32n));
    const lo = Number(BigInt.asUintN(32, n));
    return new Variant({
      dataType: DataType.Int64,
      arrayType: VariantArrayType.Scalar,
      value: [hi, lo],
    });
  }
  return new Variant({ dataType: spec.dataType, value });
}

/** `limits` with every value 0: not advertised (node-opcua leaves a 0 limit out). */
function zeroed(limits: OpcuaSimLimits | undefined): OpcuaSimLimits {
  return Object.fromEntries(Object.keys(limits ?? {}).map((k) => [k, 0]));
}

/**
 * Starts the simulator on `host` (default 127.0.0.1):`port`; `updateMs` is how
 * often values move. `plant` adds the industry plants (`opcua_plant.ts`) with
 * `scale` extra variables. `limits` are the operation limits the server
 * advertises and enforces; `hiddenLimits` are enforced (BadTooManyOperations)
 * without being advertised, like a server that under-reports its limits.
 */
export async function startOpcuaSimulator(
  opts: {
    port: number;
    host?: string;
    updateMs?: number;
    plant?: boolean;
    scale?: number;
    limits?: OpcuaSimLimits;
    hiddenLimits?: OpcuaSimLimits;
    /**
     * Namespace URIs registered before the simulator's own, so its namespace
     * gets another index (a server that renumbers its namespaces on restart).
     */
    namespacesBefore?: string[];
    /** Starts without the signals (an address space that loads late); see `restoreSignals`. */
    withoutSignals?: boolean;
  } & OpcuaSimSecurity,
): Promise<OpcuaSimulator> {
  const host = opts.host ?? "127.0.0.1";
  const pkiDir = await Deno.makeTempDir({ prefix: "otedge-opcua-sim-" });
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: `${pkiDir}/pki`,
    automaticallyAcceptUnknownCertificate: opts.acceptClientCertificates ?? true,
    // chokidar under Deno throws (uncaught) when a watched file moves from rejected/ to trusted/.
    disableFileWatchers: true,
  });
  const userCertificateManager = new OPCUACertificateManager({
    rootFolder: `${pkiDir}/user_pki`,
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
  });
  const server = new OPCUAServer({
    port: opts.port,
    hostname: host,
    alternateHostname: [host],
    serverCapabilities: {
      operationLimits: { ...opts.limits, ...zeroed(opts.hiddenLimits) } as never,
    },
    serverCertificateManager,
    userCertificateManager,
    ...serverSecurityOptions(opts),
    buildInfo: { productName: "otedge-simulator", manufacturerName: "otedge" },
    serverInfo: { applicationUri: "urn:otedge:simulator:server", applicationName: "OtEdgeSim" },
    // A client that lost its session may take over its subscriptions (TransferSubscriptions).
    allowAnonymousSubscriptionTransferOnUnsecuredChannel: true,
  });
  try {
    await server.initialize();
    const space = server.engine.addressSpace!;
    for (const uri of opts.namespacesBefore ?? []) space.registerNamespace(uri);
    const ns = space.registerNamespace(OPCUA_SIM_NAMESPACE);
    const folders = new Map<string, any>();
    const folderOf = (parts: string[]): any => {
      const key = parts.join("/");
      let f = folders.get(key);
      if (!f) {
        const parent = parts.length === 1 ? space.rootFolder.objects : folderOf(parts.slice(0, -1));
        f = ns.addObject({
          organizedBy: parent,
          browseName: parts[parts.length - 1],
          nodeId: `s=${key}`,
        });
        folders.set(key, f);
      }
      return f;
    };
    const vars = new Map<string, { spec: SignalSpec; v: UAVariable; pinned: boolean }>();
    const t0 = Date.now();
    let n = 0;
    const addSignal = (spec: SignalSpec) => {
      const parts = spec.path.split("/");
      const base = {
        componentOf: folderOf(parts.slice(0, -1)),
        browseName: parts[parts.length - 1],
        nodeId: `s=${spec.path}`,
        minimumSamplingInterval: 100,
      };
      const v: UAVariable = spec.unit
        ? ns.addAnalogDataItem({
          ...base,
          dataType: DataType[spec.dataType],
          engineeringUnits: standardUnits[spec.unit],
          engineeringUnitsRange: spec.range,
        })
        : ns.addVariable({ ...base, dataType: DataType[spec.dataType] });
      const t = (Date.now() - t0) / 1000;
      v.setValueFromSource(toVariant(spec, spec.model(t, n)), StatusCodes.Good);
      vars.set(spec.path, { spec, v, pinned: false });
    };
    const removed = new Set<SignalSpec>(opts.withoutSignals ? SIGNALS : []);
    for (const spec of SIGNALS) if (!removed.has(spec)) addSignal(spec);
    // A constant variable of each data type under Plant1/Types (opcua_types.ts).
    addTypedVariables(ns, "Plant1/Types", folderOf);
    const timer = setInterval(() => {
      n++;
      const t = (Date.now() - t0) / 1000;
      for (const s of vars.values()) {
        if (!s.pinned) s.v.setValueFromSource(toVariant(s.spec, s.spec.model(t, n)));
      }
    }, opts.updateMs ?? 250);
    const plant = opts.plant ? addPlant(space, { scale: opts.scale }) : undefined;
    const requests: Record<string, number> = {};
    const listeners: Array<(name: string, request: any) => void> = [];
    server.on("request", (req: { schema: { name: string } }) => {
      requests[req.schema.name] = (requests[req.schema.name] ?? 0) + 1;
      for (const fn of listeners) fn(req.schema.name, req);
    });
    await server.start();
    // Enforced from now on, but their capability nodes were left out at initialize().
    Object.assign(server.engine.serverCapabilities.operationLimits, opts.hiddenLimits);
    const subscriptions = () =>
      server.engine.getSessions().flatMap((session) =>
        Object.values(
          (session.publishEngine as unknown as { _subscriptions: Record<string, any> })
            ?._subscriptions ?? {},
        )
      );
    const orphans = () =>
      (server.engine as unknown as { _orphanPublishEngine?: { subscriptionCount: number } })
        ._orphanPublishEngine?.subscriptionCount ?? 0;
    const get = (path: string) => {
      const s = vars.get(path);
      if (!s) throw new Error(`no simulated signal ${path}`);
      return s;
    };
    return {
      endpoint: `opc.tcp://${host}:${opts.port}`,
      requests,
      onRequest: (fn) => void listeners.push(fn),
      plant,
      namespaceUri: OPCUA_SIM_NAMESPACE,
      namespaceIndex: ns.index,
      paths: SIGNALS.map((s) => s.path),
      set(path, o) {
        const s = get(path);
        s.pinned = true;
        const value = o.value !== undefined ? toVariant(s.spec, o.value) : s.v.readValue().value;
        const status = o.status ? StatusCodes[o.status] as StatusCode : StatusCodes.Good;
        s.v.setValueFromSource(value, status, new Date());
      },
      release(path) {
        get(path).pinned = false;
      },
      silenceSubscriptions() {
        const list = subscriptions();
        for (const sub of list) sub._stop_timer();
        return list.length;
      },
      subscriptionCount: () => subscriptions().length + orphans(),
      steps: () => n,
      closeSessions() {
        const sessions = server.engine.getSessions();
        for (const session of sessions) {
          server.engine.closeSession(session.authenticationToken, false, "Terminated");
        }
        return sessions.length;
      },
      addNamespace: (uri) => void space.registerNamespace(uri),
      removeSignals(paths) {
        const gone = [...vars.values()].filter((s) => !paths || paths.includes(s.spec.path));
        for (const s of gone) {
          vars.delete(s.spec.path);
          removed.add(s.spec);
          space.deleteNode(s.v);
        }
        return gone.length;
      },
      restoreSignals() {
        const back = SIGNALS.filter((spec) => removed.has(spec));
        for (const spec of back) {
          removed.delete(spec);
          addSignal(spec);
        }
        return back.length;
      },
      deleteSubscriptions() {
        let n = 0;
        for (const session of server.engine.getSessions()) {
          for (const sub of session.publishEngine?.subscriptions ?? []) {
            session.deleteSubscription(sub.id);
            n++;
          }
        }
        return n;
      },
      async stop() {
        clearInterval(timer);
        plant?.stop();
        try {
          await server.shutdown(0);
        } finally {
          await serverCertificateManager.dispose();
          await userCertificateManager.dispose();
          await Deno.remove(pkiDir, { recursive: true }).catch(() => {});
        }
      },
    };
  } catch (e) {
    await server.shutdown(0).catch(() => {});
    await Deno.remove(pkiDir, { recursive: true }).catch(() => {});
    throw e;
  }
}
