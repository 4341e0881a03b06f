import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { loadTicketAccess } from '../../access/tickets.ts';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { getContact } from '../contacts/service.ts';
import { idempotent } from './idempotency.ts';
import * as repo from './repository.ts';
import {
  AddMessageBody,
  AddRatingBody,
  CreateTicketBody,
  EventSchema,
  MessageSchema,
  RatingSchema,
  TagsChangeBody,
  TicketCountsSchema,
  TicketListQuery,
  TicketSchema,
  TicketSlaSchema,
  TicketSlaTargetSchema,
  TransferBody,
  UpdateTicketBody,
} from './schemas.ts';
import * as service from './service.ts';

export const TicketPage = PageOf(ref(TicketSchema), 'TicketPage');
export const MessagePage = PageOf(ref(MessageSchema), 'TicketMessagePage');
export const EventPage = PageOf(ref(EventSchema), 'TicketEventPage');
export const ticketSchemas = [
  TicketSlaTargetSchema,
  TicketSlaSchema,
  TicketSchema,
  MessageSchema,
  RatingSchema,
  EventSchema,
  TicketCountsSchema,
  TicketPage,
  MessagePage,
  EventPage,
];

const tags = ['tickets'];
const Ticket = ref(TicketSchema);
const etagHeader = responseHeaders.etag();
const createdHeaders = { ...etagHeader, ...responseHeaders.location('ticket') };

export const ticketRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/tickets',
    {
      schema: {
        operationId: 'createTicket',
        tags,
        summary: 'Create a ticket',
        description:
          'Opens a ticket with its first message. The contact is the one with this id, email or phone, or a new one. Send an Idempotency-Key to make retries safe: a repeated request with the same key and body returns the first response (with Idempotent-Replayed: true) and creates nothing.',
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 200,
              description: 'Any unique string, e.g. a UUID, per intended ticket.',
            }),
          ),
        }),
        body: CreateTicketBody,
        response: {
          201: {
            ...Ticket,
            headers: {
              ...createdHeaders,
              'Idempotent-Replayed': {
                type: 'string',
                description: 'true when this is the stored first response.',
              },
            },
          },
          ...problems(403, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const key = request.headers['idempotency-key'];
      reply.code(201);
      if (key === undefined) {
        const ticket = await service.createTicket(db, principal, request.body);
        reply.header('location', `/v1/tickets/${ticket.id}`);
        return withEtag(reply, ticket);
      }
      const result = await idempotent(db, `agent:${principal.agentId}`, key, request.body, async (trx) => ({
        status: 201,
        body: await service.createTicket(db, principal, request.body, trx),
      }));
      if (result.replayed) reply.header('idempotent-replayed', 'true');
      reply.header('location', `/v1/tickets/${result.body.id}`);
      return reply.send(withEtag(reply, result.body));
    },
  );

  app.get(
    '/v1/tickets',
    {
      schema: {
        operationId: 'listTickets',
        tags,
        summary: 'Find tickets',
        description:
          'The tickets you may see, filtered and sorted. Repeat a filter parameter to match any of several values (tag: all of them). Deleted tickets appear only when status=deleted is asked for.',
        querystring: TicketListQuery,
        response: { 200: ref(TicketPage) },
      },
    },
    async (request) => {
      const access = await loadTicketAccess(db, principalOf(request));
      return repo.listTickets(db, access, request.query);
    },
  );

  app.get(
    '/v1/contacts/:id/tickets',
    {
      schema: {
        operationId: 'listContactTickets',
        tags: ['contacts'],
        summary: "A contact's tickets",
        description: 'Newest first; only the tickets you may see. Deleted tickets are left out.',
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: ref(TicketPage), ...problems(404) },
      },
    },
    async (request) => {
      await getContact(db, request.params.id);
      const access = await loadTicketAccess(db, principalOf(request));
      return repo.listTickets(db, access, {
        ...request.query,
        contact_id: request.params.id,
        sort: '-created_at',
      });
    },
  );

  app.get(
    '/v1/tickets/counts',
    {
      schema: {
        operationId: 'countTickets',
        tags,
        summary: 'Ticket counts per department and status',
        description:
          'New, open, answered, postponed and resolved tickets in each department you see, and in no department.',
        response: { 200: ref(TicketCountsSchema) },
      },
    },
    async (request) => repo.countTickets(db, await loadTicketAccess(db, principalOf(request))),
  );

  app.get(
    '/v1/tickets/:id',
    {
      schema: {
        operationId: 'getTicket',
        tags,
        summary: 'Get a ticket',
        params: IdParams,
        response: { 200: { ...Ticket, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) =>
      withEtag(reply, await service.getTicket(db, principalOf(request), request.params.id)),
  );

  app.patch(
    '/v1/tickets/:id',
    {
      schema: {
        operationId: 'updateTicket',
        tags,
        summary: 'Change a ticket',
        description:
          'Solvers change subject, priority, tags, take unassigned tickets and set the status of tickets that are theirs or unassigned; supervisors also reassign and set the status of others’ tickets. Move between departments with the transfer operation.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateTicketBody,
        response: { 200: { ...Ticket, headers: etagHeader }, ...problems(404, 409, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateTicket(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/tickets/:id',
    {
      schema: {
        operationId: 'deleteTicket',
        tags,
        summary: 'Delete a ticket (soft)',
        description: 'Supervisors and up. The ticket keeps its history and can be restored.',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteTicket(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/tickets/:id/restore',
    {
      schema: {
        operationId: 'restoreTicket',
        tags,
        summary: 'Restore a deleted ticket',
        description: 'Back to the status it had before it was deleted.',
        params: IdParams,
        response: { 200: Ticket, ...problems(404, 409) },
      },
    },
    async (request) => service.restoreTicket(db, principalOf(request), request.params.id),
  );

  app.get(
    '/v1/tickets/:id/messages',
    {
      schema: {
        operationId: 'listTicketMessages',
        tags,
        summary: 'The conversation: customer messages, agent replies and internal notes, oldest first',
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: ref(MessagePage), ...problems(404) },
      },
    },
    async (request) => {
      await service.requireReadable(db, principalOf(request), request.params.id);
      return repo.listMessages(db, request.params.id, request.query);
    },
  );

  app.post(
    '/v1/tickets/:id/messages',
    {
      schema: {
        operationId: 'addTicketMessage',
        tags,
        summary: 'Reply, add an internal note, or record a customer message',
        description:
          'A reply sets the first answer time once and moves the ticket to answered. A customer message reopens an answered, postponed or resolved ticket (a new one stays new). A note changes no status and is never customer-visible. With `canned_response_id` the body is that canned response filled for this ticket and you, and its tags and status apply in the same change (docs/email.md, "Canned responses"). `attachment_ids` sends files you staged on this ticket (POST /v1/tickets/{id}/attachments) with the message: 422 attachment_not_found (not this ticket’s) or attachment_not_yours (staged by someone else), 409 attachment_already_linked.',
        params: IdParams,
        body: AddMessageBody,
        response: { 201: ref(MessageSchema), ...problems(404, 409, 422) },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await service.addMessage(db, principalOf(request), request.params.id, request.body)),
  );

  app.post(
    '/v1/tickets/:id/tags',
    {
      schema: {
        operationId: 'changeTicketTags',
        tags,
        summary: 'Add and remove tags',
        description: 'Tags are trimmed, lower-cased and unique per ticket; at most 50.',
        params: IdParams,
        body: TagsChangeBody,
        response: { 200: Ticket, ...problems(404, 409) },
      },
    },
    async (request) => service.changeTags(db, principalOf(request), request.params.id, request.body),
  );

  app.post(
    '/v1/tickets/:id/transfer',
    {
      schema: {
        operationId: 'transferTicket',
        tags,
        summary: 'Transfer a ticket to another department',
        description:
          'Supervisors and up. Messages, notes, history and contact stay with the ticket; the status does not change (a new ticket stays new). The assignee stays only when they are a solver or more in the new department, unless another member is named (or null).',
        params: IdParams,
        body: TransferBody,
        response: { 200: Ticket, ...problems(404, 409, 422) },
      },
    },
    async (request) => service.transferTicket(db, principalOf(request), request.params.id, request.body),
  );

  app.get(
    '/v1/tickets/:id/history',
    {
      schema: {
        operationId: 'getTicketHistory',
        tags,
        summary: 'Every change to a ticket, in order, with who made it',
        description:
          'Append-only. Each event names its actor (agent, contact, rule or system) and the department and assignee the ticket had then.',
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: ref(EventPage), ...problems(404) },
      },
    },
    async (request) => {
      await service.requireReadable(db, principalOf(request), request.params.id);
      return repo.listEvents(db, request.params.id, request.query);
    },
  );

  app.post(
    '/v1/tickets/:id/ratings',
    {
      schema: {
        operationId: 'rateTicket',
        tags,
        summary: 'Record a customer rating of a ticket or of one agent reply',
        params: IdParams,
        body: AddRatingBody,
        response: { 201: ref(RatingSchema), ...problems(404, 422) },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await service.addRating(db, principalOf(request), request.params.id, request.body)),
  );
};
