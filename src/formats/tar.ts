import type { FormatContext, FormatHandler } from './types.js';
import { SliceSource } from './source.js';

/**
 * POSIX/GNU tar, for PyTorch's oldest checkpoint layout (members `sys_info`, `pickle`, `tensors`,
 * `storages`) and tarred model folders. Every regular member is scanned by content.
 */

const BLOCK = 512;
/** Names PyTorch's tar layout unpickles. */
const TORCH_TAR_PICKLES = new Set(['sys_info', 'pickle', 'tensors']);

function octal(buf: Buffer, off: number, len: number): number {
  const b = buf.subarray(off, off + len);
  if ((b[0] as number) & 0x80) {
    // GNU base-256 size
    let v = 0;
    for (let i = 1; i < b.length; i++) v = v * 256 + (b[i] as number);
    return v;
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return -1;
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = octal(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  return stored === sum;
}

export const tarHandler: FormatHandler = {
  name: 'tar',
  detect(h) {
    if (h.length < BLOCK) return false;
    const block = h.subarray(0, BLOCK);
    return (block.toString('latin1', 257, 262) === 'ustar' || block[0] !== 0) && checksumOk(block);
  },
  async scan(ctx: FormatContext) {
    const { source: src, sink, limits } = ctx;
    let pos = 0;
    let members = 0;
    let longName: string | null = null;
    let torchLayout = false;
    while (pos + BLOCK <= src.size) {
      const h = src.read(pos, BLOCK);
      if (h.every((b) => b === 0)) break;
      if (!checksumOk(h)) {
        sink.add({ rule: 'tar/bad-checksum', severity: 'high', verdict: 'invalid', message: 'tar header checksum is wrong', location: { offset: pos } });
        break;
      }
      const size = octal(h, 124, 12);
      if (size < 0 || pos + BLOCK + size > src.size) {
        sink.add({ rule: 'tar/truncated', severity: 'high', verdict: 'invalid', message: 'tar member runs past the end of the file', location: { offset: pos } });
        break;
      }
      const type = String.fromCharCode(h[156] as number);
      const prefix = h.toString('latin1', 345, 500).replace(/\0.*$/s, '');
      let name = longName ?? `${prefix ? `${prefix}/` : ''}${h.toString('latin1', 0, 100).replace(/\0.*$/s, '')}`;
      longName = null;
      const data = new SliceSource(src, pos + BLOCK, size);
      if (type === 'L') {
        longName = data.read(0, Math.min(size, 4096)).toString('latin1').replace(/\0.*$/s, '');
      } else if (type === '0' || type === '\0' || type === '7') {
        if (++members > limits.maxMembers) {
          sink.add({ rule: 'tar/too-many-members', severity: 'high', verdict: 'invalid', message: `more than ${limits.maxMembers} members` });
          break;
        }
        name = name.replace(/^\.\//, '');
        if (TORCH_TAR_PICKLES.has(name)) torchLayout = true;
        const expect = TORCH_TAR_PICKLES.has(name) || /\.(pkl|pickle)$/i.test(name);
        await ctx.scanNested(data, name, sink.forMember(name), expect ? { expectPickle: true } : { probeOnly: true });
      } else if (type === '1' || type === '2') {
        sink.add({ rule: 'tar/link', severity: 'low', verdict: 'suspicious', message: `member ${name} is a ${type === '1' ? 'hard' : 'symbolic'} link to ${h.toString('latin1', 157, 257).replace(/\0.*$/s, '')}; extracting it may write outside the target folder`, location: { offset: pos } });
      }
      pos += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    }
    ctx.stats.members = members;
    return ctx.depth === 0 && torchLayout ? 'pytorch-tar' : 'tar';
  },
};
