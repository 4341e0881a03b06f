import type { LookupAddress } from 'node:dns';
import { lookup, Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { DnsSettings } from '../config.ts';

// Host names of outbound connections (webhooks, IMAP mailboxes), resolved without tying up
// libuv's worker threads while DNS does not answer.

/** Answers that say the name has no address; any other failure is the DNS servers' (transient). */
const NO_ADDRESS = new Set(['ENOTFOUND', 'ENODATA', 'EBADNAME', 'EBADRESP', 'EFORMERR']);

/**
 * Every address of a host name, asked of DNS directly (c-ares, on the event loop). Not
 * `dns.lookup`: that is getaddrinfo on libuv's four worker threads, which password hashing and
 * file reads share, and a name whose servers never answer holds a thread for each look-up until
 * the system resolver gives up (10 s or more): a webhook aimed at such a name could stall every
 * sign-in. So /etc/hosts and resolv.conf's search domains are not used; `localhost` and
 * `*.localhost` are loopback (RFC 6761). A resolver per look-up reads resolv.conf as it is now,
 * and is cancelled at `timeoutMs`, so no query outlives its look-up.
 */
export async function resolveHost(
  host: string,
  dns: DnsSettings,
  signal?: AbortSignal,
): Promise<LookupAddress[]> {
  const name = host.toLowerCase().replace(/\.$/, '');
  if (name === 'localhost' || name.endsWith('.localhost')) {
    return [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ];
  }
  // A third of the budget, then the rest for c-ares's second, doubled try.
  const resolver = new Resolver({ timeout: Math.max(50, Math.floor(dns.timeoutMs / 3)), tries: 2 });
  if (dns.servers.length > 0) resolver.setServers(dns.servers);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    const end = (error: Error) => {
      resolver.cancel();
      reject(error);
    };
    timer = setTimeout(
      () =>
        end(
          Object.assign(new Error(`the DNS look-up of ${name} took over ${dns.timeoutMs} ms`), {
            code: 'ETIMEOUT',
          }),
        ),
      dns.timeoutMs,
    );
    // The caller stopping (a shutdown) ends the look-up at once.
    onAbort = () =>
      end(Object.assign(new Error(`the DNS look-up of ${name} was cancelled`), { code: 'ECANCELLED' }));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const [v4, v6] = await Promise.race([
      Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]),
      deadline,
    ]);
    const addresses: LookupAddress[] = [
      ...(v4.status === 'fulfilled' ? v4.value.map((address) => ({ address, family: 4 })) : []),
      ...(v6.status === 'fulfilled' ? v6.value.map((address) => ({ address, family: 6 })) : []),
    ];
    if (addresses.length > 0) return addresses;
    // No address: a failure of the servers says more than "no such record" of the other family.
    const reasons = [v4, v6].flatMap((r) =>
      r.status === 'rejected' ? [r.reason as NodeJS.ErrnoException] : [],
    );
    throw (
      reasons.find((r) => !NO_ADDRESS.has(r.code ?? '')) ??
      reasons[0] ??
      // Both families answered with an empty list (c-ares says ENODATA instead, but never throw
      // undefined on its word).
      Object.assign(new Error(`${name} has no address`), { code: 'ENODATA' })
    );
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** Whether a look-up failed for the servers' sake (timed out, refused, failing), not the name's. */
export function isTransientDnsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && !NO_ADDRESS.has(code);
}

/**
 * The address to connect to for a server an admin named (an IMAP mailbox's host): an IP literal
 * as it is; a name asked of DNS with `resolveHost` (bounded by `dns.timeoutMs`, the worker
 * threads free), IPv4 first. Only when DNS answered that the name has no address is the system
 * resolver asked (getaddrinfo: /etc/hosts, resolv.conf's search domains, such as a cluster's
 * short service names): DNS just answered, so it does not wait on silent servers. The caller
 * connects to the address and verifies TLS against the name (SNI, certificate).
 */
export async function connectAddress(host: string, dns: DnsSettings, signal?: AbortSignal): Promise<string> {
  if (isIP(host)) return host;
  let addresses: LookupAddress[];
  try {
    addresses = await resolveHost(host, dns, signal);
  } catch (error) {
    if (isTransientDnsError(error)) throw error;
    addresses = await lookup(host, { all: true });
  }
  const first = addresses.find((a) => a.family === 4) ?? addresses[0];
  if (!first) throw Object.assign(new Error(`${host} has no address`), { code: 'ENODATA' });
  return first.address;
}
