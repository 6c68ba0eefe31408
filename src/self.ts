/** Starting this program again as a child process (for the demo, tests and the benchmark). */

/** Set in a child's environment to the parent's pid: the child exits when that parent is gone. */
export const PARENT_ENV = "OTEDGE_PARENT_PID";

/**
 * In a child started by `spawnSelf`: exits (code 1) once the parent process is
 * gone, so a parent killed with SIGKILL leaves no orphans behind.
 */
export function exitWithParent(env: Record<string, string> = Deno.env.toObject()): void {
  const parent = Number(env[PARENT_ENV]);
  if (!Number.isInteger(parent) || parent <= 0) return;
  const timer = setInterval(() => {
    if (Deno.ppid !== parent) {
      console.error(`otedge: parent process ${parent} is gone; exiting`);
      Deno.exit(1);
    }
  }, 1000);
  Deno.unrefTimer(timer);
}

/** The command line that runs this program with `args`, compiled or under `deno run`. */
export function selfCommand(args: string[]): string[] {
  const exe = Deno.execPath();
  const compiled = !/(^|\/)deno(\.exe)?$/.test(exe);
  if (compiled) return [exe, ...args];
  const main = new URL("../main.ts", import.meta.url).pathname;
  return [exe, "run", "--allow-all", main, ...args];
}

/** A child process of this program, with the JSON line it printed when ready. */
export interface SelfProcess {
  child: Deno.ChildProcess;
  pid: number;
  ready: Record<string, unknown>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Spawns this program with `args` and waits until it prints a JSON line whose
 * `event` equals `readyEvent` on stdout. Stderr is passed through.
 */
export async function spawnSelf(
  args: string[],
  readyEvent: string,
  opts: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {},
): Promise<SelfProcess> {
  const [cmd, ...rest] = selfCommand(args);
  const child = new Deno.Command(cmd, {
    args: rest,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
    env: { ...(opts.env ?? Deno.env.toObject()), [PARENT_ENV]: String(Deno.pid) },
    cwd: opts.cwd,
    // Its own process group: a Ctrl-C in the terminal reaches only the parent,
    // which stops its children in order (agent first, then what it talks to).
    detached: true,
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ready: Record<string, unknown> | undefined;
  const deadline = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, opts.timeoutMs ?? 60_000);
  while (!ready) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line.startsWith("{")) continue;
      try {
        const j = JSON.parse(line);
        if (j.event === readyEvent) ready = j;
      } catch { /* not ours */ }
    }
  }
  clearTimeout(deadline);
  if (!ready) {
    const status = await child.status;
    throw new Error(`${args[0]} exited (code ${status.code}) before it was ready`);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* discard */ }
    } catch { /* closed */ }
  })();
  let stopped: Promise<void> | undefined;
  return {
    child,
    pid: child.pid,
    ready,
    stop(graceMs = 5000) {
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch {
          return;
        }
        const t = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, graceMs);
        await child.status;
        clearTimeout(t);
      })();
      return stopped;
    },
  };
}
