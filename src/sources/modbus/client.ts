/**
 * The `modbus-serial` classes with their declared types. The package is
 * CommonJS (`module.exports = ModbusRTU; module.exports.default = module.exports`),
 * and Deno types its default import as the module, so the class is taken from
 * `.default`, which is the same object at run time.
 */
import modbusSerial, { ServerTCP } from "modbus-serial";
import type { ModbusTarget } from "./endpoint.ts";
import { openTcpLink, RtuPort } from "./rtu_port.ts";
import { charMs, frameGapMs, openSerialLine } from "./serial_port.ts";

/** The client class (`ModbusRTU`). */
export const ModbusClient = modbusSerial.default;

/** A client instance. */
export type ModbusClient = InstanceType<typeof modbusSerial.default>;

/** The TCP server class, with vector callbacks. */
export { ServerTCP };

/**
 * A client for an RTU target on our own port (`rtu_port.ts`): the serial line
 * opened with `Deno.open` and `stty`, or a TCP connection to a gateway.
 */
export function rtuClient(target: Exclude<ModbusTarget, { transport: "tcp" }>): ModbusClient {
  const port = target.transport === "rtu"
    ? new RtuPort(() => openSerialLine(target.path, target.serial), {
      gapMs: frameGapMs(target.serial),
      charMs: charMs(target.serial),
    })
    : new RtuPort(() => openTcpLink(target.host, target.port));
  return new ModbusClient(port);
}

/** Opens a client made with a custom port (`rtuClient`). */
export function openClient(client: ModbusClient): Promise<void> {
  return new Promise((resolve, reject) => {
    client.open((err: unknown) => err ? reject(err) : resolve());
  });
}
