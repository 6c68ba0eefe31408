/** Transport and address of a Modbus endpoint: TCP, RTU over TCP, or RTU on a serial line. */
import { SERIAL_DEFAULTS } from "./schema.ts";
import type { SerialSettings } from "./serial_port.ts";

/** Default Modbus TCP port. */
export const MODBUS_TCP_PORT = 502;

/** A network endpoint: Modbus TCP (MBAP frames) or RTU frames over a TCP connection. */
export interface ModbusNetworkTarget {
  transport: "tcp" | "rtu+tcp";
  host: string;
  port: number;
}

/** A serial line (`modbusrtu:///dev/ttyUSB0`) with its line parameters. */
export interface ModbusSerialTarget {
  transport: "rtu";
  path: string;
  serial: SerialSettings;
}

/** Where a Modbus source polls. */
export type ModbusTarget = ModbusNetworkTarget | ModbusSerialTarget;

/** The `serial` keys of a source entry (see `schema.ts`). */
export interface SerialConfig {
  baud_rate: number;
  parity: "none" | "even" | "odd";
  data_bits: number;
  stop_bits: number;
}

const HOST_PORT = String.raw`(\[[^\]]+\]|[^/:]+)(?::(\d+))?\/?$`;
const TCP = new RegExp(String.raw`^modbus://${HOST_PORT}`);
const RTU_TCP = new RegExp(String.raw`^modbusrtu\+tcp://${HOST_PORT}`);
const RTU_SERIAL = /^modbusrtu:\/\/(\/[^\s?#]+)$/;

function hostOf(text: string): string {
  return text.startsWith("[") ? text.slice(1, -1) : text;
}

/** Line parameters of the `serial` keys. */
export function serialSettingsOf(cfg: SerialConfig): SerialSettings {
  return {
    baudRate: cfg.baud_rate,
    parity: cfg.parity,
    dataBits: cfg.data_bits,
    stopBits: cfg.stop_bits,
  };
}

/**
 * `modbus://host[:port]`, `modbusrtu+tcp://host:port` or
 * `modbusrtu:///<device path>` (line settings from the `serial` keys, 9600 8N1
 * without them) as a target (IPv6 without brackets); throws for other text.
 */
export function modbusTarget(
  endpoint: string,
  serial: SerialConfig = SERIAL_DEFAULTS,
): ModbusTarget {
  const tcp = TCP.exec(endpoint);
  if (tcp) {
    const port = tcp[2] === undefined ? MODBUS_TCP_PORT : Number(tcp[2]);
    return { transport: "tcp", host: hostOf(tcp[1]), port };
  }
  const rtu = RTU_TCP.exec(endpoint);
  if (rtu && rtu[2] !== undefined) {
    return { transport: "rtu+tcp", host: hostOf(rtu[1]), port: Number(rtu[2]) };
  }
  const line = RTU_SERIAL.exec(endpoint);
  if (line) {
    return { transport: "rtu", path: line[1], serial: serialSettingsOf(serial) };
  }
  if (endpoint.startsWith("modbusrtu:///")) {
    throw new Error(
      `expected modbusrtu:///<device> with line settings in the serial keys, got ${endpoint}`,
    );
  }
  throw new Error(
    `expected modbus://host[:port], modbusrtu+tcp://host:port or modbusrtu:///dev/<device>, got ${endpoint}`,
  );
}

/** The target as people name it in messages: `host:port`, or the device path. */
export function targetText(target: ModbusTarget): string {
  return target.transport === "rtu" ? target.path : `${target.host}:${target.port}`;
}
