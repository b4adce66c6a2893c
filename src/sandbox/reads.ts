/**
 * What a `guard run` command may read (Landlock), when its profile says `"$SYSTEM"`: the system
 * folders a Python, NumPy or PyTorch program reads, the command and its interpreter, the paths on
 * its command line (the script, the model), the folders of PYTHONPATH and of a virtual
 * environment it runs from, and what the user adds with `--read`. Not the home folder: ~/.ssh,
 * ~/.aws, ~/.cache/huggingface/token and the like stay out of reach.
 *
 * Landlock grants whole hierarchies and cannot subtract, so /etc is granted entry by entry, less
 * the files that hold secrets.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve, sep } from 'node:path';

/** The profile token that expands to this list. */
export const SYSTEM_READ_TOKEN = '$SYSTEM';

/** Whole system folders. /run and /var are left out: they hold secrets (/run/secrets, /run/user, /var/lib). */
export const SYSTEM_READ = ['/usr', '/lib', '/lib32', '/lib64', '/libx32', '/bin', '/sbin', '/opt', '/proc', '/sys', '/dev', '/run/systemd/resolve', '/run/nscd', '/var/run/nscd'];

/** Entries of /etc (and of /etc/ssl) that are never granted: password hashes, host keys, sudo rules, private keys. */
export const ETC_SECRETS = new Set(['shadow', 'shadow-', 'gshadow', 'gshadow-', 'sudoers', 'sudoers.d', 'ssh', 'security', 'credstore', 'credstore.encrypted', '.pwd.lock', 'ssl/private', 'libvirt', 'wireguard', 'NetworkManager', 'openvpn', 'krb5.keytab', 'docker', 'containerd', 'rancher', 'kubernetes']);

function entriesOf(dir: string, rel: string, out: string[]): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const r = rel ? `${rel}/${n}` : n;
    if (ETC_SECRETS.has(r)) continue;
    if (r === 'ssl') entriesOf(join(dir, n), r, out);
    else out.push(join(dir, n));
  }
}

/** /etc, entry by entry, less ETC_SECRETS. */
export function etcReadable(): string[] {
  const out: string[] = [];
  entriesOf('/etc', '', out);
  return out;
}

function real(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/** Folders never granted because a command line named them: a grant there would reach the secrets below. */
function tooWide(dir: string, home: string | undefined): boolean {
  if (dir === sep) return true;
  if (home && (home === dir || home.startsWith(dir.endsWith(sep) ? dir : dir + sep))) return true;
  return false;
}

/** `#!` interpreter of a script, when `file` is one. */
function interpreterOf(file: string): string | undefined {
  try {
    const head = readFileSync(file, { encoding: 'latin1', flag: 'r' }).slice(0, 256);
    if (!head.startsWith('#!')) return undefined;
    const first = head.slice(2).split('\n')[0]!.trim().split(/\s+/)[0];
    return first && isAbsolute(first) ? first : undefined;
  } catch {
    return undefined;
  }
}

export interface ReadListInput {
  /** The command as it will be executed (argv[0] resolved against PATH). */
  executable: string;
  argv: readonly string[];
  cwd: string;
  /** PYTHONPATH as the command will see it. */
  pythonPath?: string;
  home?: string;
  extra: readonly string[];
}

/** Where `cmd` is found on PATH, as guard-exec will resolve it. */
export function whichCommand(cmd: string, path: string | undefined, cwd: string): string | undefined {
  if (cmd.includes('/')) return resolve(cwd, cmd);
  for (const d of (path ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    const p = resolve(cwd, d || '.', cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** The read list for a command, system folders first. */
export function commandReadList(i: ReadListInput): string[] {
  const home = i.home ? real(i.home) ?? i.home : undefined;
  const out = new Set<string>([...SYSTEM_READ, ...etcReadable()]);
  const grant = (p: string, named: boolean): void => {
    const r = real(p);
    for (const q of r && r !== p ? [p, r] : [p]) {
      let st;
      try {
        st = statSync(q);
      } catch {
        continue;
      }
      if (st.isDirectory() && named && tooWide(q, home)) continue;
      out.add(q);
    }
  };
  // The command, the binary it links to, its interpreter, and the virtual environment it runs from.
  grant(i.executable, false);
  const interp = interpreterOf(i.executable);
  if (interp) grant(interp, false);
  for (const bin of [dirname(i.executable), interp ? dirname(interp) : undefined]) {
    if (!bin) continue;
    const venv = dirname(bin);
    if (existsSync(join(venv, 'pyvenv.cfg'))) grant(venv, true);
  }
  // Paths on the command line: the script, the model, a data folder.
  for (const a of i.argv.slice(1)) {
    if (a.length === 0 || a.length > 4096 || a.startsWith('-')) continue;
    const p = resolve(i.cwd, a);
    if (existsSync(p)) grant(p, true);
  }
  for (const d of (i.pythonPath ?? '').split(delimiter)) if (d) grant(resolve(i.cwd, d), true);
  for (const x of i.extra) grant(resolve(i.cwd, x), false);
  return [...out];
}
