import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { DomainError } from '../errors.ts';

/**
 * The ETag is a hash of the representation itself, so it changes exactly when what the client
 * saw changes (including derived fields such as member counts) with no version bookkeeping.
 */
export function etagOf(representation: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(representation)).digest('base64url').slice(0, 27)}"`;
}

export function withEtag<T>(reply: FastifyReply, representation: T): T {
  reply.header('etag', etagOf(representation));
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

/**
 * Honours If-Match (RFC 9110 13.1.1). Call it with the current representation while holding
 * the row lock, so the check and the write see the same version.
 */
export function assertIfMatch(request: FastifyRequest, current: unknown): void {
  const header = request.headers['if-match'];
  if (header === undefined) return;
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value.trim() === '*') return;
  const tag = etagOf(current);
  const offered = value.split(',').map((t) => t.trim().replace(/^W\//, ''));
  if (!offered.includes(tag)) {
    throw new DomainError(
      'precondition_failed',
      'stale_version',
      'The resource changed since you read it (If-Match does not match its ETag). Read it again and retry.',
    );
  }
}
