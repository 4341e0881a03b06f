import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import t from 'tap';
import { generateOpenApi } from '../scripts/openapi-document.ts';
import { buildApp, REDACT_PATHS } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { agentWithToken, buildTestApp, PASSWORD, type TestContext } from './helpers/app.ts';

/** A department's JSON body as the client wrote it, bytes and all (not re-encoded by inject). */
const postDepartmentJson = (ctx: TestContext, token: string, payload: string | Buffer) =>
  ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token,
    headers: { 'content-type': 'application/json' },
    payload,
  });

t.test('the committed openapi/openapi.json is what the code generates', async (t) => {
  const committed = await readFile(new URL('../openapi/openapi.json', import.meta.url), 'utf8');
  t.equal(committed, await generateOpenApi(), 'run `npm run openapi` and commit the result');
});

t.test('every operation is documented for its consumers', async (t) => {
  const spec = JSON.parse(await generateOpenApi());
  t.equal(spec.openapi, '3.1.0');
  const ids = new Set<string>();
  for (const [path, item] of Object.entries<Record<string, any>>(spec.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const where = `${method.toUpperCase()} ${path}`;
      t.ok(op.operationId, `${where} has an operationId`);
      t.notOk(ids.has(op.operationId), `${where} operationId is unique`);
      ids.add(op.operationId);
      t.ok(op.tags?.length, `${where} has a tag`);
      t.ok(op.summary, `${where} has a summary`);
      t.ok(Array.isArray(op.security), `${where} states its security`);
      if (op.requestBody) {
        const media =
          op.requestBody.content['application/json'] ?? Object.values<any>(op.requestBody.content)[0];
        t.ok(media.example ?? media.examples, `${where} has a request body example`);
      }
      if (path.startsWith('/v1/')) {
        for (const status of ['400', '429', '500'])
          t.ok(op.responses[status], `${where} documents ${status}`);
        if (op.security.length > 0)
          t.ok(op.responses['401'] && op.responses['403'], `${where} documents 401/403`);
      }
    }
  }
});

t.test('HTTP contract for every route', async (t) => {
  const ctx = await buildTestApp(t, { BODY_LIMIT_BYTES: '2048' });
  const { token } = await agentWithToken(ctx, { role: 'admin' });

  await t.test('unknown routes answer problem+json 404', async (t) => {
    for (const [method, url] of [
      ['GET', '/v1/nothing-here'],
      ['DELETE', '/v1/departments'],
      ['GET', '/'],
    ] as const) {
      const res = await ctx.request({ method, url, token });
      t.equal(res.statusCode, 404, `${method} ${url}`);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      t.equal(res.json().code, 'route_not_found');
    }
  });

  await t.test(
    'paths the router cannot take (bad percent-encoding, over-long ids) are 400 problems',
    async (t) => {
      for (const [method, url] of [
        ['GET', '/v1/departments/%ED%A0%80'],
        ['PATCH', '/v1/tickets/%FF'],
        ['GET', `/v1/departments/${'x'.repeat(300)}`],
        ['DELETE', `/v1/contacts/${'0'.repeat(201)}`],
      ] as const) {
        const res = await ctx.request({ method, url, token, payload: method === 'PATCH' ? {} : undefined });
        t.equal(res.statusCode, 400, `${method} ${url.slice(0, 40)}`);
        t.match(res.headers['content-type'], /^application\/problem\+json/);
        t.match(res.json(), { status: 400, code: 'malformed_url', detail: /.+/ });
        t.equal(res.headers['x-request-id'], res.json().request_id, 'the request id, as on every answer');
      }
    },
  );

  await t.test('text PostgreSQL cannot store (U+0000) is a 400 problem and creates nothing', async (t) => {
    const before = await ctx.db
      .selectFrom('tickets')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    for (const [url, payload] of [
      ['/v1/departments', { name: 'Nul\u0000department' }],
      ['/v1/tickets', { subject: 'Hello\u0000', channel: 'api', contact: { email: 'nul@example.com' } }],
      [
        '/v1/tickets',
        {
          subject: 'Hello',
          channel: 'api',
          contact: { email: 'nul@example.com' },
          message: { body: 'a\u0000b' },
        },
      ],
      ['/v1/contacts', { name: 'Nul\u0000name', emails: ['nul2@example.com'] }],
    ] as const) {
      const res = await ctx.request({ method: 'POST', url, token, payload });
      t.equal(res.statusCode, 400, `${url} ${JSON.stringify(payload)}`);
      // Some fields' patterns refuse it already; the rest reach PostgreSQL, which refuses it.
      t.match(res.json().code, /^(invalid_text|validation_failed)$/);
    }
    const after = await ctx.db
      .selectFrom('tickets')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    t.equal(Number(after.n), Number(before.n), 'no ticket was created');
    const departments = await ctx.db
      .selectFrom('departments')
      .select('name')
      .where('name', 'like', 'Nul%')
      .execute();
    t.same(departments, [], 'no department was created');
  });

  await t.test('malformed JSON, wrong content types and oversized bodies are 4xx problems', async (t) => {
    const post = (headers: Record<string, string>, payload: string) =>
      ctx.request({ method: 'POST', url: '/v1/departments', token, headers, payload });
    const malformed = await post({ 'content-type': 'application/json' }, '{"name": ');
    t.equal(malformed.statusCode, 400);
    t.equal(malformed.json().code, 'malformed_json');
    const empty = await post({ 'content-type': 'application/json' }, '');
    t.equal(empty.statusCode, 400);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const res = await post({ 'content-type': type }, 'name=Support');
      t.equal(res.statusCode, 415, type);
      t.equal(res.json().code, 'unsupported_media_type');
    }
    const huge = await post(
      { 'content-type': 'application/json' },
      JSON.stringify({ name: 'x', description: 'y'.repeat(4000) }),
    );
    t.equal(huge.statusCode, 413);
    t.equal(huge.json().code, 'payload_too_large');
    const count = await ctx.db
      .selectFrom('departments')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    t.equal(Number(count.n), 0, 'no rejected request created anything');
  });

  await t.test(
    'a lone UTF-16 surrogate or bytes that are no UTF-8: 400 invalid_text, nothing stored',
    async (t) => {
      const post = (payload: string | Buffer) => postDepartmentJson(ctx, token, payload);
      for (const [what, payload, field] of [
        ['a high surrogate alone', '{"name":"Half\\ud800"}', 'body/name'],
        ['a low surrogate alone', '{"name":"Half\\uDC00x"}', 'body/name'],
        ['in a nested string', '{"name":"Half","description":"ok \\udbff"}', 'body/description'],
        ['in a key', '{"name":"Half","\\ud800":1}', 'body/\ufffd'],
      ] as const) {
        const res = await post(payload);
        t.equal(res.statusCode, 400, what);
        t.match(res.headers['content-type'], /^application\/problem\+json/);
        t.match(res.json(), { code: 'invalid_text', errors: [{ field }] }, what);
      }
      const bytes = Buffer.concat([
        Buffer.from('{"name":"Half'),
        Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from('"}'),
      ]);
      const notUtf8 = await post(bytes);
      t.equal(notUtf8.statusCode, 400, 'a surrogate encoded in UTF-8 bytes (CESU) is no UTF-8');
      t.equal(notUtf8.json().code, 'invalid_text');
      const latin1 = await post(Buffer.from('{"name":"Caf\xe9"}', 'latin1'));
      t.equal(latin1.statusCode, 400, 'Latin-1 bytes are no UTF-8');
      const departments = await ctx.db
        .selectFrom('departments')
        .select('name')
        .where('name', 'like', 'Half%')
        .execute();
      t.same(departments, [], 'nothing was stored');
      const pair = await post('{"name":"Whole \\ud83d\\ude00"}');
      t.equal(pair.statusCode, 201, 'a whole surrogate pair (an emoji) is a character');
      t.equal(pair.json().name, 'Whole \u{1F600}');
      const raw = await post(Buffer.from('{"name":"Caf\u00e9 \u{1F600}"}', 'utf8'));
      t.equal(raw.statusCode, 201, 'UTF-8 as it should be');
      t.equal(raw.json().name, 'Caf\u00e9 \u{1F600}');
    },
  );

  await t.test('problems carry type, title, status, code, detail, instance and the request id', async (t) => {
    const res = await ctx.request({
      method: 'GET',
      url: '/v1/departments/00000000-0000-4000-8000-000000000000',
      token,
      headers: { 'x-request-id': 'trace-me-123' },
    });
    t.equal(res.headers['x-request-id'], 'trace-me-123', 'a caller-supplied request id is kept');
    t.same(res.json(), {
      type: 'about:blank',
      title: 'Not Found',
      status: 404,
      code: 'department_not_found',
      detail: 'No such department.',
      instance: '/v1/departments/00000000-0000-4000-8000-000000000000',
      request_id: 'trace-me-123',
    });
    const generated = await ctx.request({ method: 'GET', url: '/healthz' });
    t.match(generated.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  });

  await t.test('health and readiness', async (t) => {
    t.same((await ctx.request({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
    t.same((await ctx.request({ method: 'GET', url: '/readyz' })).json(), { status: 'ok' });
  });

  await t.test('the spec is served, and the docs UI', async (t) => {
    const spec = await ctx.request({ method: 'GET', url: '/openapi.json' });
    t.equal(spec.statusCode, 200);
    t.equal(spec.json().info.title, 'Deskroute API');
    const docs = await ctx.request({ method: 'GET', url: '/docs/' });
    t.equal(docs.statusCode, 200);
    t.match(docs.headers['content-type'], /text\/html/);
  });
});

t.test('a lone surrogate deep in nested JSON is 400 invalid_text, as anywhere else', async (t) => {
  // JSON.parse takes nesting of any depth; the search for a lone surrogate must too. A recursive
  // one ran out of stack, and its RangeError, thrown inside fastify's parser, answered
  // 400 malformed_json "Body is not valid JSON" for a body that is valid JSON.
  const ctx = await buildTestApp(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const depth = 100_000;
  const nested = (inner: string) => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
  const post = (payload: string) => postDepartmentJson(ctx, token, payload);
  const lone = await post(`{"name":"Deep","description":${nested('"\\ud800"')}}`);
  t.equal(lone.statusCode, 400);
  t.match(lone.json(), { code: 'invalid_text' }, 'invalid_text, not malformed_json');
  t.match(lone.json().errors[0].field, /^body\/description(\/0){100000}$/, 'the field is named');
  const lateKey = await post(`{"name":"Deep","description":[${nested('1')},{"\\udc00":1}]}`);
  t.match(lateKey.json(), { code: 'invalid_text', errors: [{ field: 'body/description/1/\ufffd' }] });
  const whole = await post(`{"name":"Deep","description":${nested('"\\ud83d\\ude00"')}}`);
  t.equal(whole.statusCode, 400);
  t.equal(whole.json().code, 'validation_failed', 'a whole pair passes the parser; the schema refuses');
  const count = await ctx.db
    .selectFrom('departments')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('name', '=', 'Deep')
    .executeTakeFirstOrThrow();
  t.equal(Number(count.n), 0, 'nothing was stored');
});

t.test('readiness reports a database that does not answer', async (t) => {
  const ctx = await buildTestApp(t);
  await ctx.database.drop();
  const res = await ctx.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.equal(res.json().code, 'database_unavailable');
  // the teardown drops again; make that a no-op
  ctx.database.drop = async () => {};
});

t.test('rate limiting per token and per address, with RateLimit headers and a 429 problem', async (t) => {
  const ctx = await buildTestApp(t, {
    RATE_LIMIT_MAX: '3',
    RATE_LIMIT_PER_ADDRESS_MAX: '10',
    RATE_LIMIT_WINDOW_SECONDS: '60',
  });
  const { agent } = await agentWithToken(ctx, { role: 'admin' });
  const { token } = await agentWithToken(ctx, { role: 'agent' });
  const codes: number[] = [];
  let last: Awaited<ReturnType<typeof ctx.request>> | undefined;
  for (let i = 0; i < 4; i++) {
    last = await ctx.request({ method: 'GET', url: '/v1/departments', token });
    codes.push(last.statusCode);
  }
  t.same(codes, [200, 200, 200, 429]);
  t.equal(last!.headers['ratelimit-limit'], '3');
  t.equal(last!.headers['ratelimit-remaining'], '0');
  t.ok(Number(last!.headers['retry-after']) > 0, 'Retry-After in seconds');
  t.equal(last!.json().code, 'rate_limited');
  t.match(last!.headers['content-type'], /^application\/problem\+json/);
  // another token has its own budget
  const other = await ctx.app.inject({
    method: 'GET',
    url: '/v1/departments',
    headers: {
      authorization: `Bearer ${ctx.app.jwt.sign({ sub: agent.id, pwd: agent.password_changed_at!.getTime() })}`,
    },
  });
  t.equal(other.statusCode, 200);
  // Every request also counts against the client address, whatever credentials it carries:
  // made-up tokens buy no extra allowance. 5 requests so far (2 sign-ins do not count here,
  // they have a budget of their own); 5 more fill the address budget of 10.
  const spray: number[] = [];
  for (let i = 0; i < 6; i++) {
    spray.push(
      (await ctx.request({ method: 'GET', url: '/v1/departments', token: `made-up-${i}` })).statusCode,
    );
  }
  t.same(spray, [401, 401, 401, 401, 401, 429]);
  const blocked = await ctx.request({ method: 'GET', url: '/v1/departments', token });
  t.equal(blocked.statusCode, 429, 'the address budget covers valid tokens too');
});

t.test('CORS lets configured origins in and keeps others out', async (t) => {
  const ctx = await buildTestApp(t, { CORS_ORIGINS: 'https://desk.example.com' });
  const preflight = await ctx.app.inject({
    method: 'OPTIONS',
    url: '/v1/departments',
    headers: {
      origin: 'https://desk.example.com',
      'access-control-request-method': 'PATCH',
      'access-control-request-headers': 'authorization,if-match,content-type',
    },
  });
  t.equal(preflight.statusCode, 204);
  t.equal(preflight.headers['access-control-allow-origin'], 'https://desk.example.com');
  t.match(String(preflight.headers['access-control-allow-methods']), /PATCH/);
  const exposed = await ctx.app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://desk.example.com' },
  });
  t.match(String(exposed.headers['access-control-expose-headers']), /ETag/);
  const stranger = await ctx.app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://evil.example' },
  });
  t.notOk(stranger.headers['access-control-allow-origin']);
});

t.test('secrets never reach the log', async (t) => {
  const ctx = await buildTestApp(t);
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'trace' }), {
    db: ctx.db,
    jwtSecret: 'another-test-secret-0123456789-abcdef',
    logger: { level: 'trace', stream, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
  });
  t.teardown(() => app.close());
  const { agent } = await agentWithToken(ctx, { role: 'admin' });
  const signIn = await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { email: agent.email, password: PASSWORD },
  });
  const token = signIn.json().access_token as string;
  await app.inject({ method: 'GET', url: '/v1/departments', headers: { authorization: `Bearer ${token}` } });
  await app.inject({
    method: 'POST',
    url: '/v1/auth/token',
    payload: { email: agent.email, password: 'wrong-password-123' },
  });
  // A survey link's token is a credential (it rates the ticket as its contact; only its hash is
  // stored): the request line that carries it is logged without it.
  const surveyToken = 'Zk3q9VbN4xTt2mRr8LpWc5HyD1sJ6gAe0uFoKiXhM7E';
  await app.inject({ method: 'GET', url: `/v1/public/ratings/${surveyToken}` });
  await app.inject({
    method: 'POST',
    url: `/v1/public/ratings/${surveyToken}?x=1`,
    payload: { rating: 'positive' },
  });
  const log = lines.join('');
  t.notOk(log.includes(surveyToken), 'no survey token');
  t.ok(log.includes('/v1/public/ratings/'), 'the survey requests are logged');
  t.ok(log.includes('request_id') || log.includes('reqId'), 'requests are logged with their id');
  t.notOk(log.includes(PASSWORD), 'no password');
  t.notOk(log.includes('wrong-password-123'), 'no failed password');
  t.notOk(log.includes(token), 'no token');
  t.notOk(log.includes(token.split('.')[2]!), 'no token signature');
});
