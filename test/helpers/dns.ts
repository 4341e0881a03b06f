import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import dnsPacket from 'dns-packet';

/** What the test DNS server answers for a name: its addresses, or nothing at all ('silent'). */
export type Zone = Record<string, { a?: string[] | 'silent'; aaaa?: string[] | 'silent' } | 'silent'>;

const NXDOMAIN = 3;

/**
 * A real DNS server on UDP 127.0.0.1: answers the zone's A and AAAA records, NXDOMAIN for any
 * other name, and never answers a 'silent' one (a name whose servers are down), or a silent type
 * of query of a name. `asked` lists
 * the queries it got, as "A name".
 */
export async function startDnsServer(t: { teardown(fn: () => unknown): void }, zone: Zone) {
  const socket = dgram.createSocket('udp4');
  const asked: string[] = [];
  socket.on('message', (message, from) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    asked.push(`${question.type} ${name}`);
    const entry = zone[name];
    if (entry === 'silent') return;
    const data = entry ? (question.type === 'A' ? entry.a : question.type === 'AAAA' ? entry.aaaa : []) : [];
    // A server that drops one type of query (some drop AAAA) and answers the other.
    if (data === 'silent') return;
    const answers = (data ?? []).map((address) => ({
      type: question.type as 'A' | 'AAAA',
      class: 'IN' as const,
      name: question.name,
      ttl: 60,
      data: address,
    }));
    const response = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (entry ? 0 : NXDOMAIN),
      questions: query.questions,
      answers,
    });
    socket.send(response, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { server: `127.0.0.1:${(socket.address() as AddressInfo).port}`, asked };
}
