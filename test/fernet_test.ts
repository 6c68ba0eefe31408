import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import {
  base64UrlDecode,
  base64UrlEncode,
  createFernet,
  FernetError,
  generateFernetKey,
} from "../src/config/fernet.ts";

const DIR = new URL("./fixtures/fernet/", import.meta.url);
const vectors = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, DIR)));
const seconds = (iso: string) => Date.parse(iso) / 1000;

interface GenerateVector {
  token: string;
  now: string;
  iv: number[];
  src: string;
  secret: string;
}
interface VerifyVector {
  token: string;
  now: string;
  ttl_sec: number;
  src: string;
  secret: string;
}
interface InvalidVector {
  desc: string;
  token: string;
  now: string;
  ttl_sec: number;
  secret: string;
}

Deno.test("generate vectors: exact token from secret, iv, time and plaintext", async () => {
  const list: GenerateVector[] = vectors("generate.json");
  ok(list.length > 0);
  for (const v of list) {
    const f = await createFernet(v.secret);
    const token = await f.encrypt(v.src, { iv: new Uint8Array(v.iv), time: seconds(v.now) });
    strictEqual(token, v.token);
  }
});

Deno.test("verify vectors: tokens decrypt to their plaintext", async () => {
  const list: VerifyVector[] = vectors("verify.json");
  ok(list.length > 0);
  for (const v of list) {
    const f = await createFernet(v.secret);
    strictEqual(
      await f.decryptText(v.token, { ttlSeconds: v.ttl_sec, now: seconds(v.now) }),
      v.src,
    );
  }
});

/** The reason each invalid vector must be rejected for, as our error message says it. */
const REASONS: Record<string, string> = {
  "incorrect mac": "signature does not match",
  "too short": "wrong length",
  "invalid base64": "not base64url",
  "payload size not multiple of block size": "wrong length",
  "payload padding error": "bad padding",
  "far-future TS (unacceptable clock skew)": "in the future",
  "expired TTL": "expired",
  "incorrect IV (causes padding error)": "bad padding",
};

Deno.test("invalid vectors: every token is rejected for its reason", async () => {
  const list: InvalidVector[] = vectors("invalid.json");
  deepStrictEqual(list.map((v) => v.desc).sort(), Object.keys(REASONS).sort());
  for (const v of list) {
    const f = await createFernet(v.secret);
    await rejects(
      f.decrypt(v.token, { ttlSeconds: v.ttl_sec, now: seconds(v.now) }),
      (e: unknown) => {
        ok(e instanceof FernetError, `${v.desc}: ${e}`);
        ok(e.message.includes(REASONS[v.desc]), `${v.desc}: got "${e.message}"`);
        return true;
      },
    );
  }
});

Deno.test("without a ttl an old token still decrypts; with one it expires", async () => {
  const [v]: VerifyVector[] = vectors("verify.json");
  const f = await createFernet(v.secret);
  strictEqual(await f.decryptText(v.token), v.src);
  await rejects(f.decrypt(v.token, { ttlSeconds: 60 }), /expired/);
});

Deno.test("round trip with a random key and IV; other keys and altered tokens fail", async () => {
  const key = generateFernetKey();
  strictEqual(base64UrlDecode(key).length, 32);
  const f = await createFernet(key);
  const a = await f.encrypt("s3cret – ünïcode");
  const b = await f.encrypt("s3cret – ünïcode");
  ok(a !== b, "two encryptions use different IVs");
  strictEqual(await f.decryptText(a), "s3cret – ünïcode");
  strictEqual((await f.decrypt(await f.encrypt(new Uint8Array(0)))).length, 0);

  const other = await createFernet(generateFernetKey());
  await rejects(other.decrypt(a), /signature does not match/);

  const bytes = base64UrlDecode(a);
  bytes[30] ^= 1;
  await rejects(f.decrypt(base64UrlEncode(bytes)), /signature does not match/);
  bytes[30] ^= 1;
  bytes[0] = 0x81;
  await rejects(f.decrypt(base64UrlEncode(bytes)), /unknown version/);
});

Deno.test("keys must be 32 bytes of base64url", async () => {
  await rejects(createFernet("too-short"), FernetError);
  await rejects(createFernet(new Uint8Array(16)), /32 bytes/);
  throws(() => base64UrlDecode("abc$"), FernetError);
  deepStrictEqual(base64UrlDecode("-_8"), new Uint8Array([0xfb, 0xff]));
  strictEqual(base64UrlEncode(new Uint8Array([0xfb, 0xff])), "-_8=");
});
