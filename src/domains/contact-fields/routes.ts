import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { listContactFields } from './repository.ts';
import { ContactFieldSchema, CreateContactFieldBody, UpdateContactFieldBody } from './schemas.ts';
import * as service from './service.ts';

export const ContactFieldPage = PageOf(ref(ContactFieldSchema), 'ContactFieldPage');
export const contactFieldSchemas = [ContactFieldSchema, ContactFieldPage];

const tags = ['contacts'];
const ContactField = ref(ContactFieldSchema);
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('contact field') };

export const contactFieldRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/contact-fields',
    {
      schema: {
        operationId: 'listContactFields',
        tags,
        summary: 'List contact fields',
        description: 'The custom fields contacts may carry, sorted by key. Every agent may list them.',
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: ref(ContactFieldPage) },
      },
    },
    async (request) => listContactFields(db, request.query),
  );

  app.post(
    '/v1/contact-fields',
    {
      schema: {
        operationId: 'createContactField',
        tags,
        summary: 'Define a contact field',
        description: 'Owners and admins only. `options` is required for type choice and refused otherwise.',
        body: CreateContactFieldBody,
        response: { 201: { ...ContactField, headers: createdHeaders }, ...problems(409) },
      },
    },
    async (request, reply) => {
      const field = await service.createContactField(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/contact-fields/${field.id}`);
      return withEtag(reply, field);
    },
  );

  app.get(
    '/v1/contact-fields/:id',
    {
      schema: {
        operationId: 'getContactField',
        tags,
        summary: 'Get a contact field',
        params: IdParams,
        response: { 200: { ...ContactField, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getContactField(db, request.params.id)),
  );

  app.patch(
    '/v1/contact-fields/:id',
    {
      schema: {
        operationId: 'updateContactField',
        tags,
        summary: 'Update a contact field',
        description:
          'Owners and admins only. The label may always change. Key and type change only while no contact has a value for the field and no active automation rule reads it, and a choice field drops an option only while no contact has chosen it and no active rule compares the field with it (409 otherwise, with the contacts counted and the rules named in `blockers`). Send If-Match to avoid overwriting a newer version.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateContactFieldBody,
        response: { 200: { ...ContactField, headers: etagHeader }, ...problems(404, 409, 412) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateContactField(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/contact-fields/:id',
    {
      schema: {
        operationId: 'deleteContactField',
        tags,
        summary: 'Delete a contact field',
        description:
          "Owners and admins only. Every contact's value for the field goes with it. Refused (409 `contact_field_in_use`, the rules named in `blockers`) while active automation rules read the field.",
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteContactField(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );
};
