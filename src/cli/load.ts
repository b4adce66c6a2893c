import { GuardError } from '../errors.js';
import { safeLoad, type LoadResult, type SafeLoadOptions } from '../load/safeload.js';
import { isTensor, type Tensor } from '../load/graph.js';
import { renderText, wallsLine } from '../report/render.js';
import type { Report } from '../report/model.js';
import { parseArgs } from './args.js';

const HELP = `Usage: guard load [options] FILE

Scans FILE, refuses it if anything is malicious (or suspicious, unless --allow-suspicious), then
prints the tensors it holds (name, dtype, shape, bytes) and its other values. Pickles are read by
CPython's pickle machine in a sandboxed VM; nothing from the file ever runs.

Options:
  --json                 print {format, tensors:[{name,dtype,shape,bytes}], values, metadata} as JSON
  --allow NAME           accept a qualified global as a plain object (module.name or module.*); repeatable
  --allow-suspicious     load files whose verdict is suspicious (never malicious)
  --timeout MS           time limit of the unpickler VM (default 30000)
  --max-bytes N          refuse to allocate more than N bytes of tensors
  --no-values            do not print non-tensor values
  --require-walls        fail (exit 2) rather than run the unpickler without the kernel walls

Exit codes: 0 loaded, 1 refused (unsafe), 2 usage, I/O or format error.
`;

export interface LoadCliOptions {
  load: SafeLoadOptions;
}

/** Parses the options shared by `guard load` and `guard convert`. */
export function loadOptions(options: Record<string, string | string[] | boolean>): SafeLoadOptions {
  const o: SafeLoadOptions = {};
  if (Array.isArray(options.allow)) o.allow = options.allow;
  if (options['allow-suspicious'] === true) o.allowSuspicious = true;
  if (typeof options.timeout === 'string') {
    const n = Number(options.timeout);
    if (!(n > 0)) throw new GuardError('USAGE', `option \`--timeout\` takes a positive number of milliseconds (got \`${options.timeout}\`)`);
    o.timeoutMs = n;
  }
  if (options['require-walls'] === true) o.requireWalls = true;
  if (typeof options['max-bytes'] === 'string') {
    const n = Number(options['max-bytes']);
    if (!Number.isSafeInteger(n) || n <= 0) throw new GuardError('USAGE', `option \`--max-bytes\` takes a positive integer (got \`${options['max-bytes']}\`)`);
    o.maxBytes = n;
  }
  return o;
}

export const LOAD_SPEC = {
  allow: { value: true, multiple: true },
  'allow-suspicious': {},
  timeout: { value: true },
  'max-bytes': { value: true },
  'require-walls': {},
  help: { short: 'h' },
} as const;

/** Prints why a load was refused and returns the exit code. */
export function reportFailure(e: unknown, command: string): number {
  if (e instanceof GuardError && (e.code === 'UNSAFE_MODEL' || e.code === 'SANDBOX_VIOLATION')) {
    const report = (e as GuardError & { report?: Report }).report;
    process.stderr.write(`guard ${command}: refused: ${e.message}\n`);
    if (report) process.stderr.write(renderText(report, { color: false }));
    return 1;
  }
  throw e;
}

function shapeText(t: Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

/** Non-tensor leaves of the object graph as `path = value` lines. */
function values(obj: unknown, max = 200): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const seen = new Set<unknown>();
  const walk = (v: unknown, path: string, depth: number): void => {
    if (out.length >= max || isTensor(v)) return;
    if (v === null || typeof v !== 'object') {
      out.push([path || '(root)', typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : String(v)]);
      return;
    }
    if (seen.has(v) || depth > 32) {
      out.push([path, '<shared reference>']);
      return;
    }
    seen.add(v);
    const join = (k: string) => (path ? `${path}.${k}` : k);
    if (v instanceof Uint8Array) out.push([path, `<${v.length} bytes>`]);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, join(String(i)), depth + 1));
    else if (v instanceof Map) for (const [k, x] of v) walk(x, join(String(k)), depth + 1);
    else if (v instanceof Set) out.push([path, `set(${v.size})`]);
    else {
      const rec = v as Record<string, unknown>;
      if (typeof rec.__class__ === 'string' && Object.keys(rec).length <= 3) {
        out.push([path, `<${rec.__class__}>`]);
        return;
      }
      for (const k of Object.keys(rec)) walk(rec[k], join(k), depth + 1);
    }
  };
  walk(obj, '', 0);
  return out;
}

function table(r: LoadResult): string {
  const rows = [...r.tensors].map(([name, t]) => [name === '' ? '(root)' : name, t.dtype, shapeText(t), String(t.data.byteLength)]);
  const head = ['name', 'dtype', 'shape', 'bytes'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 3 ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join('  ').trimEnd();
  const total = [...r.tensors.values()].reduce((n, t) => n + t.data.byteLength, 0);
  return [line(head), ...rows.map(line), `${r.tensors.size} tensors, ${total} bytes (${r.format})`].join('\n') + '\n';
}

export async function main(argv: string[]): Promise<number> {
  const { options, positionals } = parseArgs(argv, { ...LOAD_SPEC, json: {}, 'no-values': {} }, 'load');
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new GuardError('USAGE', 'guard load: give exactly one FILE (see `guard load --help`)');
  const file = positionals[0] as string;
  let r: LoadResult;
  try {
    r = await safeLoad(file, loadOptions(options));
  } catch (e) {
    return reportFailure(e, 'load');
  }
  if (options.json) {
    const out = {
      format: r.format,
      tensors: [...r.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: t.data.byteLength })),
      values: Object.fromEntries(values(r.object)),
      metadata: r.metadata,
      verdict: r.report.files[0]?.verdict,
      walls: r.report.walls,
    };
    process.stdout.write(`${JSON.stringify(out, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v instanceof Map ? Object.fromEntries(v) : v), 2)}\n`);
    return 0;
  }
  process.stdout.write(table(r));
  if (options['no-values'] !== true) {
    const vals = values(r.object);
    if (vals.length > 0) {
      process.stdout.write('\nvalues:\n');
      for (const [k, v] of vals) process.stdout.write(`  ${k} = ${v.length > 120 ? `${v.slice(0, 119)}…` : v}\n`);
    }
  }
  const basis = r.report.files[0]?.basis;
  process.stdout.write(`\nverdict: ${r.report.files[0]?.verdict ?? 'unknown'}${basis ? ` (${basis})` : ''}\n`);
  if (r.report.walls) process.stdout.write(`walls: ${wallsLine(r.report.walls)}\n`);
  return 0;
}
