import { readFile } from 'node:fs/promises';
import t from 'tap';
import { agentWithToken, buildTestApp } from './helpers/app.ts';

// What a validating proxy and a generated client read from the committed spec: optional list
// parameters, the headers each answer carries, and the errors that come before any route runs.
// Every response the suite receives is also checked header by header (test/helpers/contract.ts).

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: { default?: unknown };
}
interface Operation {
  parameters?: Parameter[];
  responses: Record<string, { content?: Record<string, unknown>; headers?: Record<string, unknown> }>;
}
type Spec = {
  paths: Record<string, Record<string, Operation>>;
  components: { headers?: Record<string, unknown> };
};

const spec = JSON.parse(await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8')) as Spec;
const operations = Object.entries(spec.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => ({ where: `${method.toUpperCase()} ${path}`, path, op })),
);

t.test('a parameter the server defaults is optional in the spec', async (t) => {
  let lists = 0;
  for (const { where, op } of operations) {
    for (const p of op.parameters ?? []) {
      if (p.schema?.default !== undefined) t.notOk(p.required, `${where} ${p.name} has a default`);
      if (p.in === 'query' && p.name === 'limit') {
        lists += 1;
        t.notOk(p.required, `${where} limit`);
      }
    }
  }
  t.ok(lists >= 13, `every list (${lists}) takes limit`);
  const sort = spec.paths['/v1/tickets']?.get?.parameters?.find((p) => p.name === 'sort');
  t.match(sort, { required: false, schema: { default: '-created_at' } });
});

// One app for the HTTP checks: a fresh embedded PGlite database costs seconds.
const ctx = await buildTestApp(t, { CORS_ORIGINS: 'https://desk.example.com' });
const { token } = await agentWithToken(ctx, { role: 'admin' });

t.test('lists answer without limit or sort, as the spec lets a client call them', async (t) => {
  for (const url of ['/v1/tickets', '/v1/departments', '/v1/agents', '/v1/automation-rules']) {
    const res = await ctx.request({ method: 'GET', url, token });
    t.equal(res.statusCode, 200, url);
  }
});

t.test('standard headers and errors are declared on every operation', async (t) => {
  for (const { where, path, op } of operations) {
    for (const [status, response] of Object.entries(op.responses)) {
      t.ok(response.headers?.['X-Request-Id'], `${where} ${status} declares X-Request-Id`);
    }
    if (!path.startsWith('/v1/')) continue;
    t.match(
      op.responses['429']?.headers,
      { 'Retry-After': {}, 'RateLimit-Limit': {}, 'RateLimit-Remaining': {}, 'RateLimit-Reset': {} },
      `${where} 429`,
    );
    t.match(op.responses['503']?.headers, { 'Retry-After': {} }, `${where} 503`);
    t.ok(op.responses['431']?.content?.['application/problem+json'], `${where} documents 431 as a problem`);
  }
  for (const name of ['XRequestId', 'RetryAfter', 'RateLimitLimit'])
    t.ok(spec.components.headers?.[name], name);
});

t.test('Location, ETag and Content-Disposition are declared where they are sent', async (t) => {
  // ctx.request checks each answer's headers against its operation: sent means declared.
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token,
    payload: { name: 'Billing' },
  });
  t.equal(created.statusCode, 201);
  t.equal(created.headers.location, `/v1/departments/${created.json().id}`);
  const me = await ctx.request({ method: 'GET', url: '/v1/me', token });
  t.ok(me.headers.etag, 'GET /v1/me sends an ETag');
  const csv = await ctx.request({ method: 'GET', url: '/v1/reports/departments.csv', token });
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-disposition'], /^attachment; filename=/);
  const ticket = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token,
    headers: { 'idempotency-key': 'contract-headers-1' },
    payload: { subject: 'Hello', message: { body: 'Hi' }, contact: { email: 'a@example.com' } },
  });
  t.equal(ticket.statusCode, 201, ticket.body);
  const replay = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token,
    headers: { 'idempotency-key': 'contract-headers-1' },
    payload: { subject: 'Hello', message: { body: 'Hi' }, contact: { email: 'a@example.com' } },
  });
  t.equal(replay.headers['idempotent-replayed'], 'true');
});

t.test('writes without a body schema declare the 413 and 415 fastify answers them', async (t) => {
  // fastify reads the body of every write, whether the route takes one or not.
  for (const { where, path, op } of operations) {
    if (!path.startsWith('/v1/') || !/^(POST|PUT|PATCH|DELETE) /.test(where)) continue;
    t.ok(op.responses['413'] && op.responses['415'], `${where} declares 413 and 415`);
  }
  const ghost = '00000000-0000-4000-8000-000000000000';
  for (const [method, url] of [
    ['POST', '/v1/me/notifications/read-all'],
    ['POST', '/v1/queue/next'],
    ['POST', `/v1/tickets/${ghost}/restore`],
    ['POST', `/v1/webhooks/${ghost}/ping`],
    ['POST', `/v1/webhooks/${ghost}/rotate-secret`],
    ['DELETE', `/v1/views/${ghost}`],
    ['DELETE', `/v1/api-tokens/${ghost}`],
  ] as const) {
    // ctx.request fails on a status the operation does not declare.
    const text = await ctx.request({
      method,
      url,
      token,
      headers: { 'content-type': 'text/plain' },
      payload: 'hi',
    });
    t.equal(text.statusCode, 415, `${method} ${url} text/plain`);
    const huge = await ctx.request({
      method,
      url,
      token,
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ x: 'y'.repeat(2_000_000) }),
    });
    t.equal(huge.statusCode, 413, `${method} ${url} 2 MB`);
  }
});

t.test('browsers may read every header the API sends', async (t) => {
  const res = await ctx.app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://desk.example.com' },
  });
  const exposed = String(res.headers['access-control-expose-headers'])
    .split(',')
    .map((h) => h.trim().toLowerCase());
  for (const name of [
    'etag',
    'location',
    'retry-after',
    'ratelimit-limit',
    'ratelimit-remaining',
    'ratelimit-reset',
    'x-request-id',
    'content-disposition',
    'idempotent-replayed',
  ]) {
    t.ok(exposed.includes(name), `${name} is exposed`);
  }
  // Every header an answer declares, read from the spec: a new one must be exposed too.
  // CORS-safelisted response headers (https://fetch.spec.whatwg.org/#cors-safelisted-response-header-name)
  // are readable without it.
  const safelisted = [
    'cache-control',
    'content-language',
    'content-length',
    'content-type',
    'expires',
    'last-modified',
    'pragma',
  ];
  const declared = new Set(
    operations.flatMap(({ op }) =>
      Object.values(op.responses).flatMap((r) => Object.keys(r.headers ?? {}).map((h) => h.toLowerCase())),
    ),
  );
  t.ok(declared.has('export-next-cursor'), 'the spec read');
  for (const name of declared) {
    if (!safelisted.includes(name)) t.ok(exposed.includes(name), `${name}, declared in the spec, is exposed`);
  }
  const exports = await ctx.app.inject({
    method: 'GET',
    url: '/v1/exports/tickets',
    headers: { origin: 'https://desk.example.com', authorization: `Bearer ${token}` },
  });
  t.equal(exports.statusCode, 200);
  t.ok(exports.headers['export-next-cursor'], 'an export sends its cursor');
  t.match(exports.headers['access-control-expose-headers'], /(^|, *)Export-Next-Cursor(,|$)/i);
});
