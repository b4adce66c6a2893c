import type { Finding, Location } from './model.js';

/** What a pass hands to a sink: a finding before the sink places it inside its member. */
export type NewFinding = Finding;

/** Caps the number of findings per file so a hostile file cannot flood the report. */
export const MAX_FINDINGS_PER_FILE = 500;
export const MAX_EVIDENCE_CHARS = 400;

interface Store {
  findings: Finding[];
  dropped: number;
}

/**
 * Collects findings for one file. Child sinks made with `forMember` write into the same list
 * with locations inside that member.
 */
export class FindingSink {
  private readonly store: Store;
  private readonly memberPrefix: string | undefined;

  constructor(memberPrefix?: string, store?: Store) {
    this.memberPrefix = memberPrefix;
    this.store = store ?? { findings: [], dropped: 0 };
  }

  get findings(): readonly Finding[] {
    return this.store.findings;
  }

  get dropped(): number {
    return this.store.dropped;
  }

  add(f: NewFinding): void {
    if (this.store.findings.length >= MAX_FINDINGS_PER_FILE) {
      this.store.dropped++;
      return;
    }
    const finding: Finding = { rule: f.rule, severity: f.severity, verdict: f.verdict, message: f.message };
    const location = this.locate(f.location);
    if (location) finding.location = location;
    if (f.evidence !== undefined) finding.evidence = truncate(f.evidence, MAX_EVIDENCE_CHARS);
    this.store.findings.push(finding);
  }

  forMember(member: string): FindingSink {
    return new FindingSink(this.memberPrefix ? `${this.memberPrefix}!${member}` : member, this.store);
  }

  private locate(loc: Location | undefined): Location | undefined {
    if (!this.memberPrefix) return loc;
    const member = loc?.member ? `${this.memberPrefix}!${loc.member}` : this.memberPrefix;
    return loc?.offset !== undefined ? { member, offset: loc.offset } : { member };
  }
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
