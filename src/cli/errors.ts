// Turns whatever a command throws into `tsblk: <message>` on stderr and an exit code:
// 2 for usage errors (bad options, missing arguments), 1 for everything else. User errors
// (BlockError, ConfigError, UsageError, HostError — a target that cannot be reached or
// refused the connection —, NvmeStatusError — a command the target failed —, Node errors with
// an errno code) never show a stack trace; anything else is a bug in tsblk and shows one, so
// it can be reported.

import { BlockError } from '../block/errors.js';
import { HostError } from '../host/errors.js';
import { NvmeStatusError } from '../nvme/status.js';
import { ConfigError } from '../server/config-error.js';
import type { Output } from './output.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, as shells report a command stopped by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

const kUsageError = Symbol.for('tsblk.UsageError');

/** The command line itself is wrong: exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
    Object.defineProperty(this, kUsageError, { value: true });
  }

  static is(err: unknown): err is UsageError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[kUsageError] === true;
  }
}

/** True for errors a user caused and can fix without reading tsblk's source. */
export function isUserError(err: unknown): boolean {
  if (BlockError.is(err) || ConfigError.is(err) || UsageError.is(err) || HostError.is(err)) return true;
  if (NvmeStatusError.is(err)) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

/** The one-line message for an error. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Writes the error to stderr and returns the exit code. */
export function reportError(err: unknown, stderr: Output): number {
  if (UsageError.is(err)) {
    stderr.write(`tsblk: ${err.message}\n`);
    return EXIT_USAGE;
  }
  if (isUserError(err)) {
    stderr.write(`tsblk: ${errorMessage(err)}\n`);
    if (process.env.TSBLK_DEBUG === '1' && err instanceof Error) stderr.write(`${err.stack}\n`);
    return EXIT_FAILURE;
  }
  const stack = err instanceof Error && err.stack ? `\n${err.stack}` : '';
  stderr.write(
    `tsblk: internal error: ${errorMessage(err)}${stack}\nThis is a bug in tsblk; please report it.\n`,
  );
  return EXIT_FAILURE;
}
