#!/usr/bin/env node
// The installed `tsblk` command: runs the compiled CLI from dist/ (built by `npm run build`,
// or the `prepare` script on install). In a checkout without a build, say how to make one.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('tsblk: not built; run npm run build\n');
  process.exit(1);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
