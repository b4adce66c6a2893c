import type { FormatHandler } from './types.js';
import { zipHandler } from './zip.js';
import { tarHandler } from './tar.js';
import { sevenZipHandler } from './sevenzip.js';
import { numpyHandler } from './numpy.js';
import { pickleHandler } from './pickle/handler.js';

/** Maximum bytes handed to `detect`. */
export const DETECT_HEAD_BYTES = 4096;

/**
 * Handlers in detection order: formats with unambiguous magic first, pickle (which has none for
 * protocols 0/1) last. Formats from other modules register here too.
 */
export const HANDLERS: FormatHandler[] = [zipHandler, sevenZipHandler, numpyHandler, tarHandler, pickleHandler];

export function detectFormat(head: Buffer, size: number, name: string): FormatHandler | undefined {
  for (const h of HANDLERS) if (h.detect(head, size, name)) return h;
  return undefined;
}
