import { once } from 'node:events';
import net from 'node:net';

/**
 * A TCP relay to PostgreSQL. With `holdCloseMs`, PostgreSQL's closing of a connection reaches
 * the client that much later than its last message, as over a real network where the FATAL and
 * the FIN arrive in separate reads. `freeze()` stops it passing anything on while every socket
 * stays open, as in a partition that no reset reaches.
 */
export function relayTo(host: string, port: number, { holdCloseMs = 0 } = {}) {
  const sockets = new Set<net.Socket>();
  let frozen = false;
  const server = net.createServer((inbound) => {
    const outbound = net.connect(port, host);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    inbound.on('data', (chunk) => {
      if (!frozen) outbound.write(chunk);
    });
    outbound.on('data', (chunk) => {
      if (!frozen) inbound.write(chunk);
    });
    outbound.on('close', () => setTimeout(() => inbound.destroy(), holdCloseMs));
    inbound.on('close', () => outbound.destroy());
  });
  return {
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
