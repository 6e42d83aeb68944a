// Receiving into buffers the caller chooses, on a socket that was accepted the usual way.
//
// Why: a net.Socket reads at most 64 KiB per read() into a fresh Buffer, so a 1 MiB NBD WRITE
// arrives as 16+ allocations that the parser then copies into the payload buffer — at GB/s
// that allocation, the copy and the GC cost more than the syscalls. Node's `onread` option
// (net.Socket, public since v12) makes libuv read into a buffer the owner supplies, chosen
// afresh before every read: the unfilled rest of a WRITE payload, so the data lands where the
// device will take it from, with no copy.
//
// net.Server cannot create accepted sockets with `onread`, so the accepted socket's handle is
// moved to a new net.Socket that has it (`new net.Socket({ handle, onread })`). `handle` and
// `_handle` are Node internals (stable since v12, used by cluster and child_process to pass
// sockets); when they are not there — another runtime, a TLS socket, a socket with writes
// still queued — adoptForDirectReads() returns undefined and the caller keeps the socket it
// has, reading it with 'data' events as before.
//
// The old socket is left without a handle: it owns nothing any more and is destroyed when the
// new one closes, so net.Server's connection count stays right.

import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

export interface DirectReader {
  /** The buffer the next read() fills (from its start). Called before every read. */
  buffer(): Uint8Array;
  /** `n` bytes arrived at the start of `buf` (the buffer last returned). false: pause reading. */
  received(n: number, buf: Uint8Array): boolean;
}

export interface AdoptedSocket {
  /** The socket to use from now on: same connection, reads go to the DirectReader. */
  readonly socket: Socket;
  /** Bytes the old socket had received but nobody had read, in order: parse these first. */
  readonly pending: Buffer[];
}

interface HandleLike {
  useUserBuffer?: unknown;
  readStop?: unknown;
}

/**
 * Moves `old`'s connection to a socket whose reads go to `reader`, or returns undefined when
 * that cannot be done safely (see the top of this file). The returned socket starts paused:
 * call resume() to begin reading. `old` must be paused and have no listener that reads.
 */
export function adoptForDirectReads(old: Socket, reader: DirectReader): AdoptedSocket | undefined {
  if (!(old instanceof Socket) || old instanceof TLSSocket) return undefined;
  const internal = old as unknown as { _handle: HandleLike | null };
  const handle = internal._handle;
  if (
    !handle ||
    typeof handle.useUserBuffer !== 'function' ||
    typeof handle.readStop !== 'function' ||
    old.destroyed ||
    old.connecting ||
    old.writableLength > 0 ||
    old.readableEnded
  )
    return undefined;
  // Whatever the old socket already pulled off the connection comes first.
  const pending: Buffer[] = [];
  for (let chunk = old.read() as Buffer | null; chunk !== null; chunk = old.read() as Buffer | null)
    pending.push(chunk);
  // An EOF seen while draining: the stream has ended, nothing more to read from the handle.
  if (old.readableEnded || old.destroyed) return undefined;
  internal._handle = null;
  const socket = new Socket({
    handle,
    allowHalfOpen: old.allowHalfOpen,
    onread: {
      buffer: () => reader.buffer(),
      callback: (n: number, buf: Uint8Array) => reader.received(n, buf),
    },
    pauseOnCreate: true,
  } as ConstructorParameters<typeof Socket>[0] & { handle: unknown; pauseOnCreate: boolean });
  socket.once('close', () => old.destroy());
  return { socket, pending };
}
