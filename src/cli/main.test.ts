import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { runCli } from './test-io.js';

test('--help lists the commands and exits 0', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  for (const cmd of [
    'dev',
    'copy',
    'demo',
    'serve',
    'nbd',
    'ublk',
    'discover',
    'connect',
    'id-ctrl',
    'id-ns',
  ])
    assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\b`));
  assert.equal(r.stderr, '');
});

test('dev --help lists info; copy --help lists every option', async () => {
  const dev = await runCli(['dev', '--help']);
  assert.equal(dev.code, 0);
  assert.match(dev.stdout, /info \[options\] <device>/);
  const copy = await runCli(['copy', '--help']);
  assert.equal(copy.code, 0);
  for (const opt of [
    '--range',
    '--ranges-file',
    '--mode',
    '--config',
    '--json',
    '--progress',
    '--no-progress',
    '--memory-budget',
    '--concurrency',
  ])
    assert.ok(copy.stdout.includes(opt), opt);
});

test('--version prints the package version', async () => {
  const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), version);
});

test('no command shows help on stderr with exit code 2', async () => {
  const r = await runCli([]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Usage: tsblk/);
});

test('unknown commands and options are usage errors (exit 2) in tsblk: form', async () => {
  const cmd = await runCli(['frobnicate']);
  assert.equal(cmd.code, 2);
  assert.match(cmd.stderr, /^tsblk: unknown command 'frobnicate'/);
  const opt = await runCli(['dev', 'info', 'ram:1M', '--colour']);
  assert.equal(opt.code, 2);
  assert.match(opt.stderr, /^tsblk: unknown option '--colour'/);
  const missing = await runCli(['dev', 'info']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^tsblk: missing required argument 'device'/);
  const extra = await runCli(['dev', 'info', 'ram:1M', 'ram:2M']);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /^tsblk: too many arguments/);
});
