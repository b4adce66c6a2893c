import type { FormatContext } from './types.js';

/** A read-only view of a zip archive handed to format-specific zip scanners. */
export interface ArchiveView {
  readonly names: readonly string[];
  /** Uncompressed bytes of a member (size-capped by the zip reader), or undefined if absent. */
  read(name: string): Buffer | undefined;
}

/** True when a zip's member names say it is a Keras v3 `.keras` archive. */
export function isKerasArchive(names: readonly string[]): boolean {
  return names.includes('config.json') && names.includes('metadata.json');
}

/** Judges a Keras v3 archive's config (Lambda layers, foreign modules). */
export async function scanKerasArchive(_ctx: FormatContext, _archive: ArchiveView): Promise<void> {}
