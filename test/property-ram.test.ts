// Model-based property test of the memory-backed devices: RamDevice, FaultDevice without
// rules, and linear mappings over one or two RamDevices (see test/model/).
import { describe, it } from 'node:test';
import { checkKind, runsFor } from './model/property.js';
import type { DeviceKind } from './model/devices.js';

describe('property: memory-backed devices match the reference model (copies auto and emulated)', () => {
  for (const kind of ['ram', 'fault', 'linear-ram', 'linear-ram2'] as DeviceKind[])
    it(`${kind}: ${runsFor(kind)} random sequences`, () => checkKind(kind));
});
