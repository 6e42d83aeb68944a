// The NBD export's public API: a server with its exports, the handshake and transmission it
// runs per connection (for embedding them elsewhere), TLS loading, and the types between
// them. Wire constants stay in protocol.ts.

export {
  NBD_MAX_PAYLOAD,
  blockSizeConstraints,
  isReadOnly,
  transmissionFlags,
  type BlockSizeConstraints,
  type ExportLookup,
  type NbdExport,
} from './export.js';
export { negotiate, type HandshakeContext, type NegotiationOutcome } from './handshake.js';
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  NbdServer,
  type NbdBoundAddress,
  type NbdConnectionEvent,
  type NbdListenAddress,
  type NbdServerOptions,
} from './server.js';
export type { NegotiatedSession } from './session.js';
export { loadTlsConfig, type NbdTlsConfig, type NbdTlsFiles } from './tls.js';
export { NbdTransmission, type TransmissionOptions } from './transmission.js';
export { formatNbdUri, type NbdUriAddress } from './uri.js';
export { nbdErrorFromBlockError } from './errors.js';
