/** Transport, host and port of a Modbus endpoint (TCP or RTU over TCP). */

/** Default Modbus TCP port. */
export const MODBUS_TCP_PORT = 502;

/** A network endpoint: Modbus TCP (MBAP frames) or RTU frames over a TCP connection. */
export interface ModbusTarget {
  transport: "tcp" | "rtu+tcp";
  host: string;
  port: number;
}

const HOST_PORT = String.raw`(\[[^\]]+\]|[^/:]+)(?::(\d+))?\/?$`;
const TCP = new RegExp(String.raw`^modbus://${HOST_PORT}`);
const RTU_TCP = new RegExp(String.raw`^modbusrtu\+tcp://${HOST_PORT}`);

function hostOf(text: string): string {
  return text.startsWith("[") ? text.slice(1, -1) : text;
}

/**
 * `modbus://host[:port]` or `modbusrtu+tcp://host:port` as a target (IPv6
 * without brackets); throws for serial RTU (not supported yet) and other text.
 */
export function modbusTarget(endpoint: string): ModbusTarget {
  const tcp = TCP.exec(endpoint);
  if (tcp) {
    const port = tcp[2] === undefined ? MODBUS_TCP_PORT : Number(tcp[2]);
    return { transport: "tcp", host: hostOf(tcp[1]), port };
  }
  const rtu = RTU_TCP.exec(endpoint);
  if (rtu && rtu[2] !== undefined) {
    return { transport: "rtu+tcp", host: hostOf(rtu[1]), port: Number(rtu[2]) };
  }
  if (endpoint.startsWith("modbusrtu:///")) {
    throw new Error(`serial RTU (modbusrtu:///dev/...) is not supported yet, got ${endpoint}`);
  }
  throw new Error(
    `expected modbus://host[:port] or modbusrtu+tcp://host:port, got ${endpoint}`,
  );
}
