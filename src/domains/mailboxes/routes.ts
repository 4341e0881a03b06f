import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { CreateMailboxBody, MailboxSchema, MailboxWithSecretSchema, UpdateMailboxBody } from './schemas.ts';
import * as service from './service.ts';

export const MailboxPage = PageOf(ref(MailboxSchema), 'MailboxPage');
export const mailboxSchemas = [MailboxSchema, MailboxWithSecretSchema, MailboxPage];

const tags = ['mailboxes'];
const WHO = 'Owners and admins only (mailboxes hold credentials of outside servers). ';
const SECRETS =
  'Passwords are write-only: responses say password_set. The inbound secret is shown on create and rotate only.';

export const mailboxRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/mailboxes',
    {
      schema: {
        operationId: 'createMailbox',
        tags,
        summary: 'Connect a mailbox',
        description: `${WHO}An IMAP mailbox is read by the server (IDLE or polling); every mailbox also takes raw mail at POST /v1/inbound/email with its inbound secret. 409 address_of_department when its address or IMAP username is another department’s support address. ${SECRETS}`,
        body: CreateMailboxBody,
        response: {
          201: { ...ref(MailboxWithSecretSchema), headers: responseHeaders.location('mailbox') },
          ...problems(403, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const created = await service.createMailbox(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/mailboxes/${created.id}`);
      return created;
    },
  );

  app.get(
    '/v1/mailboxes',
    {
      schema: {
        operationId: 'listMailboxes',
        tags,
        summary: 'List mailboxes',
        description: `${WHO}Oldest first.`,
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: ref(MailboxPage), ...problems(403) },
      },
    },
    async (request) => service.listMailboxes(db, principalOf(request), request.query),
  );

  app.get(
    '/v1/mailboxes/:id',
    {
      schema: {
        operationId: 'getMailbox',
        tags,
        summary: 'Get a mailbox',
        description: `${WHO}${SECRETS}`,
        params: IdParams,
        response: { 200: ref(MailboxSchema), ...problems(403, 404) },
      },
    },
    async (request) => service.getMailbox(db, principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/mailboxes/:id',
    {
      schema: {
        operationId: 'updateMailbox',
        tags,
        summary: 'Change a mailbox',
        description: `${WHO}New IMAP settings or re-activation make the watcher try again at once; a new host, username or folder is read from its start (mail already received is recognised by its Message-ID). A new IMAP host, port or username without imap.password answers 422 password_required: the stored password never goes to another server. 409 address_of_department when its address, IMAP username or department would make it receive at another department’s support address. ${SECRETS}`,
        params: IdParams,
        body: UpdateMailboxBody,
        response: { 200: ref(MailboxSchema), ...problems(403, 404, 409, 422) },
      },
    },
    async (request) => service.updateMailbox(db, principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/mailboxes/:id',
    {
      schema: {
        operationId: 'deleteMailbox',
        tags,
        summary: 'Delete a mailbox',
        description: `${WHO}Tickets and messages it brought stay.`,
        params: IdParams,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(403, 404) },
      },
    },
    async (request, reply) => {
      await service.deleteMailbox(db, principalOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/mailboxes/:id/rotate-secret',
    {
      schema: {
        operationId: 'rotateMailboxSecret',
        tags,
        summary: 'Make a new inbound secret',
        description: `${WHO}The previous secret stops working at once. Answers the new one (this once).`,
        params: IdParams,
        response: { 200: ref(MailboxWithSecretSchema), ...problems(403, 404) },
      },
    },
    async (request) => service.rotateInboundSecret(db, principalOf(request), request.params.id),
  );
};
