// The model-based property test of the block stack — entry point shared by
// test/property-*.test.ts. How it works:
//
// - For each device kind (devices.ts) fast-check draws a world configuration (block size,
//   size, transfer and copy limits, zone geometry, mapping layout, issueCopy chunk size and
//   concurrency) and a sequence of up to 40 command descriptions (commands.ts): write (some
//   FUA), read, discard, write zeroes, flush, copy (1–8 ranges in shapes that overlap on
//   purpose: memmove shifts, swaps, chains, back-to-back fills at a write pointer, ranges at
//   the last block; within a device or between two), zone open/close/finish/reset,
//   reset-all, zone append, report zones, and full-image checks.
// - runner.ts resolves each description against the reference model (reference.ts: a Buffer
//   per device and a per-zone write pointer and condition, written independently of tsblk),
//   runs it on the device, and checks success or failure (with the error code, and the ZNS
//   error name for zone violations), every byte read, zone reports and copy results; a
//   refused request must leave the image unchanged.
// - Every sequence runs twice on fresh devices — copies in issueCopy mode `auto` (offload
//   where possible) and forced `emulate` — and both runs must see the same outcomes, the same
//   bytes and the same final images.
// - Copies into zoned devices whose outcome depends on timing (some pieces land, some are
//   refused) are checked by what the contract still guarantees, then the model adopts the
//   device's state; the auto/emulate comparison stops at the first such copy.
// - Bugs found in code this test does not own are listed in known-bugs.ts while open.
//
// Environment:
//   TSBLK_PROPERTY_RUNS   total sequences across all kinds (default 2000; `npm run test:long`
//                         sets 20000, ten times as many), split by WEIGHTS below
//   TSBLK_PROPERTY_SEED   replay: the seed fast-check printed (with the same RUNS)
//   TSBLK_PROPERTY_PATH   with the seed, jump to the shrunk counterexample (select the kind
//                         with node's --test-name-pattern, e.g. '^zoned:'); a failure that
//                         follows a timing-dependent copy may not replay — the failure
//                         message lists every resolved operation of the failing run instead
//   TSBLK_PROPERTY_MAX_OPS longest sequence (default 40)
//   TSBLK_PROPERTY_STATS=1 print outcome counts per operation (is the generator balanced?)
//   TSBLK_PROPERTY_STRICT=1 ignore known-bugs.ts exclusions

import fc from 'fast-check';
import { commandsArb } from './commands.js';
import { DEVICE_KINDS, worldConfigArb, type DeviceKind } from './devices.js';
import { checkSequence, outcomeStats } from './runner.js';

/** Relative share of the sequences; file-backed kinds are slower per sequence. */
const WEIGHTS: Record<DeviceKind, number> = {
  ram: 3,
  fault: 1,
  'linear-ram': 2,
  'linear-ram2': 2,
  file: 1.5,
  'file-fallback': 1,
  'linear-file': 1,
  'linear-file2': 1,
  'linear-mixed': 1,
  zoned: 4,
  'fault-zoned': 1,
  'linear-zoned': 3,
};

export const DEFAULT_TOTAL_RUNS = 2000;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${v} is not an integer`);
  return n;
}

export function totalRuns(): number {
  const n = envInt('TSBLK_PROPERTY_RUNS') ?? DEFAULT_TOTAL_RUNS;
  if (n < DEVICE_KINDS.length)
    throw new Error(`TSBLK_PROPERTY_RUNS=${n} must be at least ${DEVICE_KINDS.length}`);
  return n;
}

/** This kind's share of the total, rounded up so the shares add up to at least the total. */
export function runsFor(kind: DeviceKind, total = totalRuns()): number {
  const sum = DEVICE_KINDS.reduce((s, k) => s + WEIGHTS[k], 0);
  return Math.ceil((total * WEIGHTS[kind]) / sum);
}

export function isZonedKind(kind: DeviceKind): boolean {
  return kind === 'zoned' || kind === 'fault-zoned' || kind === 'linear-zoned';
}

/** Checks the model-based property for one device kind. */
export async function checkKind(kind: DeviceKind): Promise<void> {
  outcomeStats.clear();
  const seed = envInt('TSBLK_PROPERTY_SEED');
  const path = process.env.TSBLK_PROPERTY_PATH;
  await fc.assert(
    fc.asyncProperty(
      worldConfigArb(kind),
      commandsArb(isZonedKind(kind), envInt('TSBLK_PROPERTY_MAX_OPS') ?? 40),
      (config, commands) => checkSequence(config, commands),
    ),
    {
      numRuns: runsFor(kind),
      includeErrorInReport: true,
      ...(seed !== undefined ? { seed } : {}),
      ...(path ? { path } : {}),
    },
  );
  if (process.env.TSBLK_PROPERTY_STATS === '1') {
    const rows = [...outcomeStats].sort(([a], [b]) => a.localeCompare(b));
    console.log(`${kind}: ${rows.map(([k, n]) => `${k}=${n}`).join(', ')}`);
  }
}
