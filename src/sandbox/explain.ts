/** `guard profile check`: what a profile will do on this machine, in words. */
import { compilePolicy, ALWAYS_DENIED, CONDITIONALLY_DENIED, ENOSYS_CALLS, MASK_DENIED, RUNTIME_PROBES } from './filter.js';
import type { NativeAddon } from './native.js';
import type { SandboxProfile } from './profile.js';

export interface ProfileExplanation {
  name: string;
  source: string;
  lines: string[];
  warnings: string[];
  rules: number;
  skipped: string[];
}

export function explainProfile(profile: SandboxProfile, native: NativeAddon | null): ProfileExplanation {
  const mg = profile.modelguard;
  const lines: string[] = [];
  const warnings: string[] = [];
  lines.push(`profile ${profile.name} (${profile.source})`);
  if (mg.description) lines.push(`  ${mg.description}`);
  const errno = profile.defaultErrnoRet !== undefined ? ` (errno ${profile.defaultErrnoRet})` : '';
  lines.push(`  default action: ${profile.defaultAction}${errno}; ${profile.syscalls.length} rule groups naming ${profile.syscalls.reduce((n, r) => n + r.names.length, 0)} syscalls`);
  if (profile.architectures.length) lines.push(`  architectures listed: ${profile.architectures.join(', ')} — modelguard installs the native one only; calls through foreign architectures and x32 are answered ENOSYS and reported`);
  lines.push(`  network: ${mg.network === 'deny' ? 'denied (fresh network namespace where permitted, else seccomp + Landlock TCP rules); every attempt reported, DNS names included' : 'allowed, every attempt reported'}`);
  lines.push(`  exec: ${mg.exec === 'first' ? 'the command itself only; later execve/execveat denied and reported' : mg.exec === 'allow' ? 'allowed and reported' : 'denied after the command itself'}`);
  lines.push(`  filesystem: read ${mg.fs.read.join(', ') || '(nothing)'}; write ${mg.auditWrites ? 'anywhere (reported)' : mg.fs.write.join(', ') || 'nowhere'} plus /dev/null-like devices (Landlock)`);
  if (mg.unixSockets.length) lines.push(`  unix sockets reachable while the network is denied: ${mg.unixSockets.join(', ')}`);
  const rl = Object.entries(mg.rlimits).map(([k, v]) => `${k}=${v}`);
  lines.push(`  rlimits: ${rl.length ? rl.join(', ') : 'none'}; processes: ${mg.pids ?? 'unbounded'}`);
  lines.push(`  capabilities: ${mg.keepCapabilities ? "the user's are kept" : 'none survive the execve, not even root\'s'}; no_new_privs always`);
  if (mg.report.length) lines.push(`  also reported: ${mg.report.join(', ')}`);
  lines.push(`  always denied and reported: ${ALWAYS_DENIED.join(', ')}, ${CONDITIONALLY_DENIED.map((c) => c.why).join(', ')}, ${MASK_DENIED.map((c) => c.why).join(', ')}, personality other than the default`);
  lines.push(`  socket families: ${mg.socketFamilies.length ? mg.socketFamilies.join(', ') : 'any'}${mg.socketFamilies.includes('netlink') && mg.netlinkProtocols.length ? ` (netlink: ${mg.netlinkProtocols.join(', ')})` : ''}; others denied in BPF and reported`);
  lines.push(`  answered ENOSYS: ${ENOSYS_CALLS.join(', ')} (the C library falls back to clone); ${RUNTIME_PROBES.join(', ')} (reported as runtime probes); calls through another ABI (x32, i386; reported)`);
  lines.push('  decisions: no call is let through on memory the supervisor read (the kernel reads it again); connect, bind, send* and metadata changes are performed by the supervisor on its own copy');
  let rules = 0;
  let skipped: string[] = [];
  if (native) {
    const c = compilePolicy(native, profile, { reportNetwork: true, reportExec: true, reportWrites: true });
    rules = c.specs[0]!.rules.length;
    skipped = c.skipped;
    lines.push(`  compiled: ${rules} libseccomp rules, ${c.filters[0]!.length / 8} BPF instructions; default ${c.mode === 'notify-default' ? `notify: calls the profile does not allow are denied (errno ${c.defaultErrno}) and reported` : 'allow'}; ${c.notified.size} syscalls decoded by the supervisor`);
    if (c.excluded) lines.push(`  ${c.excluded} rule groups do not apply here (includes/excludes: arch, caps, minKernel)`);
    if (c.enosys.length) lines.push(`  syscalls ${c.enosys[0]}–${c.enosys[c.enosys.length - 1]} (newer than the profile) answer ENOSYS`);
    if (skipped.length) warnings.push(`unknown to this kernel/libseccomp, skipped: ${skipped.join(', ')}`);
  } else {
    warnings.push('the native addon is unavailable: the profile was validated but not compiled');
  }
  return { name: profile.name, source: profile.source, lines, warnings, rules, skipped };
}
