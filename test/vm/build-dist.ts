// dist/ for guest scripts that run tsblk's compiled code (`node bin/tsblk.js`, or a script
// importing from dist/): tsx compiling TypeScript under TCG is too slow. ensureBuilt() runs
// `tsc -p tsconfig.build.json` when a source file is newer than its output (or has none).

import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PROJECT_ROOT } from './vm.js';

/** Files of src/ that the build compiles (tsconfig.build.json's excludes left out). */
function buildInputs(dir = join(PROJECT_ROOT, 'src')): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'testing') out.push(...buildInputs(p));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && e.name !== 'test-io.ts') out.push(p);
  }
  return out;
}

/** Builds dist/ when any source is newer than its output; returns what it did, for a diagnostic. */
export function ensureBuilt(): string {
  const stale = buildInputs().filter((src) => {
    const js = join(PROJECT_ROOT, 'dist', relative(join(PROJECT_ROOT, 'src'), src).replace(/\.ts$/, '.js'));
    try {
      return statSync(js).mtimeMs < statSync(src).mtimeMs;
    } catch {
      return true;
    }
  });
  if (stale.length === 0) return 'dist/ is current';
  const t0 = performance.now();
  const tsc = join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const b = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
  });
  if (b.status !== 0)
    throw new Error(
      `npm run build failed (dist/ was stale: ${relative(PROJECT_ROOT, stale[0]!)}):\n${b.stdout}${b.stderr}`,
    );
  return `built dist/ in ${((performance.now() - t0) / 1000).toFixed(1)} s (${stale.length} stale files)`;
}
