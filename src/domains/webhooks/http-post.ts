import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
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
}

/**
 * One POST, bounded in time (connect to end of response, `timeoutMs`) and in what it reads.
 * Redirects are not followed (Node's http never does; a 3xx is reported as a failure), and the
 * connected address is checked after DNS unless private addresses are allowed.
 */
export function postOnce(
  target: string,
  headers: Record<string, string>,
  body: string,
  options: { timeoutMs: number; allowPrivate: boolean },
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
    });
  }
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: Omit<PostOutcome, 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...outcome, latencyMs: elapsed() });
    };
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      // A fresh connection per attempt, so every attempt resolves and checks the address anew.
      agent: false,
      ...(!options.allowPrivate && { lookup: guardedLookup }),
    });
    const timer = setTimeout(() => {
      finish({ statusCode: null, error: `timed out after ${options.timeoutMs} ms`, body: '' });
      request.destroy();
    }, options.timeoutMs);
    request.on('error', (err: NodeJS.ErrnoException) => {
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
          // Enough read: the rest is not ours to wait for.
          response.destroy();
          request.destroy();
        }
      });
      response.on('end', done);
      response.on('error', () => done());
    });
    request.end(body);
  });
}
