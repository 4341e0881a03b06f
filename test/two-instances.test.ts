import { sql } from 'kysely';
import t from 'tap';
import { jsonRequest } from '../scripts/json-request.ts';
import { makeAgent, makeDepartment, PASSWORD } from './helpers/app.ts';
import { createTestDatabase } from './helpers/database.ts';
import { type ServerProcess, startServer } from './helpers/server.ts';

// Two server processes (node src/server.ts) on one PostgreSQL database must behave as one:
// the queue hands each ticket to one agent, a rule runs once per change whichever instance
// took it, the scheduler wakes each postponed ticket once, and reports count each event once.
// Both schedulers run every 200 ms here, so they race each other many times.

t.setTimeout(300_000);

const TICKETS = 24;
const AGENTS = 8;

const database = await createTestDatabase();
t.teardown(() => database.drop());
const skip =
  database.kind === 'pglite'
    ? 'needs a PostgreSQL server two processes share (PGlite is one process)'
    : false;

t.test('two instances on one database', { skip }, async (t) => {
  const { db } = database;

  const support = await makeDepartment(db, 'Support');
  const admin = await makeAgent(db, { role: 'admin', name: 'Ada Admin' });
  const solvers: Awaited<ReturnType<typeof makeAgent>>[] = [];
  for (let i = 0; i < AGENTS; i++) {
    solvers.push(await makeAgent(db, { name: `Solver ${i}`, departments: [[support, 'solver']] }));
  }

  const env = {
    DATABASE_URL: database.url as string,
    HOUSEKEEPING_INTERVAL_MS: '200',
    REPORT_COMPACTION_INTERVAL_MS: '200',
  };
  const [a, b] = (await Promise.all([startServer(t, env), startServer(t, env)])) as [
    ServerProcess,
    ServerProcess,
  ];
  const instances = [a, b];
  const on = (i: number) => instances[i % 2] as ServerProcess;

  async function call(server: ServerProcess, method: string, url: string, token?: string, body?: unknown) {
    const res = await jsonRequest(method, `${server.base}${url}`, { token: token ?? null, body });
    return { status: res.status, body: res.body, etag: res.headers.get('etag') };
  }
  async function ok(server: ServerProcess, method: string, url: string, token?: string, body?: unknown) {
    const res = await call(server, method, url, token, body);
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(res.body)}`);
    return res;
  }
  const signIn = async (server: ServerProcess, email: string) =>
    (await ok(server, 'POST', '/v1/auth/token', undefined, { email, password: PASSWORD })).body
      .access_token as string;

  // A session minted by one instance works on the other (same JWT_SECRET).
  const adminToken = await signIn(a, admin.email);
  const solverTokens = await Promise.all(solvers.map((s, i) => signIn(on(i), s.email)));

  let created = 0;
  const createTicket = async (server: ServerProcess) => {
    const n = ++created;
    const res = await ok(server, 'POST', '/v1/tickets', adminToken, {
      subject: `Two instances ${n}`,
      department_id: support,
      contact: { email: `customer-${n}@example.com` },
      message: { body: 'Hello' },
    });
    return res.body.id as string;
  };

  await t.test('a rule runs once per change, whichever instance took it', async (t) => {
    const noteRule = async (name: string) =>
      (
        await ok(a, 'POST', '/v1/automation-rules', adminToken, {
          name,
          active: true,
          triggers: ['ticket.created', 'ticket.updated'],
          conditions: { all: [{ field: 'subject', operator: 'contains', value: 'Two instances' }] },
          actions: [{ type: 'add_note', body: `${name} saw this` }],
        })
      ).body.id as string;
    // Both instances load and cache a rule set with the first rule; the second rule, written on
    // instance A, must then be seen by B at once.
    const first = await noteRule('First rule');
    await Promise.all([createTicket(a), createTicket(b)]);
    const second = await noteRule('Second rule');

    const ids = await Promise.all(Array.from({ length: TICKETS }, (_, i) => createTicket(on(i))));
    // Each ticket changed once more, on the instance that did not create it.
    await Promise.all(
      ids.map((id, i) => ok(on(i + 1), 'PATCH', `/v1/tickets/${id}`, adminToken, { priority: 'high' })),
    );

    for (const ruleId of [first, second]) {
      const notes = await db
        .selectFrom('ticket_events')
        .select(['ticket_id', (eb) => eb.fn.countAll<string>().as('n')])
        .where('actor_rule_id', '=', ruleId)
        .where('type', '=', 'message_added')
        .where('ticket_id', 'in', ids)
        .groupBy('ticket_id')
        .execute();
      const byTicket = new Map(notes.map((r) => [r.ticket_id, Number(r.n)]));
      t.same(
        ids.map((id) => byTicket.get(id) ?? 0),
        ids.map(() => 2),
        'two changes per ticket (created, updated): two notes by each rule, never one or three',
      );
    }
    const runs = await db
      .selectFrom('rule_runs')
      .select(['ticket_id', (eb) => eb.fn.countAll<string>().as('n')])
      .where('ticket_id', 'in', ids)
      .groupBy('ticket_id')
      .execute();
    t.same(
      runs.map((r) => Number(r.n)),
      ids.map(() => 2),
      'one recorded run per change',
    );
  });

  await t.test('the queue hands each ticket to one agent across both instances', async (t) => {
    // Every agent asks both instances at once, all agents together.
    const answers = await Promise.all(
      solverTokens.flatMap((token) => [
        call(a, 'POST', '/v1/queue/next', token),
        call(b, 'POST', '/v1/queue/next', token),
      ]),
    );
    t.same(
      answers.map((r) => r.status),
      answers.map(() => 200),
      'everyone got a ticket',
    );
    const takenBy = new Map<string, Set<string>>();
    answers.forEach((res, i) => {
      const agentId = solvers[Math.floor(i / 2)]?.id as string;
      t.equal(res.body.assignee_id, agentId, 'the ticket comes back assigned to the caller');
      const holders = takenBy.get(res.body.id) ?? new Set();
      holders.add(agentId);
      takenBy.set(res.body.id, holders);
    });
    t.same(
      [...takenBy.values()].filter((holders) => holders.size > 1),
      [],
      'no ticket was handed to two agents',
    );
    t.equal(takenBy.size, AGENTS, 'each agent holds exactly one ticket, asked twice at once');
    const assigned = await db
      .selectFrom('tickets')
      .select(['assignee_id', (eb) => eb.fn.countAll<string>().as('n')])
      .where('assignee_id', 'is not', null)
      .groupBy('assignee_id')
      .execute();
    t.same(
      assigned.map((r) => Number(r.n)),
      assigned.map(() => 1),
      'the database agrees: one ticket per agent',
    );
    t.equal(assigned.length, AGENTS);
  });

  await t.test('both schedulers together wake each postponed ticket once', async (t) => {
    const unassigned = await db
      .selectFrom('tickets')
      .select('id')
      .where('assignee_id', 'is', null)
      .where('department_id', '=', support)
      .execute();
    const ids = unassigned.map((r) => r.id);
    t.ok(ids.length >= 10, 'enough tickets to postpone');
    const until = new Date(Date.now() + 3_000).toISOString();
    await Promise.all(
      ids.map((id, i) =>
        ok(on(i), 'PATCH', `/v1/tickets/${id}`, adminToken, { status: 'postponed', postponed_until: until }),
      ),
    );
    const deadline = Date.now() + 60_000;
    let still = ids.length;
    while (Date.now() < deadline) {
      const row = await db
        .selectFrom('tickets')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('id', 'in', ids)
        .where('status', '=', 'postponed')
        .executeTakeFirstOrThrow();
      still = Number(row.n);
      if (still === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    t.equal(still, 0, 'every postponed ticket woke up');
    // A few more rounds of both schedulers, to catch a late second wake.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const wakes = await db
      .selectFrom('ticket_events')
      .select(['ticket_id', (eb) => eb.fn.countAll<string>().as('n')])
      .where('ticket_id', 'in', ids)
      .where('type', '=', 'status_changed')
      .where('actor_type', '=', 'system')
      .groupBy('ticket_id')
      .execute();
    const byTicket = new Map(wakes.map((r) => [r.ticket_id, Number(r.n)]));
    t.same(
      ids.map((id) => byTicket.get(id) ?? 0),
      ids.map(() => 1),
      'one wake event per ticket',
    );
  });

  await t.test('reports count each ticket once while both instances compact', async (t) => {
    const quarter = 15 * 60_000;
    const from = new Date(Math.floor((Date.now() - 3_600_000) / quarter) * quarter).toISOString();
    const to = new Date(Math.ceil((Date.now() + 3_600_000) / quarter) * quarter).toISOString();
    const url = `/v1/reports/departments?from=${from}&to=${to}&columns=created_tickets`;
    // More tickets while both compactors run, then a few more rounds of compaction.
    await Promise.all(Array.from({ length: 10 }, (_, i) => createTicket(on(i))));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const truth = await db
      .selectFrom('tickets')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    t.equal(Number(truth.n), created, 'every ticket created is in the database');
    for (const server of instances) {
      const report = await ok(server, 'GET', url, adminToken);
      t.equal(report.body.totals.created_tickets, created, `${server.base} reports every ticket once`);
    }
    const pending = await sql<{ n: string }>`select count(*) as n from report_pending_events`.execute(db);
    t.comment(`report rows still pending compaction: ${pending.rows[0]?.n}`);
  });

  for (const server of instances) {
    t.equal(server.child.exitCode, null, `${server.base} is still running`);
  }
});
