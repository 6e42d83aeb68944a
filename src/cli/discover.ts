// `tsblk discover HOST[:PORT]`: reads the discovery log page of a discovery controller (port
// 8009 by default) as `nvme discover` does — connect to nqn.2014-08.org.nvmexpress.discovery
// without keep-alive, read the log (again while its generation counter changes), disconnect —
// and prints one block per record (trtype, adrfam, subtype, treq, portid, trsvcid, subnqn,
// traddr, eflags, sectype), or JSON. Each NVMe subsystem record can be used as
// `tsblk connect TRADDR:TRSVCID --nqn SUBNQN`, or its namespaces as
// nvme-tcp://TRADDR:TRSVCID/SUBNQN/NSID.

import type { Command } from 'commander';
import { defaultHostNqn } from '../host/host-nqn.js';
import { DISCOVERY_NQN } from '../nvme/log-page.js';
import { checkNqnAt, formatAddress, parseAddress } from '../server/nvme-tcp-spec.js';
import { withContext } from '../server/remote-controllers.js';
import { NVME_TCP_DISCOVERY_PORT } from '../target/port.js';
import { discoveryRecord, renderDiscovery } from './nvme-format.js';
import { writeJson, type CliIo } from './output.js';

export interface DiscoverOptions {
  hostnqn?: string;
  json?: boolean;
}

export function registerDiscover(program: Command, io: CliIo): void {
  program
    .command('discover')
    .description('read the discovery log of an NVMe/TCP discovery controller (as nvme discover)')
    .argument(
      '<address>',
      'HOST[:PORT] of the discovery controller (port 8009 by default; IPv6 as [::1]:8009)',
    )
    .option(
      '-q, --hostnqn <hostnqn>',
      'host NQN (default: /etc/nvme/hostnqn, else one derived from the machine ID)',
    )
    .option('--json', 'print the records as one JSON object')
    .action(async (text: string, opts: DiscoverOptions) => {
      const address = parseAddress(text, NVME_TCP_DISCOVERY_PORT, `address "${text}"`);
      const hostnqn =
        opts.hostnqn === undefined ? defaultHostNqn() : checkNqnAt(opts.hostnqn, 'host NQN', '--hostnqn');
      const { discover } = await import('../host/discovery.js');
      let entries;
      try {
        entries = await discover({ address, hostnqn });
      } catch (err) {
        throw withContext(err, `cannot discover at ${formatAddress(address)} (host NQN ${hostnqn})`, {
          address,
          subnqn: DISCOVERY_NQN,
        });
      }
      if (opts.json)
        writeJson(io.stdout, { address: formatAddress(address), records: entries.map(discoveryRecord) });
      else io.stdout.write(renderDiscovery(entries));
    });
}
