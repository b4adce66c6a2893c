/**
 * Symbolic values of the static pickle machine. Containers hold references, never copies, so a
 * memo-reference bomb stays linear in the stream size; only the first items are kept for evidence.
 */
export type Value =
  | { k: 'str'; v: string; truncated?: boolean }
  | { k: 'bytes'; len: number; preview: Buffer; mutable?: boolean }
  | { k: 'int'; v: bigint }
  | { k: 'float'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'none' }
  | { k: 'global'; module: string; name: string; qualified: string; offset: number }
  | { k: 'call'; fn: Value; args: Value; kwargs?: Value; op: string; offset: number; state?: Value }
  | { k: 'list' | 'tuple' | 'set' | 'frozenset' | 'dict'; items: Value[]; count: number }
  | { k: 'pers'; pid: Value }
  | { k: 'ext'; code: number }
  | { k: 'buffer' }
  | { k: 'unknown'; why: string };

/** Items kept per container for evidence; the count is still exact. */
export const KEPT_ITEMS = 32;
/** Characters of a string kept in a value. */
export const KEPT_CHARS = 4096;

export function pushItem(c: { items: Value[]; count: number }, v: Value): void {
  if (c.items.length < KEPT_ITEMS) c.items.push(v);
  c.count++;
}

/** A short Python-like rendering, bounded in depth, items and characters. */
export function render(v: Value, budget = { nodes: 60 }, depth = 0): string {
  if (budget.nodes-- <= 0 || depth > 6) return '…';
  switch (v.k) {
    case 'str':
      return pyRepr(v.v.length > 120 ? `${v.v.slice(0, 120)}…` : v.v) + (v.truncated ? '…' : '');
    case 'bytes':
      return `b${pyRepr(v.preview.subarray(0, 40).toString('latin1'))}${v.len > 40 ? `…(${v.len} bytes)` : ''}`;
    case 'int':
      return v.v.toString();
    case 'float':
      return Number.isInteger(v.v) ? `${v.v}.0` : String(v.v);
    case 'bool':
      return v.v ? 'True' : 'False';
    case 'none':
      return 'None';
    case 'global':
      return v.qualified;
    case 'call': {
      const args = v.args.k === 'tuple' || v.args.k === 'list' ? v.args.items.map((a) => render(a, budget, depth + 1)) : [render(v.args, budget, depth + 1)];
      if (v.kwargs && v.kwargs.k === 'dict') {
        for (let i = 0; i + 1 < v.kwargs.items.length; i += 2) {
          const key = v.kwargs.items[i] as Value;
          args.push(`${key.k === 'str' ? key.v : render(key, budget, depth + 1)}=${render(v.kwargs.items[i + 1] as Value, budget, depth + 1)}`);
        }
      }
      return `${render(v.fn, budget, depth + 1)}(${args.join(', ')})`;
    }
    case 'list':
    case 'tuple':
    case 'set':
    case 'frozenset': {
      const inner = v.items.map((a) => render(a, budget, depth + 1));
      if (v.count > v.items.length) inner.push(`…${v.count - v.items.length} more`);
      if (v.k === 'list') return `[${inner.join(', ')}]`;
      if (v.k === 'tuple') return `(${inner.join(', ')}${v.count === 1 ? ',' : ''})`;
      return `${v.k}({${inner.join(', ')}})`;
    }
    case 'dict': {
      const inner: string[] = [];
      for (let i = 0; i + 1 < v.items.length; i += 2) inner.push(`${render(v.items[i] as Value, budget, depth + 1)}: ${render(v.items[i + 1] as Value, budget, depth + 1)}`);
      if (v.count > v.items.length / 2) inner.push(`…${v.count - v.items.length / 2} more`);
      return `{${inner.join(', ')}}`;
    }
    case 'pers':
      return `persistent_load(${render(v.pid, budget, depth + 1)})`;
    case 'ext':
      return `<extension ${v.code}>`;
    case 'buffer':
      return '<out-of-band buffer>';
    case 'unknown':
      return `<${v.why}>`;
  }
}

function pyRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === q || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + q;
}
