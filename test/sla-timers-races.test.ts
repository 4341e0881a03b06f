import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { Db } from '../src/db/database.ts';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import { SLA_TIMER_BATCH, startScheduler } from '../src/scheduler.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';

// The SLA timer against concurrent writes, on a controllable clock (test/helpers/clock.ts). The
// interleavings are made by holding a lock from a connection of the test's own and firing the
// timer while a request waits on it: no timings, no sleeps beyond polling for the wait to begin.

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Takes a table lock in an open transaction on a connection of the test's own; `waitedOn`
 * resolves once another session waits for it (asked on `db`: inside the holder's transaction
 * pg_stat_activity is a snapshot), `release` commits.
 */
async function holdLock(t: Test, db: Db, url: string, statement: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('begin');
  await client.query(statement);
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  return {
    /** Resolves with the waiting session's pid. */
    waitedOn: () => until('a session to wait for the lock', () => waiterOn(db, pid)),
    release: () => client.query('commit'),
  };
}

/** The pid of a session waiting for one `pid` holds, if any. */
async function waiterOn(db: Db, pid: number): Promise<number | undefined> {
  const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity
    where ${pid}::int = any(pg_blocking_pids(pid))`.execute(db);
  return rows[0]?.pid;
}

t.test('SLA timers racing other writes', async (t) => {
  const ctx = await buildTestApp(t);
  const skip =
    ctx.database.kind === 'pglite'
      ? 'needs two connections: a request waits on a lock the test holds while the timer runs'
      : false;
  await installClock(ctx.db, '2026-11-02T15:00:00Z');
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = async (method: string, url: string, payload?: object, expected?: number) => {
    const res = await ctx.request({ method: method as 'GET', url, token, ...(payload && { payload }) });
    if (expected !== undefined && res.statusCode !== expected)
      throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };

  t.test('a policy edit reaches a ticket whose timer fires while the edit commits', { skip }, async (t) => {
    const department = await makeDepartment(ctx.db, 'Races');
    const policy = (
      await api(
        'POST',
        '/v1/sla-policies',
        {
          name: 'One hour, warned 10 minutes before',
          conditions: { all: [{ field: 'department_id', operator: 'is', value: department }] },
          targets: { normal: { first_answer: { minutes: 60, business: false } } },
          warn_before_minutes: 10,
        },
        201,
      )
    ).json();
    const ticket = (
      await api(
        'POST',
        '/v1/tickets',
        {
          subject: 'Where is my parcel?',
          contact: { email: 'race@example.com' },
          message: { body: 'I ordered last week.' },
          department_id: department,
        },
        201,
      )
    ).json();
    t.equal(ticket.sla.due_at, '2026-11-02T16:00:00.000Z');

    // 15:55: the warning (15:50) is due. An admin doubles the target; the edit's transaction
    // is held after it marked the live tickets, before it commits (its audit row waits).
    await setClock(ctx.db, '2026-11-02T15:55:00Z');
    const audit = await holdLock(t, ctx.db, ctx.database.url!, 'lock table settings_events in share mode');
    const edit = api(
      'PATCH',
      `/v1/sla-policies/${policy.id}`,
      { targets: { normal: { first_answer: { minutes: 120, business: false } } } },
      200,
    );
    await audit.waitedOn();
    // A timer turn meanwhile: it must not plan the ticket under the list the edit replaces.
    await fireSlaTimers(ctx.db);
    await audit.release();
    t.equal((await edit).json().version, 2);

    await fireSlaTimers(ctx.db);
    const after = (await api('GET', `/v1/tickets/${ticket.id}`, undefined, 200)).json();
    t.equal(after.sla.due_at, '2026-11-02T17:00:00.000Z', 'the edited target, from the same start');
    await setClock(ctx.db, '2026-11-02T16:01:00Z');
    await fireSlaTimers(ctx.db);
    const history = (await api('GET', `/v1/tickets/${ticket.id}/history?limit=200`, undefined, 200)).json();
    t.notOk(
      history.data.some((e: { type: string }) => e.type === 'sla.breached'),
      'no breach at the old due',
    );
  });

  t.test('a policy edit reaches a ticket created while the edit commits', { skip }, async (t) => {
    await setClock(ctx.db, '2026-11-04T15:00:00Z');
    const department = await makeDepartment(ctx.db, 'Created meanwhile');
    const policy = (
      await api(
        'POST',
        '/v1/sla-policies',
        {
          name: 'One hour',
          conditions: { all: [{ field: 'department_id', operator: 'is', value: department }] },
          targets: { normal: { first_answer: { minutes: 60, business: false } } },
        },
        201,
      )
    ).json();
    // The creation has read the policies; its insert waits while the edit runs and commits.
    const events = await holdLock(t, ctx.db, ctx.database.url!, 'lock table ticket_events in share mode');
    const creation = api(
      'POST',
      '/v1/tickets',
      {
        subject: 'Created meanwhile',
        contact: { email: 'meanwhile@example.com' },
        message: { body: 'Hello' },
        department_id: department,
      },
      201,
    );
    await events.waitedOn();
    await api(
      'PATCH',
      `/v1/sla-policies/${policy.id}`,
      { targets: { normal: { first_answer: { minutes: 120, business: false } } } },
      200,
    );
    await events.release();
    const created = (await creation).json();
    await fireSlaTimers(ctx.db);
    const after = (await api('GET', `/v1/tickets/${created.id}`, undefined, 200)).json();
    t.equal(after.sla.due_at, '2026-11-04T17:00:00.000Z', 'the edited target');
  });

  t.test(
    'the to-solve queue is not empty to agents while a policy write marks the open tickets',
    { skip },
    async (t) => {
      await setClock(ctx.db, '2026-11-05T15:00:00Z');
      const department = await makeDepartment(ctx.db, 'Queue');
      const solver = await makeAgent(ctx.db, { departments: [[department, 'solver']] });
      const solverToken = ctx.app.jwt.sign({ sub: solver.id, pwd: solver.password_changed_at!.getTime() });
      const waiting = (
        await api(
          'POST',
          '/v1/tickets',
          {
            subject: 'Waiting in the queue',
            contact: { email: 'queued@example.com' },
            message: { body: 'Hello' },
            department_id: department,
          },
          201,
        )
      ).json();
      const audit = await holdLock(t, ctx.db, ctx.database.url!, 'lock table settings_events in share mode');
      const edit = api(
        'POST',
        '/v1/sla-policies',
        {
          name: 'Queue',
          conditions: { all: [{ field: 'department_id', operator: 'is', value: department }] },
          targets: { normal: { first_answer: { minutes: 60, business: false } } },
        },
        201,
      );
      const writer = await audit.waitedOn();
      // The agent asks while the policy write holds its locks: the answer comes, or the request
      // waits for the write (either is fine); it must not be an empty queue.
      let settled = false;
      const taking = ctx.request({ method: 'POST', url: '/v1/queue/next', token: solverToken });
      void taking.finally(() => {
        settled = true;
      });
      await until('the queue to answer or wait', async () => settled || (await waiterOn(ctx.db, writer)));
      await audit.release();
      await edit;
      const taken = await taking;
      t.equal(taken.statusCode, 200, 'the waiting ticket, not 204');
      t.equal(taken.statusCode === 200 && taken.json().id, waiting.id);
    },
  );

  t.test(
    'stopping the scheduler waits for the batch under way, not for the whole backlog',
    { skip },
    async (t) => {
      await setClock(ctx.db, '2026-11-06T15:00:00Z');
      const department = await makeDepartment(ctx.db, 'Backlog');
      await api(
        'POST',
        '/v1/sla-policies',
        {
          name: 'Backlog',
          conditions: { all: [{ field: 'department_id', operator: 'is', value: department }] },
          targets: { normal: { first_answer: { minutes: 60, business: false } } },
        },
        201,
      );
      // One more than a batch: a backlog of two batches.
      for (let i = 0; i <= SLA_TIMER_BATCH; i++) {
        await api(
          'POST',
          '/v1/tickets',
          {
            subject: `Backlog ${i}`,
            contact: { email: `backlog-${i}@example.com` },
            message: { body: 'Where is it?' },
            department_id: department,
          },
          201,
        );
      }
      const due = async () =>
        Number(
          (
            await sql<{ n: string }>`select count(*) as n from tickets
            where sla_next_at <= deskroute_now()`.execute(ctx.db)
          ).rows[0]!.n,
        );
      // Nothing else pending (earlier tests' tickets): the turn held below is the backlog's.
      while ((await fireSlaTimers(ctx.db)) > 0);
      const stop = startScheduler(ctx.db, pino({ level: 'silent' }), 3_600_000, 3_600_000, 50);
      // The first batch is held at its first write while the process is told to stop.
      const events = await holdLock(t, ctx.db, ctx.database.url!, 'lock table ticket_events in share mode');
      await setClock(ctx.db, '2026-11-06T17:00:00Z');
      const backlog = await due();
      t.ok(backlog > SLA_TIMER_BATCH, 'more than one batch is due');
      await events.waitedOn();
      const stopped = stop();
      await events.release();
      await stopped;
      t.equal(
        await due(),
        backlog - SLA_TIMER_BATCH,
        'the batch under way committed; the rest is left for the next process',
      );
    },
  );
});
