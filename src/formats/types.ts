import type { FindingSink } from '../report/findings.js';
import type { ByteSource } from './source.js';
import type { Limits } from '../limits.js';
import type { Policy } from './pickle/policy.js';

/** What a format handler gets: the bytes, where to put findings, and a way to recurse. */
export interface FormatContext {
  source: ByteSource;
  sink: FindingSink;
  /** Display name of the thing being scanned (file path, or member path inside a container). */
  name: string;
  /** The file's path on disk when scanning a file (for sibling lookups such as ONNX external data). */
  filePath?: string;
  limits: Limits;
  policy: Policy;
  /** Container nesting depth (0 for the file itself). */
  depth: number;
  stats: Record<string, number | string>;
  /** Run the restricted-unpickler VM pass on pickles (false with `--fast`). */
  vm: boolean;
  /** Set when a container hands a member over with expectations. */
  hint?: NestedHint;
  /**
   * Scans a nested member with format detection and returns the format it was detected as.
   * Findings land in `sink` (usually `ctx.sink.forMember(member)`).
   */
  scanNested(source: ByteSource, member: string, sink: FindingSink, hint?: NestedHint): Promise<string>;
}

export interface NestedHint {
  /** Treat as pickle even without a PROTO header (a member PyTorch will unpickle). */
  expectPickle?: boolean;
  /** The member is optional data; only report it when it really is a pickle. */
  probeOnly?: boolean;
}

export interface FormatHandler {
  /** Stable format name used in reports: `pickle`, `pytorch-zip`, `safetensors`, … */
  readonly name: string;
  /**
   * Claims a source from its first bytes (`head` holds up to DETECT_HEAD_BYTES). Content decides,
   * never the extension; `name` is only a tie-breaker for formats without magic bytes.
   */
  detect(head: Buffer, size: number, name: string): boolean;
  /** Returns the refined format name when scanning learns more (`zip` → `pytorch-zip`). */
  scan(ctx: FormatContext): Promise<string | void>;
}
