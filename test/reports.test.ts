import { readFile } from 'node:fs/promises';
import { sql } from 'kysely';
import t, { type Test } from 'tap';
import type { Db } from '../src/db/database.ts';
import type { Channel } from '../src/db/types.ts';
import { METRICS } from '../src/domains/reports/metrics.ts';
import {
  compactReportTables,
  countPendingEvents,
  type ReportSpec,
  rebuildReportCounters,
  reportQuery,
  toReportRow,
} from '../src/domains/reports/repository.ts';
import { compactReports } from '../src/domains/reports/service.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment, type TestContext } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { parseCsv } from './helpers/reports.ts';

// PGlite has one connection: a transaction left open while another writes would wait forever.
const twoConnections =
  (await testDatabaseKind()) === 'pglite' ? 'needs two connections (PGlite has one)' : false;

// Report figures checked against values worked out by hand from small event histories written
// with explicit times (the trigger counts them exactly as it counts the API's own events).

type Row = Record<string, unknown>;

interface EventSpec {
  type: string;
  at: string;
  department: string | null;
  agent: string | null;
  actorAgent?: string | null;
  actorType?: 'agent' | 'contact' | 'system';
  channel?: string;
  data?: Record<string, unknown>;
}

async function bareTicket(
  db: Db,
  ticket: { department: string | null; assignee?: string | null; channel?: string; status: string },
) {
  const contact = await db
    .insertInto('contacts')
    .values({ name: 'Customer' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const row = await db
    .insertInto('tickets')
    .values({
      subject: 'Report fixture',
      channel: (ticket.channel ?? 'email') as 'email',
      status: ticket.status as 'open',
      priority: 'normal',
      department_id: ticket.department,
      assignee_id: ticket.assignee ?? null,
      contact_id: contact.id,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, channel: ticket.channel ?? 'email' };
}

/** Appends events in one statement, as the services do. */
async function events(db: Db, ticket: { id: string; channel: string }, list: EventSpec[]) {
  await db
    .insertInto('ticket_events')
    .values(
      list.map((e) => ({
        ticket_id: ticket.id,
        type: e.type,
        actor_type: e.actorType ?? (e.actorAgent ? 'agent' : 'system'),
        actor_agent_id: e.actorAgent ?? null,
        actor_contact_id: null,
        department_id: e.department,
        agent_id: e.agent,
        channel: (e.channel ?? ticket.channel) as Channel,
        data: JSON.stringify(e.data ?? {}),
        occurred_at: new Date(e.at),
      })),
    )
    .execute();
}

const COUNT_KEYS = METRICS.filter((m) => m.kind === 'count' || m.kind === 'current').map((m) => m.key);

/** A full row of figures: the given ones, 0 for other counts, null for other times and shares. */
function figures(given: Record<string, number | null>): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const m of METRICS) out[m.key] = given[m.key] ?? (COUNT_KEYS.includes(m.key) ? 0 : null);
  return out;
}

function pick(row: Row, keys: string[]) {
  return Object.fromEntries(keys.map((k) => [k, row[k]]));
}

const METRIC_KEYS = METRICS.map((m) => m.key);
const PERCENTILE_KEYS = METRICS.filter((m) => 'percentile' in m.formula).map((m) => m.key);

/** The documented bound of the histogram percentiles (docs/metrics.md): 0.5 % of the exact value. */
const RELATIVE_ERROR = 0.005;

/** A percentile against its hand-computed exact value: within 0.5 % (plus the 3-decimal rounding). */
function approx(t: Test, actual: unknown, expected: number, name = `≈ ${expected}`) {
  const ok =
    typeof actual === 'number' && Math.abs(actual - expected) <= RELATIVE_ERROR * Math.abs(expected) + 0.0005;
  t.ok(ok, name, { actual, expected, bound: RELATIVE_ERROR * Math.abs(expected) });
}

/** A row of figures: counts, averages and shares exactly, percentiles within the bound. */
function sameFigures(t: Test, row: Row, expected: Record<string, number | null>, name: string) {
  const exact = Object.keys(expected).filter((k) => !PERCENTILE_KEYS.includes(k));
  t.same(pick(row, exact), pick(expected, exact), name);
  for (const key of Object.keys(expected).filter((k) => PERCENTILE_KEYS.includes(k))) {
    const want = expected[key];
    if (want === null || want === undefined) t.equal(row[key], null, `${name}: ${key} is null`);
    else approx(t, row[key], want, `${name}: ${key} ≈ ${want}`);
  }
}

t.test('reports', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const zones = await makeDepartment(db, 'Zones');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[support, 'solver']] });
  const cid = await makeAgent(db, { name: 'Cid', departments: [[sales, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });

  const D = (time: string) => `2026-03-10T${time}:00Z`;

  // T1: asked in Sales, answered twice there, transferred to Support, answered, resolved,
  // reopened by the customer, answered and resolved again, then rated positive.
  const t1 = await bareTicket(db, { department: support, assignee: bob.id, status: 'resolved' });
  await events(db, t1, [
    { type: 'created', at: D('09:00'), department: sales, agent: ann.id, actorType: 'contact' },
    {
      type: 'message_added',
      at: D('09:00'),
      department: sales,
      agent: ann.id,
      actorType: 'contact',
      data: { kind: 'customer' },
    },
  ]);
  await events(db, t1, [
    {
      type: 'message_added',
      at: D('09:10'),
      department: sales,
      agent: ann.id,
      actorAgent: ann.id,
      data: { kind: 'agent', first_answer: true, wait_seconds: 600 },
    },
    {
      type: 'message_added',
      at: D('09:30'),
      department: sales,
      agent: ann.id,
      actorType: 'contact',
      data: { kind: 'customer' },
    },
    {
      type: 'status_changed',
      at: D('09:30'),
      department: sales,
      agent: ann.id,
      actorType: 'contact',
      data: { from: 'answered', to: 'open' },
    },
    {
      type: 'message_added',
      at: D('09:50'),
      department: sales,
      agent: ann.id,
      actorAgent: ann.id,
      data: { kind: 'agent', first_answer: false, wait_seconds: 1200 },
    },
    {
      type: 'transferred',
      at: D('10:00'),
      department: support,
      agent: null,
      actorAgent: ann.id,
      data: { from_department_id: sales, to_department_id: support },
    },
    {
      type: 'message_added',
      at: D('10:30'),
      department: support,
      agent: bob.id,
      actorAgent: bob.id,
      data: { kind: 'agent', first_answer: false, wait_seconds: null },
    },
    {
      type: 'status_changed',
      at: D('11:00'),
      department: support,
      agent: bob.id,
      actorAgent: bob.id,
      data: { from: 'answered', to: 'resolved' },
    },
  ]);
  await events(db, t1, [
    {
      type: 'message_added',
      at: D('12:00'),
      department: support,
      agent: bob.id,
      actorType: 'contact',
      data: { kind: 'customer' },
    },
    {
      type: 'status_changed',
      at: D('12:00'),
      department: support,
      agent: bob.id,
      actorType: 'contact',
      data: { from: 'resolved', to: 'open', reopened: true },
    },
    {
      type: 'message_added',
      at: D('12:20'),
      department: support,
      agent: bob.id,
      actorAgent: bob.id,
      data: { kind: 'agent', first_answer: false, wait_seconds: 1200 },
    },
    {
      type: 'status_changed',
      at: D('13:00'),
      department: support,
      agent: bob.id,
      actorAgent: bob.id,
      data: { from: 'answered', to: 'resolved' },
    },
  ]);
  await events(db, t1, [
    {
      type: 'rated',
      at: D('14:00'),
      department: support,
      agent: bob.id,
      actorType: 'contact',
      data: { value: 'positive', rated_agent_id: bob.id },
    },
  ]);

  // T2: calls in Support: inbound answered (300 s), inbound missed, outbound answered without
  // talk time, outbound missed.
  const t2 = await bareTicket(db, { department: support, channel: 'call', status: 'answered' });
  const call = (at: string, direction: string, outcome: string, agent: string | null, duration: number) => ({
    type: 'call_recorded',
    at: D(at),
    department: support,
    agent: null,
    actorAgent: bob.id,
    data: { direction, outcome, agent_id: agent, duration_seconds: duration },
  });
  await events(db, t2, [
    { type: 'created', at: D('09:05'), department: support, agent: null, actorAgent: bob.id },
    call('09:05', 'inbound', 'answered', bob.id, 300),
    call('09:20', 'inbound', 'missed', null, 0),
    call('09:40', 'outbound', 'answered', bob.id, 0),
    call('10:00', 'outbound', 'missed', bob.id, 0),
  ]);

  // T3: chats in Sales: picked up after 20 s and lasting 360 s, missed, picked up after 40 s
  // and not ended; resolved, then rated negative.
  const t3 = await bareTicket(db, {
    department: sales,
    assignee: cid.id,
    channel: 'chat',
    status: 'resolved',
  });
  const chat = (at: string, data: Record<string, unknown>) => ({
    type: 'chat_recorded',
    at: D(at),
    department: sales,
    agent: cid.id,
    actorAgent: cid.id,
    data,
  });
  await events(db, t3, [
    { type: 'created', at: D('09:00'), department: sales, agent: cid.id, actorAgent: cid.id },
    chat('09:00', {
      missed: false,
      agent_id: cid.id,
      pickup_seconds: 20,
      duration_seconds: 360,
      customer_messages: 3,
      agent_messages: 2,
    }),
    chat('09:15', {
      missed: true,
      agent_id: null,
      pickup_seconds: null,
      duration_seconds: null,
      customer_messages: 1,
      agent_messages: 0,
    }),
    chat('09:30', {
      missed: false,
      agent_id: cid.id,
      pickup_seconds: 40,
      duration_seconds: null,
      customer_messages: 1,
      agent_messages: 1,
    }),
    {
      type: 'status_changed',
      at: D('10:00'),
      department: sales,
      agent: cid.id,
      actorAgent: cid.id,
      data: { from: 'answered', to: 'resolved' },
    },
  ]);
  await events(db, t3, [
    {
      type: 'rated',
      at: D('10:05'),
      department: sales,
      agent: cid.id,
      actorType: 'contact',
      data: { value: 'negative', rated_agent_id: cid.id },
    },
  ]);

  // T4: no department; rated during the conversation, then resolved (a rated conversation).
  const t4 = await bareTicket(db, { department: null, status: 'resolved' });
  await events(db, t4, [
    { type: 'created', at: D('09:00'), department: null, agent: null, actorType: 'contact' },
    {
      type: 'message_added',
      at: D('09:00'),
      department: null,
      agent: null,
      actorType: 'contact',
      data: { kind: 'customer' },
    },
    {
      type: 'rated',
      at: D('09:30'),
      department: null,
      agent: null,
      actorType: 'contact',
      data: { value: 'positive', rated_agent_id: null },
    },
    {
      type: 'status_changed',
      at: D('10:00'),
      department: null,
      agent: null,
      actorType: 'system',
      data: { from: 'new', to: 'resolved' },
    },
  ]);

  // T6, T7: two more first answers in Sales (300 s and 900 s); T8: a new ticket without events.
  for (const [status, at, wait] of [
    ['open', '11:05', 300],
    ['postponed', '11:15', 900],
  ] as const) {
    const ticket = await bareTicket(db, { department: sales, assignee: ann.id, status });
    await events(db, ticket, [
      { type: 'created', at: D('11:00'), department: sales, agent: ann.id, actorType: 'contact' },
      {
        type: 'message_added',
        at: D('11:00'),
        department: sales,
        agent: ann.id,
        actorType: 'contact',
        data: { kind: 'customer' },
      },
      {
        type: 'message_added',
        at: D(at),
        department: sales,
        agent: ann.id,
        actorAgent: ann.id,
        data: { kind: 'agent', first_answer: true, wait_seconds: wait },
      },
    ]);
  }
  await bareTicket(db, { department: sales, status: 'new' });

  const get = async (url: string, token = admin.token) => {
    const res = await ctx.request({ method: 'GET', url, token });
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const day = 'from=2026-03-10&to=2026-03-11';
  const byId = (rows: Row[], key: string) => new Map(rows.map((r) => [r[key] as string | null, r]));

  // What each department should show for 2026-03-10, worked out from the histories above.
  const salesDay = figures({
    answers: 4,
    avg_first_answer_time: 600,
    median_first_answer_time: 600,
    p90_first_answer_time: 840, // 600 + 0.8 × (900 − 600)
    avg_next_answer_time: 1200,
    median_next_answer_time: 1200,
    p90_next_answer_time: 1200,
    chats: 2,
    chat_messages: 3,
    missed_chats: 1,
    incoming_chats: 3,
    finished_chats: 1,
    avg_chat_pickup_time: 30,
    median_chat_pickup_time: 30,
    p90_chat_pickup_time: 38, // 20 + 0.9 × (40 − 20)
    avg_chat_time: 360,
    median_chat_time: 360,
    p90_chat_time: 360,
    incoming_messages: 9, // T1: 2, T3's chats: 3 + 1 + 1, T6 and T7: 1 each
    created_tickets: 4,
    resolved_tickets: 1,
    transfers_out: 1,
    negative_ratings: 1,
    positive_ratings_pct: 0,
    negative_ratings_pct: 100,
    not_rated_pct: 0,
    current_new_tickets: 1,
    current_open_tickets: 1,
    current_postponed_tickets: 1,
  });
  const supportDay = figures({
    answers: 2,
    avg_next_answer_time: 1200,
    median_next_answer_time: 1200,
    p90_next_answer_time: 1200,
    calls: 2,
    missed_calls: 1,
    call_minutes: 5,
    incoming_calls: 2,
    finished_calls: 1,
    incoming_messages: 1,
    created_tickets: 1,
    resolved_tickets: 2,
    reopened_tickets: 1,
    transfers_in: 1,
    positive_ratings: 1,
    not_rated: 1, // the first conversation (resolved at 11:00) got no rating; the second did
    positive_ratings_pct: 50,
    negative_ratings_pct: 0,
    not_rated_pct: 50,
    current_answered_tickets: 1,
  });
  const noDepartmentDay = figures({
    created_tickets: 1,
    incoming_messages: 1,
    resolved_tickets: 1,
    positive_ratings: 1,
    positive_ratings_pct: 100,
    negative_ratings_pct: 0,
    not_rated_pct: 0,
  });

  await t.test('every column, by department, credited to the department at event time', async (t) => {
    const report = await get(`/v1/reports/departments?${day}`);
    t.same(report.group_by, ['department']);
    t.same(
      report.columns.map((c: Row) => c.key),
      METRIC_KEYS,
      'all columns by default',
    );
    const rows = byId(report.data, 'department_id');
    t.same(
      [...rows.keys()].sort(),
      [null, sales, support, zones].sort(),
      'every department, and no department',
    );
    sameFigures(t, rows.get(sales)!, salesDay, 'Sales');
    sameFigures(t, rows.get(support)!, supportDay, 'Support');
    sameFigures(t, rows.get(null)!, noDepartmentDay, 'no department');
    t.same(pick(rows.get(zones)!, METRIC_KEYS), figures({}), 'an idle department: 0 counts, null times');
    t.equal(rows.get(sales)!.department_name, 'Sales');
    sameFigures(
      t,
      report.totals,
      figures({
        answers: 6,
        avg_first_answer_time: 600,
        median_first_answer_time: 600,
        p90_first_answer_time: 840,
        avg_next_answer_time: 1200,
        median_next_answer_time: 1200,
        p90_next_answer_time: 1200,
        calls: 2,
        missed_calls: 1,
        call_minutes: 5,
        incoming_calls: 2,
        finished_calls: 1,
        chats: 2,
        chat_messages: 3,
        missed_chats: 1,
        incoming_chats: 3,
        finished_chats: 1,
        avg_chat_pickup_time: 30,
        median_chat_pickup_time: 30,
        p90_chat_pickup_time: 38,
        avg_chat_time: 360,
        median_chat_time: 360,
        p90_chat_time: 360,
        incoming_messages: 11,
        created_tickets: 6,
        resolved_tickets: 4,
        reopened_tickets: 1,
        transfers_in: 1,
        transfers_out: 1,
        positive_ratings: 2,
        negative_ratings: 1,
        not_rated: 1,
        positive_ratings_pct: 50,
        negative_ratings_pct: 25,
        not_rated_pct: 25,
        current_new_tickets: 1,
        current_open_tickets: 1,
        current_answered_tickets: 1,
        current_postponed_tickets: 1,
      }),
      'totals over everything (percentiles over all samples, not an average of rows)',
    );
  });

  await t.test('attribution=current credits everything to where tickets are now', async (t) => {
    const report = await get(`/v1/reports/departments?${day}&attribution=current`);
    t.equal(report.attribution, 'current');
    const rows = byId(report.data, 'department_id');
    const keys = ['created_tickets', 'answers', 'avg_first_answer_time', 'avg_next_answer_time'];
    const more = ['incoming_messages', 'transfers_in', 'transfers_out', 'resolved_tickets', 'not_rated'];
    t.same(pick(rows.get(sales)!, [...keys, ...more]), {
      created_tickets: 3,
      answers: 2,
      avg_first_answer_time: 600, // 300 and 900
      avg_next_answer_time: null,
      incoming_messages: 7,
      transfers_in: 0,
      transfers_out: 0,
      resolved_tickets: 1,
      not_rated: 0,
    });
    t.same(pick(rows.get(support)!, [...keys, ...more]), {
      created_tickets: 2,
      answers: 4,
      avg_first_answer_time: 600,
      avg_next_answer_time: 1200,
      incoming_messages: 3,
      transfers_in: 1,
      transfers_out: 1,
      resolved_tickets: 2,
      not_rated: 1,
    });
    t.same(report.totals.answers, 6, 'totals do not depend on attribution');
  });

  await t.test('agents: work is credited to the agent who did it, the rest to the assignee', async (t) => {
    const report = await get(
      `/v1/reports/agents?${day}&columns=created_tickets,answers,calls,missed_calls,chats,missed_chats,resolved_tickets,positive_ratings,negative_ratings,not_rated,transfers_in`,
    );
    const rows = byId(report.data, 'agent_id');
    const keys = report.columns.map((c: Row) => c.key as string);
    t.same(pick(rows.get(ann.id)!, keys), {
      created_tickets: 3,
      answers: 4,
      calls: 0,
      missed_calls: 0,
      chats: 0,
      missed_chats: 0,
      resolved_tickets: 0,
      positive_ratings: 0,
      negative_ratings: 0,
      not_rated: 0,
      transfers_in: 0,
    });
    t.same(pick(rows.get(bob.id)!, keys), {
      created_tickets: 0,
      answers: 2,
      calls: 2,
      missed_calls: 0,
      chats: 0,
      missed_chats: 0,
      resolved_tickets: 2,
      positive_ratings: 1,
      negative_ratings: 0,
      not_rated: 1,
      transfers_in: 0,
    });
    t.same(pick(rows.get(cid.id)!, keys), {
      created_tickets: 1,
      answers: 0,
      calls: 0,
      missed_calls: 0,
      chats: 2,
      missed_chats: 1,
      resolved_tickets: 1,
      positive_ratings: 0,
      negative_ratings: 1,
      not_rated: 0,
      transfers_in: 0,
    });
    t.same(pick(rows.get(null)!, keys), {
      created_tickets: 2,
      answers: 0,
      calls: 0,
      missed_calls: 1,
      chats: 0,
      missed_chats: 0,
      resolved_tickets: 1,
      positive_ratings: 1,
      negative_ratings: 0,
      not_rated: 0,
      transfers_in: 1,
    });
    t.equal(rows.get(ann.id)!.agent_name, 'Ann');
  });

  await t.test('channels: calls and chats count on their own channel', async (t) => {
    const report = await get(`/v1/reports/channels?${day}&columns=created_tickets,answers,calls,chats`);
    const rows = byId(report.data, 'channel');
    t.same([...rows.keys()].sort(), [
      'api',
      'call',
      'chat',
      'contact_form',
      'email',
      'facebook',
      'instagram',
      'twitter',
      'viber',
      'whatsapp',
    ]);
    t.same(pick(rows.get('email')!, ['created_tickets', 'answers', 'calls', 'chats']), {
      created_tickets: 4,
      answers: 6,
      calls: 0,
      chats: 0,
    });
    t.same(pick(rows.get('call')!, ['created_tickets', 'calls']), { created_tickets: 1, calls: 2 });
    t.same(pick(rows.get('chat')!, ['created_tickets', 'chats']), { created_tickets: 1, chats: 2 });
    t.same(pick(rows.get('api')!, ['created_tickets', 'answers']), { created_tickets: 0, answers: 0 });
  });

  await t.test('filters, several group_by dimensions and hourly series', async (t) => {
    const report = await get(
      `/v1/reports/departments?${day}&interval=hour&department_id=${sales}&columns=answers,avg_first_answer_time`,
    );
    t.same(report.group_by, ['time', 'department']);
    t.equal(report.data.length, 24, 'every hour of the day, busy or not');
    const series = report.data.map((r: Row) => r.answers);
    t.same(series.slice(8, 13), [0, 2, 0, 2, 0]);
    t.same(report.data[9], {
      period_start: '2026-03-10T09:00:00+00:00',
      period_end: '2026-03-10T10:00:00+00:00',
      department_id: sales,
      department_name: 'Sales',
      department_deleted: false,
      answers: 2,
      avg_first_answer_time: 600,
    });
    t.equal(report.data[0].avg_first_answer_time, null, 'an empty hour has no average');
    t.same(report.chart, { x: 'period_start', series: ['department_name'] });

    const split = await get(
      `/v1/reports/departments?${day}&group_by=department,channel,agent&department_id=${support}&columns=answers,calls`,
    );
    t.same(split.group_by, ['department', 'channel', 'agent']);
    t.same(
      split.data.map((r: Row) => [r.channel, r.agent_name, r.answers, r.calls]),
      [
        ['call', null, 0, 0],
        ['call', 'Bob', 0, 2],
        ['email', null, 0, 0],
        ['email', 'Bob', 2, 0],
      ],
      'only combinations with figures, ordered by the dimensions',
    );
    const none = await get(`/v1/reports/agents?${day}&department_id=none&columns=created_tickets`);
    t.same(
      none.data.map((r: Row) => [r.agent_id, r.created_tickets]),
      [[null, 1]],
      'department_id=none: tickets in no department',
    );
  });

  await t.test('JSON and CSV of the same query agree exactly', async (t) => {
    for (const query of [
      `/v1/reports/departments?${day}`,
      `/v1/reports/agents?${day}&interval=hour&group_by=agent,channel`,
    ]) {
      const json = await get(query);
      const csv = await ctx.request({
        method: 'GET',
        url: query,
        token: admin.token,
        headers: { accept: 'text/csv' },
      });
      t.equal(csv.statusCode, 200);
      t.match(csv.headers['content-type'], /^text\/csv/);
      const lines = parseCsv(csv.body);
      const fields = [...json.dimensions.map((d: Row) => d.key), ...json.columns.map((c: Row) => c.key)];
      t.same(lines[0], [
        ...json.dimensions.map((d: Row) => d.label),
        ...json.columns.map((c: Row) => c.label),
      ]);
      t.equal(lines.length - 1, json.data.length, 'one line per row');
      const fromJson = json.data.map((r: Row) =>
        fields.map((f: string) => (r[f] === null ? '' : String(r[f]))),
      );
      t.same(lines.slice(1), fromJson, query);
    }
  });

  await t.test('the counters agree with the same report computed from the raw events', async (t) => {
    const base: ReportSpec = {
      from: new Date('2026-03-10T00:00:00Z'),
      to: new Date('2026-03-11T00:00:00Z'),
      timezone: 'Asia/Kathmandu',
      interval: 'hour',
      weekShift: 0,
      groupBy: ['time', 'department', 'agent', 'channel'],
      departments: null,
      agents: null,
      channels: null,
      attribution: 'event',
      source: 'counters',
      metrics: METRICS,
      sort: [],
    };
    const run = async (spec: ReportSpec) =>
      (await reportQuery(spec).execute(db)).rows.map((r) => toReportRow(spec, r));
    // Straight queries, not the routes: count what earlier events left pending first.
    await countPendingEvents(db);
    t.same(await run(base), await run({ ...base, source: 'events' }), 'hourly, all dimensions');
    const month = { ...base, interval: 'month' as const, from: new Date('2026-03-01T00:00:00Z') };
    t.same(await run(month), await run({ ...month, source: 'events' }), 'monthly');

    const before = await run(base);
    await db.transaction().execute((trx) => rebuildReportCounters(trx));
    t.same(await run(base), before, 'rebuilding the counters from the events changes nothing');
  });

  await t.test('a DST change inside a day: Europe/Prague, 2026-10-25 has 25 hours', async (t) => {
    const ticket = await bareTicket(db, { department: zones, status: 'open' });
    for (const at of [
      '2026-10-24T21:30:00Z', // 23:30 on the 24th (CEST)
      '2026-10-24T22:30:00Z', // 00:30 on the 25th (CEST)
      '2026-10-25T22:30:00Z', // 23:30 on the 25th (CET): a fixed +02:00 would put it on the 26th
      '2026-10-25T23:30:00Z', // 00:30 on the 26th (CET)
    ]) {
      await events(db, ticket, [{ type: 'created', at, department: zones, agent: null }]);
    }
    const q = `department_id=${zones}&columns=created_tickets&timezone=Europe/Prague`;
    const days = await get(`/v1/reports/departments?${q}&from=2026-10-24&to=2026-10-27&interval=day`);
    t.same(
      days.data.map((r: Row) => [r.period_start, r.period_end, r.created_tickets]),
      [
        ['2026-10-24T00:00:00+02:00', '2026-10-25T00:00:00+02:00', 1],
        ['2026-10-25T00:00:00+02:00', '2026-10-26T00:00:00+01:00', 2],
        ['2026-10-26T00:00:00+01:00', '2026-10-27T00:00:00+01:00', 1],
      ],
    );
    t.equal(days.range.from, '2026-10-23T22:00:00.000Z', 'a date is local midnight');
    const hours = await get(`/v1/reports/departments?${q}&from=2026-10-25&to=2026-10-26&interval=hour`);
    t.equal(hours.data.length, 25, '25 hours');
    t.same(
      hours.data.slice(1, 5).map((r: Row) => r.period_start),
      [
        '2026-10-25T01:00:00+02:00',
        '2026-10-25T02:00:00+02:00',
        '2026-10-25T02:00:00+01:00',
        '2026-10-25T03:00:00+01:00',
      ],
      'the repeated hour appears twice',
    );
    t.same(
      hours.data.filter((r: Row) => r.created_tickets).map((r: Row) => r.period_start),
      ['2026-10-25T00:00:00+02:00', '2026-10-25T23:00:00+01:00'],
    );
  });

  await t.test('a 45-minute offset: Asia/Kathmandu (+05:45)', async (t) => {
    const ticket = await bareTicket(db, { department: zones, status: 'open' });
    for (const at of [
      '2026-02-28T18:10:00Z', // 23:55 on 28 February, local
      '2026-02-28T18:20:00Z', // 00:05 on 1 March
      '2026-03-19T18:00:00Z', // 23:45 on the 19th
      '2026-03-19T18:15:00Z', // 00:00 on the 20th
      '2026-03-20T18:10:00Z', // 23:55 on the 20th
      '2026-03-20T18:15:00Z', // 00:00 on the 21st
    ]) {
      await events(db, ticket, [{ type: 'created', at, department: zones, agent: null }]);
    }
    const q = `department_id=${zones}&columns=created_tickets&timezone=Asia/Kathmandu`;
    const days = await get(`/v1/reports/departments?${q}&from=2026-03-19&to=2026-03-22&interval=day`);
    t.same(
      days.data.map((r: Row) => [r.period_start, r.created_tickets]),
      [
        ['2026-03-19T00:00:00+05:45', 1],
        ['2026-03-20T00:00:00+05:45', 2],
        ['2026-03-21T00:00:00+05:45', 1],
      ],
    );
    const hours = await get(`/v1/reports/departments?${q}&from=2026-03-20&to=2026-03-21&interval=hour`);
    t.equal(hours.data.length, 24);
    t.same(
      [hours.data[0].period_start, hours.data[0].created_tickets, hours.data[23].created_tickets],
      ['2026-03-20T00:00:00+05:45', 1, 1],
    );
    const months = await get(`/v1/reports/departments?${q}&from=2026-02-01&to=2026-04-01&interval=month`);
    t.same(
      months.data.map((r: Row) => [r.period_start, r.created_tickets]),
      [
        ['2026-02-01T00:00:00+05:45', 1],
        ['2026-03-01T00:00:00+05:45', 5],
      ],
      'months from whole UTC days plus the 15-minute edges',
    );
  });

  await t.test('weeks start on Monday unless week_start says otherwise', async (t) => {
    // 2026-03-10 is a Tuesday.
    const q = `${day}&interval=week&department_id=${sales}&columns=answers`;
    const monday = await get(`/v1/reports/departments?${q}`);
    t.same(
      monday.data.map((r: Row) => [r.period_start, r.answers]),
      [['2026-03-09T00:00:00+00:00', 4]],
    );
    const sunday = await get(`/v1/reports/departments?${q}&week_start=sunday`);
    t.equal(sunday.data[0].period_start, '2026-03-08T00:00:00+00:00');
    t.equal(sunday.range.week_start, 'sunday');
  });

  await t.test('an empty range: zero counts, null times and shares, no division by zero', async (t) => {
    const report = await get('/v1/reports/departments?from=2025-01-01&to=2025-01-02&interval=day');
    t.same(
      report.data.map((r: Row) => r.department_name).sort(),
      ['Sales', 'Support', 'Zones'],
      'the departments, idle',
    );
    for (const row of report.data) {
      const periodKeys = METRIC_KEYS.filter((k) => !k.startsWith('current_'));
      t.same(pick(row, periodKeys), pick(figures({}), periodKeys));
      t.equal(row.current_new_tickets, null, 'current counts are not per period');
    }
    const totals = report.totals;
    t.equal(totals.answers, 0);
    t.equal(totals.avg_first_answer_time, null);
    t.equal(totals.positive_ratings_pct, null);
    t.equal(totals.current_new_tickets, 1, 'totals carry the current counts');
  });

  await t.test('sorting and cursor pagination', async (t) => {
    const both = `department_id=${sales},${support}`;
    const q = `/v1/reports/agents?${day}&${both}&columns=answers,avg_first_answer_time&sort=-answers&limit=2`;
    const first = await get(q);
    t.same(
      first.data.map((r: Row) => [r.agent_name, r.answers]),
      [
        ['Ann', 4],
        ['Bob', 2],
      ],
    );
    t.ok(first.next_cursor);
    const second = await get(`${q}&cursor=${first.next_cursor}`);
    t.same(
      second.data.map((r: Row) => [r.agent_name, r.answers]),
      [
        [null, 0],
        ['Cid', 0],
      ],
      'ties by name (no agent first)',
    );
    t.equal(second.next_cursor, null);
    const byTime = await get(
      `/v1/reports/agents?${day}&${both}&columns=avg_first_answer_time&sort=avg_first_answer_time`,
    );
    t.same(
      byTime.data.map((r: Row) => r.avg_first_answer_time),
      [600, null, null, null],
      'nulls last',
    );
    const other = await ctx.request({
      method: 'GET',
      url: `/v1/reports/agents?${day}&columns=answers&limit=2&cursor=${first.next_cursor}`,
      token: admin.token,
    });
    t.equal(other.statusCode, 400, "another query's cursor is refused");
    t.equal(other.json().code, 'invalid_cursor');
  });

  await t.test('leaderboard: agents ranked by answers, resolved tickets, positive ratings', async (t) => {
    const board = await get(`/v1/reports/agents/leaderboard?${day}`);
    t.same(
      board.data
        .slice(0, 3)
        .map((r: Row) => [r.rank, r.agent_name, r.answers, r.resolved_tickets, r.positive_ratings]),
      [
        [1, 'Ann', 4, 0, 0],
        [2, 'Bob', 2, 2, 1],
        [3, 'Cid', 0, 1, 0],
      ],
    );
    t.same(
      board.data.slice(3).map((r: Row) => [r.rank, r.answers]),
      [[4, 0]],
      'agents without figures (the admin here) come last',
    );
    const sales_ = await get(`/v1/reports/agents/leaderboard?${day}&department_id=${sales}`);
    t.same(
      sales_.data.map((r: Row) => r.agent_name),
      ['Ann', 'Cid'],
    );
  });

  await t.test('compaction folds the appended rows without changing any figure', async (t) => {
    const freshRows = async () =>
      Number(
        (
          await sql<{ n: string }>`
            select (select count(*) from report_counters_15m where fresh)
              + (select count(*) from report_department_histograms_month where fresh) as n`.execute(db)
        ).rows[0]!.n,
      );
    // The events of the DST and offset tests above came after the rebuild: still fresh.
    await countPendingEvents(db);
    const freshBefore = await freshRows();
    const ticket = await bareTicket(db, { department: sales, assignee: ann.id, status: 'resolved' });
    await events(db, ticket, [
      { type: 'created', at: '2026-03-31T23:50:00Z', department: sales, agent: ann.id, actorType: 'contact' },
      {
        type: 'message_added',
        at: '2026-04-01T00:20:00Z',
        department: sales,
        agent: ann.id,
        actorAgent: ann.id,
        data: { kind: 'agent', first_answer: true, wait_seconds: 1800 },
      },
    ]);
    t.equal(await freshRows(), freshBefore, 'the trigger only noted the events as pending');
    t.equal(await countPendingEvents(db), 2, 'both events counted');
    t.ok((await freshRows()) > freshBefore, 'counting them appended fresh rows');
    const shapes: ReportSpec[] = [
      ['UTC', 'day'],
      ['Europe/Prague', 'month'],
      ['Asia/Kathmandu', 'week'],
    ].flatMap(([timezone, interval]) =>
      [['time', 'department'] as const, ['time', 'agent', 'channel'] as const].map(
        (groupBy): ReportSpec => ({
          from: new Date('2026-02-01T00:00:00Z'),
          to: new Date('2026-11-01T00:00:00Z'),
          timezone: timezone!,
          interval: interval as 'day',
          weekShift: 0,
          groupBy: [...groupBy],
          departments: null,
          agents: null,
          channels: null,
          attribution: 'event',
          source: 'counters',
          metrics: METRICS,
          sort: [],
        }),
      ),
    );
    const run = async (spec: ReportSpec) =>
      (await reportQuery(spec).execute(db)).rows.map((r) => toReportRow(spec, r));
    const before = await Promise.all(shapes.map(run));
    t.ok(
      before.some((rows) => rows.some((r) => r.values.median_first_answer_time !== null)),
      'the shapes include percentiles',
    );
    const folded = await compactReports(db);
    t.ok(folded !== null && folded > 0, 'the compactor folded the fresh rows');
    t.equal(await freshRows(), 0, 'no fresh row left');
    t.same(await Promise.all(shapes.map(run)), before, 'every figure as before');
    t.equal(
      await db.transaction().execute((trx) => compactReportTables(trx)),
      0,
      'a second run has nothing to do',
    );
    const events_ = await get(`/v1/reports/departments?${day}`);
    sameFigures(t, byId(events_.data, 'department_id').get(sales)!, salesDay, 'Sales after compaction');
  });
});

t.test('docs/metrics.md defines every column, with the label the API uses', async (t) => {
  const doc = await readFile(new URL('../docs/metrics.md', import.meta.url), 'utf8');
  for (const m of METRICS) t.ok(doc.includes(`| \`${m.key}\` | ${m.label} | ${m.unit} |`), m.key);
});

export type { TestContext };

t.test('percentiles come from histograms: within 0.5 % of the exact values', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const timing = await makeDepartment(db, 'Timing');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[timing, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  // First answers after 100, 200, 300, 400 and 1000 s; next answers after 0, 0 and 10 s.
  // Exact: median 300, p90 400 + 0.6 × (1000 − 400) = 760; next answers: median 0, p90 8.
  const answer = (at: string, first: boolean, wait: number) => ({
    type: 'message_added',
    at,
    department: timing,
    agent: ann.id,
    actorAgent: ann.id,
    data: { kind: 'agent', first_answer: first, wait_seconds: wait },
  });
  for (const [i, wait] of [100, 200, 300, 400, 1000].entries()) {
    const ticket = await bareTicket(db, { department: timing, assignee: ann.id, status: 'answered' });
    await events(db, ticket, [answer(`2026-05-0${i + 1}T10:00:00Z`, true, wait)]);
  }
  const ticket = await bareTicket(db, { department: timing, assignee: ann.id, status: 'answered' });
  await events(db, ticket, [
    answer('2026-05-02T10:00:00Z', false, 0),
    answer('2026-05-03T10:00:00Z', false, 0),
    answer('2026-05-04T10:00:00Z', false, 10),
  ]);
  const exact = (
    await sql<{ q: number[] }>`
      select percentile_cont(array[0.5, 0.9]) within group (order by (data->>'wait_seconds')::float8) as q
      from ticket_events where type = 'message_added' and (data->>'first_answer')::boolean`.execute(db)
  ).rows[0]!.q;
  t.same(exact, [300, 760], 'the hand-computed values are what percentile_cont gives');

  const res = await ctx.request({
    method: 'GET',
    url: `/v1/reports/departments?from=2026-05-01&to=2026-06-01&interval=month&department_id=${timing}&columns=median_first_answer_time,p90_first_answer_time,median_next_answer_time,p90_next_answer_time&timezone=Europe/Prague`,
    token: admin.token,
  });
  t.equal(res.statusCode, 200);
  const [row] = res.json().data as Row[];
  approx(t, row!.median_first_answer_time, 300, 'median within 0.5 % of 300');
  approx(t, row!.p90_first_answer_time, 760, 'p90 within 0.5 % of 760');
  t.not(row!.median_first_answer_time, 300, 'and not exact: the value of its bin');
  t.not(row!.p90_first_answer_time, 760);
  t.equal(row!.median_next_answer_time, 0, 'zero has a bin of its own, valued 0 exactly');
  approx(t, row!.p90_next_answer_time, 8, 'p90 of 0, 0, 10 within 0.5 % of 8');
});

t.test(
  'two transactions writing events in two statements each do not wait for each other',
  { skip: twoConnections },
  async (t) => {
    const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
    const { db } = ctx;
    const [first, second] = [await makeDepartment(db, 'First'), await makeDepartment(db, 'Second')];
    const tickets = [
      await bareTicket(db, { department: first, status: 'open' }),
      await bareTicket(db, { department: second, status: 'open' }),
    ];
    const created = (department: string) => ({
      type: 'created',
      at: '2026-06-01T10:00:00Z',
      department,
      agent: null,
    });
    // Each transaction adds to both departments' figures of the same buckets, in opposite order.
    // With counters updated in place this interleaving could deadlock (one request failed); rows
    // that are only appended take no lock another transaction waits for: lock_timeout would fail
    // any wait here.
    const signal = () => {
      let done!: () => void;
      const promise = new Promise<void>((resolve) => {
        done = resolve;
      });
      return { promise, done };
    };
    const wroteA = signal();
    const wroteB = signal();
    const write = (order: [number, number], mine: { done: () => void }, theirs: { promise: Promise<void> }) =>
      db.transaction().execute(async (trx) => {
        await sql`set local lock_timeout = '500ms'`.execute(trx);
        await events(trx, tickets[order[0]]!, [created([first, second][order[0]]!)]);
        mine.done();
        await theirs.promise;
        await events(trx, tickets[order[1]]!, [created([first, second][order[1]]!)]);
      });
    const results = await Promise.allSettled([write([0, 1], wroteA, wroteB), write([1, 0], wroteB, wroteA)]);
    t.same(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled'],
      'both committed',
    );
    await countPendingEvents(db);
    const { rows } = await sql<{ department_id: string; created: number }>`
    select department_id, sum(created_tickets)::int as created from report_department_counters_day
    where department_id in (${first}, ${second}) group by department_id`.execute(db);
    t.same(
      Object.fromEntries(rows.map((r) => [r.department_id, r.created])),
      { [first]: 2, [second]: 2 },
      'every event counted once',
    );
  },
);

t.test(
  'events pending count only once their transaction has committed',
  { skip: twoConnections },
  async (t) => {
    const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
    const { db } = ctx;
    const department = await makeDepartment(db, 'Pending');
    const ticket = await bareTicket(db, { department, status: 'open' });
    const created = { type: 'created', at: '2026-07-01T10:00:00Z', department, agent: null };

    // A writer that has not committed yet: its event is invisible to counting, and stays noted.
    let commit!: () => void;
    const released = new Promise<void>((resolve) => {
      commit = resolve;
    });
    let wrote!: () => void;
    const written = new Promise<void>((resolve) => {
      wrote = resolve;
    });
    const writer = db.transaction().execute(async (trx) => {
      await events(trx, ticket, [created]);
      wrote();
      await released;
    });
    await written;
    await events(db, ticket, [created]);
    t.equal(await countPendingEvents(db), 1, 'the committed event is counted, the running one is not');
    t.equal(await countedCreations(db, department), 1);
    commit();
    await writer;
    t.equal(await pendingEvents(db), 1, 'the other one is still pending after its commit');
    t.equal(await countPendingEvents(db), 1, 'and is counted on the next call');
    t.equal(await countedCreations(db, department), 2, 'every creation counted once');
  },
);

t.test('several callers counting pending events at once count each event once', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const department = await makeDepartment(db, 'Pending');
  const ticket = await bareTicket(db, { department, status: 'open' });
  const created = { type: 'created', at: '2026-07-01T10:00:00Z', department, agent: null };

  // Several callers at once (reports, compactors of other instances): each event counted once.
  await events(db, ticket, [created]);
  await events(db, ticket, [created, created]);
  const counts = await Promise.all(Array.from({ length: 6 }, () => countPendingEvents(db)));
  t.equal(
    counts.reduce((a, b) => a + b, 0),
    3,
    'the three pending events counted by one caller or another, never twice',
  );
  t.equal(await pendingEvents(db), 0, 'nothing left pending');
  t.equal(await countedCreations(db, department), 3, 'every creation counted once');
  const res = await ctx.request({
    method: 'GET',
    url: `/v1/reports/departments?from=2026-07-01&to=2026-08-01&department_id=${department}&columns=created_tickets`,
    token: (await agentWithToken(ctx, { role: 'admin' })).token,
  });
  t.equal(res.json().data[0].created_tickets, 3, 'the report agrees');
});

async function countedCreations(db: Db, department: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select coalesce(sum(created_tickets), 0)::int as n from report_department_counters_month
    where department_id = ${department}`.execute(db);
  return Number(rows[0]!.n);
}

async function pendingEvents(db: Db): Promise<number> {
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from report_pending_events`.execute(db);
  return Number(rows[0]!.n);
}

t.test('a compacted whole month reads its kept bins; a later event in it counts at once', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const kept = await makeDepartment(db, 'Kept');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[kept, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const answer = (at: string, wait: number) => ({
    type: 'message_added',
    at,
    department: kept,
    agent: ann.id,
    actorAgent: ann.id,
    data: { kind: 'agent', first_answer: true, wait_seconds: wait },
  });
  // March: first answers after 100, 200 and 400 s (median 200, p90 200 + 0.8 × 200 = 360).
  for (const [i, wait] of [100, 200, 400].entries()) {
    const ticket = await bareTicket(db, { department: kept, assignee: ann.id, status: 'answered' });
    await events(db, ticket, [answer(`2026-03-0${i + 2}T10:00:00Z`, wait)]);
  }
  const march = async () => {
    const res = await ctx.request({
      method: 'GET',
      url: `/v1/reports/departments?from=2026-02-01&to=2026-05-01&interval=month&department_id=${kept}&columns=median_first_answer_time,p90_first_answer_time`,
      token: admin.token,
    });
    t.equal(res.statusCode, 200);
    return (res.json().data as Row[]).map((r) => [r.median_first_answer_time, r.p90_first_answer_time]);
  };
  // The report's percentiles are kept after the response (report_percentile_cache): this test is
  // about the kept bins, so it waits for the keeper after each read and reads with no entry
  // where the bins must be what is read (else a keeper running late, on a loaded machine, has
  // the altered read find the figures it kept).
  const settled = () => ctx.app.reportKeeper.settled();
  const forgetKept = () => sql`delete from report_percentile_cache`.execute(db);
  const fresh = await march();
  await settled();
  approx(t, fresh[1]![0], 200, 'median from the fresh rows');
  approx(t, fresh[1]![1], 360, 'p90 from the fresh rows');
  t.same(
    [fresh[0], fresh[2]],
    [
      [null, null],
      [null, null],
    ],
    'months without answers have no percentiles',
  );

  await compactReports(db);
  const { rows } = await sql<{ total: number }>`
    select total::int from report_department_quantiles_month
    where department_id = ${kept} and bucket = '2026-03-01T00:00:00Z' and metric = 1`.execute(db);
  t.same(rows, [{ total: 3 }], 'compaction kept the bins of March');
  t.same(await march(), fresh, 'read from the kept bins: the same figures');
  await settled();
  // The kept bins are what whole months read: altered, the report shows it.
  await sql`update report_department_quantiles_month set bin0 = bin0 + 300, bin1 = bin1 + 300
    where department_id = ${kept}`.execute(db);
  await forgetKept();
  t.not((await march())[1]![0], fresh[1]![0], 'a compacted whole month reads its kept bins');
  await settled();
  await sql`select report_refresh_month_quantiles(null, null)`.execute(db);
  await forgetKept();
  t.same(await march(), fresh, 'refreshed: as before');
  await settled();

  // A call recorded late, in March: pending, then fresh rows until the next compaction.
  const late = await bareTicket(db, { department: kept, assignee: ann.id, status: 'answered' });
  await events(db, late, [answer('2026-03-20T10:00:00Z', 1000)]);
  const withLate = await march();
  // 100, 200, 400, 1000: median 300, p90 400 + 0.7 × 600 = 820.
  approx(t, withLate[1]![0], 300, 'the late answer counts at once (median)');
  approx(t, withLate[1]![1], 820, 'the late answer counts at once (p90)');
  await compactReports(db);
  t.same(await march(), withLate, 'and the same once compacted into the kept bins');
});
