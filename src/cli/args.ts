import { GuardError } from '../errors.js';

export interface OptionSpec {
  /** Takes a value (`--format json`). */
  value?: boolean;
  /** May repeat; values collect into an array. */
  multiple?: boolean;
  short?: string;
}

export interface Parsed {
  options: Record<string, string | string[] | boolean>;
  positionals: string[];
  /** Everything after `--`. */
  rest: string[];
}

function closest(name: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (dp[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const row = dp[i] as number[];
      const prev = dp[i - 1] as number[];
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  return (dp[a.length] as number[])[b.length] as number;
}

/** Small strict parser: unknown options are errors that suggest the closest known one. */
export function parseArgs(argv: string[], spec: Record<string, OptionSpec>, command: string): Parsed {
  const options: Parsed['options'] = {};
  const positionals: string[] = [];
  const shorts = new Map(Object.entries(spec).filter(([, s]) => s.short).map(([k, s]) => [s.short as string, k]));
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      i++;
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    } else if (arg.length === 2 && arg.startsWith('-') && shorts.has(arg[1] as string)) {
      name = shorts.get(arg[1] as string);
    } else {
      positionals.push(arg);
      continue;
    }
    const s = name !== undefined ? spec[name] : undefined;
    if (name === undefined || !s) {
      const hint = name ? closest(name, Object.keys(spec)) : undefined;
      throw new GuardError('USAGE', `guard ${command}: unknown option \`${arg}\`${hint ? `; did you mean \`--${hint}\`?` : ''}`);
    }
    let value: string | boolean = true;
    if (s.value) {
      if (inline !== undefined) value = inline;
      else {
        const next = argv[++i];
        if (next === undefined) throw new GuardError('USAGE', `guard ${command}: option \`--${name}\` needs a value`);
        value = next;
      }
    } else if (inline !== undefined) throw new GuardError('USAGE', `guard ${command}: option \`--${name}\` takes no value`);
    if (s.multiple) {
      const arr = (options[name] as string[] | undefined) ?? [];
      arr.push(String(value));
      options[name] = arr;
    } else options[name] = value;
  }
  return { options, positionals, rest: argv.slice(i) };
}

export function oneOf<T extends string>(value: string | string[] | boolean | undefined, allowed: readonly T[], option: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new GuardError('USAGE', `option \`--${option}\` must be one of ${allowed.map((a) => `\`${a}\``).join(', ')} (got \`${String(value)}\`)`);
  }
  return value as T;
}

/**
 * How a command that runs another command starts (`guard run`, `guard entrypoint`): parse the
 * arguments, answer `--help`, insist on a command. Returns the options, or the exit code to end with.
 */
export function parseCommandLine<T extends { help: boolean; command: string[] }>(name: string, usage: string, parse: () => T, usageAfterError: boolean): T | number {
  let o: T;
  try {
    o = parse();
  } catch (e) {
    if (e instanceof GuardError) {
      process.stderr.write(`guard ${name}: ${e.message}\n${usageAfterError ? `\n${usage}` : ''}`);
      return 2;
    }
    throw e;
  }
  if (o.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (o.command.length === 0) {
    process.stderr.write(`guard ${name}: no command given\n\n${usage}`);
    return 2;
  }
  return o;
}
