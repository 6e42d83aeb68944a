// `tsblk id-ns nvme-tcp://HOST[:PORT]/SUBNQN/NSID`: Identify Namespace (CNS 00h) of a remote
// namespace, read fresh, printed as `nvme id-ns` prints it (nvme-format.ts), or as JSON. An
// NSID that is not active on the controller is an error naming the active ones (nvme-cli
// would print an all-zero structure).

import type { Command } from 'commander';
import { loadConfig } from '../server/config.js';
import type { IdentifyOptions } from './id-ctrl.js';
import { UsageError } from './errors.js';
import { countArg, resolveNvmeTarget, withController } from './nvme-args.js';
import { idNsJson, renderIdNs } from './nvme-format.js';
import { writeJson, type CliIo } from './output.js';
import { NSID_MAX } from '../server/nvme-tcp-spec.js';

export function registerIdNs(program: Command, io: CliIo): void {
  program
    .command('id-ns')
    .description('show Identify Namespace of an NVMe/TCP namespace (as nvme id-ns)')
    .argument(
      '<device>',
      'nvme-tcp://HOST[:PORT]/SUBNQN/NSID, an nvme-tcp device from --config, or HOST[:PORT] with --nqn and --nsid',
    )
    .option(
      '--nsid <nsid>',
      'namespace ID (overrides the one in the URL or config)',
      countArg('--nsid', NSID_MAX),
    )
    .option('-n, --nqn <subnqn>', 'subsystem NQN (with an address)')
    .option(
      '-q, --hostnqn <hostnqn>',
      'host NQN (default: /etc/nvme/hostnqn, else one derived from the machine ID)',
    )
    .option('-c, --config <file>', 'JSON config file with named devices')
    .option('--json', 'print the decoded fields as one JSON object')
    .action(async (arg: string, opts: IdentifyOptions & { nsid?: number }) => {
      const config = opts.config === undefined ? undefined : await loadConfig(opts.config);
      const target = resolveNvmeTarget(arg, opts, config, 'id-ns');
      const nsid = opts.nsid ?? target.nsid;
      if (nsid === undefined)
        throw new UsageError('id-ns: which namespace? end the URL with /NSID or give --nsid NSID');
      const id = await withController(target, async (c) => {
        c.namespace(nsid); // ENODEV naming the active namespaces when nsid is not one of them
        return c.identifyNamespace(nsid);
      });
      if (opts.json) writeJson(io.stdout, { nsid, ...idNsJson(id) });
      else io.stdout.write(renderIdNs(id, nsid));
    });
}
