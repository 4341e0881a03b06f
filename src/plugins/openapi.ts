import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { PROBLEM_CONTENT_TYPE } from './problem.ts';

const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or fails validation; `errors` lists the offending fields.',
  401: 'Credentials are missing, invalid, expired or revoked, or the agent is disabled.',
  403: 'The caller may not do this (role, department role, or a read-only token).',
  404: 'No such resource, or it is outside what the caller may see.',
  409: 'The request conflicts with the current state (a duplicate, something still depends on it, or an automation rule could not apply its actions: `rule_action_failed`).',
  412: 'If-Match does not match the current ETag: the resource changed since it was read.',
  413: 'The request body is larger than the server accepts.',
  415: 'The request body is not application/json.',
  422: 'The request refers to something that does not exist.',
  429: 'Too many requests; wait for the number of seconds in Retry-After.',
  500: 'An error on our side; the request changed nothing it did not finish.',
  503: 'The service cannot answer now (the database is away, or the server is shutting down); retry after the number of seconds in Retry-After.',
};

/** Documented problem+json responses for the given statuses, to spread into a route's `response`. */
export function problems(...statuses: number[]) {
  return Object.fromEntries(statuses.map((s) => [s, problemResponse(s)]));
}

function problemResponse(status: number) {
  return {
    description: PROBLEM_DESCRIPTIONS[status] ?? 'Error.',
    content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: 'Problem#' } } },
  };
}

const SUCCESS_DESCRIPTIONS: Record<string, string> = {
  '200': 'OK.',
  '201': 'Created.',
  '204': 'Done; no content.',
};

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Every /v1 route can answer these, whatever the handler does: validation (400), auth (401,
 * 403), rate limiting (429), bodies (413, 415), our own failures (500) and a database that is
 * away or a server shutting down (503). Declaring them here
 * keeps the spec honest without repeating them on every route.
 */
function addStandardResponses(route: RouteOptions) {
  if (!route.url.startsWith('/v1/') || !route.schema) return;
  const methods = [route.method].flat();
  route.schema.response ??= {};
  const response = route.schema.response as Record<string, unknown>;
  const statuses = [400, 429, 500, 503];
  if (!route.config?.public) statuses.push(401, 403);
  if (methods.some((m) => WRITE_METHODS.has(m)) && route.schema.body) statuses.push(413, 415);
  for (const s of statuses) response[s] ??= problemResponse(s);
  for (const [status, schema] of Object.entries(response)) {
    const described = schema as { description?: string };
    if (status.startsWith('2') && described && !described.description) {
      response[status] = { ...described, description: SUCCESS_DESCRIPTIONS[status] ?? 'Success.' };
    }
  }
  if (!route.config?.public) route.schema.security ??= [{ bearerAuth: [] }];
  else route.schema.security ??= [];
}

export const openapiPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRoute', addStandardResponses);
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Deskroute API',
          version: '1.0.0',
          description:
            'Headless help-desk backend built around departments. Errors are RFC 9457 application/problem+json with a stable `code`. Lists use cursor pagination (`limit`, `cursor`, `next_cursor`). Single resources carry an ETag; PATCH and DELETE honour If-Match.',
        },
        servers: [{ url: '/' }],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              description:
                'A session token from POST /v1/auth/token (a JWT), or an API token from /v1/api-tokens (starts with drt_).',
            },
          },
        },
        tags: [
          { name: 'auth', description: 'Sign in and your own profile' },
          { name: 'api-tokens', description: 'Long-lived tokens for integrators and ops' },
          { name: 'departments', description: 'Departments and their members' },
          { name: 'agents', description: 'Agents and their roles' },
          { name: 'contacts', description: 'Customers who write in, and the custom fields they carry' },
          { name: 'tickets', description: 'Tickets, their conversation, history and transfers' },
          { name: 'calls-and-chats', description: 'Calls and chats recorded by telephony and chat systems' },
          { name: 'queue', description: 'The to-solve queue: the next ticket to work on' },
          { name: 'public', description: 'The public contact form, without credentials' },
          {
            name: 'automation-rules',
            description: 'Rules that route and change tickets as they come in and change',
          },
          { name: 'reports', description: 'Department, agent and channel reports as JSON or streamed CSV' },
          { name: 'system', description: 'Health and the contract itself' },
        ],
      },
      refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
    app.get('/openapi.json', { schema: { hide: true }, config: { public: true } }, async (_request, reply) =>
      reply.type('application/json').send(app.swagger()),
    );
  },
  { name: 'openapi', dependencies: ['problem'] },
);

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No credentials needed (sign-in, health, the public contact form). */
    public?: boolean;
    /** A POST that only reads, so read-only tokens may call it. */
    readOnly?: boolean;
  }
}
