/**
 * HPACK (RFC 7541) for our HTTP/2 client and server: a full decoder (dynamic
 * table, Huffman) and a stateless encoder (static-table indexes and literals
 * without indexing, no Huffman, no dynamic table, which every decoder accepts).
 */

/** RFC 7541 Appendix A: the static table, index 1..61. */
const STATIC: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ...[
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
  ].map((n) => [n, n === "accept-encoding" ? "gzip, deflate" : ""] as const),
];

/** Number of static table entries. */
export const STATIC_TABLE_SIZE = STATIC.length;

/**
 * RFC 7541 Appendix B: Huffman code length of each symbol 0..256 (EOS), one
 * base-36 digit each. The code is canonical (codes of one length are consecutive
 * in symbol order, shorter codes first), so the lengths define the codes.
 */
const HUFFMAN_LENGTHS = "dnsssssssoussussssssssusssssssss6aacd68baa8b8666555666666678f6ca" +
  "d67777777777777777777777878djde6f56565666577666567655677777fbeds" +
  "kmkkmmmnmnnnnnonoomnonnnnlmnmnnomlkmmnnlnmmolmnnllmlnmnnkmmmnmmn" +
  "qqkjmnmpqqqrrqopjlqrrqrollqqsrrrkoklmllnmmppooqnqrqqrrrrrsrrrrrq" +
  "u";

/** Canonical decoding tables: per length, first code, count, and offset into `symbols`. */
const huffman = (() => {
  const lengths = Array.from(HUFFMAN_LENGTHS, (c) => parseInt(c, 36));
  const symbols = lengths.map((_, s) => s).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const first = new Array<number>(31).fill(0);
  const count = new Array<number>(31).fill(0);
  const offset = new Array<number>(31).fill(0);
  for (const l of lengths) count[l]++;
  let code = 0;
  let index = 0;
  for (let l = 1; l <= 30; l++) {
    first[l] = code;
    offset[l] = index;
    code = (code + count[l]) * 2;
    index += count[l];
  }
  return { lengths, symbols, first, count, offset };
})();

/** Huffman code lengths of symbols 0..256 (exported for tests). */
export const huffmanLengths: readonly number[] = huffman.lengths;

/** Decodes a Huffman-coded string literal (RFC 7541 section 5.2) to bytes. */
export function huffmanDecode(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(src.length * 8 / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  const { first, count, offset, symbols } = huffman;
  for (let i = 0; i < src.length; i++) {
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((src[i] >> bit) & 1);
      len++;
      const k = code - first[len];
      if (k >= 0 && k < count[len]) {
        const sym = symbols[offset[len] + k];
        if (sym === 256) throw new HpackError("EOS symbol in Huffman string");
        out[n++] = sym;
        code = 0;
        len = 0;
      } else if (len >= 30) {
        throw new HpackError("invalid Huffman code");
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (len > 7 || code !== 2 ** len - 1) throw new HpackError("invalid Huffman padding");
  return out.subarray(0, n);
}

/** A header decoding failure (an HTTP/2 COMPRESSION_ERROR). */
export class HpackError extends Error {}

/** Bytes as ISO-8859-1 text (TextDecoder's "latin1" is windows-1252). */
function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode(...b.subarray(i, i + 4096));
  }
  return s;
}

/** A decoded header list, in order; names are lower case as sent. */
export type HeaderList = [string, string][];

/** HPACK decoder state of one connection (the dynamic table). */
export class HpackDecoder {
  #table: [string, string][] = []; // newest first
  #size = 0;
  #maxSize: number;

  /** `maxTableSize` is our SETTINGS_HEADER_TABLE_SIZE (4096 unless advertised otherwise). */
  constructor(readonly maxTableSize = 4096) {
    this.#maxSize = maxTableSize;
  }

  /** Decodes one complete header block. */
  decode(block: Uint8Array): HeaderList {
    const out: HeaderList = [];
    let pos = 0;
    const int = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let v = block[pos++] & mask;
      if (v < mask) return v;
      let shift = 0;
      while (true) {
        if (pos >= block.length) throw new HpackError("truncated integer");
        const b = block[pos++];
        v += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (b < 0x80) return v;
        if (shift > 28) throw new HpackError("integer too large");
      }
    };
    const str = (): string => {
      if (pos >= block.length) throw new HpackError("truncated string");
      const huff = (block[pos] & 0x80) !== 0;
      const len = int(7);
      if (pos + len > block.length) throw new HpackError("truncated string");
      const raw = block.subarray(pos, pos + len);
      pos += len;
      return latin1(huff ? huffmanDecode(raw) : raw);
    };
    let fieldsSeen = false;
    while (pos < block.length) {
      const b = block[pos];
      if (b & 0x80) {
        out.push(this.#get(int(7)));
      } else if (b & 0x40) {
        const index = int(6);
        const name = index ? this.#get(index)[0] : str();
        const value = str();
        out.push([name, value]);
        this.#add(name, value);
      } else if (b & 0x20) {
        if (fieldsSeen) throw new HpackError("table size update after a header field");
        const size = int(5);
        if (size > this.maxTableSize) throw new HpackError("table size update too large");
        this.#maxSize = size;
        this.#evict(0);
        continue;
      } else {
        const index = int(4); // literal without indexing (0000) or never indexed (0001)
        const name = index ? this.#get(index)[0] : str();
        out.push([name, str()]);
      }
      fieldsSeen = true;
    }
    return out;
  }

  #get(index: number): [string, string] {
    if (index >= 1 && index <= STATIC.length) return STATIC[index - 1] as [string, string];
    const entry = this.#table[index - STATIC.length - 1];
    if (!entry) throw new HpackError(`header index ${index} out of range`);
    return entry;
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    this.#evict(size);
    if (size <= this.#maxSize) {
      this.#table.unshift([name, value]);
      this.#size += size;
    }
  }

  #evict(room: number): void {
    while (this.#table.length && this.#size + room > this.#maxSize) {
      const [n, v] = this.#table.pop()!;
      this.#size -= n.length + v.length + 32;
    }
  }
}

/** Encodes an HPACK integer with an `prefixBits`-bit prefix and the given high bits. */
function encodeInt(out: number[], high: number, prefixBits: number, v: number): void {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.push(high | v);
    return;
  }
  out.push(high | max);
  v -= max;
  while (v >= 128) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function encodeStr(out: number[], s: string): void {
  encodeInt(out, 0, 7, s.length);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

/**
 * Encodes headers: a static-table entry that matches name and value (e.g.
 * `:status 200`, `:method POST`) as its index, the rest as literals without
 * indexing (static-table names where they exist). Names and values must be ASCII.
 */
export function encodeHeaders(headers: readonly (readonly [string, string])[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of headers) {
    const exact = STATIC.findIndex(([n, v]) => n === name && v === value && v !== "") + 1;
    if (exact) {
      out.push(0x80 | exact);
      continue;
    }
    const index = STATIC.findIndex(([n]) => n === name) + 1;
    encodeInt(out, 0, 4, index);
    if (!index) encodeStr(out, name);
    encodeStr(out, value);
  }
  return Uint8Array.from(out);
}
