import type { FormatHandler } from './types.js';
export const zipHandler: FormatHandler = { name: 'zip', detect: (h) => h.length >= 4 && h.readUInt32LE(0) === 0x04034b50, async scan() {} };
