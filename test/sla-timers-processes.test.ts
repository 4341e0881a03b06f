import { sql } from 'kysely';
import t from 'tap';
import { makeAgent, PASSWORD } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';
import { createTestDatabase } from './helpers/database.ts';
import { type ServerProcess, startServer } from './helpers/server.ts';

// SLA timers in real server processes (node src/server.ts) sharing one PostgreSQL database and
// its controllable clock (test/helpers/clock.ts: every process reads the test's instant): two
// processes fire each breach once, and breaches missed while every server was down fire, at
// their due, when one comes back.

t.setTimeout(300_000);

const database = await createTestDatabase();
t.teardown(() => database.drop());
const skip =
  database.kind === 'pglite'
    ? 'needs a PostgreSQL server that several processes share (PGlite lives inside one process)'
    : false;

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 90_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('SLA timers across server processes', { skip }, async (t) => {
  const { db } = database;
  // Monday 2026-11-02 15:00 UTC, frozen until the test moves it.
  await installClock(db, '2026-11-02T15:00:00Z');
  const admin = await makeAgent(db, { role: 'admin' });
  const env = { DATABASE_URL: database.url as string, SLA_TIMER_INTERVAL_MS: '50' };
  const servers: ServerProcess[] = [await startServer(t, env), await startServer(t, env)];

  const call = async (
    method: string,
    path: string,
    body: object,
    token?: string,
  ): Promise<{ id: string; access_token: string }> => {
    const res = await fetch(`${servers[0]!.base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
      body: JSON.stringify(body),
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id: string; access_token: string };
  };
  const { access_token: token } = await call('POST', '/v1/auth/token', {
    email: admin.email,
    password: PASSWORD,
  });
  await call(
    'POST',
    '/v1/sla-policies',
    {
      name: 'One hour to answer',
      conditions: { all: [] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
    },
    token,
  );
  const openTickets = async (n: number): Promise<string[]> => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const created = await call(
        'POST',
        '/v1/tickets',
        {
          subject: `Parcel ${i}`,
          contact: { email: `c${i}@example.com` },
          message: { body: 'Where is it?' },
        },
        token,
      );
      ids.push(created.id);
    }
    return ids;
  };
  const breachesOf = async (ids: string[]) =>
    (
      await db
        .selectFrom('ticket_events')
        .select(['ticket_id', 'data', 'actor_type'])
        .where('type', '=', 'sla.breached')
        .where('ticket_id', 'in', ids)
        .execute()
    ).map((e) => ({ ...e, at: (e.data as { at: string }).at }));
  const breachedCount = async (ids: string[]) =>
    Number(
      (
        await db
          .selectFrom('tickets')
          .select(sql<number>`count(*)`.as('n'))
          .where('id', 'in', ids)
          .where('sla_breached', '=', true)
          .executeTakeFirstOrThrow()
      ).n,
    );

  await t.test('two processes fire each breach once', async (t) => {
    const ids = await openTickets(120);
    t.equal(await breachedCount(ids), 0, 'nothing due yet');
    // Both processes find 120 breaches due at once (16:00) and share them.
    await setClock(db, '2026-11-02T17:00:00Z');
    await until('every breach', async () => (await breachedCount(ids)) === ids.length);
    const breaches = await breachesOf(ids);
    t.equal(breaches.length, ids.length, 'one sla.breached event per ticket');
    t.equal(new Set(breaches.map((b) => b.ticket_id)).size, ids.length);
    t.ok(
      breaches.every((b) => b.at === '2026-11-02T16:00:00.000Z' && b.actor_type === 'system'),
      'each at its due, by the system',
    );
  });

  await t.test('breaches missed while every server was down fire after a restart', async (t) => {
    const ids = await openTickets(40);
    for (const server of servers) {
      server.child.kill('SIGKILL');
      await new Promise((resolve) => server.child.once('exit', resolve));
    }
    // 18:00 passes with no server running.
    await setClock(db, '2026-11-02T20:00:00Z');
    t.equal(await breachedCount(ids), 0, 'nobody fired them while down');
    await startServer(t, env);
    await until('the missed breaches', async () => (await breachedCount(ids)) === ids.length);
    const breaches = await breachesOf(ids);
    t.equal(breaches.length, ids.length, 'each once');
    t.ok(
      breaches.every((b) => b.at === '2026-11-02T18:00:00.000Z'),
      'recorded at the due, not when the server came back',
    );
  });
});
