/** The acks the gate writes itself: PUBACK/PUBREC bytes as MQTT 3.1.1 and 5 define them. */
import { assertEquals } from "./assert.ts";
import { encodeAcks } from "../src/sources/mqtt/acks.ts";

Deno.test("mqtt acks: PUBACK and PUBREC are type, length 2 and the packet id", () => {
  const bytes = encodeAcks([
    { cmd: "puback", messageId: 1 },
    { cmd: "pubrec", messageId: 0x1234, reasonCode: 0 },
    { cmd: "puback", messageId: 65535 },
  ]);
  assertEquals(
    Array.from(bytes!),
    [0x40, 2, 0, 1, 0x50, 2, 0x12, 0x34, 0x40, 2, 0xff, 0xff],
  );
});

Deno.test("mqtt acks: a reason code, properties or another packet are left to mqtt.js", () => {
  assertEquals(encodeAcks([{ cmd: "puback", messageId: 1, reasonCode: 16 }]), undefined);
  assertEquals(
    encodeAcks([{ cmd: "puback", messageId: 2 }, {
      cmd: "pubrec",
      messageId: 3,
      properties: { reasonString: "x" },
    }]),
    undefined,
  );
  assertEquals(encodeAcks([{ cmd: "pubcomp", messageId: 4 }]), undefined);
  assertEquals(encodeAcks([{ cmd: "puback" }]), undefined);
});
