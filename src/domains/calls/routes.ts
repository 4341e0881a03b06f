import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems } from '../../plugins/openapi.ts';
import { ChatSchema, RecordChatBody } from '../chats/schemas.ts';
import { recordChat } from '../chats/service.ts';
import { CallSchema, RecordCallBody } from './schemas.ts';
import { recordCall } from './service.ts';

export const callSchemas = [CallSchema, ChatSchema];

/** Telephony and chat systems record what happened; each call or chat lands on a ticket. */
export const callAndChatRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/calls',
    {
      schema: {
        operationId: 'recordCall',
        tags: ['calls-and-chats'],
        summary: 'Record a call',
        description:
          'On the ticket named by ticket_id, or on a new call ticket (contact defaults to the customer’s number). An answered call answers the customer; a missed inbound call reopens the ticket. external_id is recorded once (409 when repeated).',
        body: RecordCallBody,
        response: { 201: ref(CallSchema), ...problems(404, 409, 422) },
      },
    },
    async (request, reply) => reply.code(201).send(await recordCall(db, principalOf(request), request.body)),
  );

  app.post(
    '/v1/chats',
    {
      schema: {
        operationId: 'recordChat',
        tags: ['calls-and-chats'],
        summary: 'Record a chat and its messages',
        description:
          'On the ticket named by ticket_id, or on a new chat ticket. Messages keep their sent times; agent messages are by agent_id. A missed chat has no pickup and no agent messages. external_id is recorded once (409 when repeated).',
        body: RecordChatBody,
        response: { 201: ref(ChatSchema), ...problems(404, 409, 422) },
      },
    },
    async (request, reply) => reply.code(201).send(await recordChat(db, principalOf(request), request.body)),
  );
};
