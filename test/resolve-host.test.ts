import { lookup } from 'node:dns/promises';
import { hostname } from 'node:os';
import t from 'tap';
import { connectAddress, isTransientDnsError, resolveHost } from '../src/net/resolve-host.ts';
import { startDnsServer } from './helpers/dns.ts';

// Host names of outbound connections, asked of a real DNS server on UDP 127.0.0.1
// (test/helpers/dns.ts): imap.test has an IPv6 and an IPv4 address, silent.test never answers,
// any other name does not exist there.

t.test(
  'connectAddress: DNS first, the system resolver only for a name DNS says has no address',
  async (t) => {
    const dns = await startDnsServer(t, {
      'imap.test': { aaaa: ['2001:db8::25'], a: ['192.0.2.25'] },
      'silent.test': 'silent',
    });
    const settings = { servers: [dns.server], timeoutMs: 600 };

    t.equal(await connectAddress('192.0.2.7', settings), '192.0.2.7', 'an IP literal as it is');
    t.equal(await connectAddress('::1', settings), '::1');
    t.equal(
      await connectAddress('localhost', settings),
      '127.0.0.1',
      'localhost is loopback, asked of no one',
    );
    t.notOk(dns.asked.length, 'no query for those');

    t.equal(await connectAddress('imap.test', settings), '192.0.2.25', 'IPv4 first');
    t.same(
      (await resolveHost('IMAP.test.', settings)).map((a) => a.address).sort(),
      ['192.0.2.25', '2001:db8::25'],
      'both families, the name case-folded and its root dot dropped',
    );
    t.ok(dns.asked.includes('A imap.test') && dns.asked.includes('AAAA imap.test'));

    // Servers that never answer: the look-up ends at its limit, and the system resolver is not
    // asked after it (it would wait on the same silent servers, on a worker thread).
    const silent = await connectAddress('silent.test', settings).catch((e: NodeJS.ErrnoException) => e);
    t.match(silent, { code: 'ETIMEOUT', message: /silent\.test took over 600 ms/ });
    t.ok(isTransientDnsError(silent), 'a failure of the servers, not of the name');
    t.ok(dns.asked.filter((q) => q === 'A silent.test').length >= 2, 'asked, and asked again');

    // A stop (shutdown) ends a look-up under way at once.
    const stop = new AbortController();
    const pending = resolveHost('silent.test', { servers: [dns.server], timeoutMs: 20_000 }, stop.signal);
    setTimeout(() => stop.abort(), 50);
    t.match(await pending.catch((e: NodeJS.ErrnoException) => e), { code: 'ECANCELLED' });
    const already = new AbortController();
    already.abort();
    t.match(await resolveHost('silent.test', settings, already.signal).catch((e) => e), {
      code: 'ECANCELLED',
    });

    // A name this DNS server says does not exist is asked of the system resolver (/etc/hosts,
    // search domains): this machine's own name is known there on most machines.
    const own = hostname();
    const system = await lookup(own).catch(() => undefined);
    if (!system) {
      t.comment(`skipped the fallback check: the system resolver does not know ${own}`);
    } else {
      t.equal(await connectAddress(own, settings), system.address, 'the system resolver’s answer');
      t.ok(dns.asked.includes(`A ${own.toLowerCase()}`), 'DNS was asked first');
    }
  },
);
