import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { NOTIFICATION_KINDS } from '../src/domains/notifications/schemas.ts';
import {
  drainNotifications,
  mentionedEmails,
  startNotifications,
} from '../src/domains/notifications/service.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { settleNotifications } from './helpers/notifications.ts';
import { SseStream } from './helpers/sse.ts';

// Department notifications: the feed consumer decides who hears of what, through the real HTTP
// layer; the inbox and the live stream show them.

t.setTimeout(600_000);

let made = 0;

// One app and database for the file (a database per test costs most of the time on PGlite);
// each test makes its own departments and agents, so none sees another's notifications.
// Sign-in allows 30 attempts a minute per address and each set-up signs five agents in: a few
// tests per app.
const sharedApps = new Map<string, Promise<TestContext>>();
async function app(name: string, t: { teardown(fn: () => unknown): void }) {
  let ctx = sharedApps.get(name);
  if (!ctx) {
    ctx = (async () => {
      const built = await buildTestApp(t, { STREAM_POLL_INTERVAL_MS: '20' });
      // The consumer starts at the feed's head when first run: run it once before anything happens.
      await drainNotifications(built.db);
      return built;
    })();
    sharedApps.set(name, ctx);
  }
  return ctx;
}

let setUps = 0;
async function setUp(own?: { teardown(fn: () => unknown): void }) {
  const ctx = own ? await app('own', own) : await app(`shared-${Math.floor(setUps++ / 3)}`, t);
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const manager = await agentWithToken(ctx, { departments: [[a, 'manager']] });
  const solver = await agentWithToken(ctx, { departments: [[a, 'solver']] });
  const reader = await agentWithToken(ctx, { departments: [[a, 'reader']] });
  const other = await agentWithToken(ctx, { departments: [[b, 'solver']] });
  return { ctx, a, b, admin, manager, solver, reader, other };
}

async function call(ctx: TestContext, method: string, url: string, token: string, payload?: unknown) {
  const res = await ctx.request({
    method: method as 'GET',
    url,
    token,
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

async function createTicket(ctx: TestContext, token: string, departmentId: string | null, extra = {}) {
  const n = ++made;
  const body = await call(ctx, 'POST', '/v1/tickets', token, {
    subject: `Notify ${n}`,
    ...(departmentId ? { department_id: departmentId } : {}),
    contact: { email: `notify-${n}@example.com` },
    message: { body: 'Hello' },
    ...extra,
  });
  return body.id as string;
}

async function inbox(ctx: TestContext, token: string, query = '') {
  return (await call(ctx, 'GET', `/v1/me/notifications${query}`, token)) as {
    data: { id: string; kind: string; ticket_id: string; read_at: string | null; event_id: string }[];
    next_cursor: string | null;
  };
}

const kinds = async (ctx: TestContext, token: string, ticketId: string) =>
  (await inbox(ctx, token)).data.filter((n) => n.ticket_id === ticketId).map((n) => n.kind);

t.test('mentions are @email, not plain addresses', async (t) => {
  t.same(mentionedEmails('Ask @Ann@Example.com, and @bob@example.org.'), [
    'ann@example.com',
    'bob@example.org',
  ]);
  t.same(mentionedEmails('mail ann@example.com or x@ann@example.com'), []);
});

t.test('a note full of punctuation is read for mentions at once', async (t) => {
  // Any solver writes notes of up to 100,000 characters, and the consumer reads them on the
  // event loop of an instance: the sentence's punctuation was trimmed with an expression that
  // backtracks quadratically over a run of it inside the address (about 20 s for this one).
  const body = `@ann@example.com${')'.repeat(99_000)}x`;
  const started = performance.now();
  const found = mentionedEmails(body);
  const ms = performance.now() - started;
  t.same(found, []);
  t.ok(ms < 1_000, `read in ${Math.round(ms)} ms`);
  t.same(mentionedEmails('Thanks @ann@example.com!?)."'), ['ann@example.com']);
});

t.test('a new ticket notifies its department’s members, never the one who created it', async (t) => {
  const { ctx, a, manager, solver, reader, other, admin } = await setUp();
  // Written by the agent (not a customer's message they recorded): the agent caused it.
  const ticket = await createTicket(ctx, solver.token, a, {
    message: { body: 'We noticed', author: 'agent' },
  });
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, manager.token, ticket), ['ticket_created']);
  t.same(await kinds(ctx, reader.token, ticket), ['ticket_created']);
  t.same(await kinds(ctx, solver.token, ticket), [], 'the creator is not notified');
  t.same(await kinds(ctx, other.token, ticket), [], 'a member of B hears nothing of A');
  t.same(await kinds(ctx, admin.token, ticket), [], 'admins are notified as members only');
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, manager.token, ticket), ['ticket_created'], 'each event is handled once');
});

t.test('a customer reply notifies the assignee, or the department when unassigned', async (t) => {
  const { ctx, a, admin, manager, solver, reader } = await setUp();
  const unassigned = await createTicket(ctx, admin.token, a);
  const assigned = await createTicket(ctx, admin.token, a, { assignee_id: solver.agent.id });
  await settleNotifications(ctx.db);
  await call(ctx, 'POST', `/v1/tickets/${unassigned}/messages`, admin.token, {
    kind: 'customer',
    body: 'Any news?',
  });
  await call(ctx, 'POST', `/v1/tickets/${assigned}/messages`, admin.token, {
    kind: 'customer',
    body: 'Hello?',
  });
  await settleNotifications(ctx.db);
  for (const member of [manager, solver, reader]) {
    t.ok(
      (await kinds(ctx, member.token, unassigned)).includes('customer_replied'),
      'unassigned: every member',
    );
  }
  t.ok((await kinds(ctx, solver.token, assigned)).includes('customer_replied'), 'assigned: the assignee');
  t.notOk(
    (await kinds(ctx, manager.token, assigned)).includes('customer_replied'),
    'assigned: not the others',
  );
});

t.test('assigned to you, transferred to your department', async (t) => {
  const { ctx, a, b, admin, manager, solver, other } = await setUp();
  const ticket = await createTicket(ctx, manager.token, a);
  await call(ctx, 'PATCH', `/v1/tickets/${ticket}`, manager.token, { assignee_id: solver.agent.id });
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, solver.token, ticket), ['ticket_assigned', 'ticket_created']);
  const self = await createTicket(ctx, admin.token, a);
  await call(ctx, 'PATCH', `/v1/tickets/${self}`, solver.token, { assignee_id: solver.agent.id });
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, solver.token, self), ['ticket_created'], 'taking a ticket yourself is no news');

  await call(ctx, 'POST', `/v1/tickets/${ticket}/transfer`, admin.token, { department_id: b });
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, other.token, ticket), ['ticket_transferred'], 'B’s member hears of the transfer');
  t.notOk((await kinds(ctx, manager.token, ticket)).includes('ticket_transferred'));
});

t.test('a mention in a note notifies that agent if they can see the ticket', async (t) => {
  const { ctx, a, admin, solver, other, reader } = await setUp();
  const ticket = await createTicket(ctx, admin.token, a);
  await settleNotifications(ctx.db);
  await call(ctx, 'POST', `/v1/tickets/${ticket}/messages`, admin.token, {
    kind: 'note',
    body: `@${solver.agent.email} and @${other.agent.email}: please look. cc ${reader.agent.email}`,
  });
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, solver.token, ticket), ['mentioned', 'ticket_created']);
  t.same(await kinds(ctx, other.token, ticket), [], 'an agent who cannot see the ticket is not told of it');
  t.same(await kinds(ctx, reader.token, ticket), ['ticket_created'], 'a plain address is no mention');
});

t.test('preferences per department and kind, department defaults by its managers', async (t) => {
  const { ctx, a, b, admin, manager, solver, reader, other } = await setUp();

  const prefs = await call(ctx, 'GET', '/v1/me/notification-preferences', solver.token);
  t.equal(prefs.data.length, NOTIFICATION_KINDS.length, 'every kind for the one department');
  t.ok(
    prefs.data.every((p: { enabled: boolean; source: string }) => p.enabled && p.source === 'default'),
    'all on by default',
  );
  t.ok(
    prefs.data.every(
      (p: { email: boolean; email_source: string }) => !p.email && p.email_source === 'default',
    ),
    'email off by default',
  );

  // The manager turns ticket_created off for A; the solver turns it back on for themself.
  const forbidden = await ctx.request({
    method: 'PUT',
    url: `/v1/departments/${a}/notification-defaults`,
    token: solver.token,
    payload: { defaults: [{ kind: 'ticket_created', enabled: false }] },
  });
  t.equal(forbidden.statusCode, 403, 'a solver may not set the department’s defaults');
  const hidden = await ctx.request({
    method: 'GET',
    url: `/v1/departments/${a}/notification-defaults`,
    token: other.token,
  });
  t.equal(hidden.statusCode, 404, 'another department’s defaults are not shown');
  const defaults = await call(ctx, 'PUT', `/v1/departments/${a}/notification-defaults`, manager.token, {
    defaults: [{ kind: 'ticket_created', enabled: false }],
  });
  t.same(
    defaults.data.find((d: { kind: string }) => d.kind === 'ticket_created'),
    { kind: 'ticket_created', enabled: false, source: 'department', email: false, email_source: 'default' },
  );
  const mine = await call(ctx, 'PUT', '/v1/me/notification-preferences', solver.token, {
    preferences: [{ department_id: a, kind: 'ticket_created', enabled: true }],
  });
  t.same(
    mine.data.find((p: { kind: string }) => p.kind === 'ticket_created'),
    {
      department_id: a,
      kind: 'ticket_created',
      enabled: true,
      source: 'agent',
      email: false,
      email_source: 'default',
    },
  );
  const notMember = await ctx.request({
    method: 'PUT',
    url: '/v1/me/notification-preferences',
    token: solver.token,
    payload: { preferences: [{ department_id: b, kind: 'ticket_created', enabled: false }] },
  });
  t.equal(notMember.statusCode, 422);
  t.equal(notMember.json().code, 'not_a_member');
  const wrongKind = await ctx.request({
    method: 'PUT',
    url: '/v1/me/notification-preferences',
    token: solver.token,
    payload: { preferences: [{ department_id: a, kind: 'everything', enabled: false }] },
  });
  t.equal(wrongKind.statusCode, 400);

  const ticket = await createTicket(ctx, admin.token, a);
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, solver.token, ticket), ['ticket_created'], 'the agent’s own choice wins');
  t.same(await kinds(ctx, reader.token, ticket), [], 'the department’s default applies to the others');

  // null forgets the agent's choice: the department default (off) applies again.
  await call(ctx, 'PUT', '/v1/me/notification-preferences', solver.token, {
    preferences: [{ department_id: a, kind: 'ticket_created', enabled: null }],
  });
  const again = await createTicket(ctx, admin.token, a);
  await settleNotifications(ctx.db);
  t.same(await kinds(ctx, solver.token, again), []);
});

t.test('the inbox: unread first, then newest; mark read, mark all read', async (t) => {
  const { ctx, a, admin, solver, reader } = await setUp();
  const tickets: string[] = [];
  for (let i = 0; i < 5; i++) tickets.push(await createTicket(ctx, admin.token, a));
  await settleNotifications(ctx.db);
  const all = await inbox(ctx, solver.token);
  t.same(
    all.data.map((n) => n.ticket_id),
    [...tickets].reverse(),
    'newest first',
  );
  const oldest = all.data[4]!;
  const read = await call(ctx, 'POST', `/v1/me/notifications/${oldest.id}/read`, solver.token);
  t.ok(read.read_at, 'marked read');
  const readAgain = await call(ctx, 'POST', `/v1/me/notifications/${oldest.id}/read`, solver.token);
  t.equal(readAgain.read_at, read.read_at, 'marking again keeps the first time');
  const newest = all.data[0]!;
  await call(ctx, 'POST', `/v1/me/notifications/${newest.id}/read`, solver.token);

  const ordered = await inbox(ctx, solver.token);
  t.same(
    ordered.data.map((n) => n.ticket_id),
    [tickets[3], tickets[2], tickets[1], tickets[4], tickets[0]],
    'unread first (newest first), then read (newest first)',
  );
  const paged: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await inbox(ctx, solver.token, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    paged.push(...page.data.map((n) => n.ticket_id));
    cursor = page.next_cursor;
  } while (cursor);
  t.same(
    paged,
    ordered.data.map((n) => n.ticket_id),
    'pages with the cursor give the same order',
  );
  t.same(
    (await inbox(ctx, solver.token, '?unread_only=true')).data.map((n) => n.ticket_id),
    [tickets[3], tickets[2], tickets[1]],
  );

  const someoneElses = await ctx.request({
    method: 'POST',
    url: `/v1/me/notifications/${oldest.id}/read`,
    token: reader.token,
  });
  t.equal(someoneElses.statusCode, 404, 'another agent’s notification is not found');
  const foreignCursor = await ctx.request({
    method: 'GET',
    url: `/v1/me/notifications?cursor=${ordered.next_cursor ?? (await inbox(ctx, solver.token, '?limit=1')).next_cursor}`,
    token: reader.token,
  });
  t.equal(foreignCursor.statusCode, 400, 'another inbox’s cursor is refused');

  const marked = await call(ctx, 'POST', '/v1/me/notifications/read-all', solver.token);
  t.equal(marked.marked, 3);
  t.same((await inbox(ctx, solver.token, '?unread_only=true')).data, []);
  t.equal(
    (await inbox(ctx, reader.token, '?unread_only=true')).data.length,
    5,
    'the others’ inboxes untouched',
  );
});

t.test('notifications go out on the stream to their agent only', async (t) => {
  const { ctx, a, admin, solver, other } = await setUp(t);
  const stop = startNotifications(
    ctx.db,
    ctx.app.log,
    { notifications: { pollMs: 50 }, mail: loadConfig({}).mail },
    undefined,
  );
  t.teardown(stop);
  await ctx.app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = ctx.app.server.address() as { port: number };
  const url = `http://127.0.0.1:${port}/v1/events/stream?types=notification`;
  const mine = await SseStream.open(url, solver.token);
  const theirs = await SseStream.open(url, other.token);
  t.teardown(() => {
    mine.close();
    theirs.close();
  });
  const ticket = await createTicket(ctx, admin.token, a);
  await mine.until(() => mine.notifications().length >= 1, 30_000, 'a notification');
  t.match(mine.notifications()[0], { kind: 'ticket_created', ticket_id: ticket, read_at: null });
  t.equal(mine.events().length, 0, 'only notifications were asked for');
  const marker = await createTicket(ctx, admin.token, null);
  await call(ctx, 'POST', `/v1/tickets/${marker}/messages`, admin.token, {
    kind: 'note',
    body: `@${other.agent.email} a marker`,
  });
  await theirs.until(() => theirs.notifications().length >= 1, 30_000, 'the marker');
  t.same(
    theirs.notifications().map((n) => n.ticket_id),
    [marker],
    'another agent’s stream carries only their own notifications',
  );
});
