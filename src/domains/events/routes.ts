import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { EventSchema, eventSchemas } from './catalogue.ts';
import * as service from './service.ts';

export const EventFeedPage = Type.Object(
  {
    data: Type.Array(ref(EventSchema)),
    next_cursor: Type.String({
      description:
        'Where to resume: pass it as `after` next time. Never null; it may move on even when `data` is empty (past rows you cannot see).',
    }),
  },
  { $id: 'EventFeedPage', additionalProperties: false },
);
export const AuditLogPage = PageOf(ref(EventSchema), 'AuditLogPage');
export const eventRouteSchemas = [...eventSchemas, EventFeedPage, AuditLogPage];

const tags = ['events'];
const TypesQuery = (description: string) => Type.Optional(Type.String({ maxLength: 2000, description }));

// Events are a oneOf over some thirty types: fast-json-stringify would try each variant per
// event. The handlers build every event from the catalogue's own mapping (tested against the
// schema), so plain JSON.stringify is both right and fast here.
const stringify = () => (data: unknown) => JSON.stringify(data);

export const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/events',
    {
      serializerCompiler: stringify,
      schema: {
        operationId: 'listEvents',
        tags,
        summary: 'Read the event feed',
        description:
          'Every event, oldest first, resumable: pass the `next_cursor` you got as `after` and you get each event exactly once, across restarts and server instances. An event appears once the transactions before it have ended, so a slow writer can never be skipped. Filtered by what you may see: ticket events of tickets you can see (the ticket visibility policy, applied to the ticket as it is now); settings events only for owners and admins (left out for others, not refused). Without `after`, the feed starts at its beginning.',
        querystring: Type.Object(
          {
            after: Type.Optional(
              Type.String({ minLength: 1, maxLength: 200, description: 'A `next_cursor` from this feed.' }),
            ),
            types: TypesQuery('Comma-separated event types, e.g. `ticket.created,ticket.customer_replied`.'),
            department_id: Type.Optional(Uuid('Only events concerning this department.')),
            limit: Type.Integer({
              minimum: 1,
              maximum: 1000,
              default: 100,
              description: 'Page size (1-1000).',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(EventFeedPage) },
      },
    },
    async (request) => service.listEvents(db, principalOf(request), request.query),
  );

  app.get(
    '/v1/audit-log',
    {
      serializerCompiler: stringify,
      schema: {
        operationId: 'listAuditLog',
        tags,
        summary: 'Read the audit log',
        description:
          'Settings changes (departments, members, agents, rules, API tokens, webhooks, notification defaults, contact fields), newest first, with who made them, including what a change did elsewhere (a deletion’s rewritten rules, memberships, tokens and webhooks carry a `reason`). Owners and admins only.',
        querystring: Type.Object(
          {
            ...PageQuery,
            actor_agent_id: Type.Optional(
              Uuid('Only changes made by this agent (in person or through a token).'),
            ),
            from: Type.Optional(Timestamp('From this time (inclusive).')),
            to: Type.Optional(Timestamp('Until this time (exclusive).')),
            types: TypesQuery('Comma-separated settings event types, e.g. `agent.created,token.deleted`.'),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(AuditLogPage), ...problems(403) },
      },
    },
    async (request) => service.listAuditLog(db, principalOf(request), request.query),
  );
};
