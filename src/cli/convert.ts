import { GuardError } from '../errors.js';
import { convertToSafetensors, type ConvertResult } from '../load/convert.js';
import { wallsLine } from '../report/render.js';
import { parseArgs } from './args.js';
import { LOAD_SPEC, loadOptions, reportFailure } from './load.js';

const HELP = `Usage: guard convert [options] IN OUT.safetensors

Loads IN like \`guard load\` (scan first, refuse unsafe files, nothing executed) and writes its
tensors to OUT as safetensors: tensors sorted by name, __metadata__ with the source format and
sha256. OUT is written atomically; a refused or failed conversion leaves no file.

Options:
  --allow NAME           accept a qualified global as a plain object; repeatable
  --allow-suspicious     convert files whose verdict is suspicious (never malicious)
  --timeout MS           time limit of the unpickler VM
  --max-bytes N          refuse to allocate more than N bytes of tensors
  --require-walls        fail (exit 2) rather than run the unpickler without the kernel walls

Exit codes: 0 written, 1 refused (unsafe), 2 usage, I/O or format error.
`;

export async function main(argv: string[]): Promise<number> {
  const { options, positionals } = parseArgs(argv, { ...LOAD_SPEC }, 'convert');
  if (options.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 2) throw new GuardError('USAGE', 'guard convert: give IN and OUT.safetensors (see `guard convert --help`)');
  const [input, out] = positionals as [string, string];
  let r: ConvertResult;
  try {
    r = await convertToSafetensors(input, out, loadOptions(options));
  } catch (e) {
    return reportFailure(e, 'convert');
  }
  process.stdout.write(`wrote ${out}: ${r.tensors} tensors, ${r.bytes} bytes (from ${r.load.format}, sha256 ${String(r.load.metadata.sha256).slice(0, 16)}…)\n`);
  if (r.load.report.walls) process.stdout.write(`walls: ${wallsLine(r.load.report.walls)}\n`);
  return 0;
}
