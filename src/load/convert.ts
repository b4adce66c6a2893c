import { VERSION } from '../version.js';
import { safeLoad, type LoadResult, type SafeLoadOptions } from './safeload.js';
import { writeSafetensors } from './safetensors-writer.js';

export interface ConvertResult {
  out: string;
  tensors: number;
  bytes: number;
  load: LoadResult;
}

/**
 * `guard convert`: safeLoad the input (scan, refuse unsafe, VM-only unpickling), then write its
 * tensors as safetensors with `__metadata__` naming the source format and sha256.
 */
export async function convertToSafetensors(input: string, out: string, options: Omit<SafeLoadOptions, 'sha256'> = {}): Promise<ConvertResult> {
  const load = await safeLoad(input, { ...options, sha256: true });
  const metadata: Record<string, string> = {
    format: 'pt',
    source_format: load.format,
    source_sha256: String(load.metadata.sha256),
    converted_by: `modelguard ${VERSION}`,
  };
  const w = writeSafetensors(out, load.tensors, metadata);
  return { out, tensors: w.tensors, bytes: w.bytes, load };
}
