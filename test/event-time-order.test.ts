import { sql } from 'kysely';
import tap from 'tap';
import { addRating } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeDepartment, sessionPrincipal } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

const TWO_CONNECTIONS =
  (await testDatabaseKind()) === 'pglite'
    ? 'needs PostgreSQL: a transaction stays open while a request writes (embedded PGlite runs one transaction at a time)'
    : false;

// A ticket's events are stamped with their transaction's time (now(), its start), but written in
// the order the ticket's row lock hands the ticket out. A change that began before another but
// waited for the ticket is written after it with an earlier time. The reports' not_rated
// correction "assumes a ticket's events arrive in time order, as the API writes them"
// (docs/metrics.md): a rating that waited for a concurrent resolve rates, by the history, the
// conversation that resolve ended, but the counters take it for a rating of the one before.

const QUARTER = 15 * 60 * 1000;

tap.test(
  "a ticket's history is in time order, and not_rated follows it",
  { skip: TWO_CONNECTIONS },
  async (t) => {
    const ctx = await buildTestApp(t);
    const department = await makeDepartment(ctx.db);
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const principal = sessionPrincipal(admin.agent);
    const api = async (method: 'POST' | 'PATCH', url: string, payload: object) => {
      const res = await ctx.request({ method, url, token: admin.token, payload });
      if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
      return res.json();
    };
    const now = Date.now();
    const from = new Date(Math.floor((now - 3_600_000) / QUARTER) * QUARTER).toISOString();
    const to = new Date(Math.ceil((now + 3_600_000) / QUARTER) * QUARTER).toISOString();

    const ticket = await api('POST', '/v1/tickets', {
      subject: 'Rated twice',
      contact: { email: 'rated@example.com' },
      message: { body: 'Help' },
      department_id: department,
    });
    const id = ticket.id as string;
    await api('POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'Done.' });
    await api('PATCH', `/v1/tickets/${id}`, { status: 'resolved' });
    await api('POST', `/v1/tickets/${id}/ratings`, { value: 'positive' });
    await api('POST', `/v1/tickets/${id}/messages`, { kind: 'customer', body: 'Again' });
    await api('POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'Done again.' });

    // The rating's transaction begins first (as one does when it then waits for the ticket's
    // lock); the second resolve gets the ticket first and commits; then the rating is written.
    await ctx.db.transaction().execute(async (trx) => {
      await sql`select now()`.execute(trx);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await api('PATCH', `/v1/tickets/${id}`, { status: 'resolved' });
      await addRating(trx, principal, id, { value: 'positive' });
    });

    const history = (
      await ctx.request({ method: 'GET', url: `/v1/tickets/${id}/history?limit=200`, token: admin.token })
    ).json().data as { type: string; occurred_at: string }[];
    const times = history.map((e) => e.occurred_at);
    t.same(times, [...times].sort(), 'occurred_at never goes back along the history');
    t.same(
      history.slice(-2).map((e) => e.type),
      ['status_changed', 'rated'],
      'rated after the second resolve',
    );

    // Both conversations were rated: nothing is not rated.
    const report = (
      await ctx.request({
        method: 'GET',
        url: `/v1/reports/departments?from=${from}&to=${to}&columns=resolved_tickets,positive_ratings,not_rated`,
        token: admin.token,
      })
    ).json();
    const row = (report.data as Record<string, unknown>[]).find((r) => r.department_id === department);
    t.match(row, { resolved_tickets: 2, positive_ratings: 2, not_rated: 0 });
  },
);
