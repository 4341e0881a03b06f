import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { TagCountSchema, TagListQuery, TagListSchema } from './schemas.ts';
import { listTags } from './service.ts';

export const tagSchemas = [TagCountSchema, TagListSchema];

export const tagRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/tags',
    {
      schema: {
        operationId: 'listTags',
        tags: ['tickets'],
        summary: 'Tags in use, with their ticket counts',
        description:
          'Every tag on the tickets you may see (deleted tickets aside), with how many of those tickets carry it, most used first: for tag pickers and report filters. Counted over your visible tickets only (an agent: their departments’ tickets, tickets in no department and tickets assigned to them), so tags that only tickets out of your reach carry are not listed. `q` keeps tags starting with it.',
        querystring: TagListQuery,
        response: { 200: ref(TagListSchema) },
      },
    },
    async (request) => listTags(db, principalOf(request), request.query),
  );
};
