import multipart, { type Multipart } from '@fastify/multipart';
import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Config } from '../../config.ts';
import { DomainError } from '../../errors.ts';
import { BlobTooLarge } from '../../storage/blobs.ts';

// multipart/form-data for the routes that take files, and only for them: registered inside
// their own plugin, so every other route still refuses it (415) and JSON stays the only body.
// Nothing is buffered: each file part is a stream the handler hands to the blob store.

/** Text fields of a form (the contact form's message is at most 20,000 characters). */
const FIELD_BYTES = 128 * 1024;
const MAX_FIELDS = 20;

export async function registerMultipart(app: FastifyInstance, limits: Config['attachments']) {
  await app.register(multipart, {
    limits: {
      // One byte more than allowed, so the blob store is the one that says "too large" (and
      // removes what it wrote), never a silently truncated file.
      fileSize: limits.maxBytes + 1,
      files: limits.maxFiles,
      fields: MAX_FIELDS,
      fieldSize: FIELD_BYTES,
      parts: limits.maxFiles + MAX_FIELDS,
    },
  });
}

const BUSBOY_ERRORS =
  /^(Unexpected end of multipart data|Multipart: Boundary not found|Boundary required|Part terminated early|Overflow\.)/;

export const tooLarge = (code: string, message: string) => new DomainError('too_large', code, message);

/** Turns what busboy and the blob store refuse into problem+json the client can act on. */
export function uploadError(error: unknown, limits: Config['attachments']): unknown {
  if (error instanceof BlobTooLarge) {
    return tooLarge(
      'attachment_too_large',
      `An attachment is larger than ${limits.maxBytes} bytes (ATTACHMENT_MAX_BYTES); nothing was stored.`,
    );
  }
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case 'FST_REQ_FILE_TOO_LARGE':
      return tooLarge(
        'attachment_too_large',
        `An attachment is larger than ${limits.maxBytes} bytes (ATTACHMENT_MAX_BYTES); nothing was stored.`,
      );
    case 'FST_FILES_LIMIT':
      return tooLarge(
        'too_many_attachments',
        `At most ${limits.maxFiles} files per request (ATTACHMENT_MAX_FILES); nothing was stored.`,
      );
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return tooLarge('too_many_parts', 'The form has too many parts; nothing was stored.');
    case 'FST_PROTO_VIOLATION':
    case 'FST_INVALID_JSON_FIELD_ERROR':
    case 'FST_MP_PREMATURE_CLOSE':
      return new DomainError('invalid', 'malformed_multipart', 'The multipart body is malformed.');
  }
  // busboy's own parse errors, which carry no code.
  if (error instanceof Error && code === undefined && BUSBOY_ERRORS.test(error.message)) {
    return new DomainError(
      'invalid',
      'malformed_multipart',
      `The multipart body is malformed: ${error.message}.`,
    );
  }
  return error;
}

/**
 * 415 for a request without a Content-Type to a route whose body is required. fastify reads no
 * body then and, with a schema per media type, has none to validate against: the handler would
 * get undefined.
 */
export function requireContentType(request: FastifyRequest) {
  if (request.headers['content-type'] === undefined) {
    throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE('(none)');
  }
}

/** 415 for a route that takes only multipart/form-data, answered like fastify's own. */
export function requireMultipart(request: FastifyRequest) {
  if (!request.isMultipart()) {
    throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(request.headers['content-type'] ?? '(none)');
  }
}

export type Part = Multipart;
