import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { DnsSettings } from '../../config.ts';
import { guardedLookup, isPublicAddress } from './address-guard.ts';

/** Receivers' answers are kept for diagnosis only: past this, the socket is cut. */
export const RESPONSE_BODY_CAP = 4096;

export interface PostOutcome {
  /** The receiver's status, or null when none came (refused, timed out, reset). */
  statusCode: number | null;
  latencyMs: number;
  /** Why the attempt failed; null on a 2xx. */
  error: string | null;
  /** At most RESPONSE_BODY_CAP bytes of the answer. */
  body: string;
  /** Sent twice: a kept connection was closed under the first (the receiver may have read it). */
  resent: boolean;
}

/** How soon a kept connection's reset counts as closed under the attempt (see postOnce). */
const CLOSED_UNDER_US_MS = 1_000;

/**
 * One POST, bounded in time (connect to end of response, `timeoutMs`) and in what it reads.
 * Redirects are not followed (Node's http never does; a 3xx is reported as a failure), and the
 * connected address is checked after DNS unless private addresses are allowed.
 */
export function postOnce(
  target: string,
  headers: Record<string, string>,
  body: string,
  options: { timeoutMs: number; allowPrivate: boolean; dns: DnsSettings },
): Promise<PostOutcome> {
  const started = performance.now();
  const url = new URL(target);
  const elapsed = () => Math.round(performance.now() - started);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // An address literal never goes through `lookup`: check it here.
  if (!options.allowPrivate && isIP(host) && !isPublicAddress(host)) {
    return Promise.resolve({
      statusCode: null,
      latencyMs: 0,
      error: `refused: ${host} is not a public address`,
      body: '',
      resent: false,
    });
  }
  return new Promise((resolve) => {
    let settled = false;
    let resent = false;
    let current: http.ClientRequest | undefined;
    const finish = (outcome: Omit<PostOutcome, 'latencyMs' | 'resent'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...outcome, latencyMs: elapsed(), resent });
    };
    const timer = setTimeout(() => {
      finish({ statusCode: null, error: `timed out after ${options.timeoutMs} ms`, body: '' });
      current?.destroy();
    }, options.timeoutMs);
    const send = (reuse: boolean) => {
      const client = url.protocol === 'https:' ? https : http;
      const request = client.request(url, {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        // A connection kept per receiver: every new one resolves and checks the address anew.
        agent: reuse ? pooled(url.protocol, options.allowPrivate) : false,
        ...(!options.allowPrivate && { lookup: guardedLookup(options.dns) }),
      });
      current = request;
      let readBefore = 0;
      let assignedAt = 0;
      request.on('socket', (socket) => {
        readBefore = socket.bytesRead;
        assignedAt = performance.now();
      });
      request.on('error', (err: NodeJS.ErrnoException) => {
        // A kept connection the receiver closed as we wrote on it (Node's documented race, see
        // `request.reusedSocket`): closed at once, not a byte of an answer. The attempt goes
        // again on a new connection. A reset later, or after part of an answer, means the
        // receiver had the request: that is the attempt's outcome, retried with backoff.
        const closedUnderUs =
          (err.code === 'ECONNRESET' || err.code === 'EPIPE') &&
          request.reusedSocket &&
          (request.socket?.bytesRead ?? readBefore) === readBefore &&
          performance.now() - assignedAt < CLOSED_UNDER_US_MS;
        if (!settled && closedUnderUs) {
          resent = true;
          return send(false);
        }
        finish({
          statusCode: null,
          error:
            err.code === 'ENONPUBLIC' ? `refused: ${err.message}` : `${err.code ?? 'error'}: ${err.message}`,
          body: '',
        });
      });
      request.on('response', (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
          const text = Buffer.concat(chunks).subarray(0, RESPONSE_BODY_CAP).toString('utf8');
          const ok = status >= 200 && status < 300;
          const error = ok
            ? null
            : status >= 300 && status < 400
              ? `redirect ${status} not followed${response.headers.location ? ` (to ${String(response.headers.location).slice(0, 200)})` : ''}`
              : `HTTP ${status}`;
          finish({ statusCode: status, error, body: text });
        };
        response.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.length;
          if (size >= RESPONSE_BODY_CAP) {
            done();
            // Enough read: the rest is not ours to wait for (nor is the connection kept).
            response.destroy();
            request.destroy();
          }
        });
        response.on('end', done);
        response.on('error', () => done());
      });
      request.end(body);
    };
    send(true);
  });
}

/**
 * Kept connections, one pool per protocol and per guard: a connection made without the address
 * check (WEBHOOKS_ALLOW_PRIVATE) is never lent to a checked attempt. A POST on a kept connection
 * costs the sender a fraction of one that connects (scripts/bench/webhook-post-floor.ts). Idle
 * connections close after IDLE_MS, before a Node receiver's default 5 s keep-alive ends them.
 */
const IDLE_MS = 4_000;
const pools = new Map<string, http.Agent>();
function pooled(protocol: string, allowPrivate: boolean): http.Agent {
  const key = `${protocol}${allowPrivate ? 'private' : 'public'}`;
  let agent = pools.get(key);
  if (!agent) {
    const options = { keepAlive: true, timeout: IDLE_MS, maxFreeSockets: 64, scheduling: 'lifo' as const };
    agent = protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
    pools.set(key, agent);
  }
  return agent;
}
