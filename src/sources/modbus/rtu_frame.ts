/**
 * Modbus RTU frames: CRC-16/MODBUS, the length of the answer a request asks
 * for, and finding that answer among the bytes of a line. RTU frames carry no
 * transaction id, so an answer is known by its unit id, function code, length
 * and a good CRC; anything else on the line (a late answer of another unit,
 * noise) is skipped.
 */

/** CRC-16/MODBUS (init 0xFFFF, reflected polynomial 0xA001) of `bytes`. */
export function crc16Modbus(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** `body` with its CRC appended, low byte first. */
export function withCrc(body: number[]): Uint8Array {
  const crc = crc16Modbus(Uint8Array.from(body));
  return Uint8Array.from([...body, crc & 0xff, crc >>> 8]);
}

/** True when the last two bytes of `frame` are the CRC of the others. */
export function crcOk(frame: Uint8Array): boolean {
  if (frame.length < 4) return false;
  const crc = frame[frame.length - 2] | (frame[frame.length - 1] << 8);
  return crc16Modbus(frame.subarray(0, -2)) === crc;
}

/** Length of an exception answer: unit, function | 0x80, code, CRC. */
export const EXCEPTION_FRAME = 5;

/** The answer a request frame waits for. */
export interface ExpectedAnswer {
  unit: number;
  functionCode: number;
  /** Length of a normal answer; 0 when the function is not one this client frames. */
  length: number;
}

/** The answer `request` (unit, function, address, quantity, ..., CRC) waits for. */
export function expectedAnswer(request: Uint8Array): ExpectedAnswer {
  const [unit, functionCode] = request;
  const quantity = (request[4] << 8) | request[5];
  let length = 0;
  switch (functionCode) {
    case 1:
    case 2:
      length = 5 + Math.ceil(quantity / 8);
      break;
    case 3:
    case 4:
      length = 5 + 2 * quantity;
      break;
    case 5:
    case 6:
    case 15:
    case 16:
      length = 8;
      break;
  }
  return { unit, functionCode, length };
}

/** Where the expected answer lies in `bytes`. */
export interface FoundAnswer {
  start: number;
  length: number;
}

/** What a scan of received bytes found. */
export interface AnswerScan {
  /** The complete answer, when it arrived. */
  found?: FoundAnswer;
  /** Bytes before this index are not part of the answer (other frames, noise). */
  keepFrom: number;
}

/**
 * Length of the frame starting at `i`, read from its own header: 5 for an
 * exception, 5 + byte count for a read answer, 8 for a write answer; -1 while
 * the header is incomplete, 0 for a function this client does not frame.
 */
export function frameLengthAt(bytes: Uint8Array, i: number): number {
  if (i + 2 > bytes.length) return -1;
  const fc = bytes[i + 1];
  if (fc & 0x80) return EXCEPTION_FRAME;
  if (fc >= 1 && fc <= 4) return i + 3 > bytes.length ? -1 : 5 + bytes[i + 2];
  return fc === 5 || fc === 6 || fc === 15 || fc === 16 ? 8 : 0;
}

/** True when the frame of `length` bytes at `i` answers `want`. */
function answers(bytes: Uint8Array, i: number, length: number, want: ExpectedAnswer): boolean {
  if (bytes[i] !== want.unit) return false;
  const fc = bytes[i + 1];
  return fc === (want.functionCode | 0x80) || (fc === want.functionCode && length === want.length);
}

/**
 * Looks in `bytes` (which start at a frame boundary) for the frame that
 * answers `want`: its unit, its function code or exception, its length and a
 * good CRC. Whole frames that answer something else (a late reply of another
 * unit) are skipped as a whole, so nothing inside them is taken for an
 * answer; bytes that start no valid frame are skipped one at a time. When an
 * incomplete frame holds up the scan, a complete answer after its start is
 * still found.
 */
export function scanAnswer(bytes: Uint8Array, want: ExpectedAnswer): AnswerScan {
  let i = 0;
  while (i < bytes.length) {
    const length = frameLengthAt(bytes, i);
    if (length < 0 || i + length > bytes.length) {
      return { found: answerAfter(bytes, i + 1, want), keepFrom: i };
    }
    if (length > 0 && crcOk(bytes.subarray(i, i + length))) {
      if (answers(bytes, i, length, want)) return { found: { start: i, length }, keepFrom: i };
      i += length;
    } else i++;
  }
  return { keepFrom: bytes.length };
}

/** The first complete, CRC-checked answer to `want` at or after `from`. */
function answerAfter(
  bytes: Uint8Array,
  from: number,
  want: ExpectedAnswer,
): FoundAnswer | undefined {
  for (let i = from; i < bytes.length; i++) {
    const length = frameLengthAt(bytes, i);
    if (length <= 0 || i + length > bytes.length) continue;
    if (answers(bytes, i, length, want) && crcOk(bytes.subarray(i, i + length))) {
      return { start: i, length };
    }
  }
  return undefined;
}
