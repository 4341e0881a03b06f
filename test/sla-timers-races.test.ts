import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import t from 'tap';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import { startScheduler } from '../src/scheduler.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
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
    const blocker = new pg.Client({ connectionString: ctx.database.url! });
    await blocker.connect();
    t.teardown(() => blocker.end());
    await blocker.query('begin');
    await blocker.query('lock table settings_events in share mode');
    const edit = api(
      'PATCH',
      `/v1/sla-policies/${policy.id}`,
      { targets: { normal: { first_answer: { minutes: 120, business: false } } } },
      200,
    );
    await until('the edit to wait', async () => {
      // Not on the blocker: inside its transaction pg_stat_activity is a snapshot.
      const { rows } = await sql`select 1 from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'
            and query like '%settings_events%'`.execute(ctx.db);
      return rows.length > 0;
    });
    // A timer turn meanwhile: it must not plan the ticket under the list the edit replaces.
    await fireSlaTimers(ctx.db);
    await blocker.query('commit');
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
  t.test(
    'stopping the scheduler waits for the batch under way, not for the whole backlog',
    { skip },
    async (t) => {
      await setClock(ctx.db, '2026-11-03T15:00:00Z');
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
      // One more than a batch (200): a backlog of two batches.
      for (let i = 0; i < 201; i++) {
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
      const stop = startScheduler(ctx.db, pino({ level: 'silent' }), 3_600_000, 3_600_000, 50);
      // The first batch is held at its first write while the process is told to stop.
      const blocker = new pg.Client({ connectionString: ctx.database.url! });
      await blocker.connect();
      t.teardown(() => blocker.end());
      await blocker.query('begin');
      await blocker.query('lock table ticket_events in share mode');
      await setClock(ctx.db, '2026-11-03T17:00:00Z');
      const backlog = await due();
      t.ok(backlog > 200, 'more than one batch is due');
      await until('the timer to wait', async () => {
        const { rows } = await sql`select 1 from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'
          and query like '%ticket_events%'`.execute(ctx.db);
        return rows.length > 0;
      });
      const stopped = stop();
      await blocker.query('commit');
      await stopped;
      t.equal(
        await due(),
        backlog - 200,
        'the batch under way committed; the rest is left for the next process',
      );
    },
  );
});
