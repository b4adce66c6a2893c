import type { FormatContext, FormatHandler } from './types.js';

/**
 * Git LFS pointer files: what a clone without `git lfs pull` leaves in place of the weights.
 * Scanning one says nothing about the model, so its verdict is `error`, never `safe`.
 */

const PREFIXES = ['version https://git-lfs.github.com/spec/v1', 'version https://hawser.github.com/spec/v1'];
/** The LFS spec caps pointer files at 1024 bytes. */
export const LFS_POINTER_MAX_BYTES = 1024;

export interface LfsPointer {
  oid?: string;
  size?: number;
}

export function isLfsPointer(head: Buffer, size: number): boolean {
  if (size > LFS_POINTER_MAX_BYTES) return false;
  const s = head.subarray(0, 64).toString('latin1');
  return PREFIXES.some((p) => s.startsWith(p));
}

export function parseLfsPointer(text: string): LfsPointer {
  const out: LfsPointer = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+) (.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === 'oid') out.oid = (m[2] as string).slice(0, 200);
    if (m[1] === 'size' && /^\d{1,16}$/.test(m[2] as string)) out.size = Number(m[2]);
  }
  return out;
}

export const lfsHandler: FormatHandler = {
  name: 'git-lfs-pointer',
  detect: (head, size) => isLfsPointer(head, size),
  async scan(ctx: FormatContext) {
    const p = parseLfsPointer(ctx.source.read(0, LFS_POINTER_MAX_BYTES).toString('utf8'));
    ctx.sink.add({
      rule: 'lfs/unresolved-pointer',
      severity: 'high',
      verdict: 'error',
      message: 'Git LFS pointer: weights not downloaded, so the model itself was not scanned. Run `git lfs pull` (or download the file) and scan again.',
      location: { offset: 0 },
      evidence: `${p.oid ?? 'oid unknown'}${p.size !== undefined ? `, ${p.size} bytes` : ''}`,
    });
    return 'git-lfs-pointer';
  },
};
