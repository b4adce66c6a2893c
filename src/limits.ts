/**
 * Named limits. Every length, count and depth read from an untrusted file is checked against
 * one of these. Users may override them through options; defaults are sized for real checkpoints.
 */
export interface Limits {
  /** Largest pickle stream analysed (bytes). */
  maxPickleBytes: number;
  /** Largest single pickle opcode argument (string/bytes length) materialised for analysis. */
  maxArgBytes: number;
  /** Opcodes analysed per pickle stream before giving up with a finding. */
  maxOpcodes: number;
  /** Pickle streams analysed in one file (legacy torch has 5, joblib a few). */
  maxPicklesPerStream: number;
  /** Members in a zip/tar container. */
  maxMembers: number;
  /** Uncompressed bytes inflated from one member for analysis. */
  maxInflateBytes: number;
  /** Sum of uncompressed bytes inflated in one file. */
  maxTotalInflateBytes: number;
  /** Declared compression ratio above which a member is a zip bomb. */
  maxCompressionRatio: number;
  /** Container-in-container depth. */
  maxNesting: number;
  /** Files visited in one directory walk. */
  maxFilesPerWalk: number;
  /** CPU-time budget per file for analysis (ms): the static pass, the VM call, the parser workers; never wall-clock, so a busy machine does not change a verdict. */
  maxScanMs: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxPickleBytes: 256 * 1024 * 1024,
  maxArgBytes: 64 * 1024 * 1024,
  maxOpcodes: 50_000_000,
  maxPicklesPerStream: 64,
  maxMembers: 100_000,
  maxInflateBytes: 256 * 1024 * 1024,
  maxTotalInflateBytes: 1024 * 1024 * 1024,
  maxCompressionRatio: 200,
  maxNesting: 4,
  maxFilesPerWalk: 100_000,
  maxScanMs: 60_000,
});

export function resolveLimits(overrides: Partial<Limits> | undefined): Limits {
  const out: Limits = { ...DEFAULT_LIMITS };
  if (!overrides) return out;
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in DEFAULT_LIMITS)) continue;
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) (out as unknown as Record<string, number>)[k] = v;
  }
  return out;
}
