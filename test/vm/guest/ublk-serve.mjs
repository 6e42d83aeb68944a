// Guest side of test/interop-ublk.test.ts: a RAM device exported through ublk from dist/,
// until SIGTERM/SIGINT (then stop: /dev/ublkbN and /dev/ublkcN removed, exit 0).
// argv: SIZE QUEUES DEPTH. Prints `ublk ready dev=N block=/dev/ublkbN flags=0x..` once
// /dev/ublkbN is live, and `ublk stopped served=.. failed=.. aborted=..` at the end.
import { RamDevice } from '../../../dist/devices/ram.js';
import { UblkExport, featureNames } from '../../../dist/export/ublk/index.js';

const [size, queues, depth] = process.argv.slice(2).map(Number);
const device = new RamDevice({ name: 'ublk-ram', size });
let exp;
try {
  exp = await UblkExport.start(device, {
    queues,
    depth,
    onError: (err) => console.error(`ublk queue error: ${err.message}`),
  });
} catch (err) {
  console.error(`ublk start failed: ${err.stack ?? err}`);
  process.exit(1);
}
console.log(
  `ublk ready dev=${exp.devId} block=${exp.blockPath} flags=0x${exp.flags.toString(16)} (${featureNames(exp.flags).join(' ')})`,
);
let stopping = false;
async function stop(sig) {
  if (stopping) return;
  stopping = true;
  try {
    await exp.stop();
    const s = exp.queues.map((q) => q.stats);
    const sum = (k) => s.reduce((a, x) => a + x[k], 0);
    console.log(
      `ublk stopped on ${sig} served=${sum('served')} failed=${sum('failed')} aborted=${sum('aborted')}`,
    );
    process.exit(0);
  } catch (err) {
    console.error(`ublk stop failed: ${err.stack ?? err}`);
    process.exit(1);
  }
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
