// NbdServer: accepts NBD clients on TCP and unix sockets, runs the handshake (handshake.ts)
// against its table of exports, then hands each negotiated connection to an NbdTransmission.
//
// Decisions a user must know:
// - Exports are looked up by name. The name '' reaches the default export: an export actually
//   named '' if there is one, else `defaultExport`, else the first export added. NBD_OPT_LIST
//   lists every export under its own name (the default is not listed twice).
// - addExport / removeExport work while clients are connected. Removing an export only hides
//   it from new handshakes: connections already transmitting keep their export (and so its
//   device) until they end. Call disconnectExport(name) to shut those down too, before closing
//   the device. Removing the default export leaves '' unresolved until another one is set.
// - listen() may be called several times (one net.Server per address). `{ host, port }` with
//   port 0 picks a free port and resolves with the bound one. `{ path }` is a unix socket; a
//   socket file already there is removed only when nothing answers on it (a stale one left
//   by a crash), never when a server listens, and never when it is not a socket.
//   Listen errors reject with the address in the message (`cannot listen on
//   127.0.0.1:10809: address already in use`) and keep the errno `code`.
// - Every accepted socket gets TCP_NODELAY: NBD replies are small and latency-bound.
// - A connection's failure (a protocol violation, a socket error, a throwing handshake)
//   closes that connection only; nothing escapes an event handler.
// - close(timeoutMs = 10 s): stops accepting, aborts handshakes in progress (the handshake's
//   AbortSignal: clients get ERR_SHUTDOWN), shuts every transmission down (requests already
//   running finish; new ones get ESHUTDOWN), and waits up to timeoutMs; sockets still open
//   after that are destroyed. It never closes devices: their owner does, after close().

import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import type { ExportLookup, NbdExport } from './export.js';
import { negotiate } from './handshake.js';
import { loadTlsConfig, type NbdTlsConfig, type NbdTlsFiles } from './tls.js';
import { NbdTransmission, type TransmissionOptions } from './transmission.js';

export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export type NbdListenAddress = { host: string; port: number } | { path: string };

export interface NbdBoundAddress {
  host?: string;
  port?: number;
  path?: string;
}

/** What happens to connections, for logs and tests. */
export type NbdConnectionEvent =
  | { kind: 'open'; id: number; remote: string }
  | { kind: 'transmission'; id: number; remote: string; export: string; tls: boolean; structured: boolean }
  | { kind: 'close'; id: number; remote: string; reason: string };

export interface NbdServerOptions {
  exports?: readonly NbdExport[];
  /** Name of the export served for '' (default: the first export, if any). */
  defaultExport?: string;
  /** PEM files (loaded at once, errors name the file), or a config already loaded. */
  tls?: NbdTlsFiles | NbdTlsConfig;
  transmission?: TransmissionOptions;
  /**
   * Longest a client may take from connecting to choosing an export (qemu-nbd allows 10 s);
   * then the connection is closed, so silent or slow clients cannot hold sockets forever.
   */
  handshakeTimeoutMs?: number;
  onConnection?: (event: NbdConnectionEvent) => void;
  /** One line per noteworthy event (connections, failures). */
  log?: (line: string) => void;
}

interface Connection {
  readonly id: number;
  readonly remote: string;
  readonly socket: Socket;
  /** The socket in use now (a TLSSocket after STARTTLS). */
  active: Socket;
  exportName?: string;
  transmission?: NbdTransmission;
  readonly done: Promise<void>;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

function isLoaded(tls: NbdTlsFiles | NbdTlsConfig): tls is NbdTlsConfig {
  return 'secureContext' in tls;
}

function formatAddress(address: NbdListenAddress): string {
  if ('path' in address) return address.path;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

const LISTEN_WHY: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available on this machine',
};

function listenError(err: unknown, where: string): Error {
  const code = (err as { code?: string }).code ?? 'EIO';
  const why = LISTEN_WHY[code] ?? (err as Error).message;
  return Object.assign(new Error(`cannot listen on ${where}: ${why}`), { code });
}

export class NbdServer {
  readonly #exports = new Map<string, NbdExport>();
  #defaultExport: string | undefined;
  readonly #tls: NbdTlsConfig | undefined;
  readonly #transmission: TransmissionOptions;
  readonly #onConnection: ((event: NbdConnectionEvent) => void) | undefined;
  readonly #log: ((line: string) => void) | undefined;
  readonly #servers: NetServer[] = [];
  readonly #conns = new Set<Connection>();
  readonly #abort = new AbortController();
  #nextId = 1;
  readonly #handshakeTimeoutMs: number;
  #closing: Promise<void> | undefined;

  /** The lookup the handshake sees; reads the live table. */
  readonly lookup: ExportLookup = {
    get: (name) => this.#resolve(name),
    list: () => [...this.#exports.values()],
  };

  constructor(options: NbdServerOptions = {}) {
    for (const exp of options.exports ?? []) this.addExport(exp);
    if (options.defaultExport !== undefined) this.setDefaultExport(options.defaultExport);
    this.#tls =
      options.tls === undefined
        ? undefined
        : isLoaded(options.tls)
          ? options.tls
          : loadTlsConfig(options.tls);
    this.#transmission = options.transmission ?? {};
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.#onConnection = options.onConnection;
    this.#log = options.log;
  }

  /** TLS as configured: undefined (plain only), or whether it is required. */
  get tls(): { required: boolean; verifyClient: boolean } | undefined {
    return this.#tls && { required: this.#tls.required, verifyClient: this.#tls.requestCert };
  }

  get exports(): readonly NbdExport[] {
    return [...this.#exports.values()];
  }

  /** The export '' reaches now, if any. */
  get defaultExport(): NbdExport | undefined {
    return this.#resolve('');
  }

  /** Open connections (handshaking or transmitting). */
  get connections(): number {
    return this.#conns.size;
  }

  addExport(exp: NbdExport): void {
    if (this.#exports.has(exp.name))
      throw Object.assign(new Error(`NBD export "${exp.name}" already exists; remove it first`), {
        code: 'EEXIST',
      });
    if (Buffer.byteLength(exp.name) > 4096)
      throw Object.assign(
        new Error(`NBD export name is ${Buffer.byteLength(exp.name)} bytes; at most 4096`),
        {
          code: 'EINVAL',
        },
      );
    this.#exports.set(exp.name, exp);
  }

  /**
   * Hides an export from new handshakes; connections already using it keep going (see
   * disconnectExport). Returns false when there was no such export.
   */
  removeExport(name: string): boolean {
    return this.#exports.delete(name);
  }

  /** Makes `name` the export '' reaches (it must exist). */
  setDefaultExport(name: string): void {
    if (!this.#exports.has(name))
      throw Object.assign(
        new Error(
          `no NBD export "${name}" to make the default; exports: ${[...this.#exports.keys()].map((n) => JSON.stringify(n)).join(', ') || '(none)'}`,
        ),
        { code: 'ENOENT' },
      );
    this.#defaultExport = name;
  }

  /** Shuts down the connections transmitting on an export (e.g. before its device is closed). */
  async disconnectExport(name: string, timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
    const conns = [...this.#conns].filter((c) => c.exportName === name);
    await this.#shutdownAll(conns, timeoutMs);
  }

  #resolve(name: string): NbdExport | undefined {
    const exact = this.#exports.get(name);
    if (exact || name !== '') return exact;
    if (this.#defaultExport !== undefined) return this.#exports.get(this.#defaultExport);
    return this.#exports.values().next().value;
  }

  /** Starts listening on one more address; resolves with where it is bound. */
  async listen(address: NbdListenAddress): Promise<NbdBoundAddress> {
    if (this.#closing) throw new Error('NBD server is closed');
    const where = formatAddress(address);
    if ('path' in address) await removeStaleSocket(address.path);
    const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(listenError(err, where));
      server.once('error', onError);
      const ready = () => {
        server.off('error', onError);
        resolve();
      };
      if ('path' in address) server.listen(address.path, ready);
      else server.listen(address.port, address.host, ready);
    });
    // Errors after listening (EMFILE on accept) must not crash the process.
    server.on('error', (err) => this.#log?.(`listener ${where}: ${err.message}`));
    this.#servers.push(server);
    if ('path' in address) return { path: address.path };
    const bound = server.address();
    const port = typeof bound === 'object' && bound ? bound.port : address.port;
    return { host: address.host, port };
  }

  /** Where the server listens now. */
  get addresses(): NbdBoundAddress[] {
    return this.#servers.map((s) => {
      const a = s.address();
      return typeof a === 'string' ? { path: a } : a ? { host: a.address, port: a.port } : {};
    });
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const id = this.#nextId++;
    const remote = socket.remoteAddress
      ? formatAddress({ host: socket.remoteAddress, port: socket.remotePort ?? 0 })
      : 'unix socket';
    // A socket without an 'error' listener would crash the process on ECONNRESET.
    socket.on('error', () => {});
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const conn: Connection = { id, remote, socket, active: socket, done };
    this.#conns.add(conn);
    this.#emit({ kind: 'open', id, remote });
    void this.#serve(conn).then(
      (reason) => this.#end(conn, reason, finish),
      (err: unknown) => {
        conn.active.destroy();
        socket.destroy();
        this.#end(conn, `internal error: ${err instanceof Error ? err.message : String(err)}`, finish);
      },
    );
  }

  async #serve(conn: Connection): Promise<string> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      conn.active.destroy();
      conn.socket.destroy();
    }, this.#handshakeTimeoutMs);
    const outcome = await negotiate(conn.socket, {
      exports: this.lookup,
      ...(this.#tls
        ? {
            tls: {
              secureContext: this.#tls.secureContext,
              required: this.#tls.required,
              requestCert: this.#tls.requestCert,
            },
          }
        : {}),
      signal: this.#abort.signal,
    });
    clearTimeout(timer);
    if (timedOut) {
      if (outcome.kind === 'transmission') outcome.session.socket.destroy();
      return `handshake timed out after ${this.#handshakeTimeoutMs} ms`;
    }
    if (outcome.kind === 'closed') return `handshake ended: ${outcome.reason}`;
    const session = outcome.session;
    conn.active = session.socket;
    conn.exportName = session.export.name;
    if (session.socket !== conn.socket) session.socket.on('error', () => {});
    if (this.#closing) {
      session.socket.destroy();
      return 'server shutting down';
    }
    const user = this.#transmission;
    const t = new NbdTransmission(session, {
      ...user,
      onClose: (reason) => user.onClose?.(reason),
    });
    conn.transmission = t;
    this.#emit({
      kind: 'transmission',
      id: conn.id,
      remote: conn.remote,
      export: session.export.name,
      tls: session.socket !== conn.socket,
      structured: session.structuredReplies,
    });
    t.start();
    // The transmission may have moved the connection to a new socket (direct reads).
    conn.active = t.socket;
    return t.closed;
  }

  #end(conn: Connection, reason: string, finish: () => void): void {
    this.#conns.delete(conn);
    this.#emit({ kind: 'close', id: conn.id, remote: conn.remote, reason });
    finish();
  }

  #emit(event: NbdConnectionEvent): void {
    try {
      this.#onConnection?.(event);
    } catch {
      // an observer's failure is not the connection's
    }
    if (!this.#log) return;
    const who = `connection ${event.id} from ${event.remote}`;
    if (event.kind === 'open') this.#log(`${who}: open`);
    else if (event.kind === 'transmission')
      this.#log(
        `${who}: export ${JSON.stringify(event.export)}${event.tls ? ', TLS' : ''}${event.structured ? ', structured replies' : ''}`,
      );
    else this.#log(`${who}: closed (${event.reason})`);
  }

  async #shutdownAll(conns: readonly Connection[], timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    for (const c of conns) void c.transmission?.shutdown(timeoutMs).catch(() => {});
    const r = await Promise.race([Promise.all(conns.map((c) => c.done)), timeout]);
    clearTimeout(timer);
    if (r === 'timeout') {
      for (const c of conns) {
        c.active.destroy();
        c.socket.destroy();
      }
      await Promise.all(conns.map((c) => c.done));
    }
  }

  /** Graceful shutdown (see the top of this file); idempotent. */
  close(timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    const closed = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    this.#abort.abort(new Error('NBD server shutting down'));
    // Connections accepted from now on are refused in #accept; a handshake that completes
    // after the abort is closed in #serve.
    await this.#shutdownAll([...this.#conns], timeoutMs);
    await Promise.all(closed);
  }
}

/** A unix socket file left behind by a server that is gone is removed; a live one is not. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return;
    throw listenError(err, path);
  }
  if (!isSocket)
    throw Object.assign(new Error(`cannot listen on ${path}: a file that is not a socket is in the way`), {
      code: 'EEXIST',
    });
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive)
    throw Object.assign(
      new Error(`cannot listen on ${path}: address already in use (a server answers on it)`),
      {
        code: 'EADDRINUSE',
      },
    );
  await unlink(path).catch(() => {});
}
