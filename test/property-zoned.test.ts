// Model-based property test of zoned devices: ZonedDevice over RAM, a FaultDevice without
// rules over it, and a linear mapping of shuffled whole zones (see test/model/).
import { describe, it } from 'node:test';
import { checkKind, runsFor } from './model/property.js';
import type { DeviceKind } from './model/devices.js';

describe('property: zoned devices match the reference model (copies auto and emulated)', () => {
  for (const kind of ['zoned', 'fault-zoned', 'linear-zoned'] as DeviceKind[])
    it(`${kind}: ${runsFor(kind)} random sequences`, () => checkKind(kind));
});
