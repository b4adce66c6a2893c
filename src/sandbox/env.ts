/**
 * The environment a walled process gets: an allowlist, never the caller's whole environment.
 *
 * A hostile model runs with whatever the environment holds, so tokens there (HF_TOKEN,
 * AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN, …) are as good as sent. What passes is what a Python,
 * NumPy or PyTorch program needs to behave as it would outside: the search path, locale, time
 * zone, terminal, and the thread and device variables that size its work. Everything else stays
 * behind unless the user names it (`guard run --env NAME` or `--env NAME=VALUE`). A variable that
 * looks like a credential never passes by a prefix rule, only when named exactly.
 *
 * Both `guard run` (sandbox/run.ts) and the unpickler workers (unpickler/walls.ts) use this list.
 */
import { GuardError } from '../errors.js';

/**
 * Set by run() in every walled command's environment (to the profile's name), after the
 * allowlist: a caller's own value never passes, the run's always does. A guard started under the
 * walls reads it (nested.ts); it can only make that guard refuse to start, never wall less.
 */
export const WALLED_ENV = 'MODELGUARD_WALLED';

/** Passed by name. */
export const ENV_PASS = [
  'PATH',
  'LANG', 'LANGUAGE', 'TZ', 'TZDIR',
  'TERM', 'COLORTERM', 'NO_COLOR', 'COLUMNS', 'LINES',
  'USER', 'LOGNAME',
  // The resolver's options (glibc): how a lookup is sent, which the DNS sink then reads.
  'RES_OPTIONS', 'LOCALDOMAIN',
  // Python: how the interpreter behaves, and where it looks for modules (their folders are readable, see reads.ts).
  'PYTHONPATH', 'PYTHONHASHSEED', 'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING', 'PYTHONUTF8',
  'PYTHONNOUSERSITE', 'PYTHONSAFEPATH', 'PYTHONWARNINGS', 'PYTHONFAULTHANDLER', 'VIRTUAL_ENV', 'CONDA_PREFIX',
  // Shared libraries (CUDA, conda builds) that the program was set up to find.
  'LD_LIBRARY_PATH',
  // Thread pools.
  'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMEXPR_NUM_THREADS', 'NUMEXPR_MAX_THREADS',
  'VECLIB_MAXIMUM_THREADS', 'BLIS_NUM_THREADS', 'TOKENIZERS_PARALLELISM',
  // Devices.
  'CUDA_VISIBLE_DEVICES', 'CUDA_DEVICE_ORDER', 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES',
  'HIP_VISIBLE_DEVICES', 'ROCR_VISIBLE_DEVICES', 'PYTORCH_CUDA_ALLOC_CONF', 'PYTORCH_ENABLE_MPS_FALLBACK',
  // Hub libraries told to stay offline (there is no network in the sandbox anyway).
  'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_DATASETS_OFFLINE',
] as const;

/**
 * Passed by prefix (locale categories; OpenMP, BLAS and oneDNN tuning, which change results as well
 * as speed: OPENBLAS_CORETYPE picks other kernels and other rounding; ATen and CUDA settings),
 * unless credential-like.
 */
export const ENV_PASS_PREFIXES = ['LC_', 'OMP_', 'KMP_', 'GOMP_', 'MKL_', 'OPENBLAS_', 'GOTO_', 'BLIS_', 'DNNL_', 'ONEDNN_', 'ATEN_', 'TORCH_', 'CUDA_', 'CUBLAS_', 'CUDNN_'] as const;

/** Names that look like credentials: never passed by a prefix rule, only when named exactly (ENV_PASS or --env). */
export const CREDENTIAL_LIKE = /TOKEN|SECRET|PASSW(?:OR)?D|PASSPHRASE|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|AUTH|COOKIE|SESSION|(?:^|_)KEY(?:_|$)|^AWS_|^AZURE_|^GOOGLE_|^GCP_|^GH_|^GITHUB_|^HF_TOKEN|^HUGGING_?FACE|^OPENAI_|^ANTHROPIC_|^NPM_|^DOCKER_|^KUBE|^SSH_|^GPG_|^VAULT_/i;

const PASS = new Set<string>(ENV_PASS);

/** Whether `name` passes without being named. */
export function passesByDefault(name: string): boolean {
  // The list above is itself exact names (TOKENIZERS_PARALLELISM is not a token).
  if (PASS.has(name)) return true;
  return !CREDENTIAL_LIKE.test(name) && ENV_PASS_PREFIXES.some((p) => name.startsWith(p));
}

/** A `--env` entry: `NAME` passes that variable from the caller's environment, `NAME=VALUE` sets it. */
export interface EnvSpec {
  name: string;
  value?: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses `NAME` or `NAME=VALUE`. */
export function parseEnvSpec(spec: string): EnvSpec {
  const eq = spec.indexOf('=');
  const name = eq < 0 ? spec : spec.slice(0, eq);
  if (!NAME.test(name)) throw new GuardError('USAGE', `--env \`${spec}\`: expected NAME or NAME=VALUE (a name is letters, digits and _)`);
  return eq < 0 ? { name } : { name, value: spec.slice(eq + 1) };
}

/**
 * The allowlisted part of `source`, then every `extra` entry: a bare name copies that variable
 * from `source` (whatever it looks like: the user named it), `NAME=VALUE` sets it.
 */
export function allowlistedEnv(source: Record<string, string | undefined>, extra: readonly (string | EnvSpec)[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(source)) if (v !== undefined && passesByDefault(k)) out[k] = v;
  for (const e of extra) {
    const spec = typeof e === 'string' ? parseEnvSpec(e) : e;
    if (spec.value !== undefined) out[spec.name] = spec.value;
    else if (source[spec.name] !== undefined) out[spec.name] = source[spec.name]!;
  }
  return out;
}

/** Names in `source` that were held back (for the report: what the run did not see). */
export function heldBack(source: Record<string, string | undefined>, passed: Record<string, string>): string[] {
  return Object.keys(source).filter((k) => source[k] !== undefined && !(k in passed)).sort();
}
