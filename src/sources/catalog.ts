/**
 * The source types the agent knows: protocol name → zod schema of its source
 * entry. Each protocol keeps its own keys in `<protocol>/schema.ts`; a new
 * source type is one folder plus one line in `SOURCE_SCHEMAS`.
 */
import { z } from "zod";
import { finishGenerator, generatorFields } from "./generator/schema.ts";
import { checkOpcua, opcuaFields } from "./opcua/schema.ts";
import { checkMqtt, mqttFields } from "./mqtt/schema.ts";
import { checkModbus, modbusFields } from "./modbus/schema.ts";

/** Source names: 1 to 64 letters, digits, `_`, `.` or `-`. */
export const SOURCE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

const context = z.string().min(1).optional();

/** Keys every source entry has, whatever its protocol. */
const commonFields = {
  name: z.string().regex(SOURCE_NAME_PATTERN, "expected 1 to 64 letters, digits, '_', '.' or '-'"),
  enabled: z.boolean().default(true),
  site: context,
  area: context,
  line: context,
  equipment: context,
  description: z.string().optional(),
};

/** Checks that run even when other keys of the entry are invalid. */
const ALWAYS = { when: () => true };

function source<P extends string, F extends z.ZodRawShape>(protocol: P, fields: F) {
  return z.strictObject({ ...commonFields, ...fields, protocol: z.literal(protocol) });
}

/** Protocol name → schema of a source entry of that protocol. One line per protocol. */
export const SOURCE_SCHEMAS = {
  generator: source("generator", generatorFields).transform(finishGenerator),
  opcua: source("opcua", opcuaFields).superRefine(checkOpcua, ALWAYS),
  mqtt: source("mqtt", mqttFields).superRefine(checkMqtt, ALWAYS),
  modbus: source("modbus", modbusFields).superRefine(checkModbus, ALWAYS),
};

/** A protocol name with a registered source schema. */
export type SourceProtocol = keyof typeof SOURCE_SCHEMAS;

/** The registered protocol names. */
export const SOURCE_PROTOCOLS = Object.keys(SOURCE_SCHEMAS) as SourceProtocol[];

type AnySourceSchema = (typeof SOURCE_SCHEMAS)[SourceProtocol];

/** Schema of one `sources[]` entry, picked by its `protocol` key. */
export const sourceSchema = z.discriminatedUnion(
  "protocol",
  Object.values(SOURCE_SCHEMAS) as [AnySourceSchema, ...AnySourceSchema[]],
);

/** True when `protocol` names a registered source type. */
export function isSourceProtocol(protocol: string): protocol is SourceProtocol {
  return Object.hasOwn(SOURCE_SCHEMAS, protocol);
}

/**
 * Protocol name → its Worker module. A protocol without an entry validates in
 * config but reports "no source implementation" when started.
 */
const SOURCE_WORKERS: Partial<Record<SourceProtocol, URL>> = {
  generator: new URL("./generator/worker.ts", import.meta.url),
  modbus: new URL("./modbus/worker.ts", import.meta.url),
  mqtt: new URL("./mqtt/worker.ts", import.meta.url),
  opcua: new URL("./opcua/worker.ts", import.meta.url),
};

/** The Worker module URL of a protocol, or undefined when it has none yet. */
export function workerUrlOf(protocol: string): URL | undefined {
  return isSourceProtocol(protocol) ? SOURCE_WORKERS[protocol] : undefined;
}

/** Every Worker module of the registered protocols (the build includes them). */
export function workerModules(): URL[] {
  return Object.values(SOURCE_WORKERS).filter((u): u is URL => u !== undefined);
}
