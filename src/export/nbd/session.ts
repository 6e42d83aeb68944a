// What the handshake hands to the transmission phase: the export chosen and everything the
// client and server agreed on. Both sides of that seam import only this.

import type { Socket } from 'node:net';
import type { NbdExport } from './export.js';

export interface NegotiatedSession {
  readonly export: NbdExport;
  /** NBD_OPT_STRUCTURED_REPLY acknowledged (also true when extended headers were). */
  readonly structuredReplies: boolean;
  /** NBD_OPT_EXTENDED_HEADERS acknowledged: 32-byte requests and replies, 64-bit lengths. */
  readonly extendedHeaders: boolean;
  /** Metadata contexts active for this export, by the id the server gave them. */
  readonly metaContexts: ReadonlyMap<number, string>;
  /** The transmission flags the client was given. */
  readonly transmissionFlags: number;
  /** The socket to use from now on (a TLSSocket after STARTTLS). */
  readonly socket: Socket;
  /** Bytes already read past the end of the handshake (normally empty). */
  readonly leftover: Buffer;
}
