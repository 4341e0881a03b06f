import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { DnsSettings } from '../../config.ts';
import { DomainError, unavailable } from '../../errors.ts';
import { asLookup, isTransientDnsError, resolveHost } from '../../net/resolve-host.ts';

export const MAX_URL_LENGTH = 2048;

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Only plain public unicast addresses may receive webhooks. ipaddr.js names every special range
 * (loopback, private, uniqueLocal, linkLocal, carrierGradeNat, multicast, unspecified, broadcast,
 * reserved, 6to4, teredo, rfc6052 NAT64, ...); anything but 'unicast' is refused. `process()`
 * first turns IPv4-mapped IPv6 (::ffff:127.0.0.1) into the IPv4 address it carries. Cloud
 * metadata addresses fall in those ranges: 169.254.169.254 (link-local), fd00:ec2::254 (ULA),
 * 100.100.100.200 (CGNAT).
 */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  const parsed = ipaddr.process(address);
  if (parsed.range() !== 'unicast') return false;
  // ipaddr.js calls what it has no name for 'unicast', which for IPv6 includes the rest of ::/8
  // (IPv4-compatible ::127.0.0.1, deprecated, routed to IPv4 by some stacks) and other reserved
  // space. Global unicast is 2000::/3 only (RFC 4291 2.5.4, IANA's IPv6 address space).
  return parsed.kind() === 'ipv4' || parsed.match(GLOBAL_UNICAST_V6);
}

function refused(code: string, message: string): DomainError {
  const error = new DomainError('unprocessable', code, message);
  error.errors = [{ field: 'body/url', message }];
  return error;
}

/** The URL as written, refused when it is not one we may POST to (write time). */
export async function checkWebhookUrl(raw: string, allowPrivate: boolean, dns: DnsSettings): Promise<string> {
  if (raw.length > MAX_URL_LENGTH) {
    throw refused('webhook_url_invalid', `must be at most ${MAX_URL_LENGTH} characters`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refused('webhook_url_invalid', 'must be an absolute http or https URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw refused('webhook_url_invalid', 'must be an http or https URL');
  }
  if (url.username || url.password) {
    throw refused('webhook_url_invalid', 'must not carry credentials (user:password@)');
  }
  if (allowPrivate) return url.toString();
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await resolveHost(host, dns)).map((a) => a.address);
    } catch (error) {
      // The URL may be right: it cannot be checked now. Not the client's mistake, so not a 4xx.
      if (isTransientDnsError(error)) {
        throw unavailable(
          'webhook_dns_unavailable',
          `The host name ${host} could not be looked up now (${(error as NodeJS.ErrnoException).code}); retry shortly.`,
          5,
        );
      }
      throw refused('webhook_url_unresolvable', `the host name ${host} does not resolve`);
    }
  }
  const blocked = addresses.find((a) => !isPublicAddress(a));
  if (blocked !== undefined || addresses.length === 0) {
    throw refused(
      'webhook_url_not_public',
      `resolves to ${blocked ?? 'nothing'}, a loopback, private, link-local or otherwise non-public address (set WEBHOOKS_ALLOW_PRIVATE=true to allow)`,
    );
  }
  return url.toString();
}

export class NonPublicAddressError extends Error {
  override name = 'NonPublicAddressError';
  readonly code = 'ENONPUBLIC';
}

/**
 * A `lookup` for http.request: the addresses the socket will connect to are the ones checked, so
 * a host name that resolves to a public address at write time and to 127.0.0.1 later (DNS
 * rebinding) is refused when it matters.
 */
export function guardedLookup(dns: DnsSettings) {
  return asLookup(
    (hostname) => resolveHost(hostname, dns),
    (hostname, addresses) => {
      const blocked = addresses.find((a) => !isPublicAddress(a.address));
      return blocked || addresses.length === 0
        ? new NonPublicAddressError(
            `${hostname} resolves to ${blocked?.address ?? 'nothing'}, not a public address`,
          )
        : null;
    },
  );
}
