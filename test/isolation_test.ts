/** The isolation's decisions, step by step, without a network. */
import { assert, assertEquals } from "./assert.ts";
import { Isolation, MAX_UNDECIDED_REFUSALS } from "../src/sinks/zerobus/isolation.ts";
import type { Segment } from "../src/spool/spool.ts";
import { appendRow } from "../src/sinks/zerobus/wire.ts";

const dec = new TextDecoder();
let seq = 0;
function segment(...rows: string[]): Segment {
  const buf = new Uint8Array(10_000);
  let off = 0;
  for (const r of rows) off = appendRow(buf, off, r);
  return { target: "t", seq: seq++, rows: buf.slice(0, off), count: rows.length, firstMs: 0 };
}
const text = (rows: Uint8Array[]) => rows.map((r) => dec.decode(r));

Deno.test("isolation: a refused first row waits for the verdict, then is dead-lettered", () => {
  const iso = new Isolation();
  const seg = segment("bad", "good1", "good2");
  assertEquals(iso.next().kind, "segment");
  iso.refused({ kind: "segment" }, seg);
  const u0 = iso.next();
  assert(u0.kind === "row" && dec.decode(u0.row) === "bad");
  const r0 = iso.refused(u0);
  assertEquals([r0.deadLetters.length, r0.putBack], [0, undefined], "no verdict yet");
  const a1 = iso.accepted(iso.next());
  assertEquals(
    text(a1.deadLetters),
    ["bad"],
    "the table accepts records: 'bad' is the record's fault",
  );
  const a2 = iso.accepted(iso.next());
  assertEquals(a2.deletes, [seg], "every row resolved: the segment can go");
  assertEquals(iso.next().kind, "segment");
});

Deno.test("isolation: a lone refused row is decided by the next segment", () => {
  const iso = new Isolation();
  const lone = segment("bad");
  iso.refused({ kind: "segment" }, lone);
  const r = iso.refused(iso.next());
  assertEquals(r.deadLetters, []);
  assertEquals(iso.next().kind, "segment", "probe the next segment while 'bad' waits");
  const a = iso.accepted({ kind: "segment" });
  assertEquals(text(a.deadLetters), ["bad"]);
  assertEquals(a.deletes, [lone]);
});

Deno.test("isolation: a table that refuses everything gets nothing dead-lettered", () => {
  const iso = new Isolation();
  const segs = [
    segment(...Array.from({ length: 6 }, (_, i) => `a${i}`)),
    segment(...Array.from({ length: 6 }, (_, i) => `b${i}`)),
  ];
  let out: ReturnType<Isolation["refused"]> | undefined;
  let refusals = 0;
  for (const s of segs) {
    iso.refused({ kind: "segment" }, s);
    while (iso.next().kind === "row" && !out?.putBack) {
      out = iso.refused(iso.next());
      refusals++;
      assertEquals(out.deadLetters, []);
    }
    if (out?.putBack) break;
  }
  assertEquals(refusals, MAX_UNDECIDED_REFUSALS);
  assertEquals(
    out!.putBack!.map((s) => s.seq).sort(),
    segs.map((s) => s.seq).sort(),
    "both held segments go back",
  );
});

Deno.test("isolation: clean single segments end it", () => {
  const iso = new Isolation();
  for (let i = 0; i < 3; i++) iso.accepted({ kind: "segment" });
  assertEquals(iso.done, false);
  iso.accepted({ kind: "segment" });
  assertEquals(iso.done, true);
});
