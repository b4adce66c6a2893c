import type { FileReport, Report } from '../report/model.js';

/**
 * Folder-level checks for a Hugging Face-style model repository (auto_map custom code, unresolved
 * Git LFS pointers). Returns undefined when the folder has nothing repository-level to say.
 */
export function directoryChecks(_root: string, _files: readonly FileReport[]): Report['repository'] | undefined {
  return undefined;
}
