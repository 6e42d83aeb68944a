// The NVMe/TCP host (initiator): connect to any NVMe/TCP target and use each remote namespace
// as a BlockDevice. docs/nvme-host.md is the guide.
//
//   const ctrl = await NvmeController.connect({ address: { host, port: 4420 }, subnqn });
//   const ns = ctrl.namespace(1);                 // a BlockDevice: read, write, copy, ...
//   await issueCopy(ns, ns, ranges);              // NVMe Copy when the controller has it
//   await ctrl.disconnect();

export * from './types.js';
export * from './errors.js';
export {
  NvmeController,
  type ControllerOptions,
  type ControllerState,
  type NamespaceChanges,
} from './controller.js';
export { discover, type DiscoverOptions } from './discovery.js';
export { defaultHostId, defaultHostNqn } from './host-nqn.js';
export { RemoteNamespace, type RemoteNamespaceOptions } from './remote-namespace.js';
