#!/usr/bin/env node
// Type declarations for CommonJS consumers: dist/cjs/ holds a copy of tsc's declarations under a
// package.json that says "commonjs".
//
// Why: the package is ES modules, and `require('modelguard')` works through Node's require(esm)
// (Node 20.19+, 22.12+; no top-level await anywhere in the library's module graph). TypeScript
// judges a declaration file's module kind by the nearest package.json, so a CommonJS project
// compiled with `module: node16` that resolves the ESM declarations is refused (TS1479) even
// though the require works at run time. The same declarations in a "commonjs" folder describe
// exactly the object require(esm) returns: the module namespace, one property per export.
// package.json's `exports` sends the `require` condition's types here.
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'dist', 'src');
const to = join(root, 'dist', 'cjs');
rmSync(to, { recursive: true, force: true });
let n = 0;
for (const entry of readdirSync(from, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue;
  const src = join(entry.parentPath ?? entry.path, entry.name);
  const dst = join(to, relative(from, src));
  mkdirSync(dirname(dst), { recursive: true });
  copyFileSync(src, dst);
  n++;
}
writeFileSync(join(to, 'package.json'), '{ "type": "commonjs" }\n');
if (n === 0) throw new Error(`no declarations under ${from}: run tsc first`);
