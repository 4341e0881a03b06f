import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
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
  410: 'It existed but can no longer be used (an expired link).',
  412: 'If-Match does not match the current ETag: the resource changed since it was read.',
  413: 'The request body is larger than the server accepts.',
  415: 'The request body is not of a media type the operation takes (application/json unless it says otherwise), or has a Content-Encoding other than identity (`unsupported_content_encoding`).',
  431: 'The request headers are too large (all of them, or one of them); nothing was read or changed.',
  422: 'The request refers to something that does not exist.',
  429: 'Too many requests; wait for the number of seconds in Retry-After.',
  500: 'An error on our side; the request changed nothing it did not finish.',
  503: "The service cannot answer now (the database is away, the server is shutting down, or the database's schema changed under the request); retry after the number of seconds in Retry-After.",
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
 * 403), rate limiting (429), bodies of writes (413, 415), headers too large (431, from Node's HTTP parser
 * before any route runs, yet a proxy sees it as this operation's answer), our own failures (500)
 * and a database that is away or a server shutting down (503). Declaring them here keeps the
 * spec honest without repeating them on every route.
 */
function addStandardResponses(route: RouteOptions) {
  if (!route.schema || route.schema.hide) return;
  if (!route.url.startsWith('/v1/')) {
    // Health checks too meet Node's HTTP parser first.
    route.schema.response ??= {};
    (route.schema.response as Record<string, unknown>)[431] ??= problemResponse(431);
    return;
  }
  const methods = [route.method].flat();
  route.schema.response ??= {};
  const response = route.schema.response as Record<string, unknown>;
  const statuses = [400, 429, 431, 500, 503];
  if (!route.config?.public) statuses.push(401, 403);
  // fastify reads the body of every write, schema or not (handle-request.js): a route that takes
  // none still answers 415 to text/plain and 413 to a body past the limit.
  if (methods.some((m) => WRITE_METHODS.has(m))) statuses.push(413, 415);
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

/**
 * A query parameter with a default is the caller's to leave out: Ajv fills the default in
 * (useDefaults) before the handler runs, so the TypeBox type may keep it required for the
 * handler while the contract must not (a validating proxy reads `required` literally, and a
 * generated client would make every caller pass `limit`).
 */
function defaultsAreOptional(route: RouteOptions) {
  const query = route.schema?.querystring as
    | { properties?: Record<string, { default?: unknown }>; required?: string[] }
    | undefined;
  if (!query?.required || !query.properties) return;
  const properties = query.properties;
  const required = query.required.filter((name) => properties[name]?.default === undefined);
  if (required.length === query.required.length) return;
  route.schema!.querystring = { ...query, required };
}

const REQUEST_ID = {
  description:
    'The id of this request: the X-Request-Id the client sent, else a generated UUID. Problem bodies repeat it as request_id; quote it when reporting a problem.',
  schema: { type: 'string' },
};
const RETRY_AFTER = {
  description: 'Seconds to wait before retrying.',
  schema: { type: 'integer', minimum: 0 },
};

/**
 * Response headers shared by every operation, as components. A reference cannot carry
 * `required` beside it, so a header that is sometimes promised and sometimes not has two.
 */
const HEADERS = {
  XRequestId: { ...REQUEST_ID, required: true },
  XRequestIdIfSent: {
    ...REQUEST_ID,
    description: `${REQUEST_ID.description} Absent when the answer comes before any route runs (431, or 503 while the server closes).`,
  },
  RateLimitLimit: {
    description: 'Requests allowed per window in the budget this request counted against.',
    schema: { type: 'integer', minimum: 0 },
  },
  RateLimitRemaining: {
    description: 'Requests left in the current window.',
    schema: { type: 'integer', minimum: 0 },
  },
  RateLimitReset: {
    description: 'Seconds until the current window ends and the budget is full again.',
    schema: { type: 'integer', minimum: 0 },
  },
  RetryAfter: { ...RETRY_AFTER, required: true },
  AcceptEncodingIfCoded: {
    description:
      'The content codings a request body may have: `identity` (none). Sent when the body was refused for its Content-Encoding (`unsupported_content_encoding`).',
    schema: { type: 'string' },
  },
  RetryAfterIfKnown: {
    ...RETRY_AFTER,
    description: `${RETRY_AFTER.description} Sent when the server can tell (a database away, a full export slot, a server shutting down).`,
  },
} as const;

const headerRef = (name: keyof typeof HEADERS) => ({ $ref: `#/components/headers/${name}` });

/**
 * On a query parameter's item schema: the values the contract lists, which the service checks
 * itself (with its own error code) instead of Ajv, which ignores this keyword. The published
 * document carries them as a plain `enum`.
 */
export const CONTRACT_ENUM = 'x-contract-enum';

type ParameterSchema = { items?: Record<string, unknown> };

function publishContractEnums(parameters: { schema?: ParameterSchema }[] | undefined) {
  for (const parameter of parameters ?? []) {
    const items = parameter.schema?.items;
    if (!items || !(CONTRACT_ENUM in items)) continue;
    const { [CONTRACT_ENUM]: values, minLength: _min, maxLength: _max, ...rest } = items;
    parameter.schema!.items = { ...rest, enum: values };
  }
}

/** Route-level response headers, written in route schemas as `headers: { Location: ... }`. */
export const responseHeaders = {
  location: (what: string) => ({
    Location: { type: 'string', description: `The URL of the new ${what}.`, 'x-required': true },
  }),
  etag: (change = 'change') => ({
    ETag: {
      type: 'string',
      description: `Pass as If-Match to ${change} only this version.`,
      'x-required': true,
    },
  }),
  contentDisposition: {
    'Content-Disposition': {
      type: 'string',
      description: 'attachment; filename="deskroute-<report>-<from>--<to>.csv"',
      'x-required': true,
    },
  },
};

type Header = { schema?: Record<string, unknown>; required?: boolean; $ref?: string };
type Operation = {
  operationId?: string;
  summary?: string;
  description?: string;
  parameters?: { schema?: ParameterSchema }[];
  responses?: Record<string, { headers?: Record<string, Header>; content?: unknown }>;
};

const HEAD_DESCRIPTION =
  "The status and headers the GET would answer now, with no body: the same validation, credentials and refusals (503 when every export slot or stream place is taken). A streamed answer (an export, a report CSV, the event stream, a download) is answered at once: nothing is read, computed or held, and Content-Length is sent only where the GET sends one (a download). An export's Export-Next-Cursor names the horizon a GET would stop at now; with no body received, it is no cursor to keep.";

/**
 * fastify answers HEAD on every GET (exposeHeadRoutes) and fastify-swagger copies the GET's
 * operation for it, bodies and all, under `<operationId>-head`. A HEAD answer has no content
 * (RFC 9110 §9.3.2): the copy keeps the GET's parameters, statuses and headers, and loses its
 * bodies and its long description (the GET's, a line away, says what the headers mean). But
 * 431: Node's parser refuses the request before any route runs, and clientErrorProblem writes
 * its problem on the socket whatever the method.
 */
function describeHead(head: Operation, path: string) {
  head.operationId = head.operationId?.replace(/-head$/, 'Head');
  head.summary = `${head.summary ?? path}: headers only`;
  head.description = `HEAD of GET ${path}. ${HEAD_DESCRIPTION}`;
  for (const [status, response] of Object.entries(head.responses ?? {})) {
    if (status !== '431') delete response.content;
  }
}

/**
 * Headers the server sends whatever the route: X-Request-Id on every answer, the rate-limit
 * budget on every /v1 answer, Retry-After on 429 (always) and 503 (when the server can say).
 * Route-level headers marked `x-required` (fastify-swagger copies a header's whole schema)
 * become OpenAPI's `required: true`.
 */
const addStandardHeaders: SwaggerTransformObject = (documentObject) => {
  if (!('openapiObject' in documentObject)) return documentObject.swaggerObject;
  const { openapiObject } = documentObject;
  // The document's own types do not know fastify-swagger's header shapes; walked loosely.
  const document: { paths?: Record<string, Record<string, Operation>>; components?: object } =
    openapiObject as object;
  document.components = { ...document.components, headers: HEADERS };
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    if (item.head) describeHead(item.head, path);
    for (const operation of Object.values(item)) {
      publishContractEnums(operation.parameters);
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const headers: Record<string, Header> = {};
        for (const [name, header] of Object.entries(response.headers ?? {})) {
          const { 'x-required': required, ...schema } = header.schema ?? {};
          headers[name] = { ...header, schema, ...(required ? { required: true } : {}) };
        }
        // Node's parser answers 431 and a closing server 503 before fastify's hooks run.
        const early = status === '431' || status === '503';
        headers['X-Request-Id'] = headerRef(early ? 'XRequestIdIfSent' : 'XRequestId');
        if (path.startsWith('/v1/') && status !== '431') {
          headers['RateLimit-Limit'] = headerRef('RateLimitLimit');
          headers['RateLimit-Remaining'] = headerRef('RateLimitRemaining');
          headers['RateLimit-Reset'] = headerRef('RateLimitReset');
        }
        if (status === '429') headers['Retry-After'] = headerRef('RetryAfter');
        if (status === '503') headers['Retry-After'] = headerRef('RetryAfterIfKnown');
        if (status === '415') headers['Accept-Encoding'] = headerRef('AcceptEncodingIfCoded');
        response.headers = headers;
      }
    }
  }
  return openapiObject;
};

export const openapiPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRoute', defaultsAreOptional);
    app.addHook('onRoute', addStandardResponses);
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Deskroute API',
          version: '1.0.0',
          description:
            'Headless help-desk backend built around departments. Errors are RFC 9457 application/problem+json with a stable `code`. Lists use cursor pagination (`limit`, `cursor`, `next_cursor`). Single resources carry an ETag; PATCH and DELETE honour If-Match. Every answer carries X-Request-Id; /v1 answers carry the RateLimit-Limit/Remaining/Reset budget, and 429 and 503 say in Retry-After when to try again. Any operation may answer 431 (request headers too large) before it runs: problem+json like every other error.',
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
          { name: 'schedules', description: 'Working hours: schedules, holidays and their iCalendar import' },
          { name: 'sla-policies', description: 'SLA policies: response and resolution targets per priority' },
          { name: 'agents', description: 'Agents and their roles' },
          { name: 'contacts', description: 'Customers who write in, and the custom fields they carry' },
          { name: 'tickets', description: 'Tickets, their conversation, history and transfers' },
          {
            name: 'views',
            description: 'Saved views: named ticket filters, personal or shared, and their counts',
          },
          { name: 'calls-and-chats', description: 'Calls and chats recorded by telephony and chat systems' },
          { name: 'queue', description: 'The to-solve queue: the next ticket to work on' },
          { name: 'public', description: 'The public contact form, without credentials' },
          {
            name: 'automation-rules',
            description: 'Rules that route and change tickets as they come in and change',
          },
          { name: 'reports', description: 'Department, agent and channel reports as JSON or streamed CSV' },
          {
            name: 'exports',
            description: 'Tickets and contacts streamed as NDJSON, CSV or the import format',
          },
          { name: 'events', description: 'The event feed and the audit log' },
          { name: 'system', description: 'Health and the contract itself' },
        ],
      },
      exposeHeadRoutes: true,
      transformObject: addStandardHeaders,
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
