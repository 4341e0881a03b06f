import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { TicketPage } from '../tickets/routes.ts';
import {
  CreateViewBody,
  UpdateViewBody,
  VIEW_COUNT_CAP,
  ViewCountsSchema,
  ViewListSchema,
  ViewSchema,
  ViewTicketsQuery,
} from './schemas.ts';
import * as service from './service.ts';

export const viewSchemas = [ViewSchema, ViewListSchema, ViewCountsSchema];

const tags = ['views'];
const View = ref(ViewSchema);
const etagHeader = responseHeaders.etag('update');
const FILTER_ERRORS =
  'Filters are the parameters of GET /v1/tickets (400 for one it refuses); 422 `view_filter_unknown_reference` names each department or agent that does not exist.';

export const viewRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/views',
    {
      schema: {
        operationId: 'listViews',
        tags,
        summary: 'Saved views you may see',
        description:
          'Your personal views, your departments’ views (admins: every department’s) and the help desk’s, by position, then name.',
        response: { 200: ref(ViewListSchema) },
      },
    },
    async (request) => ({ data: await service.listViews(db, principalOf(request)) }),
  );

  app.post(
    '/v1/views',
    {
      schema: {
        operationId: 'createView',
        tags,
        summary: 'Save a view',
        description: `personal: any agent, for themselves; department: that department's managers and admins; helpdesk: owners and admins. At most 50 per agent, per department and for the help desk (409 too_many_views). ${FILTER_ERRORS}`,
        body: CreateViewBody,
        response: {
          201: { ...View, headers: { ...etagHeader, ...responseHeaders.location('view') } },
          ...problems(403, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const view = await service.createView(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/views/${view.id}`);
      return withEtag(reply, view);
    },
  );

  app.get(
    '/v1/views/counts',
    {
      schema: {
        operationId: 'countViews',
        tags,
        summary: 'Ticket counts of every view you see, for a sidebar',
        description: `In the order of GET /v1/views; each counts the tickets of the view you may see (as GET /v1/views/{id}/tickets lists them). Counts stop at ${VIEW_COUNT_CAP}: \`capped: true\` means more.`,
        response: { 200: ref(ViewCountsSchema) },
      },
    },
    async (request) => service.countViews(db, principalOf(request)),
  );

  app.get(
    '/v1/views/:id',
    {
      schema: {
        operationId: 'getView',
        tags,
        summary: 'Get a saved view',
        description: 'Another agent’s personal view and another department’s view answer 404.',
        params: IdParams,
        response: { 200: { ...View, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) =>
      withEtag(reply, await service.getView(db, principalOf(request), request.params.id)),
  );

  app.get(
    '/v1/views/:id/tickets',
    {
      schema: {
        operationId: 'listViewTickets',
        tags,
        summary: 'The tickets of a saved view',
        description:
          'GET /v1/tickets with the view’s filters and sort, for you: assignee me is you, and only tickets you may see are listed, whoever shared the view.',
        params: IdParams,
        querystring: ViewTicketsQuery,
        response: { 200: ref(TicketPage), ...problems(404) },
      },
    },
    async (request) => service.listViewTickets(db, principalOf(request), request.params.id, request.query),
  );

  app.patch(
    '/v1/views/:id',
    {
      schema: {
        operationId: 'updateView',
        tags,
        summary: 'Change a saved view',
        description: `Those who may create it. ${FILTER_ERRORS}`,
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateViewBody,
        response: { 200: { ...View, headers: etagHeader }, ...problems(403, 404, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateView(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/views/:id',
    {
      schema: {
        operationId: 'deleteView',
        tags,
        summary: 'Delete a saved view',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(403, 404, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteView(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );
};
