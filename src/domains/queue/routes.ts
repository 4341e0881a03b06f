import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { TicketSchema } from '../tickets/schemas.ts';
import { QueueEmptyResponse } from './schemas.ts';
import { takeNextTicket } from './service.ts';

export const queueRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.post(
    '/v1/queue/next',
    {
      schema: {
        operationId: 'takeNextTicket',
        tags: ['queue'],
        summary: 'Take the next ticket to solve',
        description:
          'Assigns you the next ticket of your to-solve queue and returns it. The queue holds the new and open tickets, unassigned or already yours, of the departments where you are a solver, supervisor or manager and whose to_solve_enabled is on (owners and admins too: only their own departments). The most urgent SLA due first (tickets without one after them), then highest priority, then the longest waiting, then by id. Concurrent callers never get the same ticket, and concurrent calls of one agent all get the same one. A ticket already yours comes back again until you answer, postpone or resolve it, so retrying is safe. Needs a write-scoped token.',
        response: {
          200: {
            ...ref(TicketSchema),
            headers: responseHeaders.etag(),
          },
          204: QueueEmptyResponse,
          ...problems(409),
        },
      },
    },
    async (request, reply) => {
      const ticket = await takeNextTicket(db, principalOf(request));
      if (!ticket) return reply.code(204).send(null);
      return withEtag(reply, ticket);
    },
  );
};
