/**
 * Encrypted credential store and the `otedge credentials` command.
 *
 * One JSON file, `<data_dir>/credentials.json` (mode 0600), holds a
 * PBKDF2-SHA256 salt and iteration count and one Fernet token per key. The
 * Fernet key is derived from the master password (CONNECTOR_MASTER_PASSWORD);
 * a check token tells a wrong password from a damaged file. All values are
 * decrypted at open, so lookups (`get`, used for `${credential:...}`) are
 * synchronous.
 */
import { base64UrlDecode, base64UrlEncode, createFernet, type Fernet } from "./fernet.ts";

/** PBKDF2 iterations for new stores; files asking for fewer are refused. */
export const PBKDF2_ITERATIONS = 600_000;

/** File name of the store inside the data directory. */
export const CREDENTIALS_FILE = "credentials.json";

const FORMAT = "otedge-credentials";
const CHECK_PLAINTEXT = "otedge credential store check";
const KEY_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/** A store that cannot be opened, read or written, with what to do about it. */
export class CredentialError extends Error {
  override name = "CredentialError";
}

/** The store file's JSON. */
interface StoreFile {
  format: typeof FORMAT;
  version: 1;
  kdf: { name: "PBKDF2-SHA256"; salt: string; iterations: number };
  /** Fernet token of a fixed text; decrypts only with the right master password. */
  check: string;
  /** Credential key → Fernet token of its value. */
  credentials: Record<string, string>;
}

/** An open credential store; all values are decrypted in memory. */
export interface CredentialStore {
  /** Path of the store file (it exists once something was stored). */
  readonly path: string;
  /** The value of a credential, or undefined. Synchronous; fine to pass around unbound. */
  get(key: string): string | undefined;
  /** Resolver for `loadConfigText({ credential })`; same as `get`. */
  readonly resolver: (key: string) => string | undefined;
  /** Stores (or replaces) a credential and writes the file. */
  set(key: string, value: string): Promise<void>;
  /** Removes a credential; false when it was not stored. */
  delete(key: string): Promise<boolean>;
  /** Stored keys, sorted. */
  list(): string[];
}

/** `<dataDir>/credentials.json`. */
export function credentialsPath(dataDir: string): string {
  return `${dataDir.replace(/[\\/]+$/, "") || "."}/${CREDENTIALS_FILE}`;
}

/** A random master password: 32 random bytes, base64url without padding. */
export function generatePassword(): string {
  return base64UrlEncode(crypto.getRandomValues(new Uint8Array(32))).replace(/=+$/, "");
}

/** Throws unless `key` is 1 to 128 letters, digits, `_`, `.` or `-`. */
export function checkCredentialKey(key: string): void {
  if (!KEY_PATTERN.test(key)) {
    throw new CredentialError(
      `invalid credential key '${key}': use 1 to 128 letters, digits, '_', '.' or '-'`,
    );
  }
}

async function deriveFernet(password: string, salt: Uint8Array, iterations: number) {
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(password),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(salt), iterations },
    material,
    256,
  );
  return createFernet(new Uint8Array(bits));
}

async function readStoreFile(path: string): Promise<StoreFile | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new CredentialError(`cannot read ${path}: ${e instanceof Error ? e.message : e}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new CredentialError(`${path} is not valid JSON; restore it from a backup or remove it`);
  }
  const f = data as Partial<StoreFile>;
  const ok = typeof f === "object" && f !== null && f.format === FORMAT && f.version === 1 &&
    f.kdf?.name === "PBKDF2-SHA256" && typeof f.kdf.salt === "string" &&
    Number.isSafeInteger(f.kdf.iterations) && typeof f.check === "string" &&
    typeof f.credentials === "object" && f.credentials !== null &&
    Object.values(f.credentials).every((t) => typeof t === "string");
  if (!ok) throw new CredentialError(`${path} is not an otedge credential store`);
  if (f.kdf!.iterations < PBKDF2_ITERATIONS) {
    throw new CredentialError(
      `${path} asks for ${f.kdf!.iterations} PBKDF2 iterations, fewer than ${PBKDF2_ITERATIONS}; ` +
        "it was not written by otedge",
    );
  }
  return f as StoreFile;
}

async function writeStoreFile(path: string, file: StoreFile): Promise<void> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, JSON.stringify(file, null, 2) + "\n", { mode: 0o600 });
    if (Deno.build.os !== "windows") await Deno.chmod(tmp, 0o600);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new CredentialError(`cannot write ${path}: ${e instanceof Error ? e.message : e}`);
  }
}

/**
 * Opens (or prepares, when the file does not exist yet) the store at `path`.
 * Throws CredentialError on a wrong master password or a damaged file.
 */
export async function openCredentialStore(
  path: string,
  masterPassword: string,
): Promise<CredentialStore> {
  if (masterPassword === "") {
    throw new CredentialError(
      "the master password is empty; run 'otedge credentials generate-password' and export " +
        "CONNECTOR_MASTER_PASSWORD",
    );
  }
  const existing = await readStoreFile(path);
  const salt = existing === undefined
    ? crypto.getRandomValues(new Uint8Array(16))
    : base64UrlDecode(existing.kdf.salt);
  const iterations = existing?.kdf.iterations ?? PBKDF2_ITERATIONS;
  const fernet: Fernet = await deriveFernet(masterPassword, salt, iterations);
  const values = new Map<string, string>();
  let check: string;
  if (existing === undefined) {
    check = await fernet.encrypt(CHECK_PLAINTEXT);
  } else {
    check = existing.check;
    const opened = await fernet.decryptText(check).then((t) => t === CHECK_PLAINTEXT, () => false);
    if (!opened) {
      throw new CredentialError(
        `wrong master password for ${path}: CONNECTOR_MASTER_PASSWORD is not the password ` +
          "the store was created with",
      );
    }
    for (const [key, token] of Object.entries(existing.credentials)) {
      try {
        values.set(key, await fernet.decryptText(token));
      } catch {
        throw new CredentialError(
          `credential '${key}' in ${path} is damaged; run 'otedge credentials set ${key}' again`,
        );
      }
    }
  }
  const saltText = base64UrlEncode(salt);

  /**
   * Applies one change on top of the file as it is now, so keys written by
   * others since the open survive. `change` returns false when nothing changed.
   */
  async function update(change: (tokens: Record<string, string>) => boolean): Promise<boolean> {
    const current = await readStoreFile(path);
    if (current !== undefined && current.kdf.salt !== saltText) {
      throw new CredentialError(`${path} was replaced since it was opened; open it again`);
    }
    const tokens = { ...current?.credentials };
    if (!change(tokens)) return false;
    await writeStoreFile(path, {
      format: FORMAT,
      version: 1,
      kdf: { name: "PBKDF2-SHA256", salt: saltText, iterations },
      check: current?.check ?? check,
      credentials: tokens,
    });
    return true;
  }

  const get = (key: string) => values.get(key);
  return {
    path,
    get,
    resolver: get,
    async set(key, value) {
      checkCredentialKey(key);
      const token = await fernet.encrypt(value);
      await update((tokens) => {
        tokens[key] = token;
        return true;
      });
      values.set(key, value);
    },
    async delete(key) {
      const found = await update((tokens) => {
        if (!Object.hasOwn(tokens, key)) return false;
        delete tokens[key];
        return true;
      });
      values.delete(key);
      return found;
    },
    list: () => [...values.keys()].sort(),
  };
}

// ---------------------------------------------------------------------- CLI

/** Options of `credentialsCommand`; the I/O hooks exist for tests. */
export interface CredentialsCommandOptions {
  dataDir: string;
  env: Record<string, string>;
  /** Where `set KEY` without a value reads it from; Deno.stdin when absent. */
  stdin?: ReadableStream<Uint8Array>;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
}

const USAGE = `Usage: otedge credentials <command>

Encrypted credential store at <data_dir>/credentials.json, unlocked with
CONNECTOR_MASTER_PASSWORD. Config values reference entries as \${credential:KEY}.

Commands:
  set KEY [VALUE]     store a value; without VALUE it is read from stdin (or asked
                      for without echo), which keeps secrets out of shell history
  store KEY [VALUE]   same as set
  get KEY             print a value
  list                print the stored keys
  delete KEY          remove a value
  generate-password   print a new random master password

Examples:
  export CONNECTOR_MASTER_PASSWORD="$(otedge credentials generate-password)"
  otedge credentials set zerobus.client_id
  printf '%s' "$SECRET" | otedge credentials set zerobus.client_secret
`;

const encoder = new TextEncoder();
const write = (stream: { writeSync(p: Uint8Array): number }) => (text: string) => {
  const bytes = encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += stream.writeSync(bytes.subarray(done));
};

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

/** Reads one line from the terminal without echo; undefined on Ctrl-C or Ctrl-D. */
async function readHidden(prompt: string, err: (t: string) => void): Promise<string | undefined> {
  err(prompt);
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null || buf[0] === 3 || (buf[0] === 4 && bytes.length === 0)) return undefined;
      if (buf[0] === 13 || buf[0] === 10) break;
      if (buf[0] === 127 || buf[0] === 8) bytes.pop();
      else bytes.push(buf[0]);
    }
  } finally {
    Deno.stdin.setRaw(false);
    err("\n");
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

async function readValue(
  key: string,
  opts: CredentialsCommandOptions,
  err: (t: string) => void,
): Promise<string | undefined> {
  if (opts.stdin === undefined && Deno.stdin.isTerminal()) {
    return await readHidden(`Value for ${key} (not shown): `, err);
  }
  const text = await readAll(opts.stdin ?? Deno.stdin.readable);
  return text.replace(/\r?\n$/, "");
}

/**
 * `otedge credentials ...`: set/store, get, list, delete, generate-password,
 * --help. Returns the exit code: 0 ok, 1 failure, 2 bad usage.
 */
export async function credentialsCommand(
  args: string[],
  opts: CredentialsCommandOptions,
): Promise<number> {
  const out = opts.stdout ?? write(Deno.stdout);
  const err = opts.stderr ?? write(Deno.stderr);
  const [command, ...rest] = args;
  const usage = (problem: string) => {
    err(`otedge credentials: ${problem}\nRun 'otedge credentials --help' for usage.\n`);
    return 2;
  };

  if (command === undefined) return usage("missing command");
  if (
    ["--help", "-h", "help"].includes(command) || rest.some((a) => a === "--help" || a === "-h")
  ) {
    out(USAGE);
    return 0;
  }
  const arity: Record<string, [number, number]> = {
    set: [1, 2],
    store: [1, 2],
    get: [1, 1],
    delete: [1, 1],
    list: [0, 0],
    "generate-password": [0, 0],
  };
  if (!Object.hasOwn(arity, command)) return usage(`unknown command '${command}'`);
  const [min, max] = arity[command];
  if (rest.length < min || rest.length > max) {
    return usage(
      min === max && min === 0
        ? `'${command}' takes no arguments`
        : `'${command}' takes ${min === max ? "KEY" : "KEY [VALUE]"}`,
    );
  }
  if (command === "generate-password") {
    out(`${generatePassword()}\n`);
    return 0;
  }
  const key = rest[0];
  if (key !== undefined) {
    try {
      checkCredentialKey(key);
    } catch (e) {
      return usage((e as Error).message);
    }
  }

  const password = opts.env.CONNECTOR_MASTER_PASSWORD;
  if (password === undefined || password === "") {
    err(
      "CONNECTOR_MASTER_PASSWORD is not set; run 'otedge credentials generate-password' " +
        "and export it\n",
    );
    return 1;
  }
  try {
    const store = await openCredentialStore(credentialsPath(opts.dataDir), password);
    switch (command) {
      case "set":
      case "store": {
        const value = rest[1] ?? await readValue(key, opts, err);
        if (value === undefined || value === "") {
          err(`no value given for '${key}'; nothing stored\n`);
          return 1;
        }
        await store.set(key, value);
        out(`stored credential '${key}' in ${store.path}\n`);
        return 0;
      }
      case "get": {
        const value = store.get(key);
        if (value === undefined) {
          err(`credential '${key}' is not stored; run 'otedge credentials set ${key}'\n`);
          return 1;
        }
        out(`${value}\n`);
        return 0;
      }
      case "delete": {
        if (!await store.delete(key)) {
          err(`credential '${key}' is not stored; 'otedge credentials list' shows the keys\n`);
          return 1;
        }
        out(`deleted credential '${key}'\n`);
        return 0;
      }
      default: {
        const keys = store.list();
        if (keys.length === 0) err(`no credentials stored in ${store.path}\n`);
        for (const k of keys) out(`${k}\n`);
        return 0;
      }
    }
  } catch (e) {
    err(`${e instanceof Error ? e.message : e}\n`);
    return 1;
  }
}
