// `tsblk id-ctrl DEVICE_OR_ADDRESS`: Identify Controller (CNS 01h) of a remote controller,
// read fresh, printed as `nvme id-ctrl` prints it (nvme-format.ts), or as JSON. The controller
// is named by an nvme-tcp:// URL (of a namespace or of the controller itself), an nvme-tcp
// device of --config, or HOST[:PORT] with --nqn.

import type { Command } from 'commander';
import { Cns, decodeIdCtrl } from '../nvme/identify.js';
import { loadConfig } from '../server/config.js';
import { resolveNvmeTarget, withController, type ConnectionArgs } from './nvme-args.js';
import { idCtrlJson, renderIdCtrl } from './nvme-format.js';
import { writeJson, type CliIo } from './output.js';

export interface IdentifyOptions extends ConnectionArgs {
  config?: string;
  json?: boolean;
}

export function registerIdCtrl(program: Command, io: CliIo): void {
  program
    .command('id-ctrl')
    .description('show Identify Controller of an NVMe/TCP controller (as nvme id-ctrl)')
    .argument(
      '<device>',
      'nvme-tcp://HOST[:PORT]/SUBNQN[/NSID], an nvme-tcp device from --config, or HOST[:PORT] with --nqn',
    )
    .option('-n, --nqn <subnqn>', 'subsystem NQN (with an address)')
    .option(
      '-q, --hostnqn <hostnqn>',
      'host NQN (default: /etc/nvme/hostnqn, else one derived from the machine ID)',
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--json', 'print the decoded fields as one JSON object')
    .action(async (arg: string, opts: IdentifyOptions) => {
      const config = opts.config === undefined ? undefined : await loadConfig(opts.config);
      const target = resolveNvmeTarget(arg, opts, config, 'id-ctrl');
      const id = await withController(target, async (c) => decodeIdCtrl(await c.identify(Cns.CTRL)));
      if (opts.json) writeJson(io.stdout, idCtrlJson(id));
      else io.stdout.write(renderIdCtrl(id));
    });
}
