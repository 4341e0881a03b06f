import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { pino } from 'pino';
import t from 'tap';
import { dispatchEvents } from '../src/domains/webhooks/delivery.ts';
import { openQueue } from '../src/jobs/queue.ts';
import { makeAgent } from './helpers/app.ts';
import { createTestDatabase } from './helpers/database.ts';
import { listenLocal, startServer } from './helpers/server.ts';

// Real server processes (node src/server.ts) delivering webhooks from one PostgreSQL database:
// a process killed mid-delivery, and two processes sharing the work.

t.setTimeout(300_000);

const database = await createTestDatabase();
t.teardown(() => database.drop());
const skip =
  database.kind === 'pglite'
    ? 'needs a PostgreSQL server that several processes share (PGlite lives inside one process)'
    : false;

interface Received {
  path: string;
  id: string;
}

async function startReceiver(t: { teardown(fn: () => unknown): void }) {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const path = req.url ?? '/';
      const id = String(req.headers['webhook-id']);
      const seenBefore = received.some((r) => r.id === id);
      received.push({ path, id });
      // The first attempt of each delivery hangs: its server is killed meanwhile.
      if (path === '/hang-first' && !seenBefore) return;
      setTimeout(() => res.writeHead(204).end(), 20);
    });
  });
  const port = await listenLocal(t, server);
  return { received, url: (path: string) => `http://127.0.0.1:${port}${path}` };
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  ms = 60_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const event = (n: number) => ({
  event: {
    id: `te_${n}`,
    type: 'ticket.created',
    occurred_at: new Date().toISOString(),
    actor: {
      type: 'system',
      agent_id: null,
      contact_id: null,
      rule_id: null,
      rule_version: null,
      token_id: null,
    },
    department_id: null,
    ticket_id: randomUUID(),
    payload: {},
  },
  visibility: { department_id: null, assignee_id: null },
});

t.test('webhook deliveries across server processes', { skip }, async (t) => {
  const { db } = database;
  const receiver = await startReceiver(t);
  const admin = await makeAgent(db, { role: 'admin' });
  const env = {
    DATABASE_URL: database.url as string,
    WEBHOOKS_ALLOW_PRIVATE: 'true',
    WEBHOOK_TIMEOUT_MS: '3000',
    WEBHOOK_RETRY_BASE_MS: '200',
    WEBHOOK_RETRY_MAX_DELAY_MS: '400',
    JOBS_POLL_INTERVAL_MS: '500',
    JOBS_SUPERVISE_INTERVAL_SECONDS: '1',
  };
  const addHook = async (path: string) =>
    (
      await db
        .insertInto('webhooks')
        .values({
          url: receiver.url(path),
          secret: `whsec_${Buffer.alloc(24, 7).toString('base64')}`,
          created_by: admin.id,
        })
        .returning('id')
        .executeTakeFirstOrThrow()
    ).id;

  const first = await startServer(t, env);
  // This process only enqueues (as the feed consumer would); the servers deliver.
  const queue = await openQueue(
    db,
    pino({ level: 'silent' }),
    { databaseUrl: database.url ?? undefined },
    [],
  );
  t.teardown(() => queue.stop(1000));

  await t.test('a server killed mid-delivery delivers after restart', async (t) => {
    const hook = await addHook('/hang-first');
    await db.transaction().execute((trx) => dispatchEvents({ queue }, trx, [event(1)]));
    await until('the first attempt to reach the receiver', async () =>
      receiver.received.some((r) => r.path === '/hang-first'),
    );
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const mid = await db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', hook)
      .executeTakeFirstOrThrow();
    t.equal(mid.status, 'pending', 'not settled by the killed process');
    await startServer(t, env);
    const done = await until('delivery after the restart', async () => {
      const d = await db
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('webhook_id', '=', hook)
        .executeTakeFirstOrThrow();
      return d.status === 'delivered' && d;
    });
    const hits = receiver.received.filter((r) => r.path === '/hang-first');
    t.equal(hits.length, 2, 'the cut attempt, then the one after the restart');
    t.same(new Set(hits.map((h) => h.id)), new Set([done.id]), 'same webhook-id both times');
    t.equal(done.attempts, 1, 'the killed attempt left no outcome to count');
  });

  await t.test('two server processes deliver each attempt once', async (t) => {
    await startServer(t, env);
    const hook = await addHook('/shared');
    const N = 60;
    await db.transaction().execute((trx) =>
      dispatchEvents(
        { queue },
        trx,
        Array.from({ length: N }, (_, i) => event(100 + i)),
      ),
    );
    await until('every delivery', async () => {
      const rows = await db
        .selectFrom('webhook_deliveries')
        .select('status')
        .where('webhook_id', '=', hook)
        .where('status', '=', 'delivered')
        .execute();
      return rows.length === N;
    });
    const hits = receiver.received.filter((r) => r.path === '/shared');
    t.equal(hits.length, N, 'one request per delivery');
    t.equal(new Set(hits.map((h) => h.id)).size, N, 'no delivery twice');
    const attempts = await db
      .selectFrom('webhook_delivery_attempts as a')
      .innerJoin('webhook_deliveries as d', 'd.id', 'a.delivery_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('d.webhook_id', '=', hook)
      .executeTakeFirstOrThrow();
    t.equal(Number(attempts.n), N);
  });
});
