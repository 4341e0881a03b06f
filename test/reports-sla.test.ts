import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { sql } from 'kysely';
import { FileMigrationProvider, Migrator } from 'kysely/migration';
import t, { type Test } from 'tap';
import type { Db } from '../src/db/database.ts';
import { MIGRATIONS_DIR, migrateToLatest } from '../src/db/migrate.ts';
import type { Channel } from '../src/db/types.ts';
import { rebuildReportCounters } from '../src/domains/reports/repository.ts';
import { compactReports } from '../src/domains/reports/service.ts';
import { SLA_KINDS, type SlaKind } from '../src/sla/index.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment, type TestContext } from './helpers/app.ts';
import { insertHistory } from './helpers/reports.ts';

// SLA columns in reports (docs/metrics.md, "SLA"): targets met in time and breached, per kind
// and over all kinds, from the SLA clock's own events. First from tickets the API runs under a
// policy (a breach needs its due to pass: the test moves the due into the past, as the timer
// job's clock would find it, instead of sleeping), then from histories written with known times
// (the bucket of a breach is its due, whenever it was recorded), by every grouping, interval,
// zone, attribution mode and format.

type Row = Record<string, unknown>;
/** [achieved, breached, achieved %] of one kind, or of all kinds (`all`). */
type Verdicts = [achieved: number, breached: number, pct: number | null];
type Scope = SlaKind | 'all';

const prefix = (scope: Scope) => (scope === 'all' ? 'sla' : `sla_${scope}`);

/** The SLA columns of a row, by scope. */
function verdicts(row: Row | undefined, scope: Scope): Verdicts | undefined {
  if (!row) return undefined;
  const p = prefix(scope);
  return [row[`${p}_achieved`], row[`${p}_breached`], row[`${p}_achieved_pct`]] as Verdicts;
}

/** Checks the scopes given; every scope left out must be [0, 0, null]. */
function expectSla(t: Test, row: Row | undefined, expected: Partial<Record<Scope, Verdicts>>, name: string) {
  if (!row) return t.fail(`${name}: no row`);
  for (const scope of ['all', ...SLA_KINDS] as const) {
    t.same(verdicts(row, scope), expected[scope] ?? [0, 0, null], `${name}: ${scope}`);
  }
}

const QUARTER = 15 * 60 * 1000;

/** Sets the due of a ticket's running target of `kind`: the test's clock (nothing sleeps). */
async function dueAt(db: Db, ticketId: string, kind: SlaKind, instant: string) {
  const { sla_state: state } = await db
    .selectFrom('tickets')
    .select('sla_state')
    .where('id', '=', ticketId)
    .executeTakeFirstOrThrow();
  const target = state?.targets.find((x) => x.kind === kind && x.status === 'active');
  if (!state || !target) throw new Error(`no running ${kind} target on ${ticketId}`);
  target.due_at = Date.parse(instant);
  target.warn_at = null;
  await db
    .updateTable('tickets')
    .set({ sla_state: JSON.stringify(state), sla_due_at: new Date(instant) })
    .where('id', '=', ticketId)
    .execute();
}

function client(ctx: TestContext, token: string) {
  const api = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object, as = token) => {
    const res = await ctx.request({ method, url, token: as, ...(payload && { payload }) });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const report = async (url: string, key?: string) => {
    const body = (await api('GET', url)).json() as { data: Row[]; totals: Row; columns: Row[] };
    return { ...body, rows: new Map(body.data.map((r) => [key ? String(r[key]) : '', r])) };
  };
  return { api, report };
}

t.test('verdicts of tickets run under a policy, by every grouping', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const ann = await agentWithToken(ctx, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await agentWithToken(ctx, { name: 'Bob', departments: [[support, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const { api, report } = client(ctx, admin.token);
  await api('POST', '/v1/sla-policies', {
    name: 'Every ticket',
    conditions: { all: [] },
    targets: {
      normal: {
        first_answer: { minutes: 60, business: false },
        next_answer: { minutes: 60, business: false },
        first_assignment: { minutes: 30, business: false },
        resolution: { minutes: 1440, business: true },
      },
    },
  });
  let n = 0;
  const ticket = async (department: string, extra: object = {}) =>
    (
      await api('POST', '/v1/tickets', {
        subject: 'Where is my parcel?',
        contact: { email: `customer-${++n}@example.com` },
        message: { body: 'I ordered last week.' },
        department_id: department,
        channel: 'email',
        ...extra,
      })
    ).json().id as string;
  const reply = (id: string, token: string) =>
    api('POST', `/v1/tickets/${id}/messages`, { kind: 'reply', body: 'On its way.' }, token);
  const customer = (id: string) =>
    api('POST', `/v1/tickets/${id}/messages`, { kind: 'customer', body: 'Still nothing.' });
  const resolve = (id: string) => api('PATCH', `/v1/tickets/${id}`, { status: 'resolved' });
  const slaEvents = async (id: string) =>
    ((await api('GET', `/v1/tickets/${id}/history?limit=200`)).json().data as Row[]).filter((e) =>
      String(e.type).startsWith('sla.'),
    );

  // One: in Sales, assigned to Ann, answered, followed up, answered, resolved, reopened by the
  // customer, answered and resolved again: every target met in time, two cycles of next answer
  // and of resolution.
  const one = await ticket(sales);
  await api('PATCH', `/v1/tickets/${one}`, { assignee_id: ann.agent.id });
  await reply(one, ann.token);
  await customer(one);
  await reply(one, ann.token);
  await resolve(one);
  await customer(one);
  await reply(one, ann.token);
  await resolve(one);
  // Two: in Support, Bob's; its first answer fell due on 10 March at 10:07 UTC and Bob answers
  // only now: breached then, met late now (no second verdict).
  const two = await ticket(support, { assignee_id: bob.agent.id });
  await dueAt(db, two, 'first_answer', '2026-03-10T10:07:00.000Z');
  await reply(two, bob.token);
  // Three: in Sales, Ann's; its resolution fell due on 10 March at 23:50 UTC (05:35 on the 11th
  // in Kathmandu). A transfer to Support, to Bob, finds the breach: it was Sales' and Ann's.
  // Resolved then: late, and its first answer is removed (no verdict).
  const three = await ticket(sales, { assignee_id: ann.agent.id });
  await dueAt(db, three, 'resolution', '2026-03-10T23:50:00.000Z');
  await api('POST', `/v1/tickets/${three}/transfer`, { department_id: support, assignee_id: bob.agent.id });
  await resolve(three);
  // Four: in Support, on WhatsApp, nobody's, resolved at once: resolution met; the first answer
  // and first assignment are removed without a verdict.
  const four = await ticket(support, { channel: 'whatsapp' });
  await resolve(four);

  // What the clock wrote, as the reports read it.
  const verdictsOf = async (id: string) =>
    (await slaEvents(id))
      .filter((e) => ['sla.fulfilled', 'sla.breached', 'sla.removed'].includes(String(e.type)))
      .map((e) => `${e.type} ${(e.data as Row).kind}${(e.data as Row).late ? ' late' : ''}`);
  t.same(await verdictsOf(two), ['sla.breached first_answer', 'sla.fulfilled first_answer late']);
  const breach = (await slaEvents(three)).find((e) => e.type === 'sla.breached')!;
  t.same(
    [(breach.data as Row).at, breach.department_id, breach.agent_id],
    ['2026-03-10T23:50:00.000Z', sales, ann.agent.id],
    'a breach found by a transfer is stamped with the ticket as it was when it breached',
  );
  t.same(await verdictsOf(four), [
    'sla.fulfilled resolution',
    'sla.removed first_answer',
    'sla.removed first_assignment',
  ]);

  const now = Date.now();
  const end = new Date(Math.ceil((now + 3_600_000) / QUARTER) * QUARTER).toISOString();
  const today = `from=${new Date(Math.floor((now - 3_600_000) / QUARTER) * QUARTER).toISOString()}&to=${end}`;
  const march10 = 'from=2026-03-10&to=2026-03-11';
  const all = `from=2026-03-01&to=${end}`;

  for (const state of ['fresh', 'compacted', 'rebuilt'] as const) {
    await t.test(`departments, agents, channels (${state} counters)`, async (t) => {
      if (state === 'compacted') t.ok(((await compactReports(db)) ?? 0) > 0, 'folded');
      if (state === 'rebuilt') await db.transaction().execute((trx) => rebuildReportCounters(trx));

      const now = await report(`/v1/reports/departments?${today}`, 'department_id');
      expectSla(
        t,
        now.rows.get(sales),
        {
          all: [6, 0, 100],
          first_answer: [1, 0, 100],
          next_answer: [2, 0, 100],
          first_assignment: [1, 0, 100],
          resolution: [2, 0, 100],
        },
        'Sales now: ticket one',
      );
      expectSla(
        t,
        now.rows.get(support),
        { all: [1, 0, 100], resolution: [1, 0, 100] },
        'Support now: ticket four; the late answer and the removed targets count for nothing',
      );
      expectSla(
        t,
        now.totals,
        {
          all: [7, 0, 100],
          first_answer: [1, 0, 100],
          next_answer: [2, 0, 100],
          first_assignment: [1, 0, 100],
          resolution: [3, 0, 100],
        },
        'totals now',
      );

      const march = await report(`/v1/reports/departments?${march10}`, 'department_id');
      expectSla(
        t,
        march.rows.get(support),
        { all: [0, 1, 0], first_answer: [0, 1, 0] },
        '10 March, Support: two breached at its due',
      );
      expectSla(
        t,
        march.rows.get(sales),
        { all: [0, 1, 0], resolution: [0, 1, 0] },
        '10 March, Sales: three breached while it was here',
      );

      const whole = await report(`/v1/reports/departments?${all}`, 'department_id');
      expectSla(
        t,
        whole.totals,
        {
          all: [7, 2, 77.78],
          first_answer: [1, 1, 50],
          next_answer: [2, 0, 100],
          first_assignment: [1, 0, 100],
          resolution: [3, 1, 75],
        },
        'since March: 7 of 9 targets met',
      );

      const agents = await report(`/v1/reports/agents?${all}`, 'agent_id');
      expectSla(
        t,
        agents.rows.get(ann.agent.id),
        {
          all: [6, 1, 85.71],
          first_answer: [1, 0, 100],
          next_answer: [2, 0, 100],
          first_assignment: [1, 0, 100],
          resolution: [2, 1, 66.67],
        },
        'Ann: ticket one, and three breached in her hands',
      );
      expectSla(t, agents.rows.get(bob.agent.id), { all: [0, 1, 0], first_answer: [0, 1, 0] }, 'Bob: two');
      expectSla(t, agents.rows.get('null'), { all: [1, 0, 100], resolution: [1, 0, 100] }, 'no agent: four');

      const channels = await report(`/v1/reports/channels?${all}`, 'channel');
      expectSla(
        t,
        channels.rows.get('email'),
        {
          all: [6, 2, 75],
          first_answer: [1, 1, 50],
          next_answer: [2, 0, 100],
          first_assignment: [1, 0, 100],
          resolution: [2, 1, 66.67],
        },
        'email',
      );
      expectSla(t, channels.rows.get('whatsapp'), { all: [1, 0, 100], resolution: [1, 0, 100] }, 'whatsapp');
      expectSla(t, channels.rows.get('chat'), {}, 'chat: nothing decided, no share');

      const hours = await report(
        `/v1/reports/departments?${march10}&interval=hour&group_by=time,department,agent`,
      );
      t.same(
        hours.data.map((r) => [r.period_start, r.department_name, r.agent_name, ...verdicts(r, 'all')!]),
        [
          ['2026-03-10T10:00:00+00:00', 'Support', 'Bob', 0, 1, 0],
          ['2026-03-10T23:00:00+00:00', 'Sales', 'Ann', 0, 1, 0],
        ],
        'by hour, department and agent: only the hours with a verdict',
      );

      const kathmandu = await report(
        `/v1/reports/departments?from=2026-03-10&to=2026-03-12&interval=day&timezone=Asia/Kathmandu&columns=sla_first_answer_breached,sla_resolution_breached,sla_breached`,
      );
      t.same(
        kathmandu.data.map((r) => [
          r.period_start,
          r.department_name,
          r.sla_first_answer_breached,
          r.sla_resolution_breached,
          r.sla_breached,
        ]),
        [
          ['2026-03-10T00:00:00+05:45', 'Sales', 0, 0, 0],
          ['2026-03-10T00:00:00+05:45', 'Support', 1, 0, 1],
          ['2026-03-11T00:00:00+05:45', 'Sales', 0, 1, 1],
          ['2026-03-11T00:00:00+05:45', 'Support', 0, 0, 0],
        ],
        'in Kathmandu, 23:50 UTC is already the 11th',
      );
    });
  }

  await t.test('attribution=current: where the tickets are now', async (t) => {
    const current = await report(`/v1/reports/departments?${all}&attribution=current`, 'department_id');
    expectSla(
      t,
      current.rows.get(support),
      { all: [1, 2, 33.33], first_answer: [0, 1, 0], resolution: [1, 1, 50] },
      'Support now holds three, and its breach',
    );
    const event = await report(`/v1/reports/departments?${all}`, 'department_id');
    t.same(current.totals, event.totals, 'the same totals as the counters');
  });

  await t.test('an agent sees the verdicts of their departments only', async (t) => {
    const admins = await report(`/v1/reports/departments?${all}&columns=sla_achieved,sla_breached`);
    t.same(
      admins.data.map((r) => [r.department_name, r.sla_achieved, r.sla_breached]),
      [
        ['Sales', 6, 1],
        ['Support', 1, 1],
      ],
      'an admin sees both departments',
    );
    const bobs = await client(ctx, bob.token).report(
      `/v1/reports/departments?${all}&columns=sla_achieved,sla_breached,sla_achieved_pct`,
    );
    t.same(
      bobs.data.map((r) => [r.department_name, r.sla_achieved, r.sla_breached, r.sla_achieved_pct]),
      [['Support', 1, 1, 50]],
    );
    t.same(bobs.totals, { sla_achieved: 1, sla_breached: 1, sla_achieved_pct: 50 }, 'totals: Support only');
  });

  await t.test('CSV: the same values, labelled', async (t) => {
    const columns = 'sla_achieved_pct,sla_breached,sla_first_answer_achieved_pct,sla_resolution_breached';
    const res = await api('GET', `/v1/reports/departments.csv?${all}&unit_row=true&columns=${columns}`);
    const lines = res.body.trim().split('\n');
    t.equal(
      lines[0],
      'Department ID,Department,SLA achieved %,SLA breached,First answer SLA achieved %,Resolution SLA breached',
    );
    t.equal(lines[1], ',,percent,count,percent,count');
    const cells = (name: string) =>
      lines
        .find((l) => l.includes(`,${name},`))!
        .split(',')
        .slice(2);
    t.same(cells('Sales'), ['85.71', '1', '100', '1'], 'Sales: 6 met, three breached');
    t.same(cells('Support'), ['50', '1', '0', '0'], 'Support: four met, two breached');
    const json = await report(`/v1/reports/departments?${all}&columns=${columns}`, 'department_id');
    t.same(Object.values(json.rows.get(sales)!).slice(3), [85.71, 1, 100, 1], 'JSON says the same');
  });
});

t.test('a breach counts at its due; verdicts by kind, zone and mode', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[support, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const { report } = client(ctx, admin.token);

  const verdict = (type: string, kind: SlaKind, at: string, extra: Row = {}) => ({
    type,
    data: {
      at,
      policy_id: null,
      policy_version: 1,
      kind,
      cycle: 1,
      due_at: at,
      reason: null,
      late: null,
      ...extra,
    },
  });
  const history = (
    now: { department: string; assignee: string; channel: Channel },
    events: { type: string; at: string; department: string; agent: string; data?: Row }[],
  ) => insertHistory(db, 'SLA fixture', now, events);
  const sa = { department: sales, agent: ann.id };
  const sb = { department: support, agent: bob.id };

  // Sales (Ann, email): first answer met at 09:10 on the 10th; next answer breached, due
  // 23:50 on the 10th but recorded at 09:00 on the 12th; resolution met late on the 12th
  // (nothing more); first assignment removed (nothing).
  await history({ department: sales, assignee: ann.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-10T09:00:00Z', ...sa },
    {
      ...verdict('sla.fulfilled', 'first_answer', '2026-03-10T09:10:00.000Z', { late: false }),
      at: '2026-03-10T09:10:00Z',
      ...sa,
    },
    {
      ...verdict('sla.breached', 'next_answer', '2026-03-10T23:50:00.000Z'),
      at: '2026-03-12T09:00:00Z',
      ...sa,
    },
    {
      ...verdict('sla.breached', 'resolution', '2026-03-11T09:00:00.000Z'),
      at: '2026-03-12T09:00:00Z',
      ...sa,
    },
    {
      ...verdict('sla.fulfilled', 'resolution', '2026-03-12T10:00:00.000Z', { late: true }),
      at: '2026-03-12T10:00:00Z',
      ...sa,
    },
    {
      ...verdict('sla.removed', 'first_assignment', '2026-03-12T10:00:00.000Z'),
      at: '2026-03-12T10:00:00Z',
      ...sa,
    },
    {
      ...verdict('sla.warning', 'resolution', '2026-03-11T08:00:00.000Z'),
      at: '2026-03-12T09:00:00Z',
      ...sa,
    },
  ]);
  // Support (Bob, chat): first assignment met at 18:30 on the 10th (00:15 on the 11th in
  // Kathmandu); a resolution met in time on the 11th; a breach whose `at` is later than its
  // own event (which no writer makes) counts at the event; one with no readable `at` too.
  await history({ department: support, assignee: bob.id, channel: 'chat' }, [
    { type: 'created', at: '2026-03-10T18:00:00Z', ...sb },
    {
      ...verdict('sla.fulfilled', 'first_assignment', '2026-03-10T18:30:00.000Z', { late: false }),
      at: '2026-03-10T18:30:00Z',
      ...sb,
    },
    {
      ...verdict('sla.fulfilled', 'resolution', '2026-03-11T12:00:00.000Z', { late: false }),
      at: '2026-03-11T12:00:00Z',
      ...sb,
    },
    {
      ...verdict('sla.breached', 'first_answer', '2026-03-20T00:00:00.000Z'),
      at: '2026-03-11T13:00:00Z',
      ...sb,
    },
    {
      ...verdict('sla.breached', 'next_answer', '2026-03-11T14:00:00.000Z', { at: 'yesterday' }),
      at: '2026-03-11T14:00:00Z',
      ...sb,
    },
  ]);

  const day = (date: string) =>
    `from=${date}&to=${new Date(Date.parse(date) + 86_400_000).toISOString().slice(0, 10)}`;
  for (const state of ['fresh', 'compacted'] as const) {
    await t.test(`by day in UTC (${state} counters)`, async (t) => {
      if (state === 'compacted') t.ok(((await compactReports(db)) ?? 0) > 0, 'folded');
      const days = await report(
        `/v1/reports/departments?from=2026-03-10&to=2026-03-13&interval=day&group_by=time,department`,
      );
      const rows = new Map(
        days.data.map((r) => [`${String(r.period_start).slice(0, 10)} ${r.department_name}`, r]),
      );
      expectSla(
        t,
        rows.get('2026-03-10 Sales'),
        { all: [1, 1, 50], first_answer: [1, 0, 100], next_answer: [0, 1, 0] },
        'the 10th, Sales: the next answer breached at its due, recorded two days later',
      );
      expectSla(
        t,
        rows.get('2026-03-11 Sales'),
        { all: [0, 1, 0], resolution: [0, 1, 0] },
        'the 11th, Sales: the resolution breached at its due; the warning counts for nothing',
      );
      expectSla(
        t,
        rows.get('2026-03-12 Sales'),
        {},
        'the 12th, Sales: where the breaches were recorded; the late fulfilment and the removal count for nothing',
      );
      expectSla(
        t,
        rows.get('2026-03-10 Support'),
        { all: [1, 0, 100], first_assignment: [1, 0, 100] },
        'the 10th, Support',
      );
      expectSla(
        t,
        rows.get('2026-03-11 Support'),
        { all: [1, 2, 33.33], first_answer: [0, 1, 0], next_answer: [0, 1, 0], resolution: [1, 0, 100] },
        'the 11th, Support: the breaches without a usable due count at their events',
      );
      expectSla(
        t,
        days.totals,
        {
          all: [3, 4, 42.86],
          first_answer: [1, 1, 50],
          next_answer: [0, 2, 0],
          first_assignment: [1, 0, 100],
          resolution: [1, 1, 50],
        },
        'the three days',
      );
    });
  }

  await t.test('in Asia/Kathmandu: days start at 18:15 UTC', async (t) => {
    const days = await report(
      `/v1/reports/agents?from=2026-03-10&to=2026-03-13&interval=day&timezone=Asia/Kathmandu&group_by=time,agent`,
    );
    const rows = new Map(days.data.map((r) => [`${String(r.period_start).slice(0, 10)} ${r.agent_name}`, r]));
    expectSla(
      t,
      rows.get('2026-03-10 Ann'),
      { all: [1, 0, 100], first_answer: [1, 0, 100] },
      'the 10th, Ann',
    );
    expectSla(
      t,
      rows.get('2026-03-11 Ann'),
      { all: [0, 2, 0], next_answer: [0, 1, 0], resolution: [0, 1, 0] },
      'the 11th, Ann: 23:50 UTC is 05:35 here; 09:00 UTC is 14:45',
    );
    expectSla(t, rows.get('2026-03-10 Bob'), {}, 'the 10th, Bob: 18:30 UTC is already the 11th here');
    expectSla(
      t,
      rows.get('2026-03-11 Bob'),
      {
        all: [2, 2, 50],
        first_answer: [0, 1, 0],
        next_answer: [0, 1, 0],
        first_assignment: [1, 0, 100],
        resolution: [1, 0, 100],
      },
      'the 11th, Bob',
    );
  });

  await t.test('attribution=current reads breaches recorded after the range', async (t) => {
    for (const path of ['departments', 'agents', 'channels']) {
      for (const query of [day('2026-03-10'), `${day('2026-03-10')}&interval=hour&timezone=Asia/Kathmandu`]) {
        const event = await report(`/v1/reports/${path}?${query}`);
        const current = await report(`/v1/reports/${path}?${query}&attribution=current`);
        t.same(current.data, event.data, `${path} ?${query}: rows`);
        t.same(current.totals, event.totals, `${path} ?${query}: totals`);
      }
    }
    const current = await report(`/v1/reports/departments?${day('2026-03-10')}&attribution=current`);
    expectSla(
      t,
      current.totals,
      {
        all: [2, 1, 66.67],
        first_answer: [1, 0, 100],
        next_answer: [0, 1, 0],
        first_assignment: [1, 0, 100],
      },
      'the 10th: the next answer breached then, recorded on the 12th',
    );
  });

  await t.test('sorting and the column catalogue', async (t) => {
    const sorted = await report(
      `/v1/reports/departments?from=2026-03-10&to=2026-03-13&sort=-sla_achieved_pct`,
    );
    t.same(
      sorted.data.map((r) => [r.department_name, r.sla_achieved_pct]),
      [
        ['Support', 50],
        ['Sales', 33.33],
      ],
    );
    const catalogue = (await client(ctx, admin.token).api('GET', '/v1/reports/columns')).json().data as Row[];
    const sla = catalogue.filter((c) => String(c.key).startsWith('sla_'));
    t.equal(sla.length, 15, 'the share, achieved and breached, over all kinds and per kind');
    t.same(
      sla.slice(0, 3).map((c) => [c.key, c.label, c.unit, c.kind]),
      [
        ['sla_achieved_pct', 'SLA achieved %', 'percent', 'percentage'],
        ['sla_achieved', 'SLA achieved', 'count', 'count'],
        ['sla_breached', 'SLA breached', 'count', 'count'],
      ],
    );
    t.same(
      sla.filter((c) => String(c.key).startsWith('sla_resolution')).map((c) => c.label),
      ['Resolution SLA achieved %', 'Resolution SLA achieved', 'Resolution SLA breached'],
    );
  });
});

t.test('verdicts written before migration 0022 are counted once it runs; down and up again', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const { report } = client(ctx, admin.token);
  const sales = await makeDepartment(db, 'Sales');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });

  const names = (await fs.readdir(MIGRATIONS_DIR))
    .filter((f) => /^\d{4}_.*\.ts$/.test(f))
    .map((f) => f.slice(0, -3))
    .sort();
  const previous = names[names.indexOf('0022_report_sla') - 1]!;
  const migrator = new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder: MIGRATIONS_DIR }),
  });
  const down = await migrator.migrateTo(previous);
  t.error(down.error, `migrated down to ${previous}`);
  t.equal(
    (
      await sql<{
        n: number;
      }>`select count(*)::int as n from information_schema.columns where column_name = 'sla_resolution_breached'`.execute(
        db,
      )
    ).rows[0]!.n,
    0,
    'the columns are gone',
  );

  const at = { department: sales, agent: ann.id };
  await insertHistory(db, 'Before 0022', { department: sales, assignee: ann.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-10T09:00:00Z', ...at },
    {
      type: 'sla.fulfilled',
      at: '2026-03-10T09:30:00Z',
      ...at,
      data: { kind: 'first_answer', late: false, at: '2026-03-10T09:30:00.000Z' },
    },
    {
      type: 'sla.breached',
      at: '2026-03-11T09:00:00Z',
      ...at,
      data: { kind: 'resolution', at: '2026-03-10T23:00:00.000Z' },
    },
  ]);
  const noted = await sql<{
    n: number;
  }>`select count(*)::int as n from report_pending_events p join ticket_events e on e.id = p.event_id where e.type like 'sla.%'`.execute(
    db,
  );
  t.equal(noted.rows[0]!.n, 0, 'before 0022 the trigger does not note verdicts');

  t.ok((await migrateToLatest(db)).includes('0022_report_sla'), 'migrated up again');
  const res = await report(`/v1/reports/departments?from=2026-03-10&to=2026-03-11`, 'department_id');
  expectSla(
    t,
    res.rows.get(sales),
    { all: [1, 1, 50], first_answer: [1, 0, 100], resolution: [0, 1, 0] },
    'both verdicts counted, the breach at its due',
  );
});
