#!/usr/bin/env node
// npm `install` script: builds the native addon (native/tsblk.c) with the node-gyp that npm
// bundles. The addon is optional — every caller has a pure-TypeScript fallback or a clear
// error — so a failed build prints one warning line and exits 0: `npm ci` never fails here.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = dirname(fileURLToPath(import.meta.url));
const artifact = join(nativeDir, 'build', 'Release', 'tsblk_native.node');

function warn(reason) {
  console.warn(`tsblk: native addon not built (${reason}); using the pure-TypeScript fallback`);
  process.exit(0);
}

/** node-gyp's CLI: npm says where when it runs us, else look inside npm's own install. */
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  const npmDirs = [];
  // npm_execpath is .../npm/bin/npm-cli.js when npm runs this script.
  if (process.env.npm_execpath) npmDirs.push(join(dirname(process.env.npm_execpath), '..'));
  npmDirs.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm'));
  npmDirs.push('/usr/lib/node_modules/npm', '/usr/local/lib/node_modules/npm');
  for (const dir of npmDirs) {
    try {
      return createRequire(join(dir, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
    } catch {
      // not this one
    }
  }
  return undefined;
}

if (process.platform !== 'linux') warn(`the addon needs Linux syscalls, this is ${process.platform}`);
const nodeGyp = findNodeGyp();
if (!nodeGyp) warn("npm's bundled node-gyp was not found");

const args = [nodeGyp, 'rebuild', '--directory', nativeDir, '--loglevel=warn'];
// No network here to download headers: use the distribution's when npm was not told a nodedir.
if (!process.env.npm_config_nodedir && existsSync('/usr/include/node/node_api.h'))
  args.push('--nodedir=/usr');

const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (r.error) warn(`could not run node-gyp: ${r.error.message}`);
if (r.status !== 0) warn(`node-gyp exited with ${r.status ?? r.signal}; see its output above`);
if (!existsSync(artifact)) warn(`node-gyp succeeded but ${artifact} is missing`);
console.log(`tsblk: native addon built: ${artifact}`);
