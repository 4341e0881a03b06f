import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { ApiTokenListQuery, ApiTokenSchema, CreateApiTokenBody, CreatedApiTokenSchema } from './schemas.ts';
import * as service from './service.ts';

export const ApiTokenPage = PageOf(ref(ApiTokenSchema), 'ApiTokenPage');
export const apiTokenSchemas = [ApiTokenSchema, CreatedApiTokenSchema, ApiTokenPage];

const tags = ['api-tokens'];

export const apiTokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/api-tokens',
    {
      schema: {
        operationId: 'createApiToken',
        tags,
        summary: 'Create an API token',
        description:
          'The token acts as you, limited to its scopes. Needs a signed-in session (a token cannot create tokens). The secret is in this response only.',
        body: CreateApiTokenBody,
        response: { 201: { ...ref(CreatedApiTokenSchema), headers: responseHeaders.location('API token') } },
      },
    },
    async (request, reply) => {
      const created = await service.createApiToken(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/api-tokens/${created.token.id}`);
      return created;
    },
  );

  app.get(
    '/v1/api-tokens',
    {
      schema: {
        operationId: 'listApiTokens',
        tags,
        summary: 'List API tokens',
        description: 'Your own tokens, newest first, revoked and expired ones included.',
        querystring: Type.Object({ ...PageQuery, ...ApiTokenListQuery }, { additionalProperties: false }),
        response: { 200: ref(ApiTokenPage) },
      },
    },
    async (request) => {
      const { limit, cursor, agent_id } = request.query;
      return service.listApiTokens(db, principalOf(request), agent_id, { limit, cursor });
    },
  );

  app.get(
    '/v1/api-tokens/:id',
    {
      schema: {
        operationId: 'getApiToken',
        tags,
        summary: 'Get an API token',
        params: IdParams,
        response: { 200: ref(ApiTokenSchema), ...problems(404) },
      },
    },
    async (request) => service.getApiToken(db, principalOf(request), request.params.id),
  );

  app.delete(
    '/v1/api-tokens/:id',
    {
      schema: {
        operationId: 'revokeApiToken',
        tags,
        summary: 'Revoke an API token',
        description: 'It stops working at once. Your own tokens; owners and admins may revoke anyone’s.',
        params: IdParams,
        response: { 204: { description: 'Revoked.', type: 'null' }, ...problems(404) },
      },
    },
    async (request, reply) => {
      await service.revokeApiToken(db, principalOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );
};
