import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorCodes, type FastifyRequest } from 'fastify';
import { ref } from '../../contract.ts';
import type { MailboxRow } from '../../db/types.ts';
import { DomainError, notFound } from '../../errors.ts';
import { principalOf } from '../../plugins/auth.ts';
import { sendHeadersOnly } from '../../plugins/head.ts';
import { problems } from '../../plugins/openapi.ts';
import { BlobMissing } from '../../storage/blobs.ts';
import { mailboxOfSecretHash } from '../mailboxes/repository.ts';
import { hashInboundSecret, INBOUND_SECRET_PREFIX } from '../mailboxes/service.ts';
import { cutWhenStalled } from '../reports/csv.ts';
import { requireReadable } from '../tickets/service.ts';
import { receiveMail } from './receive.ts';
import { rawBlobOf } from './repository.ts';
import { InboundReceiptSchema, RawMessageParams } from './schemas.ts';

export const mailInSchemas = [InboundReceiptSchema];

const RAW_TYPES = ['message/rfc822', 'text/plain', 'application/octet-stream'];
const RawMime = { description: 'The message as it came (RFC 5322), bytes untouched.', format: 'binary' };

const EXAMPLE_MAIL =
  'From: Alice <alice@example.com>\r\nTo: sales@acme.example\r\nSubject: Price list\r\nMessage-ID: <1234@example.com>\r\nDate: Fri, 04 Dec 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCould you send me your price list?\r\n';

const unauthenticated = () =>
  new DomainError(
    'unauthenticated',
    'invalid_inbound_secret',
    "Give a mailbox's inbound secret: Authorization: Bearer drm_..., or HTTP Basic with it as the password.",
  );

/** The inbound secret of an Authorization header: Bearer <secret>, or Basic with the secret as password. */
function secretOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const [scheme, value] = header.trim().split(/\s+/, 2);
  if (!value) return undefined;
  if (scheme?.toLowerCase() === 'bearer') return value;
  if (scheme?.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon < 0 ? undefined : decoded.slice(colon + 1);
  }
  return undefined;
}

export const mailInRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, blobs, config } = app;
  const mailboxOf = new WeakMap<FastifyRequest, MailboxRow>();

  // Raw mail is read only here, as bytes (encapsulated: every other route still answers 415).
  app.removeContentTypeParser(['text/plain']);
  app.addContentTypeParser(
    RAW_TYPES,
    { parseAs: 'buffer', bodyLimit: config.mailIn.maxBytes },
    (_request, body, done) => done(null, body),
  );

  app.post(
    '/v1/inbound/email',
    {
      bodyLimit: config.mailIn.maxBytes,
      config: { public: true },
      // The secret is checked before the body is read: an unknown caller sends no 25 MiB.
      onRequest: async (request) => {
        const secret = secretOf(request);
        if (!secret?.startsWith(INBOUND_SECRET_PREFIX) || secret.length > 200) throw unauthenticated();
        const mailbox = await mailboxOfSecretHash(db, hashInboundSecret(secret));
        if (!mailbox) throw unauthenticated();
        mailboxOf.set(request, mailbox);
      },
      preValidation: async (request) => {
        // The body schema is per media type, so a JSON body would pass unchecked: only raw mail.
        if (!Buffer.isBuffer(request.body)) {
          throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(String(request.headers['content-type']));
        }
        if (request.body.length === 0)
          throw new DomainError('invalid', 'empty_message', 'The message is empty.');
      },
      schema: {
        operationId: 'receiveInboundEmail',
        tags: ['mail in'],
        summary: 'Receive a raw email (webhook of a mail provider, or an MTA pipe)',
        description: `The body is the raw message (Content-Type message/rfc822, text/plain or application/octet-stream), at most INBOUND_MAIL_MAX_BYTES (25 MiB; larger: 413). No agent credentials: the mailbox's inbound secret authenticates (Authorization: Bearer drm_..., or HTTP Basic with the secret as password, any user name); the mail belongs to that mailbox. It is routed to the department owning the first support address in To, Cc, Delivered-To or X-Original-To, else to the mailbox's department; threaded by In-Reply-To / References, or by [Ticket#<number>] in the subject when the sender is that ticket's contact; else a new email ticket. Rules run as for every ticket. Answers 202 with what happened; the same Message-ID again answers duplicate and makes nothing new.`,
        body: {
          content: Object.fromEntries(
            RAW_TYPES.map((type) => [type, { schema: { ...RawMime, examples: [EXAMPLE_MAIL] } }]),
          ),
        },
        response: {
          202: ref(InboundReceiptSchema),
          ...problems(401, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const mailbox = mailboxOf.get(request)!;
      const received = await receiveMail(
        {
          db,
          blobs,
          log: request.log,
          maxAttachmentBytes: config.mailIn.maxBytes,
          mailFrom: config.mail.from,
        },
        { id: mailbox.id, department_id: mailbox.department_id },
        request.body as Buffer,
      );
      request.log.info(
        { mailboxId: mailbox.id, outcome: received.outcome, ticketId: received.ticket_id },
        'inbound mail received',
      );
      return reply.code(202).send(received);
    },
  );

  app.get(
    '/v1/tickets/:id/messages/:message_id/raw',
    {
      schema: {
        operationId: 'getRawMessage',
        tags: ['tickets'],
        summary: 'Download the mail a message came as',
        description:
          'The received message as it came (message/rfc822, Content-Disposition attachment), for those who may see the ticket. 404 when the ticket is out of reach or the message did not come by mail. A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut.',
        params: RawMessageParams,
        response: {
          200: {
            description: 'The raw message.',
            headers: {
              'Content-Disposition': {
                type: 'string',
                description: 'attachment; filename="<message id>.eml"',
                'x-required': true,
              },
              'X-Content-Type-Options': { type: 'string', enum: ['nosniff'], 'x-required': true },
            },
            content: { 'message/rfc822': { schema: RawMime } },
          },
          ...problems(404),
        },
      },
    },
    async (request, reply) => {
      await requireReadable(db, principalOf(request), request.params.id);
      const row = await rawBlobOf(db, request.params.id, request.params.message_id);
      if (!row?.raw_blob_key) throw notFound('message');
      let stream: Awaited<ReturnType<typeof blobs.get>>;
      try {
        stream = await blobs.get(row.raw_blob_key);
      } catch (error) {
        if (error instanceof BlobMissing) throw notFound('message');
        throw error;
      }
      reply
        .type('message/rfc822')
        .header('content-disposition', `attachment; filename="${request.params.message_id}.eml"`)
        .header('x-content-type-options', 'nosniff');
      if (request.method === 'HEAD') {
        // Found, not read (fastify would read the whole message to drop it).
        stream.destroy();
        return sendHeadersOnly(reply);
      }
      // A client that takes no data for EXPORT_STALL_TIMEOUT_MS is cut (an open file each, else).
      cutWhenStalled(reply, config.exports.stallTimeoutMs);
      return reply.send(stream);
    },
  );
};
