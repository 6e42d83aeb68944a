// bench/lib/congestion — the host's TCP congestion control, read for every benchmark header
// and optionally switched for one run. It matters on loopback: with BBR, TCP paces its
// sends from a timer, segments sent from the timer and from the sending process arrive out
// of order, spurious retransmissions follow, and a server that writes its replies in bursts
// (one event-loop turn answers every request that arrived) is paced far below what the
// link carries; CUBIC, the kernel's default, sends from the process. The same servers rank
// differently under the two, so the setting is part of every result.

import { readFileSync, writeFileSync } from 'node:fs';

const SYSCTL = '/proc/sys/net/ipv4/tcp_congestion_control';
const AVAILABLE = '/proc/sys/net/ipv4/tcp_available_congestion_control';

/** The algorithm new TCP sockets get (net.ipv4.tcp_congestion_control), or '?' if unreadable. */
export function congestionControl(): string {
  try {
    return readFileSync(SYSCTL, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** A congestion control name as the kernel spells them (bbr, cubic, reno, ...). */
export function isCongestionName(name: string): boolean {
  return /^[a-z][a-z0-9_]{0,15}$/.test(name);
}

/**
 * Sets the host's congestion control to `name` for new sockets and returns a function that
 * puts the previous one back (also called on exit). Needs root; throws with what to do.
 */
export function switchCongestionControl(name: string): () => void {
  const available = readFileSync(AVAILABLE, 'utf8').trim().split(/\s+/);
  if (!available.includes(name))
    throw new Error(
      `--congestion ${name}: not available here (have: ${available.join(', ')}; modprobe tcp_${name} may add it)`,
    );
  const before = congestionControl();
  try {
    writeFileSync(SYSCTL, name);
  } catch (err) {
    throw new Error(
      `--congestion ${name}: cannot write ${SYSCTL} (${(err as NodeJS.ErrnoException).code}; needs root)`,
    );
  }
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    writeFileSync(SYSCTL, before);
  };
  process.once('exit', restore);
  return restore;
}
