/**
 * Finding the records a table refuses. After the server refused a request
 * (INVALID_ARGUMENT on a created stream), the sender goes one unit at a time:
 * a segment from the lane, and the rows of a refused segment one by one. A
 * refused row is dead-lettered only once this isolation has seen the table
 * accept something, proof that the problem is the record and not the table;
 * rows refused before that wait for the verdict. Enough refusals with nothing
 * accepted mean the table refuses everything: nothing is dead-lettered and the
 * held segments go back to the lane.
 */
import type { Segment } from "../../spool/spool.ts";
import { splitRows } from "./wire.ts";

/** A unit sent during an isolation: one whole segment, or one row of a held segment. */
export type IsolationUnit =
  | { kind: "segment" }
  | { kind: "row"; row: Uint8Array };

/** What the sender must do after an isolation event. */
export interface IsolationActions {
  /** Rows the table refused, to dead-letter. */
  deadLetters: Uint8Array[];
  /** Held segments now fully resolved (rows delivered or dead-lettered), to delete from the spool. */
  deletes: Segment[];
}

/** Clean single segments, with nothing held, that end an isolation. */
export const CLEAN_SEGMENTS_TO_END = 4;
/** Refused rows without anything accepted that mean "the table refuses everything". */
export const MAX_UNDECIDED_REFUSALS = 10;

interface Held {
  segment: Segment;
  rows: Uint8Array[];
  next: number;
  refused: Uint8Array[];
}

/** The state of one isolation. */
export class Isolation {
  #current: Held | undefined;
  #undecided: Held[] = [];
  #accepted = false;
  #clean = 0;
  #pending = 0;

  /** The next unit to send: a row of the held segment, else a segment from the lane. */
  next(): IsolationUnit {
    const c = this.#current;
    return c && c.next < c.rows.length ? { kind: "row", row: c.rows[c.next] } : { kind: "segment" };
  }

  /** True once enough single segments went through with nothing held. */
  get done(): boolean {
    return this.#clean >= CLEAN_SEGMENTS_TO_END && this.holdsNothing;
  }

  /** True when no refused segment is held (nothing waits for a verdict). */
  get holdsNothing(): boolean {
    return !this.#current && this.#undecided.length === 0;
  }

  /** The table accepted a unit of this isolation. */
  accepted(unit: IsolationUnit): IsolationActions {
    const out: IsolationActions = { deadLetters: [], deletes: [] };
    if (!this.#accepted) {
      this.#accepted = true;
      for (const h of this.#undecided) {
        out.deadLetters.push(...h.refused);
        out.deletes.push(h.segment);
      }
      this.#undecided = [];
      if (this.#current) out.deadLetters.push(...this.#current.refused.splice(0));
      this.#pending = 0;
    }
    if (unit.kind === "segment") this.#clean++;
    else if (this.#current) {
      this.#current.next++;
      this.#finishCurrent(out);
    }
    return out;
  }

  /**
   * The table refused a unit of this isolation. A refused segment is held and
   * probed row by row. Returns the actions, or `putBack` with every held
   * segment when the table refuses everything (the isolation is then over).
   */
  refused(unit: IsolationUnit, segment?: Segment): IsolationActions & { putBack?: Segment[] } {
    const out: IsolationActions = { deadLetters: [], deletes: [] };
    this.#clean = 0;
    if (unit.kind === "segment") {
      if (segment) this.#current = { segment, rows: splitRows(segment.rows), next: 0, refused: [] };
      return out;
    }
    const c = this.#current!;
    if (this.#accepted) out.deadLetters.push(unit.row);
    else {
      c.refused.push(unit.row);
      this.#pending++;
    }
    c.next++;
    if (this.#pending >= MAX_UNDECIDED_REFUSALS) {
      return { ...out, putBack: this.release() };
    }
    this.#finishCurrent(out);
    return out;
  }

  #finishCurrent(out: IsolationActions): void {
    const c = this.#current;
    if (!c || c.next < c.rows.length) return;
    this.#current = undefined;
    if (c.refused.length > 0) this.#undecided.push(c); // all refused, verdict pending
    else out.deletes.push(c.segment);
  }

  /** Ends the isolation: the held segments, to put back in the lane. */
  release(): Segment[] {
    const held = [...this.#undecided, ...(this.#current ? [this.#current] : [])].map((h) =>
      h.segment
    );
    this.#current = undefined;
    this.#undecided = [];
    this.#pending = 0;
    return held;
  }
}
