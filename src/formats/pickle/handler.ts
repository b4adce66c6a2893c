import type { FindingSink } from '../../report/findings.js';
import type { FormatContext, FormatHandler } from '../types.js';
import { BufferSource, SliceSource, type ByteSource } from '../source.js';
import { analyzePickle, type ImportSite, type PickleAnalysis } from './analyze.js';
import { StreamReader } from './reader.js';
import { BOUND_METHOD_GETTER, DEFAULT_POLICY, payloadArgument } from './policy.js';
import { threadCpuMs } from '../../cpu-time.js';

/** PyTorch's legacy (pre-1.6) serialization starts with a pickled int: this magic number. */
export const TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** Time budget for the VM pass on one stream. */
export const VM_TIMEOUT_MS = 20_000;
/** The legacy format holds exactly this many pickles before raw storage bytes. */
const TORCH_LEGACY_PICKLES = 5;

/** Opcodes a protocol 0/1 stream (no PROTO header) plausibly starts with. */
const PROTO0_STARTS = new Set('(]})NIJKLMFGSTUVXcidlp'.split('').map((c) => c.charCodeAt(0)));

/**
 * Content sniffing for pickles: PROTO 0–5, or a protocol 0/1 stream whose first bytes run
 * cleanly through the static machine.
 */
export function looksLikePickle(head: Buffer): boolean {
  if (head.length < 2) return false;
  const framed = head[0] === 0x80;
  if (framed && (head[1] as number) > 5) return false;
  if (!framed && !PROTO0_STARTS.has(head[0] as number)) return false;
  const a = analyzePickle(new StreamReader(new BufferSource(head), 0), { policy: DEFAULT_POLICY, maxOpcodes: 100_000, maxArgBytes: head.length, deadline: threadCpuMs() + 200 });
  // A PROTO header followed by a couple of valid opcodes, or anything that imports, is a pickle
  // even if it breaks later (execute-then-break); `80 04 00…` (a safetensors length) is not.
  if (framed) return a.opcodes > 2 || a.imports.size > 0 || a.stopped || (a.error !== undefined && a.error.kind !== 'malformed');
  if (a.stopped) return a.opcodes >= 2;
  return a.error?.kind === 'truncated' && a.error.offset >= head.length - 256 && a.opcodes >= 3;
}

export const pickleHandler: FormatHandler = {
  name: 'pickle',
  detect(head) {
    return looksLikePickle(head);
  },
  async scan(ctx) {
    return scanPickleStream(ctx);
  },
};

/** Offset of a zip local header after `from` when the stream also ends like a zip, else -1. */
function trailingZip(src: ByteSource, from: number): number {
  const tail = src.read(Math.max(from, src.size - 65557), Math.min(65557, src.size - from));
  if (tail.indexOf(Buffer.from('PK\x05\x06', 'latin1')) < 0) return -1;
  const window = src.read(from, Math.min(src.size - from, 1 << 20));
  const at = window.indexOf(Buffer.from('PK\x03\x04', 'latin1'));
  return at < 0 ? -1 : from + at;
}

export interface StreamSummary {
  format: 'pickle' | 'pytorch-legacy' | 'joblib';
  pickles: PickleAnalysis[];
}

/** Every pickle in the stream is analysed, not just the first one `pickle.load` would read. */
export async function scanPickleStream(ctx: FormatContext): Promise<string | void> {
  const src = ctx.source;
  const sink = ctx.sink;
  const deadline = threadCpuMs() + ctx.limits.maxScanMs;
  const probeOnly = ctx.hint?.probeOnly === true;
  const imports = new Map<string, ImportSite>();
  const r = new StreamReader(src, 0, src.size);
  const pickles: PickleAnalysis[] = [];
  let format: StreamSummary['format'] = 'pickle';
  while (r.remaining() > 0 && pickles.length < ctx.limits.maxPicklesPerStream) {
    const index = pickles.length;
    const a = analyzePickle(r, { policy: ctx.policy, maxOpcodes: ctx.limits.maxOpcodes, maxArgBytes: ctx.limits.maxArgBytes, deadline, joblib: true }, imports);
    pickles.push(a);
    if (index === 0 && probeOnly && a.error && a.imports.size === 0) {
      // Data, not a pickle: a member we only probed.
      return 'data';
    }
    if (a.inlineArrays > 0) format = 'joblib';
    if (index === 0 && a.result?.k === 'int' && a.result.v === TORCH_LEGACY_MAGIC) format = 'pytorch-legacy';
    if (a.error) break;
    if (format === 'pytorch-legacy' && pickles.length === TORCH_LEGACY_PICKLES) break;
    if (r.remaining() === 0) break;
    const next = r.peek(4096);
    if (!looksLikePickle(next)) {
      const zipAt = format !== 'pytorch-legacy' ? trailingZip(src, r.pos) : -1;
      if (zipAt >= 0) {
        // A pickle/zip polyglot: torch.load reads the pickle, zipfile-based tools the archive.
        sink.add({
          rule: 'pickle/polyglot-zip',
          severity: 'medium',
          verdict: 'suspicious',
          message: 'a zip archive follows the pickle: loaders that sniff the start see a pickle, zip readers see an archive; both are analysed',
          location: { offset: zipAt },
        });
        await ctx.scanNested(new SliceSource(src, zipAt, src.size - zipAt), `zip@${zipAt}`, sink.forMember(`zip@${zipAt}`));
      } else if (format !== 'pytorch-legacy') {
        sink.add({
          rule: 'pickle/trailing-bytes',
          severity: 'low',
          verdict: 'suspicious',
          message: `${r.remaining()} bytes follow the last pickle's STOP and are not a pickle: a polyglot file or hidden payload`,
          location: { offset: r.pos },
          evidence: `first bytes: ${next.subarray(0, 16).toString('hex')}`,
        });
      }
      break;
    }
  }
  if (format === 'pytorch-legacy' && pickles.length < TORCH_LEGACY_PICKLES && !pickles.some((p) => p.error)) {
    sink.add({ rule: 'pytorch/legacy-incomplete', severity: 'medium', verdict: 'invalid', message: `PyTorch legacy file holds ${pickles.length} of the ${TORCH_LEGACY_PICKLES} pickles the loader reads` });
  }
  reportPickles(pickles, imports, sink, ctx);
  if (ctx.vm && !probeOnlyData(pickles, probeOnly)) await vmPass(ctx, pickles, imports, format);
  return format;
}

function probeOnlyData(pickles: readonly PickleAnalysis[], probeOnly: boolean): boolean {
  return probeOnly && pickles.every((p) => p.imports.size === 0 && p.error !== undefined);
}

/**
 * The VM pass: CPython's own pickle machine (Pyodide in an isolate in a worker process) runs the
 * same bytes with every import intercepted. Its findings are added as they are; an import the VM
 * made that the static pass did not see is a disagreement finding, and the VM's reading wins.
 */
async function vmPass(ctx: FormatContext, pickles: readonly PickleAnalysis[], imports: Map<string, ImportSite>, format: StreamSummary['format']): Promise<void> {
  const { sink, source: src } = ctx;
  const last = pickles[pickles.length - 1];
  const end = format === 'pytorch-legacy' && last ? last.end : src.size;
  if (end > ctx.limits.maxPickleBytes) {
    sink.add({ rule: 'vm/skipped', severity: 'low', verdict: 'safe', message: `pickle stream of ${end} bytes exceeds maxPickleBytes; only the static pass ran` });
    return;
  }
  const { vmScanPass } = await import('../../unpickler/index.js');
  const bytes = src.read(0, end);
  // joblib streams carry raw array bytes between pickle opcodes: the VM then reads them as joblib.load does.
  const r = await vmScanPass(bytes, { policy: ctx.policy, joblib: format === 'joblib', pickles: format === 'pytorch-legacy' ? TORCH_LEGACY_PICKLES : ctx.limits.maxPicklesPerStream, timeoutMs: Math.min(ctx.limits.maxScanMs, VM_TIMEOUT_MS) });
  ctx.stats.vm = 1;
  // The VM groups its calls per class; a class the static pass already reported with the same
  // judgement is not reported again, so a whole-model save names each nn.Module class once.
  r.findings.forEach((f, i) => {
    const site = imports.get(r.targets[i] ?? '');
    const sameAsStatic = site !== undefined && f.rule === 'vm/intercepted-call' && f.verdict === 'suspicious' && (site.cls === 'library' || site.cls === 'unknown');
    if (!sameAsStatic) sink.add(f);
  });
  const seen = new Set<string>();
  for (const imp of r.imports) {
    const v = ctx.policy.classify(imp.module, imp.name);
    if (seen.has(v.qualified) || imports.has(v.qualified)) continue;
    seen.add(v.qualified);
    if (v.cls === 'allowed') continue;
    sink.add({
      rule: 'scan/vm-disagrees',
      severity: v.cls === 'dangerous' ? 'critical' : 'high',
      verdict: v.cls === 'dangerous' ? 'malicious' : 'suspicious',
      message: `CPython's pickle machine imported \`${v.qualified}\` where the static reading saw no such import: the stream is built to mislead static scanners (${v.reason})`,
      evidence: `find_class(${JSON.stringify(imp.module)}, ${JSON.stringify(imp.name)})`,
    });
  }
}

/** A non-allowlisted callable fed a shell command, Python source, a URL or a dotted import path is a payload call. */
function payloadFinding(s: ImportSite, times: string, sink: FindingSink): boolean {
  for (const call of s.calls) {
    const p = payloadArgument(call);
    if (!p) continue;
    sink.add({
      rule: 'pickle/payload-argument',
      severity: 'critical',
      verdict: 'malicious',
      message: `calls \`${s.qualified}\`${times}, which is not on the allowlist, with ${p.kind} as its argument (${p.match}): a gadget this scanner has no name for, used the way payloads are`,
      location: { offset: s.offset },
      evidence: `would call ${call}`,
    });
    return true;
  }
  return false;
}

/**
 * getattr used only to rebuild bound methods of allowlisted torch objects (LR schedulers): every
 * copy of the imported value (each import, memo GET and DUP) went into a recognised call. A copy
 * passed anywhere else (an argument of `_rebuild_from_type_v2`, which calls it) keeps it dangerous.
 */
function boundMethodsOnly(s: ImportSite): boolean {
  const copies = s.count + (s.reuses ?? 0);
  return s.qualified === BOUND_METHOD_GETTER && s.calls.length === 0 && (s.boundMethodCalls ?? 0) > 0 && s.boundMethodCalls === copies;
}

export function reportPickles(pickles: readonly PickleAnalysis[], imports: Map<string, ImportSite>, sink: FindingSink, ctx: FormatContext): void {
  const sites = [...imports.values()].sort((x, y) => x.offset - y.offset);
  let allowed = 0;
  for (const s of sites) {
    const times = s.count > 1 ? ` (${s.count}×)` : '';
    const call = s.calls.length ? `would call ${s.calls[0]}` : `${s.op} ${s.module} ${s.name}`;
    switch (s.cls) {
      case 'allowed':
        allowed++;
        break;
      case 'dangerous':
        if (boundMethodsOnly(s)) {
          allowed++;
          sink.add({
            rule: 'pickle/bound-method',
            severity: 'info',
            verdict: 'safe',
            message: `rebuilds bound methods of allowlisted PyTorch objects with \`${s.qualified}\`${times} (${(s.boundMethods ?? []).join(', ')}), as LR scheduler state dicts hold them; nothing is called`,
            location: { offset: s.offset },
          });
          break;
        }
        sink.add({ rule: 'pickle/dangerous-global', severity: 'critical', verdict: 'malicious', message: `imports \`${s.qualified}\`${times}: ${s.reason}`, location: { offset: s.offset }, evidence: call });
        break;
      case 'library':
        if (payloadFinding(s, times, sink)) break;
        sink.add({
          rule: 'pickle/library-global',
          severity: 'low',
          verdict: 'suspicious',
          message: `imports \`${s.qualified}\`${times}: ${s.reason}. Loading runs that library's code; accept it with --allow ${s.qualified} if you trust the library`,
          location: { offset: s.offset },
          evidence: call,
        });
        break;
      case 'unknown': {
        if (payloadFinding(s, times, sink)) break;
        sink.add({ rule: 'pickle/unknown-global', severity: 'high', verdict: 'suspicious', message: `imports \`${s.qualified}\`${times}: ${s.reason}; loading it runs whatever code that name refers to`, location: { offset: s.offset }, evidence: call });
        break;
      }
    }
  }
  pickles.forEach((a, i) => {
    const label = pickles.length > 1 ? ` (pickle #${i + 1} at byte ${a.start})` : '';
    for (const is of a.issues) {
      const f: Parameters<FindingSink['add']>[0] = { rule: is.rule, severity: is.severity, verdict: is.verdict, message: is.message + label, location: { offset: is.offset } };
      if (is.evidence !== undefined) f.evidence = is.evidence;
      sink.add(f);
    }
    if (a.error) {
      const e = a.error;
      const rule = e.kind === 'truncated' ? 'pickle/truncated' : e.kind === 'limit' ? 'pickle/limit' : 'pickle/malformed';
      const after = a.imports.size > 0 && [...a.imports.values()].some((s) => s.cls !== 'allowed') ? ' (the imports before this point would already have run)' : '';
      sink.add({ rule, severity: 'high', verdict: 'invalid', message: `the pickle stream is broken${label}: ${e.message}${after}`, location: { offset: e.offset } });
    }
    if (i > 0 && !a.error) {
      sink.add({ rule: 'pickle/multiple-streams', severity: 'info', verdict: 'safe', message: `a further pickle${label}; analysed like the first`, location: { offset: a.start } });
    }
  });
  const first = pickles[0];
  if (first && first.persistentIds > 0 && ctx.depth === 0 && !ctx.stats.persistentOk) {
    sink.add({ rule: 'pickle/persistent-id', severity: 'info', verdict: 'safe', message: `${first.persistentIds} persistent ids: references resolved by the loader (PyTorch storages), not code` });
  }
  const tensors = pickles.reduce((n, p) => n + p.tensors, 0);
  ctx.stats.globals = (typeof ctx.stats.globals === 'number' ? ctx.stats.globals : 0) + allowed;
  if (tensors > 0) ctx.stats.tensors = (typeof ctx.stats.tensors === 'number' ? ctx.stats.tensors : 0) + tensors;
  if (pickles.length > 0) ctx.stats.pickles = (typeof ctx.stats.pickles === 'number' ? ctx.stats.pickles : 0) + pickles.length;
}

