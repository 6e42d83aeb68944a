// End-to-end: the real `tsblk` process (node --import tsx src/cli/main.ts), its exit codes,
// stdout/stderr split, signals and the bin wrapper.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');
const MiB = 1024 * 1024;

interface Proc {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function tsblk(
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    onStderr?: (text: string, kill: (s: NodeJS.Signals) => void) => void;
  } = {},
): Promise<Proc> {
  return runNode(['--import', 'tsx', MAIN, ...args], options);
}

function runNode(
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    onStderr?: (text: string, kill: (s: NodeJS.Signals) => void) => void;
  } = {},
): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      options.onStderr?.(stderr, (s) => child.kill(s));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tsblk-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('tsblk copy copies within a file and exits 0', async (t) => {
  const dir = await tempDir(t);
  const img = join(dir, 'disk.img');
  const fh = await open(img, 'w+');
  await fh.truncate(8 * MiB);
  const data = Buffer.alloc(64 * 1024, 0x5a);
  await fh.write(data, 0, data.length, 0);
  await fh.close();
  const r = await tsblk(['copy', `file:${img}`, '--range', '0:4M:64k', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { ok: boolean; bytes: number };
  assert.deepEqual([j.ok, j.bytes], [true, 65536]);
  const check = await open(img, 'r');
  const back = Buffer.alloc(64 * 1024);
  await check.read(back, 0, back.length, 4 * MiB);
  await check.close();
  assert.deepEqual(back, data);
});

test('user errors: one line on stderr, exit 1, no stack trace; usage errors exit 2', async () => {
  const bad = await tsblk(['copy', 'ram:1M', '--range', '0:512:1000']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stdout, '');
  assert.match(bad.stderr, /^tsblk: EINVAL: copy ram0 → ram0: range 0 .*multiples of 512 bytes.*\n$/);
  const usage = await tsblk(['copy', 'ram:1M', '--mode', 'sideways', '-r', '0:512:512']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /^tsblk: option '-m, --mode <mode>' argument 'sideways' is invalid/);
});

test('tsblk demo exits 0 after verifying both copies', async () => {
  const r = await tsblk(['demo']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /copy 1, mode offload.*paths offload\n/);
  assert.match(r.stdout, /copy 2, mode emulate.*paths emulate\n/);
  assert.equal(r.stdout.match(/verified: 13\.06 MiB match the source byte for byte/g)?.length, 2);
  assert.match(r.stdout, /demo passed\n$/);
});

test('dev info names the emulated engine when the native addon is disabled', async (t) => {
  const dir = await tempDir(t);
  const r = await tsblk(['dev', 'info', `file:${join(dir, 'x.img')},size=1M,create`], {
    env: { TSBLK_NO_NATIVE: '1' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /\ncopy path\s+offload \(device copy\) via emulated \(native addon not loaded: disabled by TSBLK_NO_NATIVE=1\)\n/,
  );
});

test('Ctrl-C during a copy stops it, prints what to resume and exits 130', async (t) => {
  const dir = await tempDir(t);
  const cfg = join(dir, 'slow.json');
  // Every write waits 150 ms: 8 chunks of 4 MiB one at a time take over a second.
  await writeFile(
    cfg,
    JSON.stringify({
      devices: { slow: { type: 'fault', inner: 'ram:64M', delays: { write: { ms: 150 } } } },
    }),
  );
  let sent = false;
  const r = await tsblk(
    ['copy', 'slow', '-c', cfg, '-r', '0:32M:32M', '--mode', 'emulate', '--concurrency', '1', '--progress'],
    {
      onStderr: (text, kill) => {
        if (!sent && text.includes('copy [')) {
          sent = true;
          setTimeout(() => kill('SIGINT'), 200);
        }
      },
    },
  );
  assert.ok(sent, `no progress bar seen: ${r.stderr}`);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /tsblk: ECANCELED: .*interrupted \(Ctrl-C\)/);
  const m =
    /to resume, copy the remaining ranges \(ranges-file format, SRC DST LEN\):\n(\d+) (\d+) (\d+)\n/.exec(
      r.stderr,
    );
  assert.ok(m, r.stderr);
  const done = Number(m[1]);
  assert.ok(done > 0 && done < 32 * MiB, `resume point ${done}`);
  assert.equal(Number(m[2]), 32 * MiB + done);
  assert.equal(Number(m[3]), 32 * MiB - done);
});

test('bin/tsblk.js says how to build when dist is missing', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'bin'));
  await copyFile(join(ROOT, 'bin', 'tsblk.js'), join(dir, 'bin', 'tsblk.js'));
  await writeFile(join(dir, 'package.json'), '{"type": "module"}');
  const r = await runNode([join(dir, 'bin', 'tsblk.js'), '--help']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'tsblk: not built; run npm run build\n');
});
