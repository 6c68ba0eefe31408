/**
 * Structured logging: JSON lines when stderr is not a terminal, readable lines
 * when it is. Values of keys that look like secrets are never written.
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warning" | "error";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40 };
const SECRET_KEY = /secret|password|token|authorization|credential|private_key/i;

/** Replaces values of secret-looking keys, recursively. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null && v !== ""
      ? "***"
      : redact(v, depth + 1);
  }
  return out;
}

/** A logger bound to a component name. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warning(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
  level: LogLevel;
}

/** Creates a logger writing to stderr (or `write` for tests). */
export function createLogger(
  level: LogLevel = "info",
  component = "agent",
  write: (line: string) => void = (l) => console.error(l),
  pretty = Deno.stderr.isTerminal(),
): Logger {
  const state = { level };
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[state.level]) return;
    const safe = fields ? (redact(fields) as Record<string, unknown>) : undefined;
    const time = new Date().toISOString();
    if (pretty) {
      const extra = safe && Object.keys(safe).length > 0 ? " " + JSON.stringify(safe) : "";
      write(`${time} ${lvl.toUpperCase().padEnd(7)} [${component}] ${msg}${extra}`);
    } else {
      write(JSON.stringify({ time, level: lvl, component, msg, ...safe }));
    }
  };
  return {
    get level() {
      return state.level;
    },
    set level(l: LogLevel) {
      state.level = l;
    },
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warning: (m, f) => emit("warning", m, f),
    error: (m, f) => emit("error", m, f),
    child: (c) => createLogger(state.level, c, write, pretty),
  };
}
