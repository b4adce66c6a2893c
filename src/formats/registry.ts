import type { FormatHandler } from './types.js';
import { zipHandler } from './zip.js';
import { tarHandler } from './tar.js';
import { sevenZipHandler } from './sevenzip.js';
import { numpyHandler } from './numpy.js';
import { pickleHandler } from './pickle/handler.js';
import { compressedHandler } from './compressed.js';
import { ggufHandler } from './gguf.js';
import { hdf5Handler } from './keras-h5.js';
import { lfsHandler } from './lfs.js';
import { safetensorsHandler } from './safetensors.js';
import { savedModelHandler, savedModelTextHandler } from './savedmodel.js';
import { onnxHandler } from './onnx.js';
import { jsonConfigHandler } from './json-config.js';
import { chatTemplateHandler } from './chat-template.js';

/** Maximum bytes handed to `detect`. */
export const DETECT_HEAD_BYTES = 4096;

/**
 * Handlers in detection order: formats with unambiguous magic first, pickle (which has none for
 * protocols 0/1) last. Formats from other modules register here too.
 */
export const HANDLERS: FormatHandler[] = [
  zipHandler,
  sevenZipHandler,
  numpyHandler,
  tarHandler,
  // Magic bytes: GGUF, HDF5, Git LFS pointer text.
  ggufHandler,
  hdf5Handler,
  lfsHandler,
  compressedHandler,
  // Content checks helped by the name (no magic): safetensors header, protobufs, JSON, Jinja.
  safetensorsHandler,
  savedModelHandler,
  savedModelTextHandler,
  onnxHandler,
  jsonConfigHandler,
  chatTemplateHandler,
  pickleHandler,
];

/**
 * Content decides: every handler first sees the bytes without the name, and only when no content
 * matches do handlers that use the name as a tie-breaker get it (a broken `.safetensors` is judged
 * as safetensors, but a pickle named `.safetensors` is a pickle).
 */
export function detectFormat(head: Buffer, size: number, name: string): FormatHandler | undefined {
  for (const h of HANDLERS) if (h.detect(head, size, '')) return h;
  if (name === '') return undefined;
  for (const h of HANDLERS) if (h.detect(head, size, name)) return h;
  return undefined;
}
