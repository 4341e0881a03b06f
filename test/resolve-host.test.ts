import { lookup } from 'node:dns/promises';
import net, { type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import t from 'tap';
import { asLookup, connectAddresses, isTransientDnsError, resolveHost } from '../src/net/resolve-host.ts';
import { startDnsServer } from './helpers/dns.ts';

// Host names of outbound connections, asked of a real DNS server on UDP 127.0.0.1
// (test/helpers/dns.ts): imap.test has an IPv6 and an IPv4 address, v4only.test answers A and
// drops AAAA queries, silent.test never answers, any other name does not exist there.

t.test(
  'connectAddresses: DNS first, the system resolver only for a name DNS says has no address',
  async (t) => {
    const dns = await startDnsServer(t, {
      'imap.test': { aaaa: ['2001:db8::25'], a: ['192.0.2.25'] },
      'v4only.test': { a: ['192.0.2.26'], aaaa: 'silent' },
      'loop.test': { a: ['127.0.0.1'] },
      'silent.test': 'silent',
    });
    const settings = { servers: [dns.server], timeoutMs: 600 };
    const addresses = async (host: string, signal?: AbortSignal) =>
      (await connectAddresses(host, settings, signal)).map((a) => a.address);

    t.same(await addresses('192.0.2.7'), ['192.0.2.7'], 'an IP literal as it is');
    t.same(await connectAddresses('::1', settings), [{ address: '::1', family: 6 }]);
    t.same(await addresses('localhost'), ['127.0.0.1', '::1'], 'localhost is loopback, asked of no one');
    t.notOk(dns.asked.length, 'no query for those');

    t.same(await addresses('imap.test'), ['192.0.2.25', '2001:db8::25'], 'both families, IPv4 first');
    t.same(
      (await resolveHost('IMAP.test.', settings)).map((a) => a.address),
      ['192.0.2.25', '2001:db8::25'],
      'the name case-folded and its root dot dropped',
    );
    t.ok(dns.asked.includes('A imap.test') && dns.asked.includes('AAAA imap.test'));

    // A server that drops AAAA queries: the A answer is used once the grace is over, well before
    // the look-up's limit, which would fail it.
    t.same(await addresses('v4only.test'), ['192.0.2.26'], 'the family that answered');
    t.ok(dns.asked.includes('AAAA v4only.test'), 'AAAA was asked');

    // Servers that never answer: the look-up ends at its limit, and the system resolver is not
    // asked after it (it would wait on the same silent servers, on a worker thread).
    const silent = await connectAddresses('silent.test', settings).catch((e: NodeJS.ErrnoException) => e);
    t.match(silent, { code: 'ETIMEOUT', message: /silent\.test took over 600 ms/ });
    t.ok(isTransientDnsError(silent), 'a failure of the servers, not of the name');
    t.ok(dns.asked.filter((q) => q === 'A silent.test').length >= 2, 'asked, and asked again');

    // A stop (shutdown) ends a look-up under way at once; one that comes first asks nobody.
    const stop = new AbortController();
    const pending = resolveHost('silent.test', { servers: [dns.server], timeoutMs: 20_000 }, stop.signal);
    setTimeout(() => stop.abort(), 50);
    t.match(await pending.catch((e: NodeJS.ErrnoException) => e), { code: 'ECANCELLED' });
    const already = new AbortController();
    already.abort();
    const asked = dns.asked.length;
    t.match(await connectAddresses('imap.test', settings, already.signal).catch((e) => e), {
      code: 'ECANCELLED',
    });
    t.equal(dns.asked.length, asked, 'no query was sent');

    // As a socket's lookup: the socket keeps the name and connects to what DNS gave.
    const server = net.createServer((socket) => socket.end('hello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const greeting = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({
        host: 'loop.test',
        port: (server.address() as AddressInfo).port,
        lookup: asLookup((name) => connectAddresses(name, settings)),
      });
      let got = '';
      socket.on('data', (chunk) => (got += chunk));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    });
    t.equal(greeting, 'hello', 'connected to loop.test through the lookup');
    const refused = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const socket = net.connect({
        host: 'silent.test',
        port: 1,
        lookup: asLookup((name) => connectAddresses(name, settings)),
      });
      socket.on('error', resolve);
    });
    t.match(refused, { code: 'ETIMEOUT' }, 'a silent name fails the connection on the look-up’s limit');

    // A name this DNS server says does not exist is asked of the system resolver (/etc/hosts,
    // search domains): this machine's own name is known there on most machines.
    const own = hostname();
    const system = await lookup(own, { all: true }).catch(() => undefined);
    if (!system) {
      t.comment(`skipped the fallback check: the system resolver does not know ${own}`);
    } else {
      t.same(await connectAddresses(own, settings), system, 'the system resolver’s answer');
      t.ok(dns.asked.includes(`A ${own.toLowerCase()}`), 'DNS was asked first');
    }
  },
);
