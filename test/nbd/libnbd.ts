// Typed front of test/nbd/libnbd-ops.py: libnbd's Python binding (what nbdsh runs) performs a
// list of operations on one or more connections and reports each result; the test asserts.

import { fileURLToPath } from 'node:url';
import { describeRun, runPeer } from './peers.js';

const SCRIPT = fileURLToPath(new URL('./libnbd-ops.py', import.meta.url));

export type CmdFlag = 'FUA' | 'NO_HOLE' | 'FAST_ZERO' | 'REQ_ONE' | 'DF';

export type LibnbdOp =
  | { op: 'pwrite'; h?: number; offset: number; length: number; byte: number; flags?: CmdFlag[] }
  | { op: 'pread'; h?: number; offset: number; length: number; flags?: CmdFlag[] }
  /** nbd.pread_structured: also reports the reply chunks (DF allowed here only). */
  | { op: 'pread_structured'; h?: number; offset: number; length: number; flags?: CmdFlag[] }
  | { op: 'zero' | 'trim' | 'cache'; h?: number; offset: number; length: number; flags?: CmdFlag[] }
  | { op: 'flush'; h?: number }
  /** base:allocation from offset to offset+length (asking again for the rest unless `once`). */
  | { op: 'status'; h?: number; offset: number; length: number; flags?: CmdFlag[]; once?: boolean };

export interface LibnbdRequest {
  uri: string;
  /** Connections to open (each an nbd.NBD() handle). Default 1. */
  handles?: number;
  /** Ask for structured replies (default true). */
  structured?: boolean;
  /** nbd.set_strict_mode after connecting (0: every bad request goes to the server). */
  strict?: number;
  /** Ask for base:allocation (default true). */
  meta?: boolean;
  ops?: LibnbdOp[];
}

export interface HandleInfo {
  structured: boolean;
  size: number;
  readOnly: boolean;
  can: Record<'trim' | 'zero' | 'fast_zero' | 'flush' | 'fua' | 'multi_conn' | 'cache' | 'df', boolean>;
  meta: boolean;
  block: { minimum: number; preferred: number; maximum: number };
}

/** [offset, length, flags]: flags bit 0 hole, bit 1 zero (NBD_STATE_HOLE / NBD_STATE_ZERO). */
export type Extent = [number, number, number];

export type OpResult =
  | {
      ok: true;
      length?: number;
      sha256?: string;
      byte?: number | null;
      extents?: Extent[];
      calls?: number;
      /** pread_structured: [kind, offset, length] of each chunk, by offset */
      chunks?: ['data' | 'hole' | 'error', number, number][];
    }
  | { ok: false; errno: string; message: string };

export interface LibnbdReport {
  handles: HandleInfo[];
  results: OpResult[];
}

export async function libnbd(req: LibnbdRequest): Promise<LibnbdReport> {
  const r = await runPeer('python3', [SCRIPT], { input: JSON.stringify(req), timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(describeRun(`python3 libnbd-ops.py (${req.uri})`, r));
  try {
    return JSON.parse(r.stdout) as LibnbdReport;
  } catch {
    throw new Error(describeRun('libnbd-ops.py printed no JSON', r));
  }
}

/** The result of op i, asserting it succeeded (with the error in the message otherwise). */
export function okResult(report: LibnbdReport, i: number): Extract<OpResult, { ok: true }> {
  const r = report.results[i];
  if (!r) throw new Error(`no result ${i}`);
  if (!r.ok) throw new Error(`libnbd op ${i} failed: ${r.errno} ${r.message}`);
  return r;
}

/** The result of op i, asserting it failed. */
export function errResult(report: LibnbdReport, i: number): Extract<OpResult, { ok: false }> {
  const r = report.results[i];
  if (!r) throw new Error(`no result ${i}`);
  if (r.ok) throw new Error(`libnbd op ${i} succeeded but should have failed: ${JSON.stringify(r)}`);
  return r;
}
