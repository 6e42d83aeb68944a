// Test helper: asserts a struct table against offsets taken from the C headers (gcc offsetof
// on libnvme's types.h or a copy of Linux's nvme.h structs). Every field must be listed, so a
// field added to a table without a checked offset fails the test.

import assert from 'node:assert/strict';
import { gaps, type FieldDef, type Struct } from '../../util/struct.js';

export function assertLayout(
  s: Struct<readonly FieldDef[]>,
  size: number,
  offsets: Record<string, number>,
): void {
  assert.equal(s.SIZE, size, `${s.name}: SIZE`);
  assert.deepEqual(
    s.fields.map((f) => f.name).sort(),
    Object.keys(offsets).sort(),
    `${s.name}: the table's fields and the checked offsets name the same fields`,
  );
  for (const [name, off] of Object.entries(offsets)) assert.equal(s.offsetOf(name), off, `${s.name}.${name}`);
  assert.deepEqual(gaps(s), [], `${s.name}: every byte belongs to a field or a named reserved range`);
}
