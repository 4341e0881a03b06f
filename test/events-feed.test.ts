import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import tap from 'tap';
import type { Database } from '../src/db/types.ts';
import { AgentSchema } from '../src/domains/agents/schemas.ts';
import { ApiTokenSchema } from '../src/domains/api-tokens/schemas.ts';
import {
  AutomationRuleSchema,
  IdleAfterSchema,
  RULE_STAND_INS,
} from '../src/domains/automation-rules/schemas.ts';
import { CannedResponseSchema } from '../src/domains/canned-responses/schemas.ts';
import { ContactFieldSchema } from '../src/domains/contact-fields/schemas.ts';
import { DepartmentSchema, MemberSchema } from '../src/domains/departments/schemas.ts';
import { eventSchemas } from '../src/domains/events/catalogue.ts';
import { consumeFeedBatch } from '../src/domains/events/consumer.ts';
import { type FeedRow, feedHead, readFeed, recordSettingsEvent } from '../src/domains/events/repository.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import {
  DepartmentMailIdentitySchema,
  MailSettingsSchema,
  MailTemplateSchema,
} from '../src/domains/mail-identity/schemas.ts';
import { HolidaySchema, ScheduleSchema, WeeklyIntervalSchema } from '../src/domains/schedules/schemas.ts';
import {
  SlaEscalationSchema,
  SlaPolicySchema,
  SlaTargetSchema,
} from '../src/domains/sla-policies/schemas.ts';
import { agentWithToken, buildTestApp, makeDepartment, PASSWORD, type TestContext } from './helpers/app.ts';
import { createTestDatabase, testDatabaseKind } from './helpers/database.ts';
import { exited, startServer } from './helpers/server.ts';
import { makeTicket } from './helpers/tickets.ts';

// The feed returns rows only below the oldest transaction still running anywhere on the server
// (other test files share it), so a read may briefly lag: reads wait for what they expect.
const WAIT_MS = 60_000;

async function drainFeed(
  db: Kysely<Database>,
  from: string | undefined,
  pageSize: number,
  expected: number,
): Promise<{ rows: FeedRow[]; next: string }> {
  const rows: FeedRow[] = [];
  let cursor = from;
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const page = await readFeed(db, { after: cursor, limit: pageSize });
    rows.push(...page.rows);
    cursor = page.next;
    if (rows.length >= expected && page.rows.length < pageSize) return { rows, next: page.next };
    if (page.rows.length === 0) {
      if (Date.now() > deadline) return { rows, next: page.next };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** GET /v1/events from `after` until `expected` events came (or the wait ends). */
async function drainApi(ctx: TestContext, token: string, query: string, expected: number) {
  const events: { id: string; type: string; ticket_id: string | null; department_id: string | null }[] = [];
  let after = '';
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const res = await ctx.request({
      method: 'GET',
      url: `/v1/events?limit=3${query}${after ? `&after=${after}` : ''}`,
      token,
    });
    if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
    const body = res.json();
    events.push(...body.data);
    after = body.next_cursor;
    if (body.data.length === 0) {
      if (events.length >= expected || Date.now() > deadline) return { events, next: after };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

tap.test('readFeed: every event once, in commit-safe order, across pages', async (t) => {
  const ctx = await buildTestApp(t);
  const departmentId = await makeDepartment(ctx.db);
  const start = await feedHead(ctx.db);
  const a = await makeTicket(ctx.db, { department_id: departmentId });
  await ctx.db.transaction().execute((trx) =>
    recordSettingsEvent(trx, {
      type: 'department.updated',
      actor: { type: 'system' },
      departmentId,
      subjectId: departmentId,
      payload: { changes: { name: { from: 'x', to: 'y' } } },
    }),
  );
  const b = await makeTicket(ctx.db);

  const paged = await drainFeed(ctx.db, start, 2, 5);
  const seen = paged.rows.map((r) => r.event.id);
  t.same(new Set(seen).size, seen.length, 'no event twice');
  // Ticket a: created + customer message; then the settings event; then b's two.
  t.same(
    paged.rows.map((r) => r.event.type),
    [
      'ticket.created',
      'ticket.customer_replied',
      'department.updated',
      'ticket.created',
      'ticket.customer_replied',
    ],
  );
  const again = await readFeed(ctx.db, { after: start, limit: 100 });
  t.same(
    again.rows.map((r) => r.event.id),
    seen,
    'one page or many: the same events in the same order',
  );
  const [created, replied] = again.rows;
  t.equal(created!.event.ticket_id, a.id);
  t.equal(created!.event.department_id, departmentId);
  t.same(created!.visibility, { department_id: departmentId, assignee_id: null });
  t.equal(again.rows[2]!.visibility, null, 'settings events are for admins only');
  t.equal(again.rows[3]!.event.ticket_id, b.id);
  t.match(replied!.event.payload, { message: { kind: 'customer', body: /Hello/ } });
  const later = await readFeed(ctx.db, { after: paged.next, limit: 100 });
  t.same(later.rows, [], 'nothing after the last cursor');
});

tap.test('every feed row fits the Event schema of the spec', async (t) => {
  const ctx = await buildTestApp(t);
  await makeTicket(ctx.db);
  const { rows } = await drainFeed(ctx.db, undefined, 100, 2);
  t.ok(rows.length >= 2);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  for (const schema of [
    ...RULE_STAND_INS,
    DepartmentSchema,
    MemberSchema,
    AgentSchema,
    ApiTokenSchema,
    IdleAfterSchema,
    AutomationRuleSchema,
    ContactFieldSchema,
    WeeklyIntervalSchema,
    HolidaySchema,
    ScheduleSchema,
    SlaTargetSchema,
    SlaEscalationSchema,
    SlaPolicySchema,
    MailSettingsSchema,
    DepartmentMailIdentitySchema,
    MailTemplateSchema,
    CannedResponseSchema,
    ...eventSchemas,
  ]) {
    ajv.addSchema(schema);
  }
  const check = ajv.getSchema('Event')!;
  t.notOk(check({ ...rows[0]!.event, type: 'ticket.nonsense' }), 'the check can fail');
  for (const row of rows) {
    t.ok(check(row.event), `${row.event.type} fits ${JSON.stringify(check.errors?.slice(0, 2))}`);
  }
});

tap.test('GET /v1/events: visibility, filters, bad input', async (t) => {
  const ctx = await buildTestApp(t);
  const depA = await makeDepartment(ctx.db);
  const depB = await makeDepartment(ctx.db);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: memberA } = await agentWithToken(ctx, { departments: [[depA, 'solver']] });
  // Many of B's events before A's only ticket: a member of A must still get it on the first pages.
  for (let i = 0; i < 12; i++) await makeTicket(ctx.db, { department_id: depB });
  const ticketA = await makeTicket(ctx.db, { department_id: depA });
  const dep = await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token: admin,
    payload: { name: 'Late' },
  });
  t.equal(dep.statusCode, 201);

  const all = await drainApi(ctx, admin, '', 12 * 2 + 2 + 1);
  t.equal(all.events.filter((e) => e.ticket_id !== null).length, 26, 'the admin sees every ticket event');
  t.ok(
    all.events.some((e) => e.type === 'department.created'),
    'the admin sees settings events',
  );

  let first = await ctx.request({ method: 'GET', url: '/v1/events?limit=2', token: memberA });
  for (const deadline = Date.now() + WAIT_MS; first.json().data.length === 0 && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    first = await ctx.request({ method: 'GET', url: '/v1/events?limit=2', token: memberA });
  }
  t.equal(first.statusCode, 200);
  t.same(
    first.json().data.map((e: { ticket_id: string }) => e.ticket_id),
    [ticketA.id, ticketA.id],
    'a member of A gets A’s events on the first page, not 24 empty pages of B',
  );
  const mine = await drainApi(ctx, memberA, '', 2);
  t.same(
    mine.events.map((e) => e.type),
    ['ticket.created', 'ticket.customer_replied'],
    'a member of A sees only A’s events: no B event, no settings event',
  );
  const askSettings = await ctx.request({
    method: 'GET',
    url: '/v1/events?types=department.created',
    token: memberA,
  });
  t.equal(askSettings.statusCode, 200, 'asking for settings events is not an error');
  t.same(askSettings.json().data, [], 'but they are left out for non-admins');

  const created = await drainApi(ctx, admin, '&types=ticket.created', 13);
  t.equal(created.events.length, 13);
  t.ok(
    created.events.every((e) => e.type === 'ticket.created'),
    'types filter',
  );
  const inA = await drainApi(ctx, admin, `&department_id=${depA}`, 2);
  t.same(
    inA.events.map((e) => e.ticket_id),
    [ticketA.id, ticketA.id],
    'department filter',
  );

  for (const [query, code] of [
    ['after=garbage!', 'validation'],
    ['after=Zm9vYmFy', 'invalid_cursor'],
    [`after=${Buffer.from('f1.1.2.3x').toString('base64url')}`, 'invalid_cursor'],
    // Well formed but ahead of the feed: no page would ever come back from it.
    [`after=${Buffer.from('f1.18446744073709551615.0.0').toString('base64url')}`, 'invalid_cursor'],
    [`after=${Buffer.from('f1.9000000000000000000.1.5').toString('base64url')}`, 'invalid_cursor'],
    ['types=ticket.exploded', 'unknown_event_type'],
    ['limit=1001', 'validation'],
    ['limit=0', 'validation'],
    [`department_id=nope`, 'validation'],
    ['colour=red', 'validation'],
  ]) {
    const res = await ctx.request({ method: 'GET', url: `/v1/events?${query}`, token: admin });
    t.equal(res.statusCode, 400, `${query}: 400`);
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${query}: problem+json`);
    if (code !== 'validation') t.equal(res.json().code, code, `${query}: ${code}`);
    if (code === 'invalid_cursor')
      t.equal(res.json().errors[0].field, 'querystring/after', `${query}: field`);
  }
  const auditCursor = await ctx.request({ method: 'GET', url: '/v1/audit-log?limit=1', token: admin });
  const foreign = auditCursor.json().next_cursor;
  if (foreign) {
    const res = await ctx.request({ method: 'GET', url: `/v1/events?after=${foreign}`, token: admin });
    t.equal(res.statusCode, 400, 'a cursor of another list is refused');
  }
  const anonymous = await ctx.request({ method: 'GET', url: '/v1/events' });
  t.equal(anonymous.statusCode, 401);
});

tap.test(
  'a transaction that commits late is not skipped',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'PGlite runs one connection: no transaction can stay open while another commits'
        : false,
  },
  async (t) => {
    const ctx = await buildTestApp(t);
    const ticket = await makeTicket(ctx.db);
    const { next: start } = await drainFeed(ctx.db, undefined, 100, 2);

    const slow = new pg.Client({ connectionString: ctx.database.url! });
    await slow.connect();
    t.teardown(() => slow.end());
    await slow.query('begin');
    const held = await slow.query(
      `insert into ticket_events (ticket_id, type, actor_type, channel, data)
       values ($1, 'tags_changed', 'system', 'email', '{"added":["late"],"removed":[]}') returning id`,
      [ticket.id],
    );
    const heldId = `te_${held.rows[0].id}`;
    // Others write and commit after it (higher ids), and a reader pages past them.
    for (let i = 0; i < 3; i++) await makeTicket(ctx.db);
    const before = await readFeed(ctx.db, { after: start, limit: 100 });
    t.same(before.rows, [], 'events after an open transaction wait for it (nothing to skip it with)');
    await slow.query('commit');

    const after = await drainFeed(ctx.db, before.next, 2, 7);
    const ids = after.rows.map((r) => r.event.id);
    t.equal(ids[0], heldId, 'the late event comes first: it was written first');
    t.equal(ids.length, 7, 'then the three tickets’ six events');
    t.equal(new Set(ids).size, ids.length, 'each once');
    t.equal(after.rows[0]!.event.type, 'ticket.tags_changed');
  },
);

tap.test('consumeFeedBatch: each event handled once, even with two consumers racing', async (t) => {
  const ctx = await buildTestApp(t);
  const onPglite = (await testDatabaseKind()) === 'pglite';
  // Two pools on PostgreSQL (two processes, in effect); PGlite has one connection.
  const other = onPglite
    ? ctx.db
    : new Kysely<Database>({
        dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: ctx.database.url!, max: 2 }) }),
      });
  if (!onPglite) t.teardown(() => other.destroy());

  await makeTicket(ctx.db);
  // A new consumer starts at the head: history is skipped (a transaction still running elsewhere
  // on the server may hold the head back a little, so the test does not count on that ticket).
  await consumeFeedBatch(ctx.db, 'test', 100, async () => {});
  const made = 10;
  const tickets = new Set<string>();
  for (let i = 0; i < made; i++) tickets.add((await makeTicket(ctx.db)).id);

  const handled: string[] = [];
  const ours = () => handled.filter((id) => id.startsWith('te_') && ownIds.has(id)).length;
  const ownIds = new Set<string>();
  let failOnce = true;
  const run = async (db: Kysely<Database>) => {
    const deadline = Date.now() + WAIT_MS;
    while (ours() < made * 2 && Date.now() < deadline) {
      const n = await consumeFeedBatch(db, 'test', 3, async (trx, rows) => {
        // Work in the batch's transaction (a real consumer enqueues deliveries here).
        await trx.selectFrom('feed_consumers').select('name').execute();
        if (failOnce) {
          failOnce = false;
          throw new Error('handler failed');
        }
        for (const r of rows) {
          handled.push(r.event.id);
          if (tickets.has(r.event.ticket_id ?? '')) ownIds.add(r.event.id);
        }
      }).catch((error: Error) => {
        if (error.message !== 'handler failed') throw error;
        return 0;
      });
      if (n === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  await Promise.all([run(ctx.db), run(other)]);
  t.equal(ownIds.size, made * 2, 'every event handled (a failed batch is handled again)');
  t.equal(new Set(handled).size, handled.length, 'none twice');
});

tap.test('consumers pass imported history by: only what happens now reaches them', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  await consumeFeedBatch(ctx.db, 'live-only', 100, async () => {});
  const before = (await makeTicket(ctx.db)).id;
  // A history of 30 tickets, their events far more than a page.
  const lines = [{ type: 'contact', external_id: 'c', name: 'Old buyer', emails: ['old@feed.test'] }];
  for (let i = 0; i < 30; i++) {
    const at = new Date(Date.UTC(2024, 0, 1 + i)).toISOString();
    lines.push(
      {
        type: 'ticket',
        external_id: `t${i}`,
        created_at: at,
        subject: `Old ${i}`,
        contact: 'c',
        message: { body: 'Hi' },
      } as never,
      { type: 'status', external_id: `s${i}`, ticket: `t${i}`, at, status: 'resolved' } as never,
    );
  }
  const upload = await ctx.request({
    method: 'POST',
    url: '/v1/imports?source=feed',
    token: admin,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`,
  });
  t.equal(upload.statusCode, 202, upload.body);
  const log = pino({ level: 'silent' });
  t.equal(await processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log }), 1, 'the import ran');
  const after = (await makeTicket(ctx.db)).id;

  const handled: FeedRow[] = [];
  const deadline = Date.now() + WAIT_MS;
  while (!handled.some((r) => r.event.ticket_id === after) && Date.now() < deadline) {
    const n = await consumeFeedBatch(ctx.db, 'live-only', 5, async (_trx, rows) => {
      handled.push(...rows);
    });
    if (n === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const tickets = new Set(handled.map((r) => r.event.ticket_id));
  t.ok(tickets.has(before) && tickets.has(after), 'the live tickets before and after the import reached it');
  t.equal(handled.filter((r) => r.imported).length, 0, 'no imported event reached it');
  // The feed itself shows the history, marked.
  const { rows } = await drainFeed(ctx.db, undefined, 200, 60);
  t.ok(rows.filter((r) => r.imported).length >= 60, 'the feed holds the imported events');
});

tap.test('settings events carry who made them: session or API token', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent, token: session } = await agentWithToken(ctx, { role: 'admin' });
  const tokenRes = await ctx.request({
    method: 'POST',
    url: '/v1/api-tokens',
    token: session,
    payload: { name: 'sync', scopes: ['read', 'write'] },
  });
  const { secret, token: apiToken } = tokenRes.json();
  await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token: session,
    payload: { name: 'By session' },
  });
  await ctx.request({ method: 'POST', url: '/v1/departments', token: secret, payload: { name: 'By token' } });
  const { rows } = await drainFeed(ctx.db, undefined, 100, 3);
  const byName = (name: string) =>
    rows.find(
      (r) =>
        r.event.type === 'department.created' &&
        (r.event.payload as { department: { name: string } }).department.name === name,
    )!.event;
  t.same(byName('By session').actor, {
    type: 'agent',
    agent_id: agent.id,
    contact_id: null,
    rule_id: null,
    rule_version: null,
    token_id: null,
  });
  t.same(byName('By token').actor, {
    type: 'token',
    agent_id: agent.id,
    contact_id: null,
    rule_id: null,
    rule_version: null,
    token_id: apiToken.id,
  });
  const created = rows.find((r) => r.event.type === 'token.created')!;
  t.notOk(JSON.stringify(created.event).includes(secret), 'the token secret never appears');
});

tap.test('a cursor resumes across a server restart', async (t) => {
  const database = await createTestDatabase();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'deskroute-events-'));
  t.teardown(async () => {
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });
  // PGlite holds its data folder alone: the server gets a folder of its own.
  const storage: Record<string, string> = database.url
    ? { DATABASE_URL: database.url }
    : { DATA_DIR: dataDir };
  const env = { ...storage, DESKROUTE_ADMIN_EMAIL: 'owner@example.com', DESKROUTE_ADMIN_PASSWORD: PASSWORD };
  const json = async (base: string, method: string, url: string, token?: string, body?: object) => {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: {
        ...(token && { authorization: `Bearer ${token}` }),
        ...(body && { 'content-type': 'application/json' }),
      },
      ...(body && { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
    return (await res.json()) as any;
  };
  const createTickets = async (base: string, token: string, n: number) => {
    for (let i = 0; i < n; i++) {
      await json(base, 'POST', '/v1/tickets', token, {
        subject: `Restart ${i}`,
        channel: 'email',
        contact: { email: `restart-${i}@example.com` },
        message: { body: 'Where is it?' },
      });
    }
  };
  const page = (base: string, token: string, after: string) =>
    json(base, 'GET', `/v1/events?limit=3${after ? `&after=${after}` : ''}`, token);

  let server = await startServer(t, env);
  let session = (
    await json(server.base, 'POST', '/v1/auth/token', undefined, {
      email: env.DESKROUTE_ADMIN_EMAIL,
      password: PASSWORD,
    })
  ).access_token;
  await createTickets(server.base, session, 4);
  const seen: string[] = [];
  let after = '';
  for (let i = 0; i < 2; i++) {
    const body = await page(server.base, session, after);
    seen.push(...body.data.map((e: { id: string }) => e.id));
    after = body.next_cursor;
  }
  server.child.kill('SIGKILL');
  await exited(server.child, 10_000);

  server = await startServer(t, env);
  session = (
    await json(server.base, 'POST', '/v1/auth/token', undefined, {
      email: env.DESKROUTE_ADMIN_EMAIL,
      password: PASSWORD,
    })
  ).access_token;
  await createTickets(server.base, session, 2);
  // 1 agent.created + 6 tickets × 2 events, once every writer's transaction has ended.
  const expected = 1 + 6 * 2;
  const deadline = Date.now() + WAIT_MS;
  while (seen.length < expected && Date.now() < deadline) {
    const body = await page(server.base, session, after);
    seen.push(...body.data.map((e: { id: string }) => e.id));
    after = body.next_cursor;
    if (body.data.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.equal(seen.length, expected, 'every event, across the restart');
  t.equal(new Set(seen).size, seen.length, 'none twice');
  const whole: string[] = [];
  let from = '';
  for (;;) {
    const body = await page(server.base, session, from);
    if (body.data.length === 0) break;
    whole.push(...body.data.map((e: { id: string }) => e.id));
    from = body.next_cursor;
  }
  t.same(seen, whole, 'the same events in the same order as one read from the beginning');
});

tap.test('ticket.status_changed carries the resolution time on the first resolve only', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const ticket = await makeTicket(ctx.db);
  for (const status of ['resolved', 'open', 'resolved']) {
    const res = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ticket.id}`,
      token: admin,
      payload: { status },
    });
    t.equal(res.statusCode, 200, `status ${status}`);
  }
  const { events } = await drainApi(ctx, admin, '&types=ticket.status_changed', 3);
  const changes = events as unknown as { payload: Record<string, unknown> }[];
  t.equal(changes.length, 3, 'three status changes');
  const [first, reopen, again] = changes.map((e) => e.payload);
  t.equal(first?.first_resolution, true, 'the first resolve is marked');
  t.type(first?.resolution_seconds, 'number', 'with its resolution time');
  t.ok((first?.resolution_seconds as number) >= 0);
  t.notOk('resolution_seconds' in (reopen ?? {}), 'a reopen has none');
  t.notOk('first_resolution' in (again ?? {}), 'a later resolve is not a first resolution');
  t.notOk('resolution_seconds' in (again ?? {}), 'and carries no sample');
});
