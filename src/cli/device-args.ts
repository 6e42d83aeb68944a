// Opening the devices a command names: loads --config when given, opens specs and names
// through one DeviceSet, and always closes (and so flushes) every device at the end, also
// when the command fails.

import { loadConfig } from '../server/config.js';
import { DeviceSet } from '../server/devices.js';

export async function withDevices<T>(
  configPath: string | undefined,
  fn: (set: DeviceSet) => Promise<T>,
): Promise<T> {
  const config = configPath === undefined ? undefined : await loadConfig(configPath);
  const set = new DeviceSet(config);
  let result: T;
  try {
    result = await fn(set);
  } catch (err) {
    // The command's own error is the one to report; a close failure after it is secondary.
    await set.closeAll().catch(() => {});
    throw err;
  }
  await set.closeAll();
  return result;
}
