import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import {
  CannedResponseListQuery,
  CannedResponseSchema,
  CreateCannedResponseBody,
  UpdateCannedResponseBody,
} from './schemas.ts';
import * as service from './service.ts';

export const CannedResponsePage = PageOf(ref(CannedResponseSchema), 'CannedResponsePage');
export const cannedResponseSchemas = [CannedResponseSchema, CannedResponsePage];

const tags = ['canned-responses'];
const CannedResponse = ref(CannedResponseSchema);
const etagHeader = responseHeaders.etag('update');
const BODY_ERRORS =
  '422 `invalid_template` when the body is not Liquid the help desk can fill (a variable or filter outside the documented set, docs/email.md), naming the line and column.';

export const cannedResponseRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/canned-responses',
    {
      schema: {
        operationId: 'listCannedResponses',
        tags,
        summary: 'Canned responses you may use',
        description:
          'The help-desk-wide ones and those of your departments (admins: all), sorted by title. `q` searches title and body; `department_id` narrows to that department’s (if yours) and the help-desk-wide ones.',
        querystring: Type.Object(
          { ...PageQuery, ...CannedResponseListQuery },
          { additionalProperties: false },
        ),
        response: { 200: ref(CannedResponsePage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return service.listCannedResponses(db, principalOf(request), filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/canned-responses',
    {
      schema: {
        operationId: 'createCannedResponse',
        tags,
        summary: 'Create a canned response',
        description: `Help-desk wide: owners and admins; a department's: also its managers. ${BODY_ERRORS}`,
        body: CreateCannedResponseBody,
        response: {
          201: {
            ...CannedResponse,
            headers: { ...etagHeader, ...responseHeaders.location('canned response') },
          },
          ...problems(422),
        },
      },
    },
    async (request, reply) => {
      const canned = await service.createCannedResponse(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/canned-responses/${canned.id}`);
      return withEtag(reply, canned);
    },
  );

  app.get(
    '/v1/canned-responses/:id',
    {
      schema: {
        operationId: 'getCannedResponse',
        tags,
        summary: 'Get a canned response',
        description: 'A department’s canned response answers 404 to agents outside the department.',
        params: IdParams,
        response: { 200: { ...CannedResponse, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) =>
      withEtag(reply, await service.getCannedResponse(db, principalOf(request), request.params.id)),
  );

  app.patch(
    '/v1/canned-responses/:id',
    {
      schema: {
        operationId: 'updateCannedResponse',
        tags,
        summary: 'Update a canned response',
        description: `Those who may create it. Its department does not change (create another). ${BODY_ERRORS}`,
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateCannedResponseBody,
        response: { 200: { ...CannedResponse, headers: etagHeader }, ...problems(404, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateCannedResponse(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/canned-responses/:id',
    {
      schema: {
        operationId: 'deleteCannedResponse',
        tags,
        summary: 'Delete a canned response',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteCannedResponse(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );
};
