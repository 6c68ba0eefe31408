/**
 * Fernet tokens (https://github.com/fernet/spec) with Web Crypto: version
 * byte 0x80, 64-bit big-endian timestamp in seconds, 16-byte IV,
 * AES-128-CBC ciphertext with PKCS#7 padding, HMAC-SHA256 over all of that,
 * the whole base64url encoded. The 32-byte key is a 16-byte signing key
 * followed by a 16-byte encryption key.
 */

const VERSION = 0x80;
const HEADER = 1 + 8 + 16;
const MAC = 32;
const BLOCK = 16;
/** Tokens stamped further in the future than this are rejected. */
const MAX_CLOCK_SKEW_S = 60;

/** A token that is malformed, forged, expired or for another key; or a bad key. */
export class FernetError extends Error {
  override name = "FernetError";
}

/** base64url text of bytes, with `=` padding as other Fernet implementations write it. */
export function base64UrlEncode(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}

/** Bytes of base64url text (padding optional); throws FernetError on anything else. */
export function base64UrlDecode(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text) || text.replace(/=+$/, "").length % 4 === 1) {
    throw new FernetError("not base64url text");
  }
  const b64 = text.replace(/=+$/, "").replaceAll("-", "+").replaceAll("_", "/");
  let binary: string;
  try {
    binary = atob(b64 + "=".repeat((4 - b64.length % 4) % 4));
  } catch {
    throw new FernetError("not base64url text");
  }
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** A new random Fernet key, base64url encoded. */
export function generateFernetKey(): string {
  return base64UrlEncode(crypto.getRandomValues(new Uint8Array(32)));
}

/** Options for `encrypt`; both exist for the test vectors. */
export interface EncryptOptions {
  /** 16-byte IV; random when absent. Never reuse one in real use. */
  iv?: Uint8Array;
  /** Timestamp in seconds since the epoch; now when absent. */
  time?: number;
}

/** Options for `decrypt`. */
export interface DecryptOptions {
  /** Reject tokens older than this many seconds. No age limit when absent. */
  ttlSeconds?: number;
  /** Current time in seconds since the epoch; now when absent. */
  now?: number;
}

/** Encrypts and decrypts Fernet tokens with one key. */
export interface Fernet {
  /** A token for the plaintext (UTF-8 for strings). */
  encrypt(plaintext: Uint8Array | string, opts?: EncryptOptions): Promise<string>;
  /** The plaintext of a token; throws FernetError when it is not valid for this key. */
  decrypt(token: string, opts?: DecryptOptions): Promise<Uint8Array>;
  /** The plaintext of a token as UTF-8 text. */
  decryptText(token: string, opts?: DecryptOptions): Promise<string>;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A Fernet for a 32-byte key, given as bytes or base64url text. */
export async function createFernet(key: string | Uint8Array): Promise<Fernet> {
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = typeof key === "string" ? base64UrlDecode(key) : new Uint8Array(key);
  } catch {
    throw new FernetError("a Fernet key is 32 bytes of base64url text");
  }
  if (raw.length !== 32) throw new FernetError("a Fernet key is 32 bytes");
  const signKey = await crypto.subtle.importKey(
    "raw",
    raw.slice(0, 16),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
  const cryptKey = await crypto.subtle.importKey("raw", raw.slice(16), "AES-CBC", false, [
    "encrypt",
    "decrypt",
  ]);

  async function encrypt(plaintext: Uint8Array | string, opts: EncryptOptions = {}) {
    const data = typeof plaintext === "string"
      ? new TextEncoder().encode(plaintext)
      : new Uint8Array(plaintext);
    const iv = opts.iv === undefined
      ? crypto.getRandomValues(new Uint8Array(16))
      : new Uint8Array(opts.iv);
    if (iv.length !== 16) throw new FernetError("the IV is 16 bytes");
    const ciphertext = new Uint8Array(
      await crypto.subtle.encrypt({ name: "AES-CBC", iv }, cryptKey, data),
    );
    const body = new Uint8Array(HEADER + ciphertext.length);
    body[0] = VERSION;
    new DataView(body.buffer).setBigUint64(1, BigInt(opts.time ?? nowSeconds()));
    body.set(iv, 9);
    body.set(ciphertext, HEADER);
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", signKey, body));
    const token = new Uint8Array(body.length + MAC);
    token.set(body);
    token.set(mac, body.length);
    return base64UrlEncode(token);
  }

  async function decrypt(token: string, opts: DecryptOptions = {}) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = base64UrlDecode(token);
    } catch {
      throw new FernetError("invalid token: not base64url text");
    }
    const cipherLength = bytes.length - HEADER - MAC;
    if (cipherLength < BLOCK || cipherLength % BLOCK !== 0) {
      throw new FernetError("invalid token: wrong length");
    }
    if (bytes[0] !== VERSION) throw new FernetError("invalid token: unknown version");
    const body = bytes.subarray(0, bytes.length - MAC);
    const mac = bytes.subarray(bytes.length - MAC);
    if (!await crypto.subtle.verify("HMAC", signKey, mac, body)) {
      throw new FernetError("invalid token: signature does not match (wrong key or altered)");
    }
    const time = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(1));
    const now = opts.now ?? nowSeconds();
    if (opts.ttlSeconds !== undefined && time + opts.ttlSeconds < now) {
      throw new FernetError("invalid token: expired");
    }
    if (time > now + MAX_CLOCK_SKEW_S) {
      throw new FernetError("invalid token: timestamp is in the future");
    }
    try {
      return new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-CBC", iv: bytes.slice(9, HEADER) },
          cryptKey,
          bytes.slice(HEADER, bytes.length - MAC),
        ),
      );
    } catch {
      throw new FernetError("invalid token: bad padding");
    }
  }

  return {
    encrypt,
    decrypt,
    async decryptText(token, opts) {
      return new TextDecoder("utf-8", { fatal: true }).decode(await decrypt(token, opts));
    },
  };
}
