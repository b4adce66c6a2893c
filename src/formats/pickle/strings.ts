import { PickleError } from './reader.js';

const utf8 = new TextDecoder('utf-8', { fatal: false });

export function decodeUtf8(b: Buffer): string {
  return utf8.decode(b);
}

/**
 * The STRING opcode argument: a quoted Python 2 literal, unescaped like codecs.escape_decode.
 * CPython requires matching quotes at both ends.
 */
export function decodeEscapedString(raw: Buffer, offset: number): string {
  // No '\r' is stripped: CPython compares the first byte with the last one before the newline.
  let s = raw.toString('latin1');
  if (s.length < 2 || (s[0] !== "'" && s[0] !== '"') || s[s.length - 1] !== s[0]) {
    throw new PickleError('the STRING opcode argument must be quoted', offset);
  }
  s = s.slice(1, -1);
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[++i];
    if (n === undefined) throw new PickleError('\\ at end of STRING', offset);
    switch (n) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case "'": out += "'"; break;
      case '"': out += '"'; break;
      case 'a': out += '\x07'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': {
        const h = s.slice(i + 1, i + 3);
        if (!/^[0-9a-fA-F]{2}$/.test(h)) throw new PickleError('invalid \\x escape in STRING', offset);
        out += String.fromCharCode(parseInt(h, 16));
        i += 2;
        break;
      }
      default:
        if (n >= '0' && n <= '7') {
          let j = i;
          let oct = '';
          while (j < s.length && oct.length < 3 && (s[j] as string) >= '0' && (s[j] as string) <= '7') oct += s[j++];
          out += String.fromCharCode(parseInt(oct, 8) & 0xff);
          i = j - 1;
        } else out += `\\${n}`;
    }
  }
  // Python 3 decodes the bytes with the Unpickler's encoding (ASCII by default, UTF-8 in
  // torch.load, latin-1 in NumPy, joblib and the VM). Like BINSTRING, the text is kept as latin-1:
  // the one reading every loader that accepts the bytes agrees on for ASCII, and the VM's own.
  return out;
}

/** The UNICODE opcode argument: raw-unicode-escape (\uXXXX and \UXXXXXXXX; other bytes latin-1). */
export function decodeRawUnicodeEscape(raw: Buffer): string {
  const s = raw.toString('latin1');
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '\\' && (s[i + 1] === 'u' || s[i + 1] === 'U')) {
      // an escape only counts when preceded by an even number of backslashes
      let bs = 0;
      for (let j = i - 1; j >= 0 && s[j] === '\\'; j--) bs++;
      const width = s[i + 1] === 'u' ? 4 : 8;
      const hex = s.slice(i + 2, i + 2 + width);
      if (bs % 2 === 0 && hex.length === width && /^[0-9a-fA-F]+$/.test(hex)) {
        const cp = parseInt(hex, 16);
        out += cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
        i += 1 + width;
        continue;
      }
    }
    out += c;
  }
  return out;
}

// ----- text arguments read the way CPython's C unpickler (Modules/_pickle.c) reads them -----------
// The opcode's line is handed to C functions as a NUL-terminated string that still holds its '\n':
// an embedded NUL ends the text early, and the newline counts as trailing whitespace.

/** The C string CPython parses for a text argument: the line and its '\n', cut at the first NUL. */
export function cString(line: Buffer): string {
  const s = `${line.toString('latin1')}\n`;
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

const PY_SPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r']);

function digitValue(c: string | undefined): number {
  if (c === undefined) return 99;
  const x = c.charCodeAt(0);
  if (x >= 0x30 && x <= 0x39) return x - 0x30;
  if (x >= 0x61 && x <= 0x7a) return x - 0x61 + 10;
  if (x >= 0x41 && x <= 0x5a) return x - 0x41 + 10;
  return 99;
}

/** CPython's limit on decimal digits converted to an int (sys.int_info.default_max_str_digits). */
export const PY_INT_MAX_STR_DIGITS = 4300;

/** Where the digits of `s` start after C's leading white space and an optional sign, and the sign. */
function leadingSign(s: string): { i: number; neg: boolean } {
  let i = 0;
  while (i < s.length && PY_SPACE.has(s[i] as string)) i++;
  if (s[i] === '+') return { i: i + 1, neg: false };
  if (s[i] === '-') return { i: i + 1, neg: true };
  return { i, neg: false };
}

/**
 * PyLong_FromString(s, NULL, base) for base 0 or 10: surrounding whitespace, a sign, a base prefix
 * (base 0 only) with one optional underscore after it, single underscores between digits, no
 * leading zeros in base 0 unless the value is zero, at most 4300 decimal digits. null = ValueError.
 */
export function pyLongFromString(s: string, base: 0 | 10): bigint | null {
  let { i, neg } = leadingSign(s);
  let b: number = base;
  let errorIfNonzero = false;
  const p1 = s[i + 1];
  if (b === 0) {
    if (s[i] !== '0') b = 10;
    else if (p1 === 'x' || p1 === 'X') b = 16;
    else if (p1 === 'o' || p1 === 'O') b = 8;
    else if (p1 === 'b' || p1 === 'B') b = 2;
    else {
      errorIfNonzero = true;
      b = 10;
    }
    if (b !== 10) {
      i += 2;
      if (s[i] === '_') i++;
    }
  }
  const start = i;
  let prev = '';
  let digits = '';
  while (i < s.length) {
    const c = s[i] as string;
    if (c === '_') {
      if (prev === '_' || i === start) return null;
    } else if (digitValue(c) < b) digits += c;
    else break;
    prev = c;
    i++;
  }
  if (prev === '_' || digits.length === 0) return null;
  if (b === 10 && digits.length > PY_INT_MAX_STR_DIGITS) return null;
  while (i < s.length && PY_SPACE.has(s[i] as string)) i++;
  if (i !== s.length) return null;
  let v = 0n;
  const bb = BigInt(b);
  if (b === 10) v = BigInt(digits);
  else for (const c of digits) v = v * bb + BigInt(digitValue(c));
  if (errorIfNonzero && v !== 0n) return null;
  return neg ? -v : v;
}

/** C strtol(s, &end, base) with a `bits`-wide long: value, where parsing stopped, and ERANGE. */
export function cStrtol(s: string, bits: number, base0: 0 | 10 = 0): { value: bigint; end: number; overflow: boolean } {
  let { i, neg } = leadingSign(s);
  let base = 10;
  if (base0 === 10) base = 10;
  else if (s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && digitValue(s[i + 2]) < 16) {
    base = 16;
    i += 2;
  } else if (s[i] === '0') base = 8;
  const first = i;
  let v = 0n;
  const bb = BigInt(base);
  while (i < s.length && digitValue(s[i]) < base) {
    v = v * bb + BigInt(digitValue(s[i]));
    i++;
  }
  if (i === first) return { value: 0n, end: 0, overflow: false };
  if (neg) v = -v;
  const max = (1n << BigInt(bits - 1)) - 1n;
  return { value: v, end: i, overflow: v > max || v < -max - 1n };
}

/** A text integer as one CPython version reads it. */
export interface CIntText {
  value: bigint;
  bool: boolean;
  /** Only CPython ≤ 3.13 reads it (base 0: `0x10`, `010` as octal); 3.14 reads base 10. */
  onlyOld: boolean;
}

function loadInt(line: Buffer, longBits: number, base: 0 | 10): { value: bigint; bool: boolean } | null {
  const cs = cString(line);
  const t = cStrtol(cs, longBits, base);
  const endCh = cs[t.end];
  if (t.overflow || (endCh !== '\n' && endCh !== undefined)) {
    const v = pyLongFromString(cs, base);
    return v === null ? null : { value: v, bool: false };
  }
  return { value: t.value, bool: line.length === 2 && (t.value === 0n || t.value === 1n) };
}

/**
 * The INT opcode (load_int): strtol, and when that does not reach the end of the line (or
 * overflows a C long) PyLong_FromString. CPython ≤ 3.13 uses base 0 for both — `0x10` is 16 and
 * `010` is 8 — while 3.14 uses base 10; a loader on either runs the stream, so either reading is
 * accepted (3.14's value first). A line of two characters that parses to 0 or 1 is a bool (`00`,
 * `01`, ` 1`, `+0`). null = rejected by every version.
 */
export function parseCInt(line: Buffer, longBits: number): CIntText | null {
  if (line.length + 1 < 2) return null;
  const now = loadInt(line, longBits, 10);
  if (now) return { ...now, onlyOld: false };
  const old = loadInt(line, 64, 0);
  return old ? { ...old, onlyOld: true } : null;
}

/** The LONG opcode (load_long): a trailing 'L' is cut off, then PyLong_FromString (base 0 up to 3.13, 10 since). */
export function parseCLong(line: Buffer): { value: bigint; onlyOld: boolean } | null {
  if (line.length + 1 < 2) return null;
  let s = `${line.toString('latin1')}\n`;
  if (line[line.length - 1] === 0x4c) s = s.slice(0, line.length - 1);
  const nul = s.indexOf('\0');
  const cs = nul < 0 ? s : s.slice(0, nul);
  const now = pyLongFromString(cs, 10);
  if (now !== null) return { value: now, onlyOld: false };
  const old = pyLongFromString(cs, 0);
  return old === null ? null : { value: old, onlyOld: true };
}

/** PUT/GET text indices: PyLong_FromString base 10. */
export function parseCIndex(line: Buffer): bigint | null {
  if (line.length + 1 < 2) return null;
  return pyLongFromString(cString(line), 10);
}

const FLOAT_TEXT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)/;
const FLOAT_SPECIAL = /^[+-]?(?:infinity|inf|nan)/i;

/**
 * The FLOAT opcode (load_float → PyOS_string_to_double): no leading whitespace, no underscores or
 * hex, inf/infinity/nan in any case, and it must end at the newline (or a NUL). A finite literal
 * that overflows is an OverflowError. null = rejected.
 */
export function parseCFloat(line: Buffer): number | null {
  if (line.length + 1 < 2) return null;
  const cs = cString(line);
  let m = FLOAT_TEXT.exec(cs);
  let v: number;
  if (m) {
    v = Number(m[0]);
    if (!Number.isFinite(v)) return null;
  } else {
    m = FLOAT_SPECIAL.exec(cs);
    if (!m) return null;
    const t = m[0].toLowerCase();
    v = t.includes('nan') ? Number.NaN : t.startsWith('-') ? -Infinity : Infinity;
  }
  const next = cs[m[0].length];
  return next === '\n' || next === undefined ? v : null;
}

/**
 * Whether `b` is valid UTF-8 as CPython's decoder sees it. `surrogates` allows encoded
 * surrogates (the "surrogatepass" handler BINUNICODE uses); GLOBAL's names are "strict".
 */
export function isUtf8(b: Buffer, surrogates: boolean): boolean {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i] as number;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return false;
    if (i + need >= n) return false;
    let cp = c & (need === 1 ? 0x1f : need === 2 ? 0x0f : 0x07);
    for (let k = 1; k <= need; k++) {
      const x = b[i + k];
      if (x === undefined || (x & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (x & 0x3f);
    }
    if (cp < min || cp > 0x10ffff) return false;
    if (!surrogates && cp >= 0xd800 && cp <= 0xdfff) return false;
    i += need + 1;
  }
  return true;
}

/** The UNICODE argument like PyUnicode_DecodeRawUnicodeEscape: a short or out-of-range escape is an error. */
export function decodeRawUnicodeEscapeStrict(raw: Buffer, offset: number): string {
  const s = raw.toString('latin1');
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = s[i + 1];
    if (n !== 'u' && n !== 'U') {
      // A backslash before anything else stands for itself, and so does the character after it
      // (that is how an even run of backslashes keeps the next \u literal).
      out += c;
      if (n !== undefined) {
        out += n;
        i++;
      }
      continue;
    }
    const width = n === 'u' ? 4 : 8;
    const hex = s.slice(i + 2, i + 2 + width);
    if (hex.length !== width || !/^[0-9a-fA-F]+$/.test(hex)) throw new PickleError(`truncated \\${n}${'X'.repeat(width)} escape in UNICODE`, offset);
    const cp = parseInt(hex, 16);
    if (cp > 0x10ffff) throw new PickleError('\\Uxxxxxxxx out of range in UNICODE', offset);
    out += String.fromCodePoint(cp);
    i += 1 + width;
  }
  return out;
}
