// Model-based property test of file-backed devices: FileDevice with copy_file_range, with the
// pure-TypeScript fallback, and linear mappings over one file, two files, and a file and a
// RamDevice (see test/model/).
import { describe, it } from 'node:test';
import { checkKind, runsFor } from './model/property.js';
import type { DeviceKind } from './model/devices.js';

describe('property: file-backed devices match the reference model (copies auto and emulated)', () => {
  for (const kind of ['file', 'file-fallback', 'linear-file', 'linear-file2', 'linear-mixed'] as DeviceKind[])
    it(`${kind}: ${runsFor(kind)} random sequences`, () => checkKind(kind));
});
