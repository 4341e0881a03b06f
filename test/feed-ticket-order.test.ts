import { sql } from 'kysely';
import tap from 'tap';
import { updateTicket } from '../src/domains/tickets/service.ts';
import {
  agentWithToken,
  buildTestApp,
  makeDepartment,
  sessionPrincipal,
  type TestContext,
} from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

const TWO_CONNECTIONS =
  (await testDatabaseKind()) === 'pglite'
    ? 'needs PostgreSQL: a transaction stays open while a request writes (embedded PGlite runs one transaction at a time)'
    : false;

// The feed is ordered by the writing transaction's id, but a ticket's changes are serialized by
// its row lock, and a transaction's id is assigned when it first writes or locks (PostgreSQL
// assigns it before a row lock waits), not when it gets the ticket. Two changes of one ticket
// could then come out of the feed (and so to webhooks, in "order per ticket") in the reverse
// of the order they were made. A ticket's events must come in the order of its history.

const WAIT_MS = 60_000;

async function drain(ctx: TestContext, token: string, from: string, expected: number) {
  const events: { id: string; ticket_id: string | null }[] = [];
  let after = from;
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const res = await ctx.request({ method: 'GET', url: `/v1/events?limit=7&after=${after}`, token });
    if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`);
    const body = res.json();
    events.push(...body.data);
    after = body.next_cursor;
    if (body.data.length === 0) {
      if (events.length >= expected || Date.now() > deadline) return events;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function historyIds(ctx: TestContext, token: string, id: string) {
  const res = await ctx.request({ method: 'GET', url: `/v1/tickets/${id}/history?limit=200`, token });
  return (res.json().data as { id: string }[]).map((e) => `te_${e.id}`);
}

async function feedStart(ctx: TestContext, token: string) {
  let after = '';
  for (;;) {
    const res = await ctx.request({
      method: 'GET',
      url: `/v1/events?limit=200${after && `&after=${after}`}`,
      token,
    });
    after = res.json().next_cursor;
    if (res.json().data.length === 0) return after;
  }
}

tap.test("a ticket's events come out of the feed in the order of its history", async (t) => {
  const ctx = await buildTestApp(t);
  const department = await makeDepartment(ctx.db);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const principal = sessionPrincipal(admin.agent);
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/tickets',
    token: admin.token,
    payload: {
      subject: 'Order',
      contact: { email: 'order@example.com' },
      message: { body: 'Hi' },
      department_id: department,
    },
  });
  const id = created.json().id as string;

  await t.test(
    'a writer whose transaction id came before it got the ticket',
    { skip: TWO_CONNECTIONS },
    async (t) => {
      const start = await feedStart(ctx, admin.token);
      await ctx.db.transaction().execute(async (trx) => {
        // What a change waiting on the ticket's row lock has: an id taken before the lock was.
        await sql`select pg_current_xact_id()`.execute(trx);
        const first = await ctx.request({
          method: 'PATCH',
          url: `/v1/tickets/${id}`,
          token: admin.token,
          payload: { priority: 'high' },
        });
        t.equal(first.statusCode, 200);
        await updateTicket(trx, principal, {}, id, { priority: 'urgent' });
      });
      const history = (await historyIds(ctx, admin.token, id)).slice(-2);
      const feed = (await drain(ctx, admin.token, start, 2))
        .filter((e) => e.ticket_id === id)
        .map((e) => e.id);
      t.same(feed, history, 'high, then urgent, as the history says');
    },
  );

  await t.test('concurrent changes of one ticket through the API', async (t) => {
    const start = await feedStart(ctx, admin.token);
    for (let round = 0; round < 5; round++)
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          ctx.request({
            method: 'PATCH',
            url: `/v1/tickets/${id}`,
            token: admin.token,
            payload: { subject: `Round ${round}, change ${i}` },
          }),
        ),
      );
    const history = await historyIds(ctx, admin.token, id);
    const feed = (await drain(ctx, admin.token, start, 60))
      .filter((e) => e.ticket_id === id)
      .map((e) => e.id);
    t.same(feed, history.slice(-feed.length), 'in the order of the history');
    t.equal(feed.length, 60);
  });
});
