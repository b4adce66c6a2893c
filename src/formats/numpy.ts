import type { FormatHandler } from './types.js';
export const numpyHandler: FormatHandler = { name: 'numpy', detect: (h) => h.length >= 6 && h.subarray(0, 6).equals(Buffer.from('\x93NUMPY', 'latin1')), async scan() {} };
