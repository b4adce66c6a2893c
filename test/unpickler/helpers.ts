import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES } from '../helpers/fixtures.js';

export const TENSORS = join(FIXTURES, 'tensors');
export const ESCAPES = join(TENSORS, 'escape');

export function tempDir(prefix = 'mg-unpickler-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Whether a process id is still alive. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Protocol-2 pickle: GLOBAL module name, args as protocol-0 strings/ints, REDUCE. */
export function callPickle(module: string, name: string, ...args: Array<string | number>): Buffer {
  const parts = args.map((a) => (typeof a === 'string' ? `S${JSON.stringify(a).replace(/"/g, "'")}\n` : `I${a}\n`));
  return Buffer.from(`\x80\x02c${module}\n${name}\n(${parts.join('')}tR.`, 'latin1');
}
