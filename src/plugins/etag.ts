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

export const IfMatchHeaders = Type.Object({
  'if-match': Type.Optional(
    Type.String({
      maxLength: 1000,
      description: 'The ETag last read; the change is refused with 412 if the resource changed since.',
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
