import { setTimeout as sleep } from 'node:timers/promises';

/** What a 503 caused by an absent database tells clients to wait before retrying. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

// Socket-level failures: PostgreSQL is not there, or the path to it broke. Name lookups too (a
// DNS blip while a managed database fails over); a misspelt host shows in the log all the same.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

// What pg and pg-pool throw, as plain Errors with no code, when a connection is lost or cannot
// be made in time (node_modules/pg/lib/client.js, node_modules/pg-pool/index.js). Matched in
// full: a message merely containing these words is not a lost connection.
const DRIVER_MESSAGES = new Set([
  'Connection terminated unexpectedly',
  'Connection terminated due to connection timeout',
  'timeout exceeded when trying to connect',
  'timeout expired',
  'Client has encountered a connection error and is not queryable',
]);

// SQLSTATEs PostgreSQL sends when it is going away, coming up or full: 08 is the whole
// "connection exception" class; 57P01-57P03 are the shutdown and start-up refusals; 53300 is
// too_many_connections. Everything else (syntax, constraint, our own SQL) stays a 500 or its
// mapped 4xx, so a bug of ours is never passed off as an outage.
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * True when `error` means PostgreSQL is unreachable for now (refused, reset, timed out, shut
 * down, starting up, full), as opposed to a query that PostgreSQL answered with an error.
 */
export function isDatabaseUnreachable(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 4) return false;
  // fastify's own errors carry the status it chose: a client that hung up mid-upload also
  // surfaces as ECONNRESET ("aborted"), and is no database outage.
  if ('statusCode' in error) return false;
  const { code, message, cause, errors } = error as {
    code?: unknown;
    message?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code)) return true;
    // A SQLSTATE comes on pg's DatabaseError, which carries a severity.
    // 08P01 (protocol_violation) is a message of ours PostgreSQL could not read: a bug, not an outage.
    if ('severity' in error && ((code.startsWith('08') && code !== '08P01') || SQLSTATES.has(code)))
      return true;
  } else if (typeof message === 'string' && DRIVER_MESSAGES.has(message)) {
    return true;
  }
  // Node reports a refused connection to every address of a host as an AggregateError.
  if (Array.isArray(errors) && errors.length > 0) {
    return errors.every((e) => isDatabaseUnreachable(e, depth + 1));
  }
  // pg-pool wraps a connection timeout around the socket's own error.
  return cause !== undefined && isDatabaseUnreachable(cause, depth + 1);
}

export interface BackoffLog {
  warn(details: object, message: string): void;
}

/**
 * Runs `attempt` until it succeeds, waiting with exponential backoff (from `firstDelayMs`,
 * doubling, at most `maxDelayMs`, with jitter) after each failure that means the database is
 * unreachable; any other failure is thrown. Never gives up on an absent database: a server
 * started before its database (a host booting, a compose file) simply waits for it.
 */
export async function retryWhileUnreachable<T>(
  attempt: () => Promise<T>,
  log: BackoffLog,
  what: string,
  { firstDelayMs = 250, maxDelayMs = 5_000 } = {},
): Promise<T> {
  let delayMs = firstDelayMs;
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isDatabaseUnreachable(error)) throw error;
      const waitMs = Math.round(delayMs * (0.75 + Math.random() * 0.5));
      log.warn(
        { attempt: tries, retryInMs: waitMs, reason: describe(error) },
        `database unreachable while ${what}; retrying`,
      );
      await sleep(waitMs);
      delayMs = Math.min(delayMs * 2, maxDelayMs);
    }
  }
}

/** A short, secret-free account of a connection failure for the log. */
export function describe(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return [code, message].filter((part) => typeof part === 'string' && part !== '').join(': ');
}
