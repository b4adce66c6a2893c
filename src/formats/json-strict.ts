/**
 * A strict, bounded JSON reader for untrusted headers and configs (safetensors headers,
 * `config.json`, `tokenizer_config.json`, Keras `config.json`).
 *
 * Unlike `JSON.parse` it reports duplicate object keys (which `JSON.parse` silently merges, a
 * parser differential between loaders), keeps integers beyond 2^53 exact as bigint, and caps
 * nesting depth so a hostile document cannot exhaust the stack.
 */

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
/** Objects have no prototype, so keys such as `__proto__` are plain data. */
export type JsonObject = { [key: string]: JsonValue };

export interface JsonIssue {
  kind: 'duplicate-key' | 'syntax' | 'depth';
  message: string;
  /** Character offset in the source text. */
  offset: number;
}

export interface JsonParseResult {
  value?: JsonValue;
  /** First syntax/depth error (parse failed), and every duplicate key (parse succeeded). */
  issues: JsonIssue[];
}

export const JSON_MAX_DEPTH = 128;
const MAX_ISSUES = 50;

class JsonSyntaxError extends Error {
  constructor(
    readonly kind: 'syntax' | 'depth',
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses `text` strictly. Never throws. */
export function parseJsonStrict(text: string, maxDepth = JSON_MAX_DEPTH): JsonParseResult {
  const issues: JsonIssue[] = [];
  let i = 0;
  const n = text.length;

  const fail = (msg: string, kind: 'syntax' | 'depth' = 'syntax'): never => {
    throw new JsonSyntaxError(kind, msg, i);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const str = (): string => {
    // text[i] === '"'
    i++;
    let out = '';
    let start = i;
    while (true) {
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        i += 2;
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const hex = text.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail('bad escape');
        }
        start = i;
        continue;
      }
      i++;
    }
  };
  const num = (): number | bigint => {
    const m = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (!r || r[0] === '' || r[0] === '-') fail('bad number');
    const s = (r as RegExpExecArray)[0];
    i += s.length;
    if (r?.[1] === undefined && r?.[2] === undefined) {
      if (s.length <= 15) return Number(s);
      const b = BigInt(s);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    return Number(s);
  };
  const lit = (word: string, v: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return v;
    }
    return fail('unexpected token');
  };
  const value = (depth: number): JsonValue => {
    if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`, 'depth');
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: JsonObject = Object.create(null) as JsonObject;
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail('expected a string key');
        const keyAt = i;
        const key = str();
        ws();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        const v = value(depth + 1);
        if (Object.prototype.hasOwnProperty.call(obj, key)) {
          if (issues.length < MAX_ISSUES) issues.push({ kind: 'duplicate-key', message: `duplicate key ${JSON.stringify(key.slice(0, 200))}`, offset: keyAt });
        } else obj[key] = v;
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (c === 't') return lit('true', true);
    if (c === 'f') return lit('false', false);
    if (c === 'n') return lit('null', null);
    return num();
  };

  try {
    const v = value(0);
    ws();
    if (i < n) fail('trailing characters after the JSON value');
    return { value: v, issues };
  } catch (e) {
    if (e instanceof JsonSyntaxError) return { issues: [{ kind: e.kind, message: e.message, offset: e.offset }, ...issues] };
    if (e instanceof RangeError) return { issues: [{ kind: 'depth', message: 'nesting too deep', offset: i }] };
    throw e;
  }
}

/** Decodes UTF-8 strictly; undefined when the bytes are not valid UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
