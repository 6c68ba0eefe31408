/** Host and port of a Modbus TCP endpoint. */

/** Default Modbus TCP port. */
export const MODBUS_TCP_PORT = 502;

/** `modbus://host[:port]` as host and port (IPv6 without brackets); throws for other schemes. */
export function tcpTarget(endpoint: string): { host: string; port: number } {
  const m = /^modbus:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?\/?$/.exec(endpoint);
  if (!m) {
    throw new Error(`only modbus://host[:port] (Modbus TCP) is supported so far, got ${endpoint}`);
  }
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  return { host, port: m[2] === undefined ? MODBUS_TCP_PORT : Number(m[2]) };
}
