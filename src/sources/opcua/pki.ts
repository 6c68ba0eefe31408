/**
 * The OPC UA sources' certificate store (PKI) on disk, without node-opcua:
 * lists the trusted and rejected server certificates and moves one between
 * `trusted/certs/` and `rejected/` by thumbprint or file name. The layout is
 * the one node-opcua-pki uses (own/, trusted/certs|crl, rejected/,
 * issuers/certs|crl), so a source's Worker sees the change on its next
 * connect. Pure file work and Web Crypto: safe to call from the main thread
 * (API, CLI).
 */

/** What a certificate file in the store is. */
export type TrustState = "trusted" | "rejected";

/** One certificate file in the store. */
export interface StoredCertificate {
  state: TrustState;
  /** SHA-1 of the DER certificate, lowercase hex (what OPC UA calls the thumbprint). */
  thumbprint: string;
  /** File name inside its folder. */
  file: string;
  path: string;
  subject: string;
  issuer: string;
  not_before?: string;
  not_after?: string;
}

/** A request the store cannot carry out, with what to do about it. */
export class PkiError extends Error {
  override name = "PkiError";
}

/** The OPC UA PKI folder of an agent: `<data_dir>/pki/opcua`. */
export function opcuaPkiDir(dataDir: string): string {
  return `${dataDir.replace(/[\\/]+$/, "") || "."}/pki/opcua`;
}

/** The folder holding certificates in `state`. */
export function folderOf(pkiDir: string, state: TrustState): string {
  return state === "trusted" ? `${pkiDir}/trusted/certs` : `${pkiDir}/rejected`;
}

/** DER bytes of the first certificate in a PEM text or DER file content. */
export function certificateDer(content: Uint8Array): Uint8Array {
  if (content[0] === 0x30) return content;
  const text = new TextDecoder().decode(content);
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(text);
  if (!m) throw new PkiError("not a certificate (expected PEM or DER)");
  const bin = atob(m[1].replace(/\s+/g, ""));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The OPC UA thumbprint (SHA-1, lowercase hex) of a DER certificate. */
export async function thumbprintOf(der: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-1", der as BufferSource));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** Reads the DER element at `at`: tag and the bounds of its content. */
function tlv(der: Uint8Array, at: number): Tlv {
  const tag = der[at];
  let len = der[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  if (start + len > der.length) throw new PkiError("truncated certificate");
  return { tag, start, end: start + len };
}

/** The elements inside a constructed element. */
function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const t = tlv(der, at);
    out.push(t);
    at = t.end;
  }
  return out;
}

const OID_NAMES: Record<string, string> = {
  "550403": "CN",
  "55040a": "O",
  "55040b": "OU",
  "550406": "C",
  "550407": "L",
  "550408": "ST",
  "09922689938df22c640119": "DC",
};

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** An X.501 Name as `CN=..., O=...`. */
function nameText(der: Uint8Array, name: Tlv): string {
  const parts: string[] = [];
  for (const set of children(der, name)) {
    for (const atv of children(der, set)) {
      const [oid, value] = children(der, atv);
      const key = OID_NAMES[hex(der.subarray(oid.start, oid.end))];
      if (key) {
        parts.push(`${key}=${new TextDecoder().decode(der.subarray(value.start, value.end))}`);
      }
    }
  }
  return parts.join(", ");
}

/** A UTCTime or GeneralizedTime as an ISO date. */
function timeText(der: Uint8Array, t: Tlv): string {
  const s = new TextDecoder().decode(der.subarray(t.start, t.end));
  const full = t.tag === 0x17 ? `${Number(s.slice(0, 2)) < 50 ? "20" : "19"}${s}` : s;
  const [y, mo, d, h, mi, se] = [0, 4, 6, 8, 10, 12].map((i, k) =>
    full.slice(i, k === 0 ? 4 : i + 2)
  );
  return `${y}-${mo}-${d}T${h}:${mi}:${se}Z`;
}

/** Subject, issuer and validity of a DER certificate (empty texts when it cannot be read). */
export function describeCertificate(
  der: Uint8Array,
): { subject: string; issuer: string; not_before?: string; not_after?: string } {
  try {
    const cert = tlv(der, 0);
    const tbs = children(der, children(der, cert)[0]);
    const fields = tbs[0].tag === 0xa0 ? tbs.slice(1) : tbs;
    const [, , issuer, validity, subject] = fields;
    const [from, to] = children(der, validity);
    return {
      subject: nameText(der, subject),
      issuer: nameText(der, issuer),
      not_before: timeText(der, from),
      not_after: timeText(der, to),
    };
  } catch {
    return { subject: "", issuer: "" };
  }
}

async function readFolder(pkiDir: string, state: TrustState): Promise<StoredCertificate[]> {
  const dir = folderOf(pkiDir, state);
  const out: StoredCertificate[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !/\.(pem|der|crt|cer)$/i.test(e.name)) continue;
      const path = `${dir}/${e.name}`;
      let der: Uint8Array;
      try {
        der = certificateDer(await Deno.readFile(path));
      } catch {
        continue;
      }
      out.push({
        state,
        thumbprint: await thumbprintOf(der),
        file: e.name,
        path,
        ...describeCertificate(der),
      });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Every certificate in `trusted/certs/` and `rejected/`, rejected first. */
export async function listCertificates(pkiDir: string): Promise<StoredCertificate[]> {
  return [...await readFolder(pkiDir, "rejected"), ...await readFolder(pkiDir, "trusted")];
}

/**
 * The certificates `id` names: a file name, a full thumbprint, or a
 * thumbprint prefix of at least 8 hex digits (`:` and spaces ignored).
 */
function matching(all: StoredCertificate[], id: string): StoredCertificate[] {
  const byFile = all.filter((c) => c.file === id || c.path === id);
  if (byFile.length > 0) return byFile;
  const t = id.toLowerCase().replace(/[:\s]/g, "");
  if (!/^[0-9a-f]{8,40}$/.test(t)) return [];
  const hits = all.filter((c) => c.thumbprint.startsWith(t));
  return new Set(hits.map((c) => c.thumbprint)).size === 1 ? hits : [];
}

/**
 * Moves the certificate `id` (file name or thumbprint, see `listCertificates`)
 * to `state`: trusting it lets the sources connect to that server on their
 * next retry; rejecting it stops them. Removes copies left in the other
 * folder. Returns the certificate in its new place.
 */
export async function setCertificateTrust(
  pkiDir: string,
  id: string,
  state: TrustState,
): Promise<StoredCertificate> {
  const all = await listCertificates(pkiDir);
  const hits = matching(all, id);
  if (hits.length === 0) {
    const t = id.toLowerCase().replace(/[:\s]/g, "");
    const several = /^[0-9a-f]{8,40}$/.test(t) &&
      new Set(all.filter((c) => c.thumbprint.startsWith(t)).map((c) => c.thumbprint)).size > 1;
    throw new PkiError(
      several
        ? `'${id}' matches several certificates; give more digits of the thumbprint`
        : `no certificate '${id}' in ${pkiDir} (give a file name or a thumbprint of at least ` +
          `8 hex digits; 'otedge certificates list' shows them)`,
    );
  }
  const dest = folderOf(pkiDir, state);
  await Deno.mkdir(dest, { recursive: true });
  const target = hits.find((c) => c.state === state)?.path ?? `${dest}/${hits[0].file}`;
  for (const c of hits) {
    if (c.path === target) continue;
    if (await exists(target)) await Deno.remove(c.path);
    else await Deno.rename(c.path, target);
  }
  const [moved] = (await readFolder(pkiDir, state)).filter((c) => c.path === target);
  return moved;
}
