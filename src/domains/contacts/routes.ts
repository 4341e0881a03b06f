import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { listContacts } from './repository.ts';
import { ContactListQuery, ContactSchema, CreateContactBody, UpdateContactBody } from './schemas.ts';
import * as service from './service.ts';

export const ContactPage = PageOf(ref(ContactSchema), 'ContactPage');
export const contactSchemas = [ContactSchema, ContactPage];

const tags = ['contacts'];
const Contact = ref(ContactSchema);
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('contact') };

export const contactRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/contacts',
    {
      schema: {
        operationId: 'listContacts',
        tags,
        summary: 'List and search contacts',
        description: 'Every agent may list contacts, sorted by name. `q` searches names, emails and phones.',
        querystring: Type.Object({ ...PageQuery, ...ContactListQuery }, { additionalProperties: false }),
        response: { 200: ref(ContactPage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return listContacts(db, filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/contacts',
    {
      schema: {
        operationId: 'createContact',
        tags,
        summary: 'Create a contact',
        description:
          'Every agent may create contacts. Emails and phones belong to one contact at most (409 when another has one). Custom field keys must be defined under /v1/contact-fields (422 otherwise).',
        body: CreateContactBody,
        response: { 201: { ...Contact, headers: createdHeaders }, ...problems(409, 422) },
      },
    },
    async (request, reply) => {
      const contact = await service.createContact(db, request.body);
      reply.code(201).header('location', `/v1/contacts/${contact.id}`);
      return withEtag(reply, contact);
    },
  );

  app.get(
    '/v1/contacts/:id',
    {
      schema: {
        operationId: 'getContact',
        tags,
        summary: 'Get a contact',
        params: IdParams,
        response: { 200: { ...Contact, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getContact(db, request.params.id)),
  );

  app.patch(
    '/v1/contacts/:id',
    {
      schema: {
        operationId: 'updateContact',
        tags,
        summary: 'Update a contact',
        description:
          'Owners and admins may update every contact; any other agent only a contact with no live ticket they may not work (solver or more in each ticket’s department, its assignee, or no department), else 403 `contact_shared_beyond_you` and nothing changes: its emails decide where its tickets’ replies go. `emails` and `phones` replace the lists; `custom_fields` is merged (null removes a value). Send If-Match to avoid overwriting a newer version.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateContactBody,
        response: { 200: { ...Contact, headers: etagHeader }, ...problems(403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateContact(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/contacts/:id',
    {
      schema: {
        operationId: 'deleteContact',
        tags,
        summary: 'Delete a contact',
        description:
          'Owners and admins only. Refused with 409 (`contact_has_tickets`, the count in `blockers`) while tickets refer to the contact.',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(403, 404, 409, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteContact(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );
};
