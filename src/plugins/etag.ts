import { createHash } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { DomainError } from '../errors.ts';

/**
 * The ETag is a hash of the representation itself, so it changes exactly when what the client
 * saw changes (including derived fields such as member counts) with no version bookkeeping.
 */
export function etagOf(representation: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(representation)).digest('base64url').slice(0, 27)}"`;
}

/**
 * Sends the representation with its ETag. `version` is what the ETag hashes when part of the
 * representation is live state rather than something a write could make stale (an agent's
 * presence); it defaults to the whole representation.
 */
export function withEtag<T>(reply: FastifyReply, representation: T, version: unknown = representation): T {
  reply.header('etag', etagOf(version));
  return representation;
}

/**
 * If-Match as RFC 9110 13.1.1 writes it: `*`, or entity tags (quoted, optionally `W/`) separated
 * by commas. A value that is neither is the client's mistake (an ETag with its quotes stripped, a
 * version number): refused with 400 rather than 412, which would send the client to read the
 * resource again and retry a request that can never succeed. ASCII only (RFC 9110's obs-text
 * left out): every ETag this server sends is, and a pattern without \u escapes reads the same in
 * every validator's regular expressions.
 */
const ENTITY_TAG = '(W/)?"[!#-~]*"';
export const IF_MATCH_PATTERN = `^\\s*(\\*|${ENTITY_TAG}(\\s*,\\s*${ENTITY_TAG})*)\\s*$`;

export const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({
      maxLength: 1000,
      pattern: IF_MATCH_PATTERN,
      description:
        'The ETag last read, with its quotes (or `*`, or several ETags separated by commas); the change is refused with 412 if the resource changed since. A value that is not an entity tag is refused with 400.',
    }),
  ),
});

/** The conditions of a write, as plain values the routes read from the request's headers. */
export interface Preconditions {
  /** The If-Match header as sent: undefined makes the write unconditional. */
  ifMatch?: string | undefined;
}

/**
 * Honours If-Match (RFC 9110 13.1.1). Call it with the current representation while holding
 * the row lock, so the check and the write see the same version.
 */
export function assertIfMatch(ifMatch: string | undefined, current: unknown): void {
  if (ifMatch === undefined) return;
  if (ifMatch.trim() === '*') return;
  const tag = etagOf(current);
  const offered = ifMatch.split(',').map((t) => t.trim().replace(/^W\//, ''));
  if (!offered.includes(tag)) {
    throw new DomainError(
      'precondition_failed',
      'stale_version',
      'The resource changed since you read it (If-Match does not match its ETag). Read it again and retry.',
    );
  }
}
