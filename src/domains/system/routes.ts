import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { Type } from 'typebox';
import { problems } from '../../plugins/openapi.ts';
import { sendProblem } from '../../plugins/problem.ts';

const Status = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false });

export const systemRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    {
      config: { public: true, rateLimit: false },
      // Probes call these every few seconds; only trouble is worth a log line.
      logLevel: 'warn',
      schema: {
        operationId: 'healthz',
        tags: ['system'],
        summary: 'The process is up',
        security: [],
        response: { 200: Status },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { public: true, rateLimit: false },
      // Probes call these every few seconds; only trouble is worth a log line.
      logLevel: 'warn',
      schema: {
        operationId: 'readyz',
        tags: ['system'],
        summary: 'The database answers',
        security: [],
        response: {
          200: Status,
          503: { ...problems(503)[503], description: 'The database does not answer.' },
        },
      },
    },
    async (request, reply) => {
      try {
        await sql`select 1`.execute(app.db);
        return { status: 'ok' as const };
      } catch (error) {
        request.log.warn({ err: error }, 'database not ready');
        return sendProblem(request, reply, 503, 'database_unavailable', 'The database does not answer.');
      }
    },
  );
};
