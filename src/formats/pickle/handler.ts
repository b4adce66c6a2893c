import type { FormatHandler } from '../types.js';
export const pickleHandler: FormatHandler = { name: 'pickle', detect: (h) => h.length > 0 && h[0] === 0x80, async scan() {} };
