import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { sendHeadersOnly } from '../../plugins/head.ts';
import { problems } from '../../plugins/openapi.ts';
import { cutWhenStalled } from '../reports/csv.ts';
import { registerMultipart, requireMultipart } from './multipart.ts';
import { AttachmentListSchema, AttachmentSchema, AttachmentSummarySchema } from './schemas.ts';
import { deleteStagedAttachment, listAttachments, openAttachment, stageUploads } from './service.ts';

export const attachmentSchemas = [AttachmentSummarySchema, AttachmentSchema, AttachmentListSchema];

const tags = ['tickets'];

/** RFC 6266 with an RFC 5987 UTF-8 name, and a plain ASCII one for old clients. */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** What a browser may do with a download: nothing but save it. */
const DOWNLOAD_CSP = "sandbox; default-src 'none'";

export const attachmentRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, blobs, config } = app;
  const limits = config.attachments;
  await registerMultipart(app, limits);

  app.post(
    '/v1/tickets/:id/attachments',
    {
      config: { upload: true },
      schema: {
        operationId: 'uploadTicketAttachments',
        tags,
        summary: 'Upload files to send with a reply',
        description: `multipart/form-data with one or more files (any field names, no other fields). They are staged on the ticket: name their ids in \`attachment_ids\` of POST /v1/tickets/{id}/messages to send them. Staged files nobody sends are removed after a day. Anyone who may work the ticket may upload; at most ATTACHMENT_MAX_FILES files (default 10) of ATTACHMENT_MAX_BYTES each (default 25 MiB), else 413 and nothing is stored. The content type is read from the bytes, never taken from the request.`,
        params: IdParams,
        body: {
          content: {
            'multipart/form-data': {
              schema: {
                type: 'object',
                properties: {
                  file: {
                    type: 'array',
                    items: { type: 'string', format: 'binary' },
                    description: 'One part per file; the part’s filename names it.',
                  },
                },
                examples: [{ file: ['<the bytes of invoice.pdf>', '<the bytes of photo.jpg>'] }],
              },
            },
          },
        },
        response: {
          201: {
            ...ref(AttachmentListSchema),
            description: 'The staged attachments, in the order sent.',
          },
          ...problems(404, 409, 413, 415),
        },
      },
    },
    async (request, reply) => {
      requireMultipart(request);
      const data = await stageUploads(
        db,
        blobs,
        principalOf(request),
        request.params.id,
        request.parts(),
        limits,
      );
      return reply.code(201).send({ data });
    },
  );

  app.get(
    '/v1/tickets/:id/attachments',
    {
      schema: {
        operationId: 'listTicketAttachments',
        tags,
        summary: 'A ticket’s attachments',
        description:
          'Every file of the ticket, oldest first: those that came with messages (message_id) and those staged for a reply (message_id null).',
        params: IdParams,
        response: { 200: ref(AttachmentListSchema), ...problems(404) },
      },
    },
    async (request) => ({ data: await listAttachments(db, principalOf(request), request.params.id) }),
  );

  app.get(
    '/v1/attachments/:id',
    {
      schema: {
        operationId: 'downloadAttachment',
        tags,
        summary: 'Download an attachment',
        description:
          'The bytes as stored, for those who may see the ticket (404 for everyone else). Always a download (Content-Disposition: attachment), never rendered inline: X-Content-Type-Options: nosniff and a sandboxing Content-Security-Policy keep a browser from running anything in it. A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut.',
        params: IdParams,
        response: {
          200: {
            description: 'The file; Content-Type is the sniffed type.',
            headers: {
              'Content-Disposition': {
                type: 'string',
                description: `attachment; filename="<ASCII name>"; filename*=UTF-8''<percent-encoded name> (RFC 6266, RFC 5987).`,
                'x-required': true,
              },
              'X-Content-Type-Options': { type: 'string', enum: ['nosniff'], 'x-required': true },
              'Content-Security-Policy': {
                type: 'string',
                description: `${DOWNLOAD_CSP}: nothing in the file runs.`,
                'x-required': true,
              },
              ETag: { type: 'string', description: 'The SHA-256 of the bytes.', 'x-required': true },
            },
            content: { '*/*': { schema: { type: 'string', format: 'binary' } } },
          },
          ...problems(404),
        },
      },
    },
    async (request, reply) => {
      const { attachment, content } = await openAttachment(
        db,
        blobs,
        principalOf(request),
        request.params.id,
      );
      const type =
        attachment.content_type === 'text/plain' ? 'text/plain; charset=utf-8' : attachment.content_type;
      const answer = reply
        .type(type)
        .header('content-length', attachment.size_bytes)
        .header('content-disposition', contentDisposition(attachment.filename))
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', DOWNLOAD_CSP)
        .header('cache-control', 'private, no-store')
        .header('etag', `"${attachment.sha256}"`);
      if (request.method === 'HEAD') {
        // The file was found (its absence is the GET's 404 too) but is not read: fastify would
        // read it to the end to drop it.
        content.destroy();
        return sendHeadersOnly(answer);
      }
      // A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut, as exports are: a stalled
      // download would otherwise hold its socket and an open file for ever.
      cutWhenStalled(reply, config.exports.stallTimeoutMs);
      // A stream is sent as it is; the type provider only knows the schema's string.
      return answer.send(content as never);
    },
  );

  app.delete(
    '/v1/attachments/:id',
    {
      schema: {
        operationId: 'deleteAttachment',
        tags,
        summary: 'Delete a staged attachment',
        description:
          'Only staged ones (not sent with a message: 409 otherwise), by their uploader or a supervisor of the ticket.',
        params: IdParams,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409) },
      },
    },
    async (request, reply) => {
      await deleteStagedAttachment(db, blobs, principalOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );
};
