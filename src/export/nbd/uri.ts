// NBD URIs (the NBD project's doc/uri.md, as libnbd, qemu and nbdkit read them):
// `nbd://HOST:PORT/EXPORT`, `nbds://` when TLS is required, and for unix sockets
// `nbd+unix:///EXPORT?socket=PATH` (`nbds+unix://`). Everything after the first '/' of the
// path is the export name, so '/' inside a name stays literal and other reserved characters
// are percent-encoded. The default export '' is the bare authority (`nbd://127.0.0.1:10809`).

import { isIP } from 'node:net';

export type NbdUriAddress = { host: string; port: number } | { path: string };

function encodeName(name: string): string {
  return encodeURIComponent(name).replace(/%2F/gi, '/');
}

export function formatNbdUri(address: NbdUriAddress, exportName: string, tls = false): string {
  const scheme = tls ? 'nbds' : 'nbd';
  const name = exportName === '' ? '' : `/${encodeName(exportName)}`;
  if ('path' in address)
    return `${scheme}+unix://${name || '/'}?socket=${encodeURIComponent(address.path).replace(/%2F/gi, '/')}`;
  const host = isIP(address.host) === 6 ? `[${address.host}]` : address.host;
  return `${scheme}://${host}:${address.port}${name}`;
}
