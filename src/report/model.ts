/** The one Report model: findings per file, a verdict per file, a summary. */

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const VERDICTS = ['safe', 'suspicious', 'invalid', 'error', 'malicious'] as const;
/** Ordered from least to most serious; a file's verdict is the maximum its findings imply. */
export type Verdict = (typeof VERDICTS)[number];

export interface Location {
  /** Member inside a container (zip entry, tar member, npz array), or pickle index in a stream. */
  member?: string;
  /** Byte offset inside the member (or the file when there is no member). */
  offset?: number;
}

export interface Finding {
  /** Stable rule id, derived from the pass that produced it (`pickle/dangerous-global`). */
  rule: string;
  severity: Severity;
  /** The verdict this finding implies on its own. `safe` for informational notes. */
  verdict: Verdict;
  /** Why it matters and what to do. */
  message: string;
  location?: Location;
  /** The exact opcode, import, call or byte range that triggered the rule. */
  evidence?: string;
}

export interface FileReport {
  path: string;
  format: string;
  verdict: Verdict;
  /** What a `safe` verdict rests on ("only allowlisted globals, 3 tensors"). */
  basis?: string;
  findings: Finding[];
  /** Per-format facts worth showing (globals seen, tensor count). */
  stats?: Record<string, number | string>;
}

/** An attempt the kernel walls reported (the shape of the sandbox's RunEvent). */
export interface WallEvent {
  time: string;
  pid: number;
  syscall: string;
  action: string;
  args: Record<string, unknown>;
  egress?: { protocol: string; address: string; port: number; family?: string; dnsName?: string; dnsType?: string };
  path?: string;
  argv?: string[];
  errno?: string;
  reason?: string;
}

/** Which layers were up for the work behind a report. */
export interface Walls {
  isolate: boolean;
  /** seccomp profile name, null when no filter was installed. */
  seccomp?: string | null;
  /** `netns`, `seccomp+landlock`, `seccomp`; null when nothing denied the network. */
  network?: string | null;
  /** Landlock ABI in force, null when none. */
  landlock?: number | null;
  rlimits?: Record<string, number> | null;
  mode: 'static' | 'isolate-only' | 'walled';
  /** Why the work ran isolate-only. */
  reason?: string;
  /** What the walls reported: denied attempts of a VM worker (any makes the work fail). */
  events?: WallEvent[];
}

export interface ScanSummary {
  files: number;
  verdicts: Record<Verdict, number>;
  findings: number;
  durationMs: number;
}

export interface Report {
  tool: { name: 'modelguard'; version: string };
  files: FileReport[];
  summary: ScanSummary;
  walls?: Walls;
  /** Repository-level notes (Hugging Face folder checks). */
  repository?: { path: string; verdict: Verdict; findings: Finding[] };
  /** The scan was stopped (SIGINT/SIGTERM, an aborted signal): `files` holds only those finished. */
  interrupted?: true;
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

export function verdictRank(v: Verdict): number {
  return VERDICTS.indexOf(v);
}

export function maxVerdict(a: Verdict, b: Verdict): Verdict {
  return verdictRank(a) >= verdictRank(b) ? a : b;
}

export function maxSeverity(findings: readonly Finding[]): Severity {
  let best: Severity = 'info';
  for (const f of findings) if (severityRank(f.severity) > severityRank(best)) best = f.severity;
  return best;
}

export function verdictOf(findings: readonly Finding[]): Verdict {
  let v: Verdict = 'safe';
  for (const f of findings) v = maxVerdict(v, f.verdict);
  return v;
}

export function summarize(files: readonly FileReport[], durationMs: number): ScanSummary {
  const verdicts: Record<Verdict, number> = { safe: 0, suspicious: 0, invalid: 0, error: 0, malicious: 0 };
  let findings = 0;
  for (const f of files) {
    verdicts[f.verdict]++;
    findings += f.findings.length;
  }
  return { files: files.length, verdicts, findings, durationMs };
}

/** `--fail-on` levels: a file fails when its verdict ranks at or above the level. */
export type FailOn = 'suspicious' | 'invalid' | 'malicious';

export function reaches(verdict: Verdict, failOn: FailOn): boolean {
  if (verdict === 'safe') return false;
  if (verdict === 'error') return failOn !== 'malicious';
  return verdictRank(verdict) >= verdictRank(failOn);
}
