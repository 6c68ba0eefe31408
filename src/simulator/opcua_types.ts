/**
 * Constant variables of each OPC UA data type under `<folder>/Scalars`,
 * `<folder>/Arrays` and `<folder>/Structures` (NodeId `s=<folder path>/<group>/<Name>`),
 * so tests see every conversion of the source through a real server.
 */
import { Buffer } from "node:buffer";
import {
  BuildInfo,
  DataType,
  LocalizedText,
  type Namespace,
  QualifiedName,
  Range,
  type UAObject,
  Variant,
  VariantArrayType,
} from "node-opcua";

/** One typed variable: its group folder, name and constant value. */
interface TypedVariable {
  group: "Scalars" | "Arrays" | "Structures";
  name: string;
  /** The variable's DataType by name (`Int32`, `Range`, ...). */
  dataType: string;
  value: Variant;
}

const scalar = (dataType: DataType, value: unknown) =>
  new Variant({ dataType, value, arrayType: VariantArrayType.Scalar });
const array = (dataType: DataType, value: unknown) =>
  new Variant({ dataType, value, arrayType: VariantArrayType.Array });

/** An Int64/UInt64 Variant of `n` (node-opcua's [high, low] 32-bit words). */
function int64(dataType: DataType.Int64 | DataType.UInt64, n: bigint): Variant {
  const hi = Number(BigInt.asUintN(32, n >> 32n)), lo = Number(BigInt.asUintN(32, n));
  return scalar(dataType, [hi, lo]);
}

function typedVariables(nsIndex: number): TypedVariable[] {
  const s = (name: string, dataType: DataType, value: unknown): TypedVariable => ({
    group: "Scalars",
    name,
    dataType: DataType[dataType],
    value: dataType === DataType.Int64 || dataType === DataType.UInt64
      ? int64(dataType, value as bigint)
      : scalar(dataType, value),
  });
  return [
    s("Float", DataType.Float, 42.9),
    s("Double", DataType.Double, 65),
    s("Int32", DataType.Int32, -123456),
    s("UInt16", DataType.UInt16, 65535),
    s("Byte", DataType.Byte, 255),
    s("SByte", DataType.SByte, -128),
    s("Int64", DataType.Int64, 2n ** 53n + 1n),
    s("Int64Small", DataType.Int64, -42n),
    s("UInt64", DataType.UInt64, 2n ** 64n - 1n),
    s("Boolean", DataType.Boolean, false),
    s("String", DataType.String, "Grüße, Ω"),
    s("DateTime", DataType.DateTime, new Date("2026-01-02T03:04:05.678Z")),
    s(
      "LocalizedText",
      DataType.LocalizedText,
      new LocalizedText({ locale: "de-DE", text: "Störung" }),
    ),
    s(
      "QualifiedName",
      DataType.QualifiedName,
      new QualifiedName({ namespaceIndex: nsIndex, name: "Batch42" }),
    ),
    s("ByteString", DataType.ByteString, Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff])),
    s("Guid", DataType.Guid, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"),
    {
      group: "Arrays",
      name: "DoubleArray",
      dataType: "Double",
      value: array(DataType.Double, [1.5, -2.25, 0, 1e-7]),
    },
    {
      group: "Arrays",
      name: "FloatArray",
      dataType: "Float",
      value: array(DataType.Float, [0.1, 42.9]),
    },
    {
      group: "Arrays",
      name: "StringArray",
      dataType: "String",
      value: array(DataType.String, ["a", "b,c", "ü"]),
    },
    {
      group: "Arrays",
      name: "Int64Array",
      dataType: "Int64",
      value: array(DataType.Int64, [[0, 1], [0x200000, 1], [0xffffffff, 0xfffffffe]]),
    },
    {
      group: "Arrays",
      name: "ByteStringArray",
      dataType: "ByteString",
      value: array(DataType.ByteString, [Buffer.from([1, 2]), Buffer.from([255])]),
    },
    {
      group: "Arrays",
      name: "Int32Matrix",
      dataType: "Int32",
      value: new Variant({
        dataType: DataType.Int32,
        arrayType: VariantArrayType.Matrix,
        dimensions: [2, 3],
        value: new Int32Array([-1, 2, 3, 4, 5, -6]),
      }),
    },
    {
      group: "Structures",
      name: "Range",
      dataType: "Range",
      value: scalar(DataType.ExtensionObject, new Range({ low: -20, high: 150.5 })),
    },
    {
      group: "Structures",
      name: "BuildInfo",
      dataType: "BuildInfo",
      value: scalar(
        DataType.ExtensionObject,
        new BuildInfo({
          productUri: "urn:otedge:simulator",
          manufacturerName: "otedge",
          productName: "Press controller",
          softwareVersion: "1.2.3",
          buildNumber: "42",
          buildDate: new Date("2026-03-04T05:06:07.000Z"),
        }),
      ),
    },
  ];
}

/**
 * Adds the typed variables below the folder `root` (e.g. `Plant1/Types`);
 * `folderOf` gives (and creates) the folder of a path. Returns their paths.
 */
export function addTypedVariables(
  ns: Namespace,
  root: string,
  folderOf: (parts: string[]) => UAObject,
): string[] {
  return typedVariables(ns.index).map((t) => {
    const path = `${root}/${t.group}/${t.name}`;
    const { arrayType, dimensions } = t.value;
    const v = ns.addVariable({
      componentOf: folderOf(path.split("/").slice(0, -1)),
      browseName: t.name,
      nodeId: `s=${path}`,
      dataType: t.dataType,
      valueRank: arrayType === VariantArrayType.Scalar
        ? -1
        : arrayType === VariantArrayType.Matrix
        ? dimensions!.length
        : 1,
      arrayDimensions: arrayType === VariantArrayType.Matrix ? dimensions : undefined,
      minimumSamplingInterval: 100,
    });
    v.setValueFromSource(t.value);
    return path;
  });
}
