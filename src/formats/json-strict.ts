import { isUtf8 } from 'node:buffer';

/**
 * A strict, bounded JSON reader for untrusted headers and configs (safetensors headers,
 * `config.json`, `tokenizer_config.json`, Keras `config.json`).
 *
 * Unlike `JSON.parse` it reports duplicate object keys (which `JSON.parse` silently merges, a
 * parser differential between loaders), keeps integers beyond 2^53 exact as bigint, caps nesting
 * depth so a hostile document cannot exhaust the stack, and works on the UTF-8 bytes directly so a
 * 100 MB header is never copied into a second 100–200 MB string. With `onRootEntry` the entries of
 * the root object are handed over one by one and not kept.
 */

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | JsonObject;
/** `__proto__` keys are stored as own data properties, never as a prototype. */
export type JsonObject = { [key: string]: JsonValue };

export interface JsonIssue {
  kind: 'duplicate-key' | 'syntax' | 'depth';
  message: string;
  /** Byte offset in the UTF-8 input. */
  offset: number;
}

export interface JsonParseResult {
  value?: JsonValue;
  /** First syntax/depth error (parse failed), and every duplicate key (parse succeeded). */
  issues: JsonIssue[];
}

export interface JsonParseOptions {
  maxDepth?: number;
  /** Receives each entry of the root object instead of storing it (the root must be an object). */
  onRootEntry?: (key: string, value: JsonValue, offset: number) => void;
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

const Q = 0x22;
const BS = 0x5c;
const ESCAPES: Record<number, string> = { 0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' };

/** Parses UTF-8 bytes (or a string) strictly. Never throws on bad input. */
export function parseJsonStrict(input: string | Uint8Array, options: JsonParseOptions = {}): JsonParseResult {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const maxDepth = options.maxDepth ?? JSON_MAX_DEPTH;
  const onRoot = options.onRootEntry;
  const issues: JsonIssue[] = [];
  const n = buf.length;
  let i = 0;

  const fail = (msg: string, kind: 'syntax' | 'depth' = 'syntax'): never => {
    throw new JsonSyntaxError(kind, msg, i);
  };
  const ws = () => {
    while (i < n) {
      const c = buf[i];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const str = (): string => {
    i++; // opening quote
    let start = i;
    let out = '';
    let ascii = true;
    while (true) {
      if (i >= n) fail('unterminated string');
      const c = buf[i] as number;
      if (c === Q) {
        out += buf.toString(ascii ? 'latin1' : 'utf8', start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c >= 0x80) ascii = false;
      if (c === BS) {
        out += buf.toString('utf8', start, i);
        const e = buf[i + 1] as number;
        if (e === 0x75) {
          const hex = buf.toString('latin1', i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else {
          const s = ESCAPES[e];
          if (s === undefined) fail('bad escape');
          out += s;
          i += 2;
        }
        start = i;
        ascii = true;
        continue;
      }
      i++;
    }
  };
  const num = (): number | bigint => {
    const start = i;
    if (buf[i] === 0x2d) i++;
    const digits = () => {
      const s = i;
      while (i < n && (buf[i] as number) >= 0x30 && (buf[i] as number) <= 0x39) i++;
      return i - s;
    };
    const intStart = i;
    const intLen = digits();
    if (intLen === 0) fail('bad number');
    if (buf[intStart] === 0x30 && intLen > 1) fail('leading zero in number');
    let isInt = true;
    if (buf[i] === 0x2e) {
      i++;
      isInt = false;
      if (digits() === 0) fail('bad fraction');
    }
    if (buf[i] === 0x65 || buf[i] === 0x45) {
      i++;
      isInt = false;
      if (buf[i] === 0x2b || buf[i] === 0x2d) i++;
      if (digits() === 0) fail('bad exponent');
    }
    if (isInt && i - intStart <= 15) {
      let v = 0;
      for (let k = intStart; k < i; k++) v = v * 10 + ((buf[k] as number) - 0x30);
      return buf[start] === 0x2d ? -v : v;
    }
    const s = buf.toString('latin1', start, i);
    if (isInt) {
      const b = BigInt(s);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    return Number(s);
  };
  const lit = (word: string, v: JsonValue): JsonValue => {
    if (buf.toString('latin1', i, i + word.length) === word) {
      i += word.length;
      return v;
    }
    return fail('unexpected token');
  };
  const value = (depth: number): JsonValue => {
    if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`, 'depth');
    ws();
    if (i >= n) fail('unexpected end of input');
    const c = buf[i];
    if (c === 0x7b) {
      i++;
      const root = depth === 0 && onRoot !== undefined;
      // A plain object keeps V8's fast properties; `__proto__` is defined as own data below.
      const obj = {} as JsonObject;
      const rootKeys = root ? new Set<string>() : undefined;
      ws();
      if (buf[i] === 0x7d) {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (buf[i] !== Q) fail('expected a string key');
        const keyAt = i;
        const key = str();
        ws();
        if (buf[i] !== 0x3a) fail("expected ':'");
        i++;
        const v = value(depth + 1);
        const dup = rootKeys ? rootKeys.has(key) : Object.prototype.hasOwnProperty.call(obj, key);
        if (dup) {
          if (issues.length < MAX_ISSUES) issues.push({ kind: 'duplicate-key', message: `duplicate key ${JSON.stringify(key.slice(0, 200))}`, offset: keyAt });
        } else if (rootKeys) {
          rootKeys.add(key);
          (onRoot as NonNullable<typeof onRoot>)(key, v, keyAt);
        } else if (key === '__proto__') Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        else obj[key] = v;
        ws();
        if (buf[i] === 0x2c) {
          i++;
          continue;
        }
        if (buf[i] === 0x7d) {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === 0x5b) {
      i++;
      const arr: JsonValue[] = [];
      ws();
      if (buf[i] === 0x5d) {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (buf[i] === 0x2c) {
          i++;
          continue;
        }
        if (buf[i] === 0x5d) {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === Q) return str();
    if (c === 0x74) return lit('true', true);
    if (c === 0x66) return lit('false', false);
    if (c === 0x6e) return lit('null', null);
    return num();
  };

  try {
    if (onRoot !== undefined) {
      ws();
      if (buf[i] !== 0x7b) fail('expected a JSON object');
    }
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

/** True when the bytes are valid UTF-8 (no string is built). */
export function isValidUtf8(bytes: Uint8Array): boolean {
  return isUtf8(bytes);
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes UTF-8 strictly; undefined when the bytes are not valid UTF-8. */
export function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
