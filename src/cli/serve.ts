// `tsblk serve`: what `npm start` runs. Until the NVMe/TCP target lands it runs the demo
// (demo.ts) and says so, so `npm start` shows copy offload working instead of failing.

import type { Command } from 'commander';
import { demo } from './demo.js';
import type { CliIo } from './output.js';

export function registerServe(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('serve')
    .description(
      'start the storage daemon (for now: the NVMe/TCP target is not built yet, so this runs the demo)',
    )
    .action(async () => {
      io.stderr.write(
        'tsblk serve: the NVMe/TCP target is not available yet; running `tsblk demo` instead\n',
      );
      setExit(await demo(io));
    });
}
