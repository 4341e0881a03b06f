import { once } from 'node:events';
import net from 'node:net';

/** The first 8 bytes of PostgreSQL's CancelRequest: its length (16) and its code. */
const CANCEL_REQUEST = 80877102;

/**
 * A TCP relay to PostgreSQL. With `holdCloseMs`, PostgreSQL's closing of a connection reaches
 * the client that much later than its last message, as over a real network where the FATAL and
 * the FIN arrive in separate reads. `freeze()` stops it passing anything on while every socket
 * stays open, as in a partition that no reset reaches. With `pooler`, it forwards a cancel
 * request only while the client connection it names is still open, as PgBouncer does (it
 * matches a cancel to a connected client); `cancels` counts both outcomes. Like PgBouncer, it
 * always closes the server's side when the client goes.
 */
export function relayTo(host: string, port: number, { holdCloseMs = 0, pooler = false } = {}) {
  const sockets = new Set<net.Socket>();
  /** pooler: the client connections by the cancel key PostgreSQL gave them. */
  const clients = new Map<string, net.Socket>();
  const cancels = { forwarded: 0, dropped: 0 };
  let frozen = false;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  };
  const relay = (inbound: net.Socket, first: Buffer | null) => {
    const outbound = net.connect(port, host);
    track(outbound);
    if (first) outbound.write(first);
    inbound.on('data', (chunk) => {
      if (!frozen) outbound.write(chunk);
    });
    // pooler: PostgreSQL's first messages carry the key (BackendKeyData, 'K') a cancel names.
    let startup: Buffer | null = pooler ? Buffer.alloc(0) : null;
    outbound.on('data', (chunk: Buffer) => {
      if (startup !== null) {
        startup = Buffer.concat([startup, chunk]);
        while (startup !== null && startup.length >= 5) {
          const length = startup.readInt32BE(1);
          if (startup.length < 1 + length) break;
          const type = String.fromCharCode(startup[0]!);
          if (type === 'K') clients.set(`${startup.readInt32BE(5)}:${startup.readInt32BE(9)}`, inbound);
          startup = type === 'Z' ? null : startup.subarray(1 + length);
        }
      }
      if (!frozen) inbound.write(chunk);
    });
    outbound.on('close', () => setTimeout(() => inbound.destroy(), holdCloseMs));
    inbound.on('close', () => outbound.destroy());
  };
  const server = net.createServer((inbound) => {
    track(inbound);
    if (!pooler) return relay(inbound, null);
    inbound.once('data', (first: Buffer) => {
      if (first.length >= 16 && first.readInt32BE(0) === 16 && first.readInt32BE(4) === CANCEL_REQUEST) {
        const named = clients.get(`${first.readInt32BE(8)}:${first.readInt32BE(12)}`);
        if (!named || named.destroyed) {
          cancels.dropped++;
          inbound.destroy();
          return;
        }
        cancels.forwarded++;
      }
      relay(inbound, first);
    });
  });
  return {
    cancels,
    async listen(onPort = 0) {
      server.listen(onPort, '127.0.0.1');
      await once(server, 'listening');
      return (server.address() as net.AddressInfo).port;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
    freeze() {
      frozen = true;
    },
  };
}

/** A port nothing listens on. */
export async function closedPort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}
