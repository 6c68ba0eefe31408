/**
 * Fault injection settings of the local Zerobus stand-in. The same JSON shape is
 * accepted by `startZerobusLocal({faults})`, `setFaults()` and `POST /faults`.
 */

/** Injected faults; an absent field means "no fault". */
export interface Faults {
  /** Delay before each ack is sent, in milliseconds. */
  ack_latency_ms?: number;
  /** On every stream, accept and ack this many requests, then end the call with UNAVAILABLE. */
  fail_after?: number;
  /** After this many requests on a stream, send CloseStreamSignal and end the call OK later. */
  close_after?: number;
  /** Duration carried by the close signal and waited before ending the call (default 1000). */
  close_duration_ms?: number;
  /** Full table names whose create_stream fails with INVALID_ARGUMENT. */
  reject_tables?: string[];
  /** Reject every call with UNAUTHENTICATED. */
  unauthenticated?: boolean;
  /** A JSON row containing this text is refused like a row the table cannot take (INVALID_ARGUMENT). */
  reject_rows_containing?: string;
}

/** A fault update: a field set to null clears that fault. */
export type FaultsUpdate = { [K in keyof Faults]?: Faults[K] | null };

const COUNTS = ["ack_latency_ms", "fail_after", "close_after", "close_duration_ms"] as const;

/**
 * Validates an untrusted fault update (e.g. a parsed `POST /faults` body).
 * Returns the update or throws an Error naming the bad field.
 */
export function parseFaultsUpdate(input: unknown): FaultsUpdate {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new Error("faults must be a JSON object");
  }
  const out: FaultsUpdate = {};
  for (const [key, value] of Object.entries(input)) {
    if ((COUNTS as readonly string[]).includes(key)) {
      if (value !== null && !(Number.isSafeInteger(value) && (value as number) >= 0)) {
        throw new Error(`${key} must be a non-negative integer or null`);
      }
      out[key as typeof COUNTS[number]] = value as number | null;
    } else if (key === "reject_tables") {
      if (value !== null && !(Array.isArray(value) && value.every((v) => typeof v === "string"))) {
        throw new Error("reject_tables must be a list of table names or null");
      }
      out.reject_tables = value as string[] | null;
    } else if (key === "reject_rows_containing") {
      if (value !== null && !(typeof value === "string" && value !== "")) {
        throw new Error("reject_rows_containing must be a non-empty string or null");
      }
      out.reject_rows_containing = value as string | null;
    } else if (key === "unauthenticated") {
      if (value !== null && typeof value !== "boolean") {
        throw new Error("unauthenticated must be a boolean or null");
      }
      out.unauthenticated = value as boolean | null;
    } else {
      throw new Error(`unknown fault ${JSON.stringify(key)}`);
    }
  }
  return out;
}

/** Returns `current` with `update` applied (null clears a field); does not mutate either. */
export function mergeFaults(current: Faults, update: FaultsUpdate): Faults {
  const out: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(update)) {
    if (value === null || value === undefined) delete out[key];
    else out[key] = Array.isArray(value) ? [...value] : value;
  }
  return out as Faults;
}
