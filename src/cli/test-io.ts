// Test helper: runs the CLI in-process with captured stdout and stderr.

import { run } from './main.js';
import type { CliIo, Output } from './output.js';

export class Capture implements Output {
  text = '';
  readonly isTTY: boolean;
  constructor(isTTY = false) {
    this.isTTY = isTTY;
  }
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCli(
  argv: readonly string[],
  options: { stderrTTY?: boolean } = {},
): Promise<CliResult> {
  const io: CliIo & { stdout: Capture; stderr: Capture } = {
    stdout: new Capture(),
    stderr: new Capture(options.stderrTTY ?? false),
  };
  const code = await run(argv, io);
  return { code, stdout: io.stdout.text, stderr: io.stderr.text };
}
