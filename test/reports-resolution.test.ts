import t, { type Test } from 'tap';
import type { Channel } from '../src/db/types.ts';
import { compactReports } from '../src/domains/reports/service.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { insertHistory } from './helpers/reports.ts';

// Resolution time (docs/metrics.md, "Resolution time"): what the write path records on a
// ticket's first resolve, and the reports' avg/median/p90 over histories written with known
// times, by every grouping, in both attribution modes, in JSON and CSV, in UTC and elsewhere.

type Row = Record<string, unknown>;
const QUARTER = 15 * 60 * 1000;
const COLUMNS = ['resolved_tickets', 'avg_resolution_time', 'median_resolution_time', 'p90_resolution_time'];

/** Percentiles come from histograms: within 0.5 % of the exact value (plus the rounding). */
function approx(t: Test, actual: unknown, expected: number, name: string) {
  const ok = typeof actual === 'number' && Math.abs(actual - expected) <= 0.005 * expected + 0.0005;
  t.ok(ok, name, { actual, expected });
}

/** avg exactly, median and p90 within the bound; all null when there is no sample. */
function resolution(
  t: Test,
  row: Row | undefined,
  expected: { avg: number; median: number; p90: number } | null,
  name: string,
) {
  if (!row) return t.fail(`${name}: no row`);
  if (expected === null) {
    t.same(
      [row.avg_resolution_time, row.median_resolution_time, row.p90_resolution_time],
      [null, null, null],
      `${name}: no sample`,
    );
    return;
  }
  t.equal(row.avg_resolution_time, expected.avg, `${name}: avg`);
  approx(t, row.median_resolution_time, expected.median, `${name}: median ≈ ${expected.median}`);
  approx(t, row.p90_resolution_time, expected.p90, `${name}: p90 ≈ ${expected.p90}`);
}

t.test('the write path marks the first resolve, and reports read it', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const sue = await agentWithToken(ctx, { name: 'Sue', departments: [[support, 'supervisor']] });

  const api = async (
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    payload?: unknown,
    token = admin.token,
  ) => {
    const res = await ctx.request({
      method,
      url,
      token,
      ...(payload !== undefined && { payload: payload as object }),
    });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.statusCode === 204 ? null : res.json();
  };
  const resolves = async (id: string) =>
    ((await api('GET', `/v1/tickets/${id}/history?limit=200`)).data as { type: string; data: Row }[])
      .filter((e) => e.type === 'status_changed' && e.data.to === 'resolved')
      .map((e) => e.data);
  const now = Date.now();
  const range = `from=${new Date(Math.floor((now - 3_600_000) / QUARTER) * QUARTER).toISOString()}&to=${new Date(
    Math.ceil((now + 3_600_000) / QUARTER) * QUARTER,
  ).toISOString()}`;

  // Asked in Sales, moved to Support, resolved there; reopened by the customer and resolved
  // again; deleted and restored (to resolved).
  const ticket = await api('POST', '/v1/tickets', {
    subject: 'Broken parcel',
    contact: { email: 'jane@example.com' },
    message: { body: 'It came broken.' },
    department_id: sales,
  });
  await api('POST', `/v1/tickets/${ticket.id}/transfer`, { department_id: support });
  const resolved = await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' }, sue.token);
  const seconds = (Date.parse(resolved.resolved_at) - Date.parse(ticket.created_at)) / 1000;
  t.ok(seconds >= 0, 'resolved after it was created');
  t.same(
    await resolves(ticket.id),
    [
      {
        from: 'new',
        to: 'resolved',
        first_resolution: true,
        resolution_seconds: seconds,
        // no schedule anywhere: always open, so business time is calendar time
        resolution_business_seconds: seconds,
      },
    ],
    'the first resolve carries the time since creation, in calendar and business time',
  );

  await api('POST', `/v1/tickets/${ticket.id}/messages`, { kind: 'customer', body: 'Still broken.' });
  await api('PATCH', `/v1/tickets/${ticket.id}`, { status: 'resolved' }, sue.token);
  await api('DELETE', `/v1/tickets/${ticket.id}`);
  t.equal((await api('POST', `/v1/tickets/${ticket.id}/restore`)).status, 'resolved');
  const later = (await resolves(ticket.id)).slice(1);
  t.same(
    later,
    [
      { from: 'open', to: 'resolved' },
      { from: 'deleted', to: 'resolved' },
    ],
    'a resolve after a reopen, and a restore to resolved, carry no resolution time',
  );

  // Spam is no resolve: a ticket marked spam, then resolved, is measured from its creation.
  const spam = await api('POST', '/v1/tickets', {
    subject: 'Cheap watches',
    contact: { email: 'spam@example.com' },
    message: { body: 'Buy now.' },
    department_id: sales,
  });
  await api('PATCH', `/v1/tickets/${spam.id}`, { status: 'spam' });
  const spamResolved = await api('PATCH', `/v1/tickets/${spam.id}`, { status: 'resolved' });
  const spamSeconds = (Date.parse(spamResolved.resolved_at) - Date.parse(spam.created_at)) / 1000;
  t.same(
    (await resolves(spam.id)).map((d) => d.resolution_seconds),
    [spamSeconds],
    'spam, then resolved: one sample, from creation',
  );

  const report = async (query: string) => {
    const rows = (await api('GET', `/v1/reports/departments?${range}&columns=${COLUMNS.join(',')}${query}`))
      .data as Row[];
    return new Map(rows.map((r) => [r.department_id, r]));
  };
  const round = (s: number) => Math.round(s * 1000) / 1000;
  const byEvent = await report('');
  t.equal(
    byEvent.get(support)?.avg_resolution_time,
    round(seconds),
    'credited to Support, where it was resolved',
  );
  t.equal(byEvent.get(sales)?.avg_resolution_time, round(spamSeconds), 'the spam ticket, resolved in Sales');
  t.equal(byEvent.get(support)?.resolved_tickets, 3, 'three resolve actions, one sample');

  // Moved back to Sales after the fact: attribution=current follows it, event does not.
  await api('POST', `/v1/tickets/${ticket.id}/transfer`, { department_id: sales });
  const byCurrent = await report('&attribution=current');
  const average = byCurrent.get(sales)?.avg_resolution_time;
  t.ok(
    typeof average === 'number' && Math.abs(average - (seconds + spamSeconds) / 2) <= 0.00051,
    'attribution=current: both samples where the tickets are now',
    { average, seconds, spamSeconds },
  );
  t.equal(byCurrent.get(support)?.avg_resolution_time, null, 'none left in Support');
  t.equal(
    (await report('')).get(support)?.avg_resolution_time,
    round(seconds),
    'attribution=event unchanged',
  );
});

t.test('resolution times by every grouping, interval, zone, mode and format', async (t) => {
  const ctx = await buildTestApp(t, { DESKROUTE_TIMEZONE: 'UTC' });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[support, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });

  const history = (
    now: { department: string; assignee: string; channel: Channel },
    events: { type: string; at: string; department: string; agent: string; data?: Row }[],
  ) => insertHistory(db, 'Resolution fixture', now, events);
  const first = (seconds: number) => ({
    from: 'answered',
    to: 'resolved',
    first_resolution: true,
    resolution_seconds: seconds,
  });
  const simple = async (
    department: string,
    agent: string,
    channel: Channel,
    created: string,
    resolvedAt: string,
    seconds: number,
  ) =>
    history({ department, assignee: agent, channel }, [
      { type: 'created', at: created, department, agent },
      { type: 'status_changed', at: resolvedAt, department, agent, data: first(seconds) },
    ]);

  // Sales (Ann): 1 h, 2 h and 24 h; Support (Bob): 2.5 h (transferred in before the resolve;
  // reopened and resolved again: no second sample) and 5 h, resolved at 18:30 UTC, which is
  // already 00:15 on the 11th in Kathmandu (+05:45). The 2 h one is in Support now.
  await simple(sales, ann.id, 'email', '2026-03-10T09:00:00Z', '2026-03-10T10:00:00Z', 3600);
  await history({ department: support, assignee: bob.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-10T09:00:00Z', department: sales, agent: ann.id },
    {
      type: 'status_changed',
      at: '2026-03-10T11:00:00Z',
      department: sales,
      agent: ann.id,
      data: first(7200),
    },
    {
      type: 'transferred',
      at: '2026-03-10T11:30:00Z',
      department: support,
      agent: bob.id,
      data: { from_department_id: sales, to_department_id: support },
    },
  ]);
  await simple(sales, ann.id, 'chat', '2026-03-09T12:00:00Z', '2026-03-10T12:00:00Z', 86400);
  await history({ department: support, assignee: bob.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-10T08:00:00Z', department: sales, agent: ann.id },
    {
      type: 'transferred',
      at: '2026-03-10T09:00:00Z',
      department: support,
      agent: bob.id,
      data: { from_department_id: sales, to_department_id: support },
    },
    {
      type: 'status_changed',
      at: '2026-03-10T10:30:00Z',
      department: support,
      agent: bob.id,
      data: first(9000),
    },
    {
      type: 'status_changed',
      at: '2026-03-10T12:00:00Z',
      department: support,
      agent: bob.id,
      data: { from: 'resolved', to: 'open', reopened: true },
    },
    {
      type: 'status_changed',
      at: '2026-03-10T13:00:00Z',
      department: support,
      agent: bob.id,
      data: { from: 'answered', to: 'resolved' },
    },
  ]);
  await simple(support, bob.id, 'email', '2026-03-10T13:30:00Z', '2026-03-10T18:30:00Z', 18000);
  // Resolved before the migration: a resolve without resolution_seconds is no sample.
  await history({ department: sales, assignee: ann.id, channel: 'email' }, [
    { type: 'created', at: '2026-03-10T09:00:00Z', department: sales, agent: ann.id },
    {
      type: 'status_changed',
      at: '2026-03-10T09:30:00Z',
      department: sales,
      agent: ann.id,
      data: { from: 'new', to: 'resolved' },
    },
  ]);

  const get = async (url: string) => {
    const res = await ctx.request({ method: 'GET', url, token: admin.token });
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res;
  };
  const day = 'from=2026-03-10&to=2026-03-11';
  const columns = `columns=${COLUMNS.join(',')}`;
  const rowsBy = async (url: string, key: string) => {
    const body = (await get(url)).json() as { data: Row[]; totals: Row };
    return { rows: new Map(body.data.map((r) => [r[key] as string, r])), totals: body.totals };
  };

  // Worked out by hand: percentile_cont over the samples (docs/metrics.md, "Percentiles").
  const SALES = { avg: 32400, median: 7200, p90: 70560 }; // 3600, 7200, 86400
  const SUPPORT = { avg: 13500, median: 13500, p90: 17100 }; // 9000, 18000
  const ALL = { avg: 24840, median: 9000, p90: 59040 }; // 3600, 7200, 9000, 18000, 86400

  for (const source of ['fresh', 'compacted'] as const) {
    await t.test(`by department, agent, channel and time (${source} counters)`, async (t) => {
      if (source === 'compacted') t.ok(((await compactReports(db)) ?? 0) > 0, 'folded');
      const departments = await rowsBy(`/v1/reports/departments?${day}&${columns}`, 'department_id');
      resolution(t, departments.rows.get(sales), SALES, 'Sales');
      resolution(t, departments.rows.get(support), SUPPORT, 'Support: the transferred ticket counts here');
      resolution(t, departments.totals, ALL, 'totals');
      t.equal(departments.rows.get(sales)?.resolved_tickets, 4, 'Sales: four resolves, three samples');
      t.equal(departments.rows.get(support)?.resolved_tickets, 3, 'Support: three resolves, two samples');

      const agents = await rowsBy(`/v1/reports/agents?${day}&${columns}`, 'agent_id');
      resolution(t, agents.rows.get(ann.id), SALES, 'Ann');
      resolution(t, agents.rows.get(bob.id), SUPPORT, 'Bob: the assignee at the resolve');

      const channels = await rowsBy(`/v1/reports/channels?${day}&${columns}`, 'channel');
      resolution(t, channels.rows.get('email'), { avg: 9450, median: 8100, p90: 15300 }, 'email');
      resolution(t, channels.rows.get('chat'), { avg: 86400, median: 86400, p90: 86400 }, 'chat');
      resolution(t, channels.rows.get('call'), null, 'call');

      // A whole UTC month by department: after compaction, from the kept bins (migrations/0008).
      const month = await rowsBy(
        `/v1/reports/departments?from=2026-03-01&to=2026-04-01&${columns}`,
        'department_id',
      );
      resolution(t, month.rows.get(sales), SALES, 'March, Sales');
      resolution(t, month.rows.get(support), SUPPORT, 'March, Support');
      resolution(t, month.totals, ALL, 'March, totals');

      const hours = await get(`/v1/reports/departments?${day}&interval=hour&group_by=time&${columns}`);
      const byHour = new Map((hours.json().data as Row[]).map((r) => [r.period_start, r]));
      resolution(t, byHour.get('2026-03-10T10:00:00+00:00'), { avg: 6300, median: 6300, p90: 8460 }, '10:00');
      resolution(t, byHour.get('2026-03-10T13:00:00+00:00'), null, '13:00: the second resolve');
      resolution(
        t,
        byHour.get('2026-03-10T18:00:00+00:00'),
        { avg: 18000, median: 18000, p90: 18000 },
        '18:00',
      );
    });
  }

  await t.test('in Asia/Kathmandu, days start at 18:15 UTC', async (t) => {
    const res = await get(
      `/v1/reports/departments?from=2026-03-10&to=2026-03-12&interval=day&timezone=Asia/Kathmandu&${columns}`,
    );
    const rows = new Map(
      (res.json().data as Row[]).map((r) => [`${r.period_start} ${r.department_name}`, r]),
    );
    resolution(t, rows.get('2026-03-10T00:00:00+05:45 Sales'), SALES, 'the 10th, Sales');
    resolution(
      t,
      rows.get('2026-03-10T00:00:00+05:45 Support'),
      { avg: 9000, median: 9000, p90: 9000 },
      'the 10th, Support',
    );
    resolution(
      t,
      rows.get('2026-03-11T00:00:00+05:45 Support'),
      { avg: 18000, median: 18000, p90: 18000 },
      'the 11th, Support',
    );
    resolution(t, rows.get('2026-03-11T00:00:00+05:45 Sales'), null, 'the 11th, Sales');
  });

  await t.test('attribution=current: where the tickets are now, from the events', async (t) => {
    const current = await rowsBy(
      `/v1/reports/departments?${day}&attribution=current&${columns}`,
      'department_id',
    );
    resolution(t, current.rows.get(sales), { avg: 45000, median: 45000, p90: 78120 }, 'Sales: 3600, 86400');
    resolution(
      t,
      current.rows.get(support),
      { avg: 11400, median: 9000, p90: 16200 },
      'Support: 7200, 9000, 18000',
    );
    resolution(t, current.totals, ALL, 'totals: the same samples');
  });

  await t.test('CSV: the columns with their labels and units', async (t) => {
    const res = await get(`/v1/reports/departments.csv?${day}&unit_row=true&${columns}`);
    const lines = res.body.trim().split('\n');
    t.equal(
      lines[0],
      'Department ID,Department,Resolved tickets,Avg resolution time,Median resolution time,90th percentile resolution time',
    );
    t.equal(lines[1], ',,count,seconds,seconds,seconds');
    const support = lines.find((l) => l.includes(',Support,'))!.split(',');
    t.equal(support[3], '13500', 'avg in seconds');
    approx(t, Number(support[4]), 13500, 'median');
    approx(t, Number(support[5]), 17100, 'p90');
  });

  await t.test('GET /v1/reports/columns describes them', async (t) => {
    const res = await get('/v1/reports/columns');
    const columns = (res.json().data as Row[]).filter((c) => String(c.key).endsWith('_resolution_time'));
    t.same(
      columns.map((c) => [c.key, c.label, c.unit, c.kind]),
      [
        ['avg_resolution_time', 'Avg resolution time', 'seconds', 'duration'],
        ['median_resolution_time', 'Median resolution time', 'seconds', 'duration'],
        ['p90_resolution_time', '90th percentile resolution time', 'seconds', 'duration'],
      ],
    );
  });
});
