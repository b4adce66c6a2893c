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
  let s = raw.toString('latin1');
  if (s.endsWith('\r')) s = s.slice(0, -1);
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
  // Python 3 decodes the bytes with the Unpickler's encoding (ASCII by default, UTF-8 in torch.load).
  return utf8.decode(Buffer.from(out, 'latin1'));
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
