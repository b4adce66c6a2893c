import type { FormatHandler } from './types.js';
export const tarHandler: FormatHandler = { name: 'tar', detect: (h) => h.length >= 262 && h.toString('latin1', 257, 262) === 'ustar', async scan() {} };
