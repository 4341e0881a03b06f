import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems } from '../../plugins/openapi.ts';
import { PageQuery } from '../../plugins/pagination.ts';
import { OutgoingMailPage, OutgoingMailSchema } from './schemas.ts';
import { ticketMails } from './service.ts';

export const mailOutSchemas = [OutgoingMailSchema, OutgoingMailPage];

export const mailOutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;
  app.get(
    '/v1/tickets/:id/mail',
    {
      schema: {
        operationId: 'listTicketMail',
        tags: ['tickets'],
        summary: "The ticket's outgoing mails and their delivery, oldest first",
        description:
          'Agent replies, acknowledgements, notices and surveys Deskroute sent or will send for the ticket, with their state, attempts and last error. For whoever may read the ticket.',
        params: IdParams,
        querystring: Type.Object(PageQuery, { additionalProperties: false }),
        response: { 200: ref(OutgoingMailPage), ...problems(404) },
      },
    },
    async (request) => ticketMails(db, principalOf(request), request.params.id, request.query),
  );
};
