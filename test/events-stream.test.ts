import http from 'node:http';
import net from 'node:net';
import { sql } from 'kysely';
import pg from 'pg';
import t from 'tap';
import type { Principal } from '../src/access/policy.ts';
import { loadTicketAccess, type TicketAccess } from '../src/access/tickets.ts';
import { loadConfig } from '../src/config.ts';
import { feedHead, readFeed } from '../src/domains/events/repository.ts';
import { StreamHub, Subscriber } from '../src/domains/stream/hub.ts';
import {
  agentWithToken,
  buildTestApp,
  makeAgent,
  makeDepartment,
  mintApiToken,
  PASSWORD,
  sessionPrincipal,
  type TestContext,
} from './helpers/app.ts';
import { createTestDatabase, testDatabaseKind } from './helpers/database.ts';
import { startServer } from './helpers/server.ts';
import { SseStream, StalledSseClient } from './helpers/sse.ts';

// The live stream through a real listening server and a real HTTP client reading it as SSE.

t.setTimeout(600_000);

async function listening(t: { teardown(fn: () => unknown): void }, env: Record<string, string> = {}) {
  const ctx = await buildTestApp(t, { STREAM_POLL_INTERVAL_MS: '20', ...env });
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = ctx.app.server.address() as { port: number };
  const base = `http://127.0.0.1:${port}`;
  const streams: SseStream[] = [];
  t.teardown(() => {
    for (const s of streams) s.close();
  });
  const open = async (token: string, query = '', headers: Record<string, string> = {}) => {
    const stream = await SseStream.open(`${base}/v1/events/stream${query}`, token, headers);
    streams.push(stream);
    return stream;
  };
  return { ctx, base, port, open };
}

// One listening app for the tests that need no settings of their own: a database and an app
// per test cost most of the time on PGlite. Each test makes its own departments and agents.
let sharedApp: ReturnType<typeof listening> | undefined;
const shared = () => {
  sharedApp ??= listening(t);
  return sharedApp;
};

let made = 0;
async function createTicket(ctx: TestContext, token: string, departmentId: string | null, subject?: string) {
  const n = ++made;
  const res = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token,
    payload: {
      subject: subject ?? `Stream ticket ${n}`,
      ...(departmentId ? { department_id: departmentId } : {}),
      contact: { email: `stream-${n}@example.com` },
      message: { body: 'Hello' },
    },
  });
  if (res.statusCode !== 201) throw new Error(`ticket creation: ${res.statusCode} ${res.body}`);
  return res.json().id as string;
}

t.test('events arrive in feed order, only what the subscriber may see', async (t) => {
  const { ctx, open } = await shared();
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const memberA = await agentWithToken(ctx, { departments: [[a, 'solver']] });
  const start = await feedHead(ctx.db);

  const adminStream = await open(admin.token);
  const aStream = await open(memberA.token);
  t.equal(aStream.status, 200);
  t.match(aStream.headers.get('content-type'), /^text\/event-stream/);
  t.ok(aStream.headers.get('x-request-id'), 'carries X-Request-Id like every answer');

  const inA: string[] = [];
  for (let i = 0; i < 6; i++) {
    const id = await createTicket(ctx, admin.token, i % 2 === 0 ? a : b);
    if (i % 2 === 0) inA.push(id);
  }
  const last = await createTicket(ctx, admin.token, null);

  const lastCreated = (s: SseStream) => () =>
    s.events().some((e) => e.type === 'ticket.created' && e.event.ticket_id === last);
  await aStream.until(lastCreated(aStream), 30_000, 'the last ticket');
  await adminStream.until(lastCreated(adminStream), 30_000, 'the last ticket');

  const feed = (await readFeed(ctx.db, { after: start, limit: 1000 })).rows;
  t.same(
    adminStream.events().map((e) => e.cursor),
    feed.map((r) => r.cursor),
    'an admin gets the whole feed, in its order',
  );
  const got = aStream.events();
  t.same(
    got.map((e) => e.cursor),
    feed
      .filter((r) => r.event.ticket_id === last || inA.includes(r.event.ticket_id as string))
      .map((r) => r.cursor),
    'a member of A gets A’s events and those of tickets without a department, in feed order',
  );
  t.notOk(
    got.some((e) => e.event.department_id === b),
    'a member of A never receives an event of B',
  );
  t.same(
    new Set(got.filter((e) => e.type === 'ticket.created').map((e) => e.event.ticket_id)),
    new Set([...inA, last]),
  );
  const first = got[0];
  t.ok(first && typeof first.event.id === 'string' && first.event.payload, 'data is the Event JSON');
});

t.test('filters: types and department_id', async (t) => {
  const { ctx, open } = await shared();
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const onlyCreatedInB = await open(admin.token, `?types=ticket.created&department_id=${b}`);
  await createTicket(ctx, admin.token, a);
  const inB = await createTicket(ctx, admin.token, b);
  await onlyCreatedInB.until(() => onlyCreatedInB.events().length >= 1, 30_000);
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    onlyCreatedInB.events().map((e) => [e.type, e.event.ticket_id]),
    [['ticket.created', inB]],
  );
});

t.test('bad requests answer 400 problem+json and open nothing', async (t) => {
  const { ctx } = await shared();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const unknownType = await ctx.request({
    method: 'GET',
    url: '/v1/events/stream?types=ticket.created,ticket.exploded',
    token: admin.token,
  });
  t.equal(unknownType.statusCode, 400);
  t.equal(unknownType.json().code, 'unknown_event_type');
  const badCursor = await ctx.request({
    method: 'GET',
    url: '/v1/events/stream',
    token: admin.token,
    headers: { 'last-event-id': 'not-a-cursor' },
  });
  t.equal(badCursor.statusCode, 400);
  t.equal(badCursor.json().code, 'invalid_cursor');
  const ahead = await ctx.request({
    method: 'GET',
    url: '/v1/events/stream',
    token: admin.token,
    headers: { 'last-event-id': Buffer.from('f1.18446744073709551615.0.0').toString('base64url') },
  });
  t.equal(ahead.statusCode, 400, 'a cursor ahead of the feed would keep the stream silent');
  t.equal(ahead.json().code, 'invalid_cursor');
  const anonymous = await ctx.request({ method: 'GET', url: '/v1/events/stream' });
  t.equal(anonymous.statusCode, 401);
  const tokenInUrl = await ctx.request({
    method: 'GET',
    url: `/v1/events/stream?access_token=${admin.token}`,
  });
  t.equal(tokenInUrl.statusCode, 401, 'a token in the URL is not accepted');
});

t.test('Last-Event-ID resumes without gap or repeat, while events keep coming', async (t) => {
  const { ctx, open } = await shared();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const start = await feedHead(ctx.db);
  const first = await open(admin.token, '?types=ticket.created');
  for (let i = 0; i < 3; i++) await createTicket(ctx, admin.token, null);
  await first.until(() => first.events().length >= 3, 30_000);
  const resumeFrom = first.events()[1]?.cursor as string;
  first.close();

  // Missed while disconnected, and more while the resumed stream catches up.
  for (let i = 0; i < 20; i++) await createTicket(ctx, admin.token, null);
  let writing = true;
  const more = (async () => {
    for (let i = 0; i < 20; i++) await createTicket(ctx, admin.token, null);
    writing = false;
  })();
  const resumed = await open(admin.token, '?types=ticket.created', { 'last-event-id': resumeFrom });
  await more;
  t.notOk(writing);
  const expected = (await readFeed(ctx.db, { after: start, limit: 1000 })).rows.filter(
    (r) => r.event.type === 'ticket.created',
  );
  t.equal(expected.length, 43);
  await resumed.until(() => resumed.events().length >= 41, 30_000, '41 events');
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    resumed.events().map((e) => e.cursor),
    expected.slice(2).map((r) => r.cursor),
    'exactly the events after Last-Event-ID, in order, each once',
  );
});

t.test(
  'a removed member stops receiving the department at once; a disabled agent’s stream ends',
  async (t) => {
    const { ctx, open } = await shared();
    const a = await makeDepartment(ctx.db);
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const member = await agentWithToken(ctx, { departments: [[a, 'solver']] });
    const stream = await open(member.token, '?types=ticket.created');
    const before = await createTicket(ctx, admin.token, a);
    await stream.until(() => stream.events().some((e) => e.event.ticket_id === before), 30_000);

    const removed = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${a}/members/${member.agent.id}`,
      token: admin.token,
    });
    t.equal(removed.statusCode, 204);
    const after = await createTicket(ctx, admin.token, a);
    const marker = await createTicket(ctx, admin.token, null);
    await stream.until(() => stream.events().some((e) => e.event.ticket_id === marker), 30_000);
    t.notOk(
      stream.events().some((e) => e.event.ticket_id === after),
      'the ticket created in A after the removal never reached the former member',
    );

    const disabled = await ctx.request({
      method: 'PATCH',
      url: `/v1/agents/${member.agent.id}`,
      token: admin.token,
      payload: { status: 'disabled' },
    });
    t.equal(disabled.statusCode, 200);
    await Promise.race([
      stream.ended,
      new Promise((_, reject) => setTimeout(() => reject(new Error('the stream did not end')), 5_000)),
    ]);
    t.ok(stream.done, 'the disabled agent’s stream ended');
  },
);

t.test('a password change ends the streams of the sessions it ends; API tokens go on', async (t) => {
  const { ctx, open } = await shared();
  const a = await makeDepartment(ctx.db);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const member = await agentWithToken(ctx, { departments: [[a, 'solver']] });
  const apiToken = await mintApiToken(ctx, member.token, ['read']);
  const session = await open(member.token, '?types=ticket.created');
  const viaToken = await open(apiToken, '?types=ticket.created');
  const before = await createTicket(ctx, admin.token, a);
  for (const s of [session, viaToken])
    await s.until(() => s.events().some((e) => e.event.ticket_id === before), 30_000);

  const changed = await ctx.request({
    method: 'POST',
    url: '/v1/me/password',
    token: member.token,
    payload: { current_password: PASSWORD, new_password: 'a brand new passphrase' },
  });
  t.equal(changed.statusCode, 200, 'the password changed');
  t.equal(
    (await ctx.request({ method: 'GET', url: '/v1/me', token: member.token })).statusCode,
    401,
    'the old session token is refused from now on',
  );
  await Promise.race([
    session.ended,
    new Promise((_, reject) => setTimeout(() => reject(new Error('the stream did not end')), 5_000)),
  ]);
  t.ok(session.done, 'the stream of the ended session ended too');
  const after = await createTicket(ctx, admin.token, a);
  await viaToken.until(() => viaToken.events().some((e) => e.event.ticket_id === after), 30_000);
  t.notOk(viaToken.done, 'the API token’s stream goes on: a password change does not revoke tokens');
});

t.test('a write answered by this process reaches its streams without waiting for the poll', async (t) => {
  // The poll at its longest (10 s): only the nudge after a successful write can bring the event
  // within the 5 s allowed below.
  const { ctx, open } = await listening(t, { STREAM_POLL_INTERVAL_MS: '10000' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const start = await feedHead(ctx.db);
  const stream = await open(admin.token);
  const first = await createTicket(ctx, admin.token, null);
  // The feed hands out only what is below the oldest running transaction of the whole cluster
  // (other test files' too): once the ticket is readable, one more write nudges a turn that is
  // sure to see it, whatever the first nudge found.
  while (
    !(await readFeed(ctx.db, { after: start, limit: 10 })).rows.some((r) => r.event.ticket_id === first)
  ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await createTicket(ctx, admin.token, null);
  const created = (id: string) => () =>
    stream.events().some((e) => e.type === 'ticket.created' && e.event.ticket_id === id);
  await stream.until(created(first), 5_000, 'the first ticket, before the next poll');
  t.ok(created(first)(), 'the ticket written through this app came with the nudge');
});

t.test('heartbeats arrive as comment lines', async (t) => {
  const { ctx, open } = await listening(t, { STREAM_HEARTBEAT_MS: '150' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const stream = await open(admin.token);
  await stream.until(() => stream.comments.filter((c) => c === 'heartbeat').length >= 3, 5_000, 'heartbeats');
  t.equal(stream.messages.length, 0, 'heartbeats are comments, not messages');
});

t.test('the subscriber cap answers 503 problem+json with Retry-After', async (t) => {
  const { ctx, open } = await listening(t, { STREAM_MAX_SUBSCRIBERS: '2' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const one = await open(admin.token);
  const two = await open(admin.token);
  t.equal(one.status, 200);
  t.equal(two.status, 200);
  const three = await ctx.request({ method: 'GET', url: '/v1/events/stream', token: admin.token });
  t.equal(three.statusCode, 503);
  t.match(three.headers['content-type'], /application\/problem\+json/);
  t.equal(three.json().code, 'stream_busy');
  t.ok(Number(three.headers['retry-after']) > 0, 'says when to retry');
  one.close();
  await one.ended;
  // The server notices the closed connection, then has room again.
  let again: SseStream | null = null;
  for (let i = 0; i < 50 && again?.status !== 200; i++) {
    again?.close();
    await new Promise((r) => setTimeout(r, 50));
    again = await open(admin.token);
  }
  t.equal(again?.status, 200, 'a closed stream frees its place');
});

t.test(
  'a client that leaves while its stream is being opened holds no place',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'needs a second connection to hold the request in its set-up (PGlite has one)'
        : false,
  },
  async (t) => {
    // The stream was added after its client had gone (its 'close' came before anyone listened),
    // and held a place until the slow-reader cut, some 45 s: clients that gave up quickly, or a
    // reconnecting crowd, filled STREAM_MAX_SUBSCRIBERS with nobody.
    const { ctx, port, open } = await listening(t, { STREAM_MAX_SUBSCRIBERS: '1' });
    const a = await makeDepartment(ctx.db);
    const member = await agentWithToken(ctx, { departments: [[a, 'reader']] });
    // Another session holds the memberships: the request waits in its set-up.
    const blocker = new pg.Client({ connectionString: ctx.database.url as string });
    await blocker.connect();
    t.teardown(() => blocker.end());
    await blocker.query('begin');
    await blocker.query('lock table department_members in access exclusive mode');
    const waiting = async () => {
      const { rows } = await sql<{ n: number }>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'`.execute(ctx.db);
      return (rows[0]?.n ?? 0) > 0;
    };
    const leaver = net.connect(port, '127.0.0.1');
    leaver.on('error', () => {});
    leaver.write(
      `GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${member.token}\r\n\r\n`,
    );
    await eventually('the request to wait for the lock', waiting, 30_000);
    leaver.resetAndDestroy();
    await eventually('the server to see the client leave', async () => (await connections(ctx)) === 0);
    await blocker.query('rollback');
    await eventually('the request to finish its set-up', async () => !(await waiting()));

    let again: SseStream | null = null;
    for (let i = 0; i < 50 && again?.status !== 200; i++) {
      again?.close();
      await new Promise((r) => setTimeout(r, 100));
      again = await open(member.token);
    }
    t.equal(again?.status, 200, 'the one place is free for the next client');
  },
);

t.test('app.close() with open streams returns promptly and ends them', async (t) => {
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const { buildApp } = await import('../src/app.ts');
  const { loadConfig } = await import('../src/config.ts');
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', STREAM_POLL_INTERVAL_MS: '20' }), {
    db: database.db,
    jwtSecret: 'test-secret-that-is-long-enough-0123456789',
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  const admin = await makeAgent(database.db, { role: 'admin' });
  const signIn = await fetch(`http://127.0.0.1:${port}/v1/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: admin.email, password: PASSWORD }),
  });
  const { access_token } = (await signIn.json()) as { access_token: string };
  const streams = await Promise.all(
    [1, 2, 3].map(() => SseStream.open(`http://127.0.0.1:${port}/v1/events/stream`, access_token)),
  );
  t.same(
    streams.map((s) => s.status),
    [200, 200, 200],
  );
  const began = Date.now();
  await app.close();
  const took = Date.now() - began;
  t.ok(took < 2_000, `app.close() took ${took} ms`);
  await Promise.all(streams.map((s) => s.ended));
  t.ok(
    streams.every((s) => s.done),
    'every stream ended',
  );
});

const twoProcesses =
  (await testDatabaseKind()) === 'pglite'
    ? 'needs a PostgreSQL server two processes share (PGlite is one process)'
    : false;

t.test(
  'two server processes on one PostgreSQL each deliver what the other wrote',
  { skip: twoProcesses },
  async (t) => {
    const database = await createTestDatabase();
    t.teardown(() => database.drop());
    const a = await makeDepartment(database.db, 'A');
    const admin = await makeAgent(database.db, { role: 'admin' });
    const member = await makeAgent(database.db, { departments: [[a, 'reader']] });
    const env = { DATABASE_URL: database.url as string, STREAM_POLL_INTERVAL_MS: '20' };
    const [one, two] = await Promise.all([startServer(t, env), startServer(t, env)]);
    const token = async (base: string, email: string) => {
      const res = await fetch(`${base}/v1/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: PASSWORD }),
      });
      return ((await res.json()) as { access_token: string }).access_token;
    };
    const adminToken = await token(one.base, admin.email);
    const memberToken = await token(two.base, member.email);
    const onOne = await SseStream.open(`${one.base}/v1/events/stream?types=ticket.created`, memberToken);
    const onTwo = await SseStream.open(`${two.base}/v1/events/stream?types=ticket.created`, memberToken);
    t.teardown(() => {
      onOne.close();
      onTwo.close();
    });
    const create = async (base: string, subject: string) => {
      const res = await fetch(`${base}/v1/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({
          subject,
          department_id: a,
          contact: { email: 'two@example.com' },
          message: { body: 'Hi' },
        }),
      });
      return ((await res.json()) as { id: string }).id;
    };
    const viaOne = await create(one.base, 'written through one');
    const viaTwo = await create(two.base, 'written through two');
    for (const stream of [onOne, onTwo]) {
      await stream.until(() => stream.events().length >= 2, 30_000, 'both tickets');
      t.same(
        stream.events().map((e) => e.event.ticket_id),
        [viaOne, viaTwo],
        'both tickets, in order, whichever process wrote them',
      );
    }
  },
);

// ---- clients that stop reading ----------------------------------------------------------

/** ~32 KB: a customer message that size makes a ticket.customer_replied event a little larger. */
const BIG_BODY = 'x'.repeat(32_000);
const BIG_TYPES = '?types=ticket.customer_replied';

async function customerMessage(ctx: TestContext, token: string, ticketId: string, n: number) {
  const res = await ctx.request({
    method: 'POST',
    url: `/v1/tickets/${ticketId}/messages`,
    token,
    payload: { kind: 'customer', body: `${n} ${BIG_BODY}` },
  });
  if (res.statusCode !== 201) throw new Error(`message: ${res.statusCode} ${res.body}`);
}

/** Open TCP connections to the listening server (app.inject makes none). */
function connections(ctx: TestContext): Promise<number> {
  return new Promise((resolve, reject) =>
    ctx.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

async function eventually(what: string, probe: () => Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Big events until the server has cut the stalled client (its connection is gone: the kernel's
 * buffers hold some 4 MB on loopback before anything waits in the server), at most `max` of them.
 * Returns how many it took.
 */
async function floodUntilCut(ctx: TestContext, token: string, ticketId: string, max: number) {
  for (let i = 1; i <= max; i++) {
    await customerMessage(ctx, token, ticketId, i);
    if (i % 10 === 0 && (await connections(ctx)) < 2) return i;
  }
  await eventually('the stalled stream to be cut', async () => (await connections(ctx)) < 2, 5_000);
  return max;
}

const bigFeed = async (ctx: TestContext, after: string) =>
  (await readFeed(ctx.db, { after, limit: 1000 })).rows
    .filter((r) => r.event.type === 'ticket.customer_replied')
    .map((r) => r.cursor);

t.test(
  'a client that stops reading is cut once its buffer passes STREAM_MAX_BUFFER_BYTES; others go on, it resumes without a gap',
  async (t) => {
    const { ctx, base, port, open } = await listening(t, {
      STREAM_MAX_BUFFER_BYTES: '65536',
      // Only the buffer can cut it here.
      STREAM_SLOW_READER_MS: '600000',
    });
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const ticket = await createTicket(ctx, admin.token, null);
    const start = await feedHead(ctx.db);
    // Both live (no Last-Event-ID) before the first customer message: each must get them all.
    const reader = await open(admin.token, BIG_TYPES);
    const stalled = await StalledSseClient.open(port, admin.token, `/v1/events/stream${BIG_TYPES}`);
    t.teardown(() => stalled.close());
    t.equal(await connections(ctx), 2);

    const sent = await floodUntilCut(ctx, admin.token, ticket, 400);
    t.ok(sent < 400, `cut after ${sent} events of ~32 KB`);
    t.notOk(reader.done, 'the client that reads is still connected');
    const ready = await fetch(`${base}/readyz`);
    t.equal(ready.status, 200, 'the server is ready');
    // More while the cut client is away.
    for (let i = 0; i < 5; i++) await customerMessage(ctx, admin.token, ticket, 1000 + i);
    const all = await bigFeed(ctx, start);
    t.equal(all.length, sent + 5);
    await reader.until(() => reader.events().length >= all.length, 30_000, 'every event');
    t.same(
      reader.events().map((e) => e.cursor),
      all,
      'the reading client got every event, in order, with no gap',
    );

    const { status, messages } = await stalled.drain();
    t.equal(status, 200);
    const got = messages.map((m) => m.id as string);
    t.ok(
      got.length > 0 && got.length < all.length,
      `the stalled client got ${got.length} events before the cut`,
    );
    t.same(got, all.slice(0, got.length), 'what it got is the feed from its start, no gap');

    const resumed = await open(admin.token, BIG_TYPES, { 'last-event-id': got.at(-1) as string });
    t.equal(resumed.status, 200);
    await resumed.until(() => resumed.events().length >= all.length - got.length, 30_000, 'the rest');
    t.same(
      resumed.events().map((e) => e.cursor),
      all.slice(got.length),
      'resuming from the last id it parsed gets the rest, each once',
    );
  },
);

t.test(
  'a client whose socket stays full for STREAM_SLOW_READER_MS is cut; the server stays healthy',
  async (t) => {
    const { ctx, base, port, open } = await listening(t, {
      // Only the time can cut it here.
      STREAM_MAX_BUFFER_BYTES: String(1024 ** 3),
      STREAM_SLOW_READER_MS: '300',
    });
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const ticket = await createTicket(ctx, admin.token, null);
    const start = await feedHead(ctx.db);
    const reader = await open(admin.token, BIG_TYPES);
    const stalled = await StalledSseClient.open(port, admin.token, `/v1/events/stream${BIG_TYPES}`);
    t.teardown(() => stalled.close());
    t.equal(await connections(ctx), 2);

    const sent = await floodUntilCut(ctx, admin.token, ticket, 400);
    t.ok(sent < 400, `cut after ${sent} events of ~32 KB`);
    t.equal((await fetch(`${base}/readyz`)).status, 200, 'the server is ready');
    await customerMessage(ctx, admin.token, ticket, 1000);
    const all = await bigFeed(ctx, start);
    await reader.until(() => reader.events().length >= all.length, 30_000, 'every event');
    t.notOk(reader.done, 'the client that reads is still connected');
    const { messages } = await stalled.drain();
    const got = messages.map((m) => m.id as string);
    t.same(got, all.slice(0, got.length), 'the stalled client got the feed up to the cut, no gap');
    t.ok(got.length < all.length);
  },
);

t.test('a client far behind catches up at the pace it reads, and is not cut for it', async (t) => {
  const { ctx, open } = await listening(t, { STREAM_MAX_BUFFER_BYTES: String(256 * 1024) });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const ticket = await createTicket(ctx, admin.token, null);
  const start = await feedHead(ctx.db);
  // Some 8 MB of history: more than the kernel's buffers and STREAM_MAX_BUFFER_BYTES together.
  for (let i = 0; i < 250; i++) await customerMessage(ctx, admin.token, ticket, i);
  const history = await bigFeed(ctx, start);
  const stream = await open(admin.token, BIG_TYPES, { 'last-event-id': start });
  await stream.until(() => stream.events().length >= history.length, 60_000, 'the whole history');
  await customerMessage(ctx, admin.token, ticket, 1000);
  await stream.until(() => stream.events().length > history.length, 30_000, 'the live event');
  t.same(
    stream.events().map((e) => e.cursor),
    await bigFeed(ctx, start),
    'history then live, in order, each once, on one connection',
  );
  t.notOk(stream.done);
});

// ---- credentials that end -----------------------------------------------------------------

/** The stream ends within `ms`, or the test fails. */
async function ends(stream: SseStream, ms = 5_000) {
  await Promise.race([
    stream.ended,
    new Promise((_, reject) => setTimeout(() => reject(new Error('the stream did not end')), ms)),
  ]);
}

t.test('a stream opened with a session ends when the session token expires', async (t) => {
  const { ctx, open } = await shared();
  const agent = await agentWithToken(ctx, { role: 'admin' });
  const claims = ctx.app.jwt.decode<{ sub: string; pwd: number }>(agent.token)!;
  const short = ctx.app.jwt.sign({ sub: claims.sub, pwd: claims.pwd }, { expiresIn: '3s' });
  const exp = (ctx.app.jwt.decode<{ exp: number }>(short)?.exp ?? 0) * 1000;
  const stream = await open(short, '?types=ticket.created');
  t.equal(stream.status, 200);
  const ticket = await createTicket(ctx, agent.token, null);
  await stream.until(() => stream.events().some((e) => e.event.ticket_id === ticket), 10_000);
  t.ok(Date.now() < exp, 'it worked while the token was valid');
  await ends(stream, exp - Date.now() + 5_000);
  t.ok(Date.now() >= exp, 'it ended at the expiry, not before');
  const again = await ctx.request({ method: 'GET', url: '/v1/events/stream', token: short });
  t.equal(again.statusCode, 401, 'and the token opens nothing any more');
});

t.test('a revoked API token ends its stream; the agent’s session stream goes on', async (t) => {
  const { ctx, open } = await shared();
  const agent = await agentWithToken(ctx, { role: 'admin' });
  const secret = await mintApiToken(ctx, agent.token, ['read']);
  const viaToken = await open(secret, '?types=ticket.created');
  const viaSession = await open(agent.token, '?types=ticket.created');
  t.equal(viaToken.status, 200);
  const first = await createTicket(ctx, agent.token, null);
  await viaToken.until(() => viaToken.events().some((e) => e.event.ticket_id === first), 10_000);
  const tokens = await ctx.request({ method: 'GET', url: '/v1/api-tokens', token: agent.token });
  const id = tokens.json().data[0].id as string;
  const revoked = await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${id}`, token: agent.token });
  t.equal(revoked.statusCode, 204);
  await ends(viaToken);
  const second = await createTicket(ctx, agent.token, null);
  await viaSession.until(() => viaSession.events().some((e) => e.event.ticket_id === second), 10_000);
  t.notOk(viaSession.done, 'the session’s stream goes on');
  t.notOk(viaToken.events().some((e) => e.event.ticket_id === second));
});

t.test('an API token’s stream ends when the token expires', async (t) => {
  const { ctx, open } = await shared();
  const agent = await agentWithToken(ctx);
  const expiresAt = new Date(Date.now() + 3_000);
  const res = await ctx.request({
    method: 'POST',
    url: '/v1/api-tokens',
    token: agent.token,
    payload: { name: 'short', scopes: ['read'], expires_at: expiresAt.toISOString() },
  });
  t.equal(res.statusCode, 201);
  const stream = await open(res.json().secret, '?types=ticket.created');
  t.equal(stream.status, 200);
  await ends(stream, expiresAt.getTime() - Date.now() + 5_000);
  t.ok(Date.now() >= expiresAt.getTime(), 'it ended at the expiry, not before');
});

t.test('disabling or deleting an agent ends their streams, API token and session alike', async (t) => {
  const { ctx, open } = await shared();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const disabled = await agentWithToken(ctx);
  const deleted = await agentWithToken(ctx);
  const bystander = await agentWithToken(ctx);
  const streams = {
    disabledToken: await open(await mintApiToken(ctx, disabled.token, ['read'])),
    disabledSession: await open(disabled.token),
    deletedToken: await open(await mintApiToken(ctx, deleted.token, ['read'])),
    deletedSession: await open(deleted.token),
    bystander: await open(bystander.token, '?types=ticket.created'),
  };
  for (const s of Object.values(streams)) t.equal(s.status, 200);
  const patched = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${disabled.agent.id}`,
    token: admin.token,
    payload: { status: 'disabled' },
  });
  t.equal(patched.statusCode, 200);
  const gone = await ctx.request({
    method: 'DELETE',
    url: `/v1/agents/${deleted.agent.id}`,
    token: admin.token,
  });
  t.equal(gone.statusCode, 204);
  await ends(streams.disabledToken);
  await ends(streams.disabledSession);
  await ends(streams.deletedToken);
  await ends(streams.deletedSession);
  const ticket = await createTicket(ctx, admin.token, null);
  await streams.bystander.until(() => streams.bystander.events().some((e) => e.event.ticket_id === ticket));
  t.notOk(streams.bystander.done, 'another agent’s stream goes on');
});

t.test('an access change acted on while a stream was being opened still ends it', async (t) => {
  // The route reads the agent's access, then adds the stream to the hub. An agent disabled in
  // between is acted on by the hub before the stream is there: the stream must not live on
  // with the access read before. Driven on a hub of its own to hold that moment open.
  const ctx = await buildTestApp(t);
  const hub = new StreamHub(ctx.db, ctx.app.log, { ...loadConfig({}).stream, pollMs: 20 });
  t.teardown(() => hub.close());
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const leaving = await agentWithToken(ctx);
  // A real response to hand to the hub, read by a real client.
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as { port: number };
  const open = async (principal: Principal, epoch: number, read?: TicketAccess) => {
    const access = read ?? (await loadTicketAccess(ctx.db, principal));
    const responded = new Promise<http.ServerResponse>((resolve) =>
      server.once('request', (_req, res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
        resolve(res);
      }),
    );
    const ended = new Promise<string>((resolve) => {
      const req = http.get({ port, host: '127.0.0.1', path: '/' }, (res) => {
        res.resume();
        res.on('end', () => resolve('ended'));
        res.on('error', () => resolve('ended'));
      });
      req.on('error', () => resolve('ended'));
    });
    const res = await responded;
    hub.add(
      new Subscriber(
        principal,
        access,
        { types: null, departmentId: null },
        res,
        await hub.livePosition(),
        true,
      ),
      epoch,
    );
    return { ended };
  };
  const principalOf = (agentId: string): Principal => sessionPrincipal({ id: agentId, role: 'agent' });
  // A bystander keeps the hub reading the feed.
  const bystander = await agentWithToken(ctx);
  await open(principalOf(bystander.agent.id), hub.accessEpoch);

  const before = hub.accessEpoch;
  const readBefore = await loadTicketAccess(ctx.db, principalOf(leaving.agent.id));
  const disabled = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${leaving.agent.id}`,
    token: admin.token,
    payload: { status: 'disabled' },
  });
  t.equal(disabled.statusCode, 200);
  let acted = false;
  for (let i = 0; i < 500 && !acted; i++) {
    acted = hub.accessEpoch > before;
    if (!acted) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(acted, 'the hub acted on the change');
  // The stream of the disabled agent, with the access read before the change.
  const { ended } = await open(principalOf(leaving.agent.id), before, readBefore);
  const outcome = await Promise.race([
    ended,
    new Promise((r) => setTimeout(() => r('still open after 10 s'), 10_000)),
  ]);
  t.equal(outcome, 'ended', 'the stream ends without waiting for another access change');
});
