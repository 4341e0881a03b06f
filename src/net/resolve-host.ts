import { ADDRCONFIG, type LookupAddress, type LookupOptions } from 'node:dns';
import { lookup, Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { DnsSettings } from '../config.ts';

// Host names of outbound connections (webhooks, IMAP mailboxes), resolved without tying up
// libuv's worker threads while DNS does not answer.

/** Answers that say the name has no address; any other failure is the DNS servers' (transient). */
const NO_ADDRESS = new Set(['ENOTFOUND', 'ENODATA', 'EBADNAME', 'EBADRESP', 'EFORMERR']);

/**
 * Once one family has answered with addresses, how long the other is waited for: a server that
 * drops AAAA queries (some do) must not hold every look-up until the deadline.
 */
export const OTHER_FAMILY_GRACE_MS = 250;

const failure = (message: string, code: string) => Object.assign(new Error(message), { code });

/**
 * Every address of a host name, asked of DNS directly (c-ares, on the event loop). Not
 * `dns.lookup`: that is getaddrinfo on libuv's four worker threads, which password hashing and
 * file reads share, and a name whose servers never answer holds a thread for each look-up until
 * the system resolver gives up (10 s or more): a webhook aimed at such a name could stall every
 * sign-in. So /etc/hosts and resolv.conf's search domains are not used; `localhost` and
 * `*.localhost` are loopback (RFC 6761). A resolver per look-up reads resolv.conf as it is now,
 * and is cancelled at `timeoutMs` or when `signal` aborts, so no query outlives its look-up. A
 * family still silent OTHER_FAMILY_GRACE_MS after the other answered is given up.
 */
export async function resolveHost(
  host: string,
  dns: DnsSettings,
  signal?: AbortSignal,
): Promise<LookupAddress[]> {
  const name = host.toLowerCase().replace(/\.$/, '');
  if (signal?.aborted) throw failure(`the DNS look-up of ${name} was cancelled`, 'ECANCELLED');
  if (name === 'localhost' || name.endsWith('.localhost')) {
    return [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ];
  }
  // A third of the budget, then the rest for c-ares's second, doubled try.
  const resolver = new Resolver({ timeout: Math.max(50, Math.floor(dns.timeoutMs / 3)), tries: 2 });
  if (dns.servers.length > 0) resolver.setServers(dns.servers);
  const timers: NodeJS.Timeout[] = [];
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<LookupAddress[]>((resolve, reject) => {
      const found: LookupAddress[][] = [[], []];
      const errors: NodeJS.ErrnoException[] = [];
      let settled = 0;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolver.cancel();
        const addresses = [...found[0]!, ...found[1]!];
        if (addresses.length > 0) return resolve(addresses);
        // No address: a failure of the servers says more than "no such record" of the other family.
        reject(
          errors.find((e) => !NO_ADDRESS.has(e.code ?? '')) ??
            errors[0] ??
            // Both families answered with an empty list (c-ares says ENODATA instead, but never
            // throw undefined on its word).
            failure(`${name} has no address`, 'ENODATA'),
        );
      };
      const end = (error: Error) => {
        if (done) return;
        done = true;
        resolver.cancel();
        reject(error);
      };
      const ask = (i: 0 | 1, query: Promise<string[]>) =>
        query.then(
          (list) => {
            found[i] = list.map((address) => ({ address, family: i === 0 ? 4 : 6 }));
            if (++settled === 2) finish();
            else if (list.length > 0) timers.push(setTimeout(finish, OTHER_FAMILY_GRACE_MS));
          },
          (error: NodeJS.ErrnoException) => {
            errors.push(error);
            if (++settled === 2) finish();
          },
        );
      timers.push(
        setTimeout(
          // Addresses of one family in hand (its grace not over yet): those, not a failure.
          () =>
            found[0]!.length + found[1]!.length > 0
              ? finish()
              : end(failure(`the DNS look-up of ${name} took over ${dns.timeoutMs} ms`, 'ETIMEOUT')),
          dns.timeoutMs,
        ),
      );
      // The caller stopping (a shutdown) ends the look-up at once.
      onAbort = () => end(failure(`the DNS look-up of ${name} was cancelled`, 'ECANCELLED'));
      signal?.addEventListener('abort', onAbort, { once: true });
      void ask(0, resolver.resolve4(name));
      void ask(1, resolver.resolve6(name));
    });
  } finally {
    for (const timer of timers) clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

/** Whether a look-up failed for the servers' sake (timed out, refused, failing), not the name's. */
export function isTransientDnsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && !NO_ADDRESS.has(code);
}

/**
 * The addresses to connect to for a server an admin named (an IMAP mailbox's host), within
 * `dns.timeoutMs` and `signal`: asked of DNS with `resolveHost`, the worker threads free. Only
 * when DNS answered that the name has no address is the system resolver asked (getaddrinfo:
 * /etc/hosts, resolv.conf's search domains, such as a cluster's short service names), within
 * what is left of the same limit; DNS just answered, so it seldom waits on silent servers, and
 * if it does, the look-up still ends at the limit (the thread is freed when the system resolver
 * gives up).
 */
export async function connectAddresses(
  host: string,
  dns: DnsSettings,
  signal?: AbortSignal,
): Promise<LookupAddress[]> {
  const family = isIP(host);
  if (family) return [{ address: host, family }];
  const started = Date.now();
  try {
    return await resolveHost(host, dns, signal);
  } catch (error) {
    if (isTransientDnsError(error)) throw error;
  }
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      lookup(host, { all: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(failure(`the look-up of ${host} took over ${dns.timeoutMs} ms`, 'ETIMEOUT')),
          Math.max(0, dns.timeoutMs - (Date.now() - started)),
        );
        onAbort = () => reject(failure(`the look-up of ${host} was cancelled`, 'ECANCELLED'));
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net.connect, tls.connect and http.request over `resolveAll`: the socket keeps
 * the host name (SNI and the certificate are checked against it) and gets every address of the
 * family it asks for, as from the system resolver (Node's happy eyeballs tries them in turn).
 * `refuse` may turn the addresses down (the webhooks' address guard).
 */
export function asLookup(
  resolveAll: (hostname: string) => Promise<LookupAddress[]>,
  refuse: (hostname: string, addresses: LookupAddress[]) => NodeJS.ErrnoException | null = () => null,
): (hostname: string, options: LookupOptions, callback: LookupCallback) => void {
  return (hostname, options, callback) => {
    resolveAll(hostname).then(
      (all) => {
        // ADDRCONFIG (net.connect asks for it, as getaddrinfo does): no address of a family this
        // machine has no address of, such as IPv6 in a container without it, which would
        // otherwise cost a failed attempt of its own.
        const families = (options.hints ?? 0) & ADDRCONFIG ? configuredFamilies() : null;
        const addresses = all.filter(
          (a) =>
            (!options.family || a.family === options.family) &&
            (!families || families.has(a.family) || isLoopback(a.address)),
        );
        const refused =
          refuse(hostname, addresses) ??
          (addresses.length === 0
            ? failure(`${hostname} has no IPv${options.family} address`, 'ENODATA')
            : null);
        if (refused) return callback(refused, []);
        if (options.all) return callback(null, addresses);
        const first = addresses[0] as LookupAddress;
        callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, []),
    );
  };
}

/** The address families of this machine's non-loopback interfaces. */
function configuredFamilies(): Set<number> {
  const families = new Set<number>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) families.add(a.family === 'IPv6' ? 6 : 4);
  }
  return families;
}

const isLoopback = (address: string) => address === '::1' || address.startsWith('127.');
