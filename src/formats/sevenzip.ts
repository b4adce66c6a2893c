import type { FormatHandler } from './types.js';
export const sevenZipHandler: FormatHandler = { name: '7z', detect: (h) => h.length >= 6 && h.subarray(0, 6).equals(Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])), async scan() {} };
