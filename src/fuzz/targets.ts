/**
 * Fuzz targets: one per parser, and the safeLoad path. Each names its seed fixtures, its input
 * generator (structure-aware builders mixed with byte mutation of the seeds) and the contract it
 * checks on every input. A contract breach throws ContractViolation; anything else a target throws
 * is a breach too (the runner reports it with the input).
 */
import fc from 'fast-check';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { codeOf, GuardError } from '../errors.js';
import { scan } from '../scan.js';
import { safeLoad } from '../load/safeload.js';
import { analyzePickle } from '../formats/pickle/analyze.js';
import { StreamReader } from '../formats/pickle/reader.js';
import { DEFAULT_POLICY } from '../formats/pickle/policy.js';
import { BufferSource } from '../formats/source.js';
import { analyzeChatTemplate } from '../formats/chat-template.js';
import * as g from './generators.js';
import { threadCpuMs } from '../cpu-time.js';

export class ContractViolation extends Error {
  constructor(
    readonly kind: 'non-guard-error' | 'scan-failed' | 'internal-error' | 'threw',
    message: string,
  ) {
    super(message);
    this.name = 'ContractViolation';
  }
}

export interface FuzzTarget {
  name: string;
  /** What the target exercises and what it checks. */
  about: string;
  /** Fixture files (paths relative to test/fixtures) whose bytes seed mutation. */
  seedExts: readonly string[];
  /** Structure-aware generator; mixed half and half with mutation of the seeds. */
  structured: fc.Arbitrary<Buffer>;
  exec(input: Buffer): Promise<void>;
}

/** Seeds larger than this are left out (mutation of big files is slow and adds little). */
export const FUZZ_MAX_SEED_BYTES = 256 * 1024;
/** Seeds per target at most. */
export const FUZZ_MAX_SEEDS = 48;

/** scan() limits for fuzzing: the defaults, with a shorter per-file budget. */
const FUZZ_SCAN_LIMITS = { maxScanMs: 20_000 };

/**
 * scan() on bytes named like the format: it must resolve (scan never throws for a file's content)
 * and no parser may have thrown (the `scan/failed` finding): damage is reported as the format's
 * own finding. The VM pass is skipped (`fast`): the static passes are what is fuzzed here.
 */
async function scanContract(input: Buffer, name: string): Promise<void> {
  let r;
  try {
    r = await scan(input, { name, fast: true, limits: FUZZ_SCAN_LIMITS });
  } catch (e) {
    throw new ContractViolation('threw', `scan() threw ${describe(e)}`);
  }
  const failed = r.files.flatMap((f) => f.findings).find((f) => f.rule === 'scan/failed');
  if (failed) throw new ContractViolation('scan-failed', `a parser threw instead of reporting: ${failed.message}`);
}

/** A parser may throw only errors that map to a stable code (its own format errors, GuardError). */
function codedOnly(e: unknown, where: string): never {
  const code = codeOf(e);
  if (code === undefined || code === 'INTERNAL') throw new ContractViolation('non-guard-error', `${where} threw ${describe(e)}`);
  throw e;
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}${(e as { code?: unknown }).code ? ` [${String((e as { code?: unknown }).code)}]` : ''}: ${e.message}`.slice(0, 400);
  return String(e).slice(0, 400);
}

const scanTarget = (name: string, file: string, about: string, seedExts: readonly string[], structured: fc.Arbitrary<Buffer>): FuzzTarget => ({
  name,
  about,
  seedExts,
  structured,
  exec: (input) => scanContract(input, file),
});

export const TARGETS: readonly FuzzTarget[] = [
  {
    name: 'pickle',
    about: 'the static pickle pass (analyzePickle) on opcode streams: returns, or throws PickleError',
    seedExts: ['pkl'],
    structured: g.pickleStream,
    async exec(input) {
      try {
        analyzePickle(new StreamReader(new BufferSource(input), 0), { policy: DEFAULT_POLICY, maxOpcodes: 100_000, maxArgBytes: 1 << 20, deadline: threadCpuMs() + 5000 });
      } catch (e) {
        if (codeOf(e) !== undefined && codeOf(e) !== 'INTERNAL') return;
        codedOnly(e, 'analyzePickle');
      }
    },
  },
  scanTarget('zip', 'model.pt', 'PyTorch zip / generic zip archives through scan()', ['pt', 'zip'], g.zipArchive),
  scanTarget('tar', 'model.tar', 'tar archives through scan()', ['tar'], g.tarFile),
  scanTarget('npy', 'array.npy', '.npy files through scan()', ['npy'], g.npyFile),
  scanTarget('npz', 'arrays.npz', '.npz archives through scan()', ['npz'], g.npzFile),
  scanTarget('compressed', 'model.pkl.gz', 'gzip/zlib/xz/bzip2 streams through scan() (inflated to a temp file)', ['gz', 'xz', 'bz2', 'joblib'], g.compressedStream),
  scanTarget('safetensors', 'model.safetensors', 'safetensors headers and offsets through scan()', ['safetensors'], g.safetensorsFile),
  scanTarget('gguf', 'model.gguf', 'GGUF headers, metadata and tensor infos through scan()', ['gguf'], g.ggufFile),
  scanTarget('onnx', 'model.onnx', 'ONNX protobuf through scan()', ['onnx'], g.protobufBytes),
  scanTarget('keras', 'model.keras', 'Keras v3 archives (config.json) through scan()', ['keras'], g.kerasArchive),
  {
    name: 'chat-template',
    about: 'Jinja chat templates: analyzeChatTemplate never throws, and tokenizer_config.json through scan()',
    seedExts: ['jinja', 'json'],
    structured: g.tokenizerConfig,
    async exec(input) {
      try {
        analyzeChatTemplate(input.toString('utf8'));
      } catch (e) {
        throw new ContractViolation('threw', `analyzeChatTemplate threw ${describe(e)}`);
      }
      await scanContract(input, 'tokenizer_config.json');
    },
  },
  {
    name: 'safeload',
    about: 'safeLoad() on tensor files: loads, or throws a GuardError whose code is not INTERNAL',
    seedExts: ['safetensors', 'npy', 'npz', 'gguf'],
    structured: fc.oneof(g.safetensorsFile, g.npyFile, g.npzFile, g.ggufFile),
    async exec(input) {
      try {
        await safeLoad(input, { name: 'fuzz-input' });
      } catch (e) {
        if (!(e instanceof GuardError)) throw new ContractViolation('non-guard-error', `safeLoad threw ${describe(e)}`);
        if (e.code === 'INTERNAL') throw new ContractViolation('internal-error', `safeLoad failed with INTERNAL: ${e.message.slice(0, 300)}`);
      }
    },
  },
];

export function targetNamed(name: string): FuzzTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new GuardError('USAGE', `unknown fuzz target ${JSON.stringify(name)}; targets: ${TARGETS.map((x) => x.name).join(', ')}`);
  return t;
}

/** The seed files for a target: fixtures by extension, small ones, in a stable order. */
export function seedFiles(fixtures: string, exts: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) {
        if (name !== 'fuzz') walk(p);
      } else if (st.size <= FUZZ_MAX_SEED_BYTES && exts.some((e) => name.endsWith(`.${e}`))) out.push(p);
    }
  };
  walk(fixtures);
  return out.slice(0, FUZZ_MAX_SEEDS);
}

/** The generator a run uses: structured inputs and mutated seeds, half and half. */
export function inputsFor(t: FuzzTarget, fixtures: string): fc.Arbitrary<Buffer> {
  const seeds = seedFiles(fixtures, t.seedExts).map((p) => readFileSync(p));
  return fc.oneof(t.structured, g.mutated(seeds));
}
