import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import t, { type Test } from 'tap';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment, type TestContext } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { inboundMailbox, rawMail } from './helpers/mail.ts';
import { makeTicket } from './helpers/tickets.ts';

// DELETE /v1/departments/{id}?move_to_department_id= against the writers of tickets running at
// the same time. The deletion locked the department's row FOR UPDATE, then the substitute's row
// FOR UPDATE, then the department's tickets, and deleted its round-robin cursor last (on delete
// cascade). A writer takes them the other way round: its ticket (or the cursor of a round robin)
// first, then, through a foreign key, the key share of a department: the one a transfer (by
// hand, by a rule, by the SLA timer's rules) moves the ticket to, or the one whose cursor it
// writes. Each waited for the other until PostgreSQL broke the deadlock after deadlock_timeout,
// and one of two valid requests answered 409 concurrent_update.
//
// The interleavings are made by holding a lock from a connection of the test's own: no timings.

t.setTimeout(180_000);

const skip =
  (await testDatabaseKind()) === 'pglite'
    ? 'needs PostgreSQL: a second connection holds a lock while the deletion and a writer run; embedded PGlite has one connection'
    : false;

const monitors = new WeakMap<TestContext, pg.Client>();

/**
 * Sessions of this database waiting for a lock, asked on a connection of the test's own (the
 * pool's may all be taken by waiting requests) outside any transaction (a fresh snapshot).
 */
async function waiting(ctx: TestContext): Promise<number> {
  const monitor = monitors.get(ctx)!;
  const { rows } = await monitor.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity
    where datname = current_database() and wait_event_type = 'Lock'`);
  return rows[0]!.n;
}

async function monitored(t: Test): Promise<TestContext> {
  const ctx = await buildTestApp(t);
  const monitor = new pg.Client({ connectionString: ctx.database.url! });
  await monitor.connect();
  t.teardown(() => monitor.end());
  monitors.set(ctx, monitor);
  return ctx;
}

/** Polls until `n` sessions wait for a lock, or `done` says the request ended first. */
async function untilWaiting(t: Test, ctx: TestContext, n: number, done: () => boolean = () => false) {
  for (let i = 0; i < 400 && !done() && (await waiting(ctx)) < n; i++)
    await new Promise((r) => setTimeout(r, 25));
  if (!done()) t.equal(await waiting(ctx), n, `${n} session(s) waiting for a lock`);
}

/** Runs `statement` in an open transaction on a connection of the test's own; `release` commits. */
async function hold(t: Test, ctx: TestContext, statement: string) {
  const client = new pg.Client({ connectionString: ctx.database.url! });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('begin');
  await client.query(statement);
  return { release: () => client.query('commit') };
}

function settled<T>(promise: Promise<T>) {
  const state = { done: false };
  promise.then(
    () => (state.done = true),
    () => (state.done = true),
  );
  return state;
}

t.test('writers holding a ticket of the department being deleted', { skip }, async (t) => {
  const ctx = await monitored(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = (method: 'POST' | 'DELETE', url: string, payload?: object) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  const rule = async (name: string, trigger: string, action: object) => {
    const res = await api('POST', '/v1/automation-rules', {
      name,
      triggers: [trigger],
      conditions: { all: [{ field: 'subject', operator: 'contains', value: name }] },
      actions: [action],
    });
    t.equal(res.statusCode, 201, res.body);
  };

  /**
   * The writer locks the ticket and then waits (its events' table is held); the deletion comes
   * and waits for the ticket; then the writer goes on. Both must succeed.
   */
  async function race(
    t: Test,
    subject: string,
    writer: (ticket: string, heir: string) => Promise<LightMyRequestResponse>,
  ) {
    const doomed = await makeDepartment(ctx.db);
    const heir = await makeDepartment(ctx.db);
    for (const department of [doomed, heir]) {
      await makeAgent(ctx.db, { departments: [[department, 'solver']] });
      await makeAgent(ctx.db, { departments: [[department, 'solver']] });
    }
    const ticket = await makeTicket(ctx.db, { department_id: doomed, subject });
    await makeTicket(ctx.db, { department_id: doomed });

    const events = await hold(t, ctx, 'lock table ticket_events in share mode');
    const written = writer(ticket.id, heir);
    await untilWaiting(t, ctx, 1);
    const deleted = api('DELETE', `/v1/departments/${doomed}?move_to_department_id=${heir}`);
    await untilWaiting(t, ctx, 2);
    await events.release();

    const [write, deletion] = await Promise.all([written, deleted]);
    t.ok(write.statusCode < 300, `the writer: ${write.statusCode} ${write.body}`);
    t.equal(deletion.statusCode, 204, `the deletion: ${deletion.body}`);
    const left = await ctx.db
      .selectFrom('tickets')
      .select(['id', 'department_id'])
      .where('department_id', 'in', [doomed, heir])
      .execute();
    t.same(
      left.map((r) => r.department_id),
      [heir, heir],
      'both tickets are in the substitute, none in the deleted department',
    );
    t.notOk(
      await ctx.db.selectFrom('departments').select('id').where('id', '=', doomed).executeTakeFirst(),
      'the department is gone',
    );
    return ticket.id;
  }

  t.test('a transfer to the substitute', async (t) => {
    await race(t, 'Transferred by hand', (ticket, heir) =>
      api('POST', `/v1/tickets/${ticket}/transfer`, { department_id: heir }),
    );
  });

  t.test('a reply whose rule transfers the ticket to the substitute', async (t) => {
    let heirOfRule: string | undefined;
    const id = await race(t, 'transfer on reply', async (ticket, heir) => {
      heirOfRule = heir;
      await rule('transfer on reply', 'ticket.customer_replied', { type: 'transfer', department_id: heir });
      return api('POST', `/v1/tickets/${ticket}/messages`, { kind: 'customer', body: 'Any news?' });
    });
    const history = await ctx.db
      .selectFrom('ticket_events')
      .select(['actor_type', 'data'])
      .where('ticket_id', '=', id)
      .where('type', '=', 'transferred')
      .orderBy('id')
      .execute();
    t.equal(history[0]?.actor_type, 'rule', 'the rule transferred it');
    t.equal((history[0]?.data as { to_department_id?: string } | undefined)?.to_department_id, heirOfRule);
  });

  t.test('a reply whose rule assigns it by round robin in the department', async (t) => {
    const id = await race(t, 'round robin on reply', async (ticket) => {
      await rule('round robin on reply', 'ticket.customer_replied', { type: 'assign', to: 'round_robin' });
      return api('POST', `/v1/tickets/${ticket}/messages`, { kind: 'customer', body: 'Hello?' });
    });
    const assigned = await ctx.db
      .selectFrom('ticket_events')
      .select('actor_type')
      .where('ticket_id', '=', id)
      .where('type', '=', 'assigned')
      .execute();
    t.same(
      assigned.map((e) => e.actor_type),
      ['rule', 'agent'],
      'the round robin assigned it; the deletion unassigned it (not a member of the substitute)',
    );
  });

  t.test('a customer mail into the ticket, whose rule transfers it to the substitute', async (t) => {
    const post = await inboundMailbox(t, ctx, token, await makeDepartment(ctx.db));
    await race(t, 'transfer on mail', async (ticket, heir) => {
      await rule('transfer on mail', 'ticket.customer_replied', { type: 'transfer', department_id: heir });
      const { number } = await ctx.db
        .selectFrom('tickets')
        .select('number')
        .where('id', '=', ticket)
        .executeTakeFirstOrThrow();
      const { email } = await ctx.db
        .selectFrom('contact_emails as e')
        .innerJoin('tickets as t', 't.contact_id', 'e.contact_id')
        .select('e.email')
        .where('t.id', '=', ticket)
        .executeTakeFirstOrThrow();
      return post(rawMail({ from: email, subject: `Re: [Ticket#${number}] transfer on mail` }));
    });
  });
});

t.test('the SLA timer, whose warning rule transfers a ticket of the department', { skip }, async (t) => {
  const ctx = await monitored(t);
  await installClock(ctx.db, '2026-11-02T15:00:00Z');
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = async (method: 'POST' | 'DELETE', url: string, payload?: object) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  const doomed = await makeDepartment(ctx.db);
  const heir = await makeDepartment(ctx.db);
  const policy = await api('POST', '/v1/sla-policies', {
    name: 'One hour, warned 10 minutes before',
    conditions: { all: [{ field: 'department_id', operator: 'is', value: doomed }] },
    targets: { normal: { first_answer: { minutes: 60, business: false } } },
    warn_before_minutes: 10,
  });
  t.equal(policy.statusCode, 201, policy.body);
  const rule = await api('POST', '/v1/automation-rules', {
    name: 'Warned: to the heir',
    triggers: ['sla.warning'],
    conditions: { all: [{ field: 'subject', operator: 'contains', value: 'parcel' }] },
    actions: [{ type: 'transfer', department_id: heir }],
  });
  t.equal(rule.statusCode, 201, rule.body);
  const created = await api('POST', '/v1/tickets', {
    subject: 'Where is my parcel?',
    contact: { email: 'parcel@example.com' },
    message: { body: 'I ordered last week.' },
    department_id: doomed,
  });
  t.equal(created.statusCode, 201, created.body);
  const ticket = created.json().id as string;

  // 15:55: the warning is due. The timer locks the ticket, then waits to write its events.
  await setClock(ctx.db, '2026-11-02T15:55:00Z');
  const events = await hold(t, ctx, 'lock table ticket_events in share mode');
  const fired = fireSlaTimers(ctx.db);
  await untilWaiting(t, ctx, 1);
  const deleted = api('DELETE', `/v1/departments/${doomed}?move_to_department_id=${heir}`);
  await untilWaiting(t, ctx, 2);
  await events.release();

  const [count, deletion] = await Promise.all([fired, deleted]);
  t.equal(count, 1, 'the timer planned the ticket');
  t.equal(deletion.statusCode, 204, `the deletion: ${deletion.body}`);
  const history = await ctx.db
    .selectFrom('ticket_events')
    .select(['type', 'actor_type'])
    .where('ticket_id', '=', ticket)
    .where('type', 'in', ['sla.warning', 'transferred'])
    .orderBy('id')
    .execute();
  t.same(
    history,
    [
      { type: 'sla.warning', actor_type: 'system' },
      { type: 'transferred', actor_type: 'rule' },
    ],
    'the warning fired and its rule transferred the ticket (the deletion had nothing left to move)',
  );
  const row = await ctx.db
    .selectFrom('tickets')
    .select('department_id')
    .where('id', '=', ticket)
    .executeTakeFirst();
  t.equal(row?.department_id, heir);
});

t.test('creations into the department being deleted and into its substitute', { skip }, async (t) => {
  const ctx = await monitored(t);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const doomed = await makeDepartment(ctx.db);
  const heir = await makeDepartment(ctx.db);
  for (const department of [doomed, heir]) {
    await makeAgent(ctx.db, { departments: [[department, 'solver']] });
    await makeAgent(ctx.db, { departments: [[department, 'solver']] });
  }
  const rule = await ctx.request({
    method: 'POST',
    url: '/v1/automation-rules',
    token,
    payload: {
      name: 'Round robin',
      triggers: ['ticket.created'],
      conditions: { all: [{ field: 'subject', operator: 'contains', value: 'round robin' }] },
      actions: [{ type: 'assign', to: 'round_robin' }],
    },
  });
  t.equal(rule.statusCode, 201, rule.body);
  const post = await inboundMailbox(t, ctx, token, doomed);

  let n = 0;
  const create = (department: string, subject: string) =>
    ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject,
        contact: { email: `customer-${++n}@example.com` },
        message: { body: 'Hello' },
        department_id: department,
      },
    });
  const mail = (subject: string) => post(rawMail({ from: `sender-${++n}@example.com`, subject }));
  // Each department's round robin has its cursor already; the deletion moves this ticket.
  for (const department of [doomed, heir]) {
    const first = await create(department, 'round robin, first');
    t.equal(first.statusCode, 201, first.body);
  }

  // The deletion is held after it moved the tickets (the SLA policies' state row, which it
  // renews, is taken), before it deletes the department and its cursor.
  const policies = await hold(t, ctx, 'select * from sla_policies_state for update');
  const deleted = ctx.request({
    method: 'DELETE',
    url: `/v1/departments/${doomed}?move_to_department_id=${heir}`,
    token,
  });
  let waiters = 1;
  await untilWaiting(t, ctx, waiters);

  const stream: { what: string; into: 'doomed' | 'heir'; response: Promise<LightMyRequestResponse> }[] = [];
  const start = async (
    what: string,
    into: 'doomed' | 'heir',
    request: () => Promise<LightMyRequestResponse>,
  ) => {
    const response = request();
    const state = settled(response);
    stream.push({ what, into, response });
    await untilWaiting(t, ctx, waiters + 1, () => state.done);
    if (!state.done) waiters++;
    return state;
  };
  await start('round robin', 'doomed', () => create(doomed, 'round robin'));
  await start('plain', 'doomed', () => create(doomed, 'plain'));
  await start('mail, round robin', 'doomed', () => mail('round robin by mail'));
  await start('mail', 'doomed', () => mail('by mail'));
  const early: { what: string; done: boolean }[] = [];
  for (const what of ['round robin', 'plain']) {
    early.push({ what, ...(await start(what, 'heir', () => create(heir, what))) });
  }
  for (const e of early)
    t.ok(e.done, `a ${e.what} creation in the substitute does not wait for the deletion`);
  await policies.release();

  t.equal((await deleted).statusCode, 204, 'the deletion');
  for (const { what, into, response } of stream) {
    const res = await response;
    const label = `${what} into the ${into === 'heir' ? 'substitute' : 'deleted department'}`;
    t.ok(res.statusCode < 500, `${label}: no 5xx (${res.statusCode})`);
    if (res.statusCode < 300) {
      const department = res.statusCode === 201 ? res.json().department_id : null;
      if (res.statusCode === 202) {
        t.equal(res.json().outcome, 'created', `${label}: ${res.body}`);
        const { department_id } = await ctx.db
          .selectFrom('tickets')
          .select('department_id')
          .where('id', '=', res.json().ticket_id)
          .executeTakeFirstOrThrow();
        t.equal(department_id, heir, `${label}: landed in the substitute`);
      } else t.equal(department, heir, `${label}: landed in the substitute`);
      if (what === 'round robin' && res.statusCode === 201)
        t.not(res.json().assignee_id, null, `${label}: assigned by round robin`);
    } else {
      t.equal(into, 'doomed', `${label}: refused (${res.body})`);
      t.match(
        res.json().code,
        /^(department_not_found|reference_conflict)$/,
        `${label}: refused because the department is gone, not by a deadlock`,
      );
    }
  }
  const inDoomed = await ctx.db
    .selectFrom('tickets')
    .select('id')
    .where('department_id', '=', doomed)
    .execute();
  t.same(inDoomed, [], 'no ticket in the deleted department');
  const moved = await ctx.db
    .selectFrom('ticket_events')
    .select('id')
    .where('type', '=', 'transferred')
    .execute();
  t.equal(moved.length, 1, 'the one ticket of the department was moved');
});
