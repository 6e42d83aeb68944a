#!/usr/bin/env node
// Runs Node's test runner over every *.test.ts under the given folders (default: src, test and bench).
// Node 20's runner neither expands globs nor discovers .ts files, so we list them here and let
// tsx load the TypeScript.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
const files = [];
function walk(path) {
  const st = statSync(path);
  if (st.isFile()) {
    if (path.endsWith('.test.ts')) files.push(path);
    return;
  }
  for (const name of readdirSync(path).sort()) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    walk(join(path, name));
  }
}
for (const root of roots.length ? roots : ['src', 'test', 'bench']) walk(root);
if (files.length === 0) {
  console.error('run-tests: no *.test.ts files found');
  process.exit(1);
}
const concurrency = process.env.TSBLK_TEST_CONCURRENCY ?? '2';
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, ...extra, ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
