import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { Type } from 'typebox';
import { DATABASE_RETRY_AFTER_SECONDS, describe } from '../../db/outage.ts';
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
      // Bounded like any request's wait for a connection, and the query too: a PostgreSQL that
      // accepts connections but never answers must not leave the probe hanging.
      const boundMs = app.config.databaseConnectTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${boundMs} ms`)), boundMs);
      });
      try {
        await Promise.race([sql`select 1`.execute(app.db), late]);
        return { status: 'ok' as const };
      } catch (error) {
        request.log.warn({ reason: describe(error) }, 'database not ready');
        reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
        return sendProblem(request, reply, 503, 'database_unavailable', 'The database does not answer.');
      } finally {
        clearTimeout(timer);
      }
    },
  );
};
