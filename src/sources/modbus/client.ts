/**
 * The `modbus-serial` classes with their declared types. The package is
 * CommonJS (`module.exports = ModbusRTU; module.exports.default = module.exports`),
 * and Deno types its default import as the module, so the class is taken from
 * `.default`, which is the same object at run time.
 */
import modbusSerial, { ServerTCP } from "modbus-serial";

/** The client class (`ModbusRTU`). */
export const ModbusClient = modbusSerial.default;

/** A client instance. */
export type ModbusClient = InstanceType<typeof modbusSerial.default>;

/** The TCP server class, with vector callbacks. */
export { ServerTCP };
