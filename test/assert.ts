/** Small assertions for the tests (jsr's @std/assert is not reachable from our machines). */
import { deepStrictEqual } from "node:assert";

/** Throws when `cond` is falsy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Deep equality (node's strict deep equal), with a readable message. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (msg === undefined) deepStrictEqual(actual, expected);
  else deepStrictEqual(actual, expected, msg);
}

/** Throws unless `fn` throws (or rejects) an error whose message contains `includes`. */
export async function assertRejects(fn: () => unknown, includes?: string): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e as Error;
    if (includes && !String(err?.message).includes(includes)) {
      throw new Error(
        `expected error containing ${JSON.stringify(includes)}, got ${
          JSON.stringify(err?.message)
        }`,
      );
    }
    return err;
  }
  throw new Error("expected an error, none was thrown");
}
