/**
 * The OPC UA part of `otedge simulate`: the node-opcua server with the
 * industry plants (and `--opcua-scale` extra variables) on `--opcua-port`, and
 * optionally a second one on `--opcua-secure-port` that accepts only
 * Basic256Sha256 SignAndEncrypt (anonymous, or user `operator`, password
 * `operator`).
 * Imported on demand by `cli.ts`, so node-opcua loads while the other
 * servers start.
 */
import { startOpcuaSimulator } from "./opcua_server.ts";
import { OPCUA_PLANT_NAMESPACE } from "./opcua_plant.ts";
import { freePort, portFree } from "./ports.ts";

/** The OPC UA port when `--opcua-port` is not given (the IANA port of OPC UA). */
export const DEFAULT_OPCUA_PORT = 4840;

/** The user the secure endpoint accepts besides anonymous logins (a lab simulator). */
export const SECURE_ENDPOINT_USER = { username: "operator", password: "operator" } as const;

/** The running OPC UA server(s) of `simulate`. */
export interface SimulateOpcua {
  port: number;
  endpoint: string;
  /** The SignAndEncrypt-only server, when asked for. */
  secureEndpoint?: string;
  /** Its entry in `/health`. */
  health(): Record<string, unknown>;
  stop(): Promise<void>;
}

/**
 * Starts the server on `host`:`port` (0: a free port; undefined: 4840, or a
 * free port when 4840 is taken, said on stderr).
 */
export async function startSimulateOpcua(
  o: { host: string; port?: number; scale: number; securePort?: number },
): Promise<SimulateOpcua> {
  let port = o.port ?? DEFAULT_OPCUA_PORT;
  if (port === 0) port = freePort(o.host);
  const start = (p: number) =>
    startOpcuaSimulator({ host: o.host, port: p, plant: true, scale: o.scale });
  let sim;
  try {
    if (o.port === undefined && !portFree(o.host, port)) throw new Error("taken");
    sim = await start(port);
  } catch (e) {
    if (o.port !== undefined) throw e;
    port = freePort(o.host);
    console.error(`simulate: port ${DEFAULT_OPCUA_PORT} is taken; OPC UA on ${port} instead`);
    sim = await start(port);
  }
  const secure = o.securePort === undefined ? undefined : await startOpcuaSimulator({
    host: o.host,
    port: o.securePort === 0 ? freePort(o.host) : o.securePort,
    plant: true,
    securityModes: ["SignAndEncrypt"],
    securityPolicies: ["Basic256Sha256"],
    users: { [SECURE_ENDPOINT_USER.username]: SECURE_ENDPOINT_USER.password },
  }).catch(async (e) => {
    await sim.stop();
    throw e;
  });
  return {
    port,
    endpoint: sim.endpoint,
    secureEndpoint: secure?.endpoint,
    health: () => ({
      protocol: "opcua",
      endpoint: sim.endpoint,
      namespace: OPCUA_PLANT_NAMESPACE,
      sensors: sim.plant?.sensors,
      scale_variables: sim.plant?.scale,
      scale_changes: sim.plant?.scaleChanges(),
      ...(secure && {
        secure_endpoint: secure.endpoint,
        secure_endpoint_security: "SignAndEncrypt Basic256Sha256",
      }),
    }),
    async stop() {
      await secure?.stop();
      await sim.stop();
    },
  };
}
