import { assert, assertEquals } from "./assert.ts";
import { Spool } from "../src/spool/spool.ts";
import { splitRows } from "../src/sinks/zerobus/wire.ts";

const dec = new TextDecoder();

function rowsOf(segs: { rows: Uint8Array }[]): string[] {
  return segs.flatMap((s) => splitRows(s.rows).map((r) => dec.decode(r)));
}

async function tempSpool(extra: Partial<Parameters<typeof Spool.open>[0]> = {}) {
  const dir = await Deno.makeTempDir({ prefix: "otedge-spool-" });
  const path = `${dir}/spool.sqlite3`;
  const spool = await Spool.open({ path, maxBytes: 50_000_000, maxRecords: 1_000_000, ...extra });
  return { dir, path, spool };
}

Deno.test("spool: appended rows come out of the lane in order, framed for the wire", async () => {
  const { dir, spool } = await tempSpool({ maxRowsPerSegment: 100 });
  const rows = Array.from(
    { length: 1000 },
    (_, i) => JSON.stringify({ i, text: "température °C ✓" }),
  );
  await spool.append("t1", rows.slice(0, 500));
  await spool.append("t1", rows.slice(500));
  assertEquals(spool.totalRecords, 1000);
  const got = await spool.lane("t1").take(100_000, 10_000_000);
  assert(got.length >= 10, "at most 100 rows per segment");
  assertEquals(rowsOf(got), rows);
  await spool.ack(got);
  assertEquals(spool.totalRecords, 0);
  assertEquals(spool.totalBytes, 0);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: unacknowledged segments survive a reopen and are read back in order", async () => {
  const { dir, path, spool } = await tempSpool();
  const rows = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ i, pad: "x".repeat(200) }));
  await spool.append("a.b.c", rows);
  await spool.append("x.y.z", ['{"other":1}']);
  const first = await spool.lane("a.b.c").take(1000, 10_000_000);
  await spool.ack(first); // the first rows were delivered
  const delivered = rowsOf(first).length;
  spool.kv.close(); // like a crash: no flush, no close bookkeeping

  const again = await Spool.open({ path, maxBytes: 50_000_000, maxRecords: 1_000_000 });
  assertEquals(again.totalRecords, 3001 - delivered);
  const lane = again.lane("a.b.c");
  assert(lane.spilled, "recovered lanes read from disk");
  const back: string[] = [];
  while (true) {
    const segs = await lane.take(1000, 10_000_000);
    if (segs.length === 0) break;
    back.push(...rowsOf(segs));
    await again.ack(segs);
  }
  assertEquals(back, rows.slice(delivered));
  assertEquals(rowsOf(await again.lane("x.y.z").take(10, 1_000_000)), ['{"other":1}']);
  await again.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: a lane past its memory bound spills and reads back from disk without loss", async () => {
  const { dir, spool } = await tempSpool({ laneMemoryBytes: 100_000 });
  const rows = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, pad: "y".repeat(100) }));
  for (let i = 0; i < rows.length; i += 250) await spool.append("t", rows.slice(i, i + 250));
  const lane = spool.lane("t");
  assert(lane.spilled, "lane spilled");
  assert(lane.readyBytes <= 100_000, `memory bound held: ${lane.readyBytes}`);
  const back: string[] = [];
  for (let guard = 0; guard < 1000; guard++) {
    const segs = await lane.take(1000, 10_000_000);
    if (segs.length === 0 && lane.idle) break;
    back.push(...rowsOf(segs));
    await spool.ack(segs);
  }
  assertEquals(back.length, rows.length);
  assertEquals(back, rows);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: put-back segments are sent again first, in sequence order", async () => {
  const { dir, spool } = await tempSpool({ maxRowsPerSegment: 10 });
  const rows = Array.from({ length: 50 }, (_, i) => `{"i":${i}}`);
  await spool.append("t", rows);
  const lane = spool.lane("t");
  const a = await lane.take(20, 1_000_000);
  const b = await lane.take(20, 1_000_000);
  lane.putBack([...b, ...a]);
  assertEquals(rowsOf(await lane.take(1000, 1_000_000)), rows);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: caps report full and release waiters once acks free space", async () => {
  const { dir, spool } = await tempSpool({ maxRecords: 100, maxRowsPerSegment: 10 });
  await spool.append("t", Array.from({ length: 100 }, (_, i) => `{"i":${i}}`));
  assert(spool.isFull());
  let released = false;
  const waiting = spool.waitForSpace().then(() => (released = true));
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(released, false);
  const segs = await spool.lane("t").take(50, 1_000_000);
  await spool.ack(segs);
  await waiting;
  assert(released && !spool.isFull());
  // 50 left, cap 100: room for 60 more needs exactly one 10-row segment to go.
  assertEquals(spool.totalRecords, 50);
  const [a, b] = await Promise.all([spool.dropOldest(60, 0), spool.dropOldest(60, 0)]);
  assertEquals([a, b], [10, 0], "the second caller finds the room already made");
  assertEquals(spool.totalRecords, 40);
  assertEquals(spool.droppedRecords, 10);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: dead letters are stored with source, reason and time", async () => {
  const { dir, path, spool } = await tempSpool();
  await spool.deadLetter({ source: "mqtt1", reason: "malformed JSON at 1:5", item: "{oops" });
  await spool.deadLetter({ source: "mqtt1", reason: "too big", item: "z".repeat(100_000) });
  const list = await spool.listDeadLetters();
  assertEquals(list.length, 2);
  assertEquals(list[0].source, "mqtt1");
  assertEquals(list[0].reason, "malformed JSON at 1:5");
  assert(list[1].item.length < 40_000, "large items are truncated to fit");
  await spool.close();
  const again = await Spool.open({ path, maxBytes: 1e9, maxRecords: 1e9 });
  assertEquals(again.deadLetters, 2);
  await again.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("spool: a corrupt spool file is moved aside, kept, and a new spool starts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "otedge-spool-" });
  const path = `${dir}/spool.sqlite3`;
  await Deno.writeTextFile(path, "this is not a database ".repeat(200));
  const spool = await Spool.open({ path, maxBytes: 1e9, maxRecords: 1e9 });
  assert(spool.recoveredFrom?.startsWith(`${path}.corrupt-`));
  assertEquals(
    (await Deno.readTextFile(spool.recoveredFrom!)).slice(0, 23),
    "this is not a database ",
  );
  await spool.append("t", ["{}"]);
  assertEquals(spool.totalRecords, 1);
  await spool.close();
  await Deno.remove(dir, { recursive: true });
});
