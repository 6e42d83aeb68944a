// The ublk export: a BlockDevice as /dev/ublkbN (device.ts has the lifecycle).
export { UblkExport, ublkUnavailable, type UblkExportOptions } from './device.js';
export { UblkControl, UBLK_ANY_DEV_ID, UBLK_CONTROL_PATH } from './control.js';
export { UblkError } from './errors.js';
export { paramsFor } from './params.js';
export { UblkQueue } from './queue.js';
export * from './uapi.js';
