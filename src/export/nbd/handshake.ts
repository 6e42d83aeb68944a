// The NBD handshake, server side: fixed newstyle negotiation from the greeting to the moment
// the client enters transmission (NBD_OPT_GO acknowledged, or NBD_OPT_EXPORT_NAME answered)
// or the session ends. negotiate() never rejects; every way out is a NegotiationOutcome.
//
// Decisions a user of the server relies on:
// - Options are handled strictly one at a time (the client may not send the next option
//   before the final reply), each payload read in full before the reply. Payloads longer
//   than ctx.maxOptionLength (64 KiB) are a hard disconnect: no legitimate option is that big.
// - TLS: no ctx.tls = NOTLS mode (STARTTLS → NBD_REP_ERR_POLICY). tls.required = FORCEDTLS:
//   every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD (INFO and GO included),
//   EXPORT_NAME closes the connection. A client that did not set C_FIXED_NEWSTYLE cannot start
//   TLS (the spec keeps it in NOTLS mode), so with TLS required it is disconnected at once.
//   STARTTLS forgets everything negotiated before it (structured replies, extended headers,
//   meta contexts), as the spec demands.
// - Meta contexts: exactly `base:allocation`, always context id 1. A selection belongs to the
//   export SET_META_CONTEXT named; entering transmission on another export leaves none active.
//   Every SET_META_CONTEXT replaces the selection, even one that fails.
// - INFO/GO always send NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE; NAME and DESCRIPTION only
//   when asked (DESCRIPTION only if the export has one). Unknown info types are ignored.
// - Extended headers imply structured replies. STRUCTURED_REPLY after EXTENDED_HEADERS gets
//   NBD_REP_ERR_EXT_HEADER_REQD (the extension's reply for exactly this case); repeating either
//   option gets NBD_REP_ERR_INVALID; EXPORT_NAME after EXTENDED_HEADERS is a hard disconnect
//   (the client MUST NOT use it then, and EXPORT_NAME cannot carry an error).
// - Shutdown (ctx.signal aborted): the option being read or the next one to arrive within
//   SHUTDOWN_GRACE_MS gets NBD_REP_ERR_SHUTDOWN (ABORT still gets its ACK), then the
//   connection is closed; a client that sends nothing in that time is disconnected.
// - Error replies carry a message for the user. ABORT and shutdown end the connection
//   gracefully (reply flushed, FIN, wait up to CLOSE_GRACE_MS for the client to close);
//   protocol violations destroy it at once.
// - On 'transmission' the socket (session.socket) is left paused with no listener of ours:
//   the transmission phase attaches its handlers right away and calls resume() (a 'data'
//   listener alone does not restart an explicitly paused stream). Bytes the client sent
//   after GO in the same packet are in session.leftover.

import type * as net from 'node:net';
import * as tls from 'node:tls';
import { blockSizeConstraints, transmissionFlags, type ExportLookup, type NbdExport } from './export.js';
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_IHAVEOPT,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_MAX_STRING,
  NBD_META_CONTEXT_BASE_ALLOCATION,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_NAMES,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_EXT_HEADER_REQD,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_SHUTDOWN,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from './protocol.js';
import {
  ClientFlags,
  OptionHeader,
  OptionPayloadError,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeNbdString,
  decodeOptionHeader,
  encodeErrorReply,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeOptionReply,
  encodeRepMetaContext,
  encodeRepServer,
  type InfoRequest,
  type MetaContextRequest,
} from './option-codec.js';
import type { NegotiatedSession } from './session.js';
import { SocketReadError, SocketReader } from './socket-reader.js';

export interface HandshakeContext {
  readonly exports: ExportLookup;
  readonly tls?: {
    readonly secureContext: tls.SecureContext;
    readonly required: boolean;
    readonly requestCert?: boolean;
  };
  /** Server shutting down: the pending or next option gets NBD_REP_ERR_SHUTDOWN, then close. */
  readonly signal?: AbortSignal;
  /** Longest option payload accepted before a hard disconnect; default 64 KiB. */
  readonly maxOptionLength?: number;
}

export type NegotiationOutcome =
  { kind: 'transmission'; session: NegotiatedSession } | { kind: 'closed'; reason: string };

export const DEFAULT_MAX_OPTION_LENGTH = 64 * 1024;
/** How long a shutting-down server waits for the next option before it disconnects. */
export const SHUTDOWN_GRACE_MS = 1000;
/** How long a graceful close waits for the client to close its side. */
export const CLOSE_GRACE_MS = 1000;

/** The one metadata context this server offers, and the id it always gets. */
export const BASE_ALLOCATION_CONTEXT_ID = 1;

const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** Runs the handshake on a freshly accepted connection. Never rejects. */
export function negotiate(socket: net.Socket, ctx: HandshakeContext): Promise<NegotiationOutcome> {
  return new Handshake(socket, ctx).run();
}

function optName(option: number): string {
  return `NBD_OPT_${NBD_OPT_NAMES[option] ?? option}`;
}

/** Ends option processing: enter transmission, or close with a reason. */
type Step = NegotiationOutcome | undefined;

interface MetaSelection {
  readonly export: NbdExport;
  readonly contexts: ReadonlyMap<number, string>;
}

class Handshake {
  readonly #raw: net.Socket;
  readonly #ctx: HandshakeContext;
  /** The socket options travel on: #raw, then a TLSSocket after STARTTLS. */
  #socket: net.Socket;
  #reader: SocketReader;

  #fixedNewstyle = false;
  #noZeroes = false;
  #tlsActive = false;
  #structured = false;
  #extended = false;
  #meta: MetaSelection | undefined;

  #shuttingDown = false;
  #graceTimer: NodeJS.Timeout | undefined;
  readonly #onAbort = (): void => {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    // Give a client already sending an option time to get its ERR_SHUTDOWN; then cut it off.
    this.#graceTimer = setTimeout(() => this.#destroy(), SHUTDOWN_GRACE_MS);
  };

  constructor(socket: net.Socket, ctx: HandshakeContext) {
    this.#raw = socket;
    this.#socket = socket;
    this.#ctx = ctx;
    this.#reader = new SocketReader(socket);
  }

  async run(): Promise<NegotiationOutcome> {
    const signal = this.#ctx.signal;
    signal?.addEventListener('abort', this.#onAbort);
    if (signal?.aborted) this.#onAbort();
    try {
      // The spec asks both ends to disable Nagle: replies are small and latency-bound.
      if (typeof this.#raw.setNoDelay === 'function') this.#raw.setNoDelay(true);
      return await this.#negotiate();
    } catch (err) {
      const reason = this.#shuttingDown
        ? 'server shutting down'
        : err instanceof SocketReadError
          ? `${err.message} during the handshake`
          : `handshake failed: ${err instanceof Error ? err.message : String(err)}`;
      return this.#closeHard(reason);
    } finally {
      signal?.removeEventListener('abort', this.#onAbort);
      if (this.#graceTimer) clearTimeout(this.#graceTimer);
    }
  }

  async #negotiate(): Promise<NegotiationOutcome> {
    await this.#send(encodeGreeting());
    const flags = (await this.#reader.read(ClientFlags.SIZE)).readUInt32BE(ClientFlags.flags);
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      return this.#closeHard(`unknown client flags 0x${flags.toString(16).padStart(8, '0')}`);
    }
    this.#fixedNewstyle = (flags & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    this.#noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
    if (this.#ctx.tls?.required && !this.#fixedNewstyle) {
      return this.#closeHard('TLS is required but the client did not set NBD_FLAG_C_FIXED_NEWSTYLE');
    }

    const maxLength = this.#ctx.maxOptionLength ?? DEFAULT_MAX_OPTION_LENGTH;
    for (;;) {
      const header = decodeOptionHeader(await this.#reader.read(OptionHeader.SIZE));
      if (header.magic !== NBD_IHAVEOPT) {
        return this.#closeHard(`bad option magic 0x${header.magic.toString(16)} (expected IHAVEOPT)`);
      }
      if (header.length > maxLength) {
        return this.#closeHard(
          `${optName(header.option)} carries ${header.length} bytes, more than the ${maxLength}-byte option limit`,
        );
      }
      const payload = await this.#reader.read(header.length);
      const step = this.#shuttingDown
        ? await this.#refuseForShutdown(header.option)
        : await this.#option(header.option, payload);
      if (step) return step;
    }
  }

  async #option(option: number, payload: Buffer): Promise<Step> {
    if (this.#ctx.tls?.required && !this.#tlsActive) {
      // FORCEDTLS: nothing but STARTTLS and ABORT before TLS is up.
      if (option === NBD_OPT_EXPORT_NAME) {
        return this.#closeHard('NBD_OPT_EXPORT_NAME before STARTTLS on a server that requires TLS');
      }
      if (option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
        return this.#error(option, NBD_REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
      }
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.#exportName(payload);
      case NBD_OPT_ABORT:
        // Any data with ABORT is ignored, as the spec asks.
        await this.#send(encodeOptionReply(option, NBD_REP_ACK));
        return this.#closeGracefully('client sent NBD_OPT_ABORT');
      case NBD_OPT_LIST:
        return this.#list(payload);
      case NBD_OPT_STARTTLS:
        return this.#startTls(payload);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.#infoOrGo(option, payload);
      case NBD_OPT_STRUCTURED_REPLY:
        if (payload.length) return this.#noData(option);
        if (this.#extended) {
          return this.#error(option, NBD_REP_ERR_EXT_HEADER_REQD, 'extended headers are already negotiated');
        }
        if (this.#structured) {
          return this.#error(option, NBD_REP_ERR_INVALID, 'structured replies are already negotiated');
        }
        this.#structured = true;
        return this.#ack(option);
      case NBD_OPT_EXTENDED_HEADERS:
        if (payload.length) return this.#noData(option);
        if (this.#extended) {
          return this.#error(option, NBD_REP_ERR_INVALID, 'extended headers are already negotiated');
        }
        this.#extended = true;
        this.#structured = true; // extended replies are structured replies
        return this.#ack(option);
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return this.#metaContext(option, payload);
      default: // NBD_OPT_PEEK_EXPORT (withdrawn) and anything newer than this server
        return this.#error(option, NBD_REP_ERR_UNSUP, `${optName(option)} is not supported by this server`);
    }
  }

  /** While shutting down: ACK an ABORT, refuse everything else, then close. */
  async #refuseForShutdown(option: number): Promise<Step> {
    if (option === NBD_OPT_EXPORT_NAME) return this.#closeHard('server shutting down');
    if (option === NBD_OPT_ABORT) await this.#send(encodeOptionReply(option, NBD_REP_ACK));
    else await this.#send(encodeErrorReply(option, NBD_REP_ERR_SHUTDOWN, 'the server is shutting down'));
    return this.#closeGracefully('server shutting down');
  }

  // ---- options ----------------------------------------------------------------------------

  async #exportName(payload: Buffer): Promise<Step> {
    if (this.#extended) return this.#closeHard('NBD_OPT_EXPORT_NAME after extended headers were negotiated');
    let name: string;
    try {
      name = decodeNbdString(payload, 'NBD_OPT_EXPORT_NAME: export name');
    } catch (err) {
      return this.#closeHard((err as Error).message);
    }
    const exp = this.#ctx.exports.get(name);
    // EXPORT_NAME cannot carry an error: the spec's only answer is to close.
    if (!exp) return this.#closeHard(`NBD_OPT_EXPORT_NAME: no export named ${JSON.stringify(name)}`);
    const flags = this.#flagsFor(exp);
    await this.#send(encodeExportNameReply(exp.device.size, flags, this.#noZeroes));
    return this.#enterTransmission(exp, flags);
  }

  async #list(payload: Buffer): Promise<Step> {
    if (payload.length) return this.#noData(NBD_OPT_LIST);
    const replies: Buffer[] = [];
    for (const exp of this.#ctx.exports.list()) {
      // A name over the string limit could never be asked for; leave it out rather than break the list.
      if (Buffer.byteLength(exp.name, 'utf8') > NBD_MAX_STRING) continue;
      replies.push(
        encodeOptionReply(NBD_OPT_LIST, NBD_REP_SERVER, encodeRepServer(exp.name, exp.description)),
      );
    }
    replies.push(encodeOptionReply(NBD_OPT_LIST, NBD_REP_ACK));
    await this.#send(Buffer.concat(replies));
    return undefined;
  }

  async #infoOrGo(option: number, payload: Buffer): Promise<Step> {
    let req: InfoRequest;
    try {
      req = decodeInfoRequest(payload, optName(option));
    } catch (err) {
      return this.#payloadError(option, err);
    }
    const exp = this.#ctx.exports.get(req.name);
    if (!exp) return this.#error(option, NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.name)}`);
    const flags = this.#flagsFor(exp);
    const infos = [encodeInfoExport(exp.device.size, flags)];
    if (req.infos.includes(NBD_INFO_NAME)) infos.push(encodeInfoName(exp.name));
    if (req.infos.includes(NBD_INFO_DESCRIPTION) && exp.description !== undefined) {
      infos.push(encodeInfoDescription(exp.description));
    }
    // Sent whether asked or not: the spec allows it, and a client that asked must see it.
    infos.push(encodeInfoBlockSize(blockSizeConstraints(exp)));
    const replies = infos.map((data) => encodeOptionReply(option, NBD_REP_INFO, data));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    await this.#send(Buffer.concat(replies));
    return option === NBD_OPT_GO ? this.#enterTransmission(exp, flags) : undefined;
  }

  async #metaContext(option: number, payload: Buffer): Promise<Step> {
    const set = option === NBD_OPT_SET_META_CONTEXT;
    // SET replaces the selection even when it fails.
    if (set) this.#meta = undefined;
    if (set && !this.#structured) {
      return this.#error(
        option,
        NBD_REP_ERR_INVALID,
        'NBD_OPT_SET_META_CONTEXT needs NBD_OPT_STRUCTURED_REPLY or NBD_OPT_EXTENDED_HEADERS first',
      );
    }
    let req: MetaContextRequest;
    try {
      req = decodeMetaContextRequest(payload, optName(option));
    } catch (err) {
      return this.#payloadError(option, err);
    }
    const exp = this.#ctx.exports.get(req.exportName);
    if (!exp) {
      return this.#error(option, NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(req.exportName)}`);
    }
    const selected = set ? selectContexts(req.queries) : listContexts(req.queries);
    const replies = selected.map((name) =>
      // LIST's ids are reserved (zero); SET's are the ids BLOCK_STATUS replies will carry.
      encodeOptionReply(
        option,
        NBD_REP_META_CONTEXT,
        encodeRepMetaContext(set ? BASE_ALLOCATION_CONTEXT_ID : 0, name),
      ),
    );
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    if (set && selected.length) {
      this.#meta = { export: exp, contexts: new Map([[BASE_ALLOCATION_CONTEXT_ID, selected[0]!]]) };
    }
    await this.#send(Buffer.concat(replies));
    return undefined;
  }

  async #startTls(payload: Buffer): Promise<Step> {
    const option = NBD_OPT_STARTTLS;
    if (payload.length) return this.#noData(option);
    const tlsConfig = this.#ctx.tls;
    if (!tlsConfig) return this.#error(option, NBD_REP_ERR_POLICY, 'TLS is not enabled on this server');
    if (this.#tlsActive) return this.#error(option, NBD_REP_ERR_INVALID, 'TLS is already active');
    if (!this.#fixedNewstyle) {
      return this.#error(
        option,
        NBD_REP_ERR_POLICY,
        'TLS needs fixed newstyle negotiation (NBD_FLAG_C_FIXED_NEWSTYLE)',
      );
    }
    await this.#send(encodeOptionReply(option, NBD_REP_ACK));

    // Hand the raw socket to TLS with nothing read past the STARTTLS option.
    const early = this.#reader.detach();
    if (early.length) this.#raw.unshift(early);
    const requestCert = tlsConfig.requestCert ?? false;
    const secure = new tls.TLSSocket(this.#raw, {
      isServer: true,
      secureContext: tlsConfig.secureContext,
      requestCert,
      rejectUnauthorized: requestCert,
    });
    this.#socket = secure;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        secure.off('secure', onSecure);
        secure.off('error', onError);
        secure.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onSecure = (): void => done();
      const onError = (err: Error): void => done(new Error(`TLS handshake failed: ${err.message}`));
      const onClose = (): void => done(new Error('the connection closed during the TLS handshake'));
      secure.on('secure', onSecure);
      secure.on('error', onError);
      secure.on('close', onClose);
    });
    this.#reader = new SocketReader(secure);
    this.#tlsActive = true;
    // Nothing negotiated in the clear survives the upgrade.
    this.#structured = false;
    this.#extended = false;
    this.#meta = undefined;
    return undefined;
  }

  // ---- helpers ----------------------------------------------------------------------------

  #flagsFor(exp: NbdExport): number {
    return transmissionFlags(exp, { structured: this.#structured || this.#extended });
  }

  #enterTransmission(exp: NbdExport, flags: number): NegotiationOutcome {
    const leftover = this.#reader.detach();
    const meta = this.#meta?.export === exp ? this.#meta.contexts : new Map<number, string>();
    return {
      kind: 'transmission',
      session: {
        export: exp,
        structuredReplies: this.#structured || this.#extended,
        extendedHeaders: this.#extended,
        metaContexts: meta,
        transmissionFlags: flags,
        socket: this.#socket,
        leftover,
      },
    };
  }

  async #ack(option: number): Promise<Step> {
    await this.#send(encodeOptionReply(option, NBD_REP_ACK));
    return undefined;
  }

  async #error(option: number, type: number, message: string): Promise<Step> {
    await this.#send(encodeErrorReply(option, type, message));
    return undefined;
  }

  #noData(option: number): Promise<Step> {
    return this.#error(option, NBD_REP_ERR_INVALID, `${optName(option)} takes no data`);
  }

  #payloadError(option: number, err: unknown): Promise<Step> {
    if (!(err instanceof OptionPayloadError)) throw err;
    return this.#error(option, err.reply, err.message);
  }

  #send(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  #destroy(): void {
    this.#socket.destroy();
    this.#raw.destroy();
  }

  /** Hard disconnect: drop the connection now. */
  #closeHard(reason: string): NegotiationOutcome {
    this.#reader.detach();
    this.#destroy();
    return { kind: 'closed', reason };
  }

  /** Soft end: FIN after the last reply, then wait (bounded) for the client to close. */
  async #closeGracefully(reason: string): Promise<NegotiationOutcome> {
    this.#reader.detach();
    const s = this.#socket;
    await new Promise<void>((resolve) => {
      if (s.closed) return resolve();
      const timer = setTimeout(() => this.#destroy(), CLOSE_GRACE_MS);
      const ignore = (): void => {};
      s.on('error', ignore);
      s.once('close', () => {
        clearTimeout(timer);
        s.off('error', ignore);
        s.off('data', ignore);
        resolve();
      });
      s.on('data', ignore); // drain, so the client's FIN is seen
      s.end();
    });
    this.#destroy();
    return { kind: 'closed', reason };
  }
}

/** LIST_META_CONTEXT: no query lists everything; `base:` is a wildcard for the namespace. */
function listContexts(queries: readonly string[]): string[] {
  if (queries.length === 0) return [NBD_META_CONTEXT_BASE_ALLOCATION];
  return queries.some((q) => q === 'base:' || q === NBD_META_CONTEXT_BASE_ALLOCATION)
    ? [NBD_META_CONTEXT_BASE_ALLOCATION]
    : [];
}

/** SET_META_CONTEXT: only the exact name selects; wildcards and unknown namespaces are ignored. */
function selectContexts(queries: readonly string[]): string[] {
  return queries.includes(NBD_META_CONTEXT_BASE_ALLOCATION) ? [NBD_META_CONTEXT_BASE_ALLOCATION] : [];
}
