// The NBD clients the loopback interop tests run on this machine (test/interop-nbd-*.test.ts),
// and how to run them. scripts/install-peers.sh installs all of them on Debian 12.
//
// Policy (docs/interop.md, the same as test/vm/peers.ts, whose interopSkip/assertPeers we
// reuse): under CI=true a missing peer fails the test; elsewhere the file is skipped with the
// reason, and TSBLK_SKIP_INTEROP=1 skips interop tests on purpose.
//
// Peers always run asynchronously (execFile with a promise): the NBD server under test runs
// in this very process, so a synchronous child would deadlock it.

import { execFile } from 'node:child_process';
import { GUEST_PATH, which, type PeerCheck } from '../vm/peers.js';

export { assertPeers, interopSkip } from '../vm/peers.js';

/** Debian package of each tool, for the message. */
const PACKAGE_OF: Record<string, string> = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  nbdsh: 'python3-libnbd',
  'python3-libnbd': 'python3-libnbd',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  nbdkit: 'nbdkit',
  certtool: 'gnutls-bin',
};

/**
 * The environment every peer runs in: Debian's own PATH first-class, so `python3` is
 * /usr/bin/python3 (the one python3-libnbd installs `nbd` for), not a pyenv or venv shim
 * that happens to be first on the developer's PATH.
 */
export const PEER_ENV: NodeJS.ProcessEnv = { ...process.env, PATH: GUEST_PATH, LC_ALL: 'C' };

export interface PeerResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs a peer to completion without blocking the event loop. Never throws for a non-zero
 * exit: the caller asserts on `code` and shows `stderr`. Times out (SIGKILL) after
 * `timeoutMs`, reported as code -1.
 */
export function runPeer(
  cmd: string,
  args: readonly string[],
  options: { timeoutMs?: number; input?: string | Buffer } = {},
): Promise<PeerResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      {
        env: PEER_ENV,
        timeout: options.timeoutMs ?? 20_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        const ms = performance.now() - t0;
        let code = 0;
        if (err) {
          // exit status: a number; spawn failure (ENOENT...): a string; a signal: code null
          const e = err as Error & { code?: number | string | null; signal?: string | null };
          code = typeof e.code === 'number' ? e.code : typeof e.code === 'string' ? 127 : -1;
          if (code === 127) stderr += `\n[runPeer] ${cmd}: ${e.message}`;
          if (code === -1)
            stderr += `\n[runPeer] ${cmd} killed by ${e.signal} (timeout ${options.timeoutMs ?? 20_000} ms?)`;
        }
        resolve({ code, stdout, stderr, ms });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

/** Runs a peer and throws (with its whole output) unless it exits 0. */
export async function mustRun(
  cmd: string,
  args: readonly string[],
  options: { timeoutMs?: number; input?: string | Buffer } = {},
): Promise<PeerResult> {
  const r = await runPeer(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
  return r;
}

/** Explains a failed peer run in an assertion message. */
export function describeRun(what: string, r: PeerResult): string {
  return `${what}: exit ${r.code}\n--- stdout\n${r.stdout.slice(0, 4000)}\n--- stderr\n${r.stderr.slice(0, 4000)}`;
}

/**
 * Checks `tools` (commands on the Debian PATH) and, for 'python3-libnbd', that python3 can
 * `import nbd`. Async: it may run python3.
 */
export async function checkNbdPeers(tools: readonly string[]): Promise<PeerCheck> {
  const missing: string[] = [];
  for (const t of tools) {
    if (t === 'python3-libnbd') {
      const py = which('python3');
      const r = py ? await runPeer(py, ['-c', 'import nbd'], { timeoutMs: 10_000 }) : undefined;
      if (!r || r.code !== 0) missing.push(`python3 module nbd (package python3-libnbd)`);
    } else if (!which(t)) {
      missing.push(`${t} (package ${PACKAGE_OF[t] ?? t})`);
    }
  }
  const reason = missing.length
    ? `NBD interop peers missing: ${missing.join(', ')}; install them with scripts/install-peers.sh (as root)`
    : 'all NBD interop peers present';
  return { ok: missing.length === 0, missing, reason };
}
