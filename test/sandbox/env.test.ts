import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { allowlistedEnv, heldBack, parseEnvSpec, passesByDefault } from '../../src/sandbox/env.js';

test('passes what a Python/PyTorch program needs: PATH, locale, TZ, TERM, thread and device variables', () => {
  for (const k of ['PATH', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TERM', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_CORETYPE', 'CUDA_VISIBLE_DEVICES', 'PYTHONPATH', 'TOKENIZERS_PARALLELISM']) assert.ok(passesByDefault(k), k);
});

test('holds back anything that looks like a credential, even under a passed prefix', () => {
  for (const k of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'GITHUB_TOKEN', 'OPENAI_API_KEY', 'DB_PASSWORD', 'MY_SECRET', 'CUDA_TOKEN', 'LC_SECRET', 'MKL_API_KEY', 'SSH_AUTH_SOCK', 'NPM_CONFIG_AUTHTOKEN', 'HOME', 'NODE_OPTIONS', 'LD_PRELOAD']) assert.not.ok(passesByDefault(k), k);
});

test('--env NAME passes a held-back variable by its exact name; NAME=VALUE sets one', () => {
  const src = { PATH: '/usr/bin', HF_TOKEN: 'hf', AWS_SECRET_ACCESS_KEY: 'a', FOO: 'bar' };
  assert.equal(allowlistedEnv(src), { PATH: '/usr/bin' });
  assert.equal(allowlistedEnv(src, ['HF_TOKEN', 'X=1=2', 'MISSING']), { PATH: '/usr/bin', HF_TOKEN: 'hf', X: '1=2' });
  assert.equal(heldBack(src, allowlistedEnv(src)), ['AWS_SECRET_ACCESS_KEY', 'FOO', 'HF_TOKEN']);
  assert.throws(() => parseEnvSpec('1BAD'), /expected NAME or NAME=VALUE/);
  assert.throws(() => parseEnvSpec('A B=c'), /expected NAME/);
});

test.run();
