/**
 * A serial line for Modbus RTU without native modules: line parameters set
 * with `stty`, the device opened twice with `Deno.open` (one handle reads, one
 * writes: on a single handle a write would wait behind the pending read).
 * Reads return at least every 100 ms (`min 0 time 1`), so the line can be
 * closed at any time without leaving a read pending on the device.
 */
import type { RtuLink } from "./rtu_port.ts";

/** Line parameters of a serial port. */
export interface SerialSettings {
  baudRate: number;
  parity: "none" | "even" | "odd";
  dataBits: number;
  stopBits: number;
}

/** Longest a pending read waits before it returns empty (stty `time`, tenths of a second). */
export const SERIAL_READ_TICK_DS = 1;

/** The `stty` arguments that set `path` to `s`, raw, no echo, no flow control, modem lines ignored. */
export function sttyArgs(path: string, s: SerialSettings): string[] {
  const parity = s.parity === "none"
    ? ["-parenb"]
    : ["parenb", s.parity === "odd" ? "parodd" : "-parodd"];
  return [
    "-F",
    path,
    String(s.baudRate),
    `cs${s.dataBits}`,
    ...parity,
    s.stopBits === 2 ? "cstopb" : "-cstopb",
    "raw",
    "-echo",
    "clocal",
    "-crtscts",
    "-ixon",
    "-ixoff",
    "min",
    "0",
    "time",
    String(SERIAL_READ_TICK_DS),
  ];
}

/** Bits on the line per byte: start, data, parity, stop. */
export function bitsPerChar(s: SerialSettings): number {
  return 1 + s.dataBits + (s.parity === "none" ? 0 : 1) + s.stopBits;
}

/** Time one byte takes on the line, in ms. */
export function charMs(s: SerialSettings): number {
  return bitsPerChar(s) * 1000 / s.baudRate;
}

/**
 * The silent interval that separates RTU frames: 3.5 character times, fixed
 * at 1.75 ms above 19,200 baud (Modbus over serial line, 2.5.1.1).
 */
export function frameGapMs(s: SerialSettings): number {
  return s.baudRate > 19_200 ? 1.75 : 3.5 * charMs(s);
}

/** Sets the line parameters of `path` with `stty`; throws with stty's own words. */
async function configureLine(path: string, s: SerialSettings): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("stty", {
      args: sttyArgs(path, s),
      stdout: "null",
      stderr: "piped",
    })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error("stty is not installed; install coreutils to use serial RTU");
    }
    throw e;
  }
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim();
    const hint = /unable to perform all requested/.test(text)
      ? " (the device refused some line settings; a pseudo-terminal keeps no parity: use parity none)"
      : "";
    throw new Error(`cannot set up ${path}: ${text || `stty exited with ${out.code}`}${hint}`);
  }
}

/** An open serial line: the `RtuLink` of a device path. */
class SerialLine implements RtuLink {
  #reader: Deno.FsFile;
  #writer: Deno.FsFile;
  #reading = false;
  #closed = false;
  #released: Promise<void>;
  #release: () => void = () => {};

  constructor(reader: Deno.FsFile, writer: Deno.FsFile) {
    this.#reader = reader;
    this.#writer = writer;
    this.#released = new Promise((resolve) => this.#release = resolve);
  }

  async read(buf: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    this.#reading = true;
    try {
      return (await this.#reader.read(buf)) ?? 0;
    } finally {
      this.#reading = false;
      if (this.#closed) this.#closeReader();
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let done = 0; done < bytes.length;) {
      done += await this.#writer.write(bytes.subarray(done));
    }
  }

  /** Closes both handles; the reader once its pending read returned (within 100 ms). */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#writer.close();
      } catch { /* already closed */ }
      if (!this.#reading) this.#closeReader();
    }
    return this.#released;
  }

  #closeReader(): void {
    try {
      this.#reader.close();
    } catch { /* already closed */ }
    this.#release();
  }
}

/**
 * Opens the serial device `path` with line parameters `s`. Needs `stty` and
 * full access to the device (Deno asks `--allow-all` for paths under /dev).
 */
export async function openSerialLine(path: string, s: SerialSettings): Promise<RtuLink> {
  await configureLine(path, s);
  const reader = await Deno.open(path, { read: true });
  try {
    const writer = await Deno.open(path, { write: true });
    return new SerialLine(reader, writer);
  } catch (e) {
    reader.close();
    throw e;
  }
}
