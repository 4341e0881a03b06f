import { sql } from 'kysely';
import t from 'tap';
import type { Db } from '../src/db/database.ts';
import { METRICS } from '../src/domains/reports/metrics.ts';
import {
  compactReportTables,
  countPendingEvents,
  keepCounts,
  keepPercentiles,
  type ReportSpec,
  rebuildReportCounters,
} from '../src/domains/reports/repository.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { departmentSpec, insertHistory, reportRows } from './helpers/reports.ts';

// Kept percentiles (migrations/0039, src/domains/reports/cache.ts) and kept counts (0053): a
// report reads the kept rows of its settled periods instead of the histograms or counters and
// gets exactly what it computed; an event counted into a kept period makes the entry stale at
// once (a ticket with no duration, the counts alone), and the fold deletes it; periods that have
// not ended are not kept; the rebuild empties the tables; over HTTP, a report keeps its periods
// after it answers and the same report then answers the same body.

const MINUTE = 60_000;
const METRIC_KEYS = [
  'created_tickets',
  'answers',
  'median_first_answer_time',
  'p90_first_answer_time',
  'median_resolution_time',
  'p90_resolution_time',
];
const metrics = METRIC_KEYS.map((key) => {
  const metric = METRICS.find((m) => m.key === key);
  if (!metric) throw new Error(`no metric ${key}`);
  return metric;
});

const keptCount = async (db: Db) =>
  Number(
    (await sql<{ n: number }>`select count(*)::int as n from report_percentile_cache`.execute(db)).rows[0]!.n,
  );
const forget = (db: Db) => sql`delete from report_percentile_cache`.execute(db);
const keptCounts = async (db: Db) =>
  Number(
    (await sql<{ n: number }>`select count(*)::int as n from report_count_cache`.execute(db)).rows[0]!.n,
  );
const forgetCounts = (db: Db) => sql`delete from report_count_cache`.execute(db);

type Row = Awaited<ReturnType<typeof reportRows>>[number];
/** The row of the same period and group as `row` among `rows`. */
const sameGroup = (rows: Row[], row: Row) =>
  rows.find(
    (r) =>
      r.period_start === row.period_start &&
      r.department_id === row.department_id &&
      r.agent_id === row.agent_id &&
      r.channel === row.channel &&
      r.tag === row.tag,
  )!;

/** Counts pending events and folds the fresh rows, as the scheduler does. */
async function settle(db: Db) {
  await countPendingEvents(db);
  await db.transaction().execute((trx) => compactReportTables(trx));
}

t.test('kept percentiles', async (t) => {
  const ctx = await buildTestApp(t);
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[support, 'solver']] });

  // Forty tickets from late January to early April 2025, across month ends in UTC and in the
  // zones below, with answers and resolutions of many lengths: every period has samples.
  const ticket = async (i: number, start: Date) => {
    const department = i % 2 ? sales : support;
    const agent = i % 2 ? ann.id : bob.id;
    const at = (minutes: number) => new Date(start.getTime() + minutes * MINUTE).toISOString();
    const wait = 600 + ((i * 7919) % 40) * 97;
    const resolution = 3600 + ((i * 104729) % 30) * 1301;
    await insertHistory(
      db,
      `Ticket ${i}`,
      { department, assignee: agent, channel: i % 3 ? 'email' : 'chat' },
      [
        {
          type: 'created',
          at: at(0),
          department,
          agent,
          data: { status: 'new', priority: 'normal', tags: i % 4 ? ['billing'] : ['vip', 'billing'] },
        },
        { type: 'message_added', at: at(0), department, agent, data: { kind: 'customer' } },
        {
          type: 'message_added',
          at: at(wait / 60),
          department,
          agent,
          data: { kind: 'agent', first_answer: true, wait_seconds: wait },
        },
        {
          type: 'status_changed',
          at: at(resolution / 60),
          department,
          agent,
          data: { from: 'answered', to: 'resolved', first_resolution: true, resolution_seconds: resolution },
        },
      ],
    );
  };
  for (let i = 0; i < 40; i++)
    await ticket(i, new Date(Date.UTC(2025, 0, 28, 20, 5) + i * 1_723 * 1_000 * 97));
  await settle(db);

  const base = departmentSpec(new Date('2025-01-01T00:00:00Z'), new Date('2025-05-01T00:00:00Z'), metrics);
  const zoned = (timezone: string, from: string, to: string): Partial<ReportSpec> => ({
    timezone,
    from: new Date(from),
    to: new Date(to),
  });
  const shapes: { name: string; spec: ReportSpec }[] = [
    {
      name: 'month by department in Europe/Prague',
      spec: {
        ...base,
        ...zoned('Europe/Prague', '2024-12-31T23:00:00Z', '2025-04-30T22:00:00Z'),
        interval: 'month',
        groupBy: ['time', 'department'],
      },
    },
    {
      name: 'week by tag in Asia/Kathmandu',
      spec: {
        ...base,
        ...zoned('Asia/Kathmandu', '2024-12-31T18:15:00Z', '2025-04-30T18:15:00Z'),
        interval: 'week',
        groupBy: ['time', 'tag'],
      },
    },
    {
      name: 'month by agent and channel in America/New_York, one department',
      spec: {
        ...base,
        ...zoned('America/New_York', '2025-01-01T05:00:00Z', '2025-05-01T04:00:00Z'),
        interval: 'month',
        groupBy: ['time', 'agent', 'channel'],
        departments: [sales, null],
      },
    },
    { name: 'totals of the range in UTC', spec: { ...base, groupBy: [] } },
    {
      name: 'day by department in UTC',
      spec: { ...base, interval: 'day', groupBy: ['time', 'department'] },
    },
  ];

  for (const { name, spec } of shapes) {
    await t.test(name, async (t) => {
      await forget(db);
      const computed = await reportRows(db, spec);
      t.ok(
        computed.some((r) => r.values.median_first_answer_time !== null),
        'the report has percentiles to keep',
      );
      const kept = await keepPercentiles(db, spec);
      t.ok(kept > 0, `${kept} periods kept`);
      t.equal(await keptCount(db), kept, 'one entry per period');
      t.same(await reportRows(db, spec), computed, 'read back: the same rows, to the bit');
      t.equal(await keepPercentiles(db, spec), 0, 'kept periods are not kept again');

      // The report reads the entries: one changed by hand shows (and is then put back).
      const first = computed.find((r) => r.values.median_first_answer_time !== null)!;
      await sql`update report_percentile_cache
        set rows = (select jsonb_agg(jsonb_set(r, '{first_answer_q}', '[1, 2]')) from jsonb_array_elements(rows) r)
        where jsonb_array_length(rows) > 0`.execute(db);
      const tampered = await reportRows(db, spec);
      const same = sameGroup(tampered, first);
      t.equal(same.values.median_first_answer_time, 1, 'the kept median is what the report shows');
      await forget(db);
      t.same(await reportRows(db, spec), computed, 'without entries: computed again, the same');
    });
  }

  // Kept counts (migrations/0053): the same, for the counts and sums of periods with an end
  // inside a UTC day; those of whole UTC days are read from the day and month rows.
  for (const { name, spec } of shapes) {
    await t.test(`${name}: kept counts`, async (t) => {
      await forget(db);
      await forgetCounts(db);
      const computed = await reportRows(db, spec);
      const kept = await keepCounts(db, spec);
      if (spec.timezone === 'UTC') {
        t.equal(kept, 0, 'whole UTC days: nothing kept');
        t.equal(await keptCounts(db), 0);
        t.same(await reportRows(db, spec), computed, 'computed again, the same');
        return;
      }
      t.ok(kept > 0, `${kept} periods kept`);
      t.equal(await keptCounts(db), kept, 'one entry per period');
      t.same(await reportRows(db, spec), computed, 'read back: the same rows, to the bit');
      t.equal(await keepCounts(db, spec), 0, 'kept periods are not kept again');

      // The report reads the entries: a count changed by hand shows.
      const counted = computed.find((r) => (r.values.created_tickets ?? 0) > 0)!;
      await sql`update report_count_cache
        set rows = (select jsonb_agg(jsonb_set(r, '{created_tickets}', '1000000')) from jsonb_array_elements(rows) r)
        where jsonb_array_length(rows) > 0`.execute(db);
      const tampered = await reportRows(db, spec);
      const same = sameGroup(tampered, counted);
      t.equal(same.values.created_tickets, 1_000_000, 'the kept count is what the report shows');
      t.same(
        tampered.map((r) => r.values.answers),
        computed.map((r) => r.values.answers),
        'the other counts as kept',
      );
      await forgetCounts(db);
      t.same(await reportRows(db, spec), computed, 'without entries: computed again, the same');
    });
  }

  await t.test('a ticket with no duration created in a kept period', async (t) => {
    // Counting it adds counter rows and no histogram row: the kept counts must see it.
    const spec = shapes[0]!.spec;
    await forget(db);
    await forgetCounts(db);
    await keepPercentiles(db, spec);
    await keepCounts(db, spec);
    const before = await reportRows(db, spec);
    const countsBefore = await keptCounts(db);
    const percentilesBefore = await keptCount(db);
    await insertHistory(db, 'Quiet', { department: sales, assignee: ann.id, channel: 'email' }, [
      { type: 'created', at: '2025-03-10T10:00:00Z', department: sales, agent: ann.id },
    ]);
    await countPendingEvents(db);
    const march = (rows: typeof before) =>
      rows.find((r) => r.period_start?.startsWith('2025-03-01') && r.department_id === sales)!;
    const after = await reportRows(db, spec);
    t.equal(
      march(after).values.created_tickets,
      march(before).values.created_tickets! + 1,
      'the new ticket shows at once (the entry is passed by while fresh counter rows lie under it)',
    );
    await db.transaction().execute((trx) => compactReportTables(trx));
    t.equal(await keptCounts(db), countsBefore - 1, "the fold deleted March's counts alone");
    t.equal(await keptCount(db), percentilesBefore, 'and no kept percentile: no duration was counted');
    t.same(await reportRows(db, spec), after, 'after the fold: the same figures');
    t.equal(await keepCounts(db, spec), 1, 'March is kept again');
    t.same(await reportRows(db, spec), after, 'and read back the same');
  });

  await t.test("kept counts go with any fold of their fresh rows, an older release's too", async (t) => {
    // An instance of the release before 0053 folds fresh counter rows knowing nothing of kept
    // counts (a rolling upgrade): the database deletes them itself. Each statement here runs in
    // a transaction that is rolled back, so the counters stay as they are.
    const spec = shapes[0]!.spec;
    await forgetCounts(db);
    await keepCounts(db, spec);
    const kept = await keptCounts(db);
    t.ok(kept >= 4, `${kept} periods kept`);
    await insertHistory(db, 'Folded elsewhere', { department: sales, assignee: ann.id, channel: 'email' }, [
      { type: 'created', at: '2025-02-10T10:00:00Z', department: sales, agent: ann.id },
    ]);
    await countPendingEvents(db);
    const rolledBack = new Error('rolled back');
    const within = async (statement: string) => {
      let left = -1;
      await db
        .transaction()
        .execute(async (trx) => {
          await sql.raw(statement).execute(trx);
          left = Number(
            (await sql<{ n: number }>`select count(*)::int as n from report_count_cache`.execute(trx))
              .rows[0]!.n,
          );
          throw rolledBack;
        })
        .catch((error: unknown) => {
          if (error !== rolledBack) throw error;
        });
      return left;
    };
    for (const table of ['report_counters_15m', 'report_tag_counters_15m']) {
      t.equal(
        await within(`delete from ${table} where fresh`),
        kept - 1,
        `deleting the fresh rows of ${table} deletes February's entry alone`,
      );
      t.equal(await within(`truncate ${table}`), 0, `truncating ${table} empties the table`);
    }
    t.equal(await keptCounts(db), kept, 'rolled back: every entry is still there');
    await db.transaction().execute((trx) => compactReportTables(trx));
    t.equal(await keptCounts(db), kept - 1, "the fold deleted February's entry");
  });

  await t.test('an event counted into a kept period', async (t) => {
    const spec = shapes[0]!.spec;
    await forget(db);
    await keepPercentiles(db, spec);
    const before = await reportRows(db, spec);
    const keptBefore = await keptCount(db);
    // A very slow first answer in February (Prague): February's median and p90 move.
    for (let i = 0; i < 30; i++) {
      await insertHistory(db, `Late ${i}`, { department: sales, assignee: ann.id, channel: 'email' }, [
        { type: 'created', at: '2025-02-10T10:00:00Z', department: sales, agent: ann.id },
        {
          type: 'message_added',
          at: '2025-02-12T10:00:00Z',
          department: sales,
          agent: ann.id,
          data: { kind: 'agent', first_answer: true, wait_seconds: 172_800 },
        },
      ]);
    }
    await countPendingEvents(db);
    const fresh = await reportRows(db, spec);
    const february = (rows: typeof before) =>
      rows.find((r) => r.period_start?.startsWith('2025-02-01') && r.department_id === sales)!;
    t.not(
      february(fresh).values.median_first_answer_time,
      february(before).values.median_first_answer_time,
      'the new answers show at once (the entry is passed by while fresh rows lie under it)',
    );
    await db.transaction().execute((trx) => compactReportTables(trx));
    t.equal(await keptCount(db), keptBefore - 1, "the fold deleted February's entry alone");
    t.same(await reportRows(db, spec), fresh, 'after the fold: the same figures');
    t.equal(await keepPercentiles(db, spec), 1, 'February is kept again');
    t.same(await reportRows(db, spec), fresh, 'and read back the same');
  });

  await t.test('periods that have not ended are not kept', async (t) => {
    await forget(db);
    const now = new Date();
    const spec: ReportSpec = {
      ...base,
      from: new Date('2025-01-01T00:00:00Z'),
      to: new Date(Date.UTC(now.getUTCFullYear() + 1, 0, 1)),
      interval: 'year',
      groupBy: ['time', 'department'],
    };
    const kept = await keepPercentiles(db, spec);
    const years = now.getUTCFullYear() - 2025;
    t.equal(kept, years, `the ${years} whole years before this one, not this one`);
    // Counts are kept for periods with an end inside a UTC day: the years in Prague.
    const prague: ReportSpec = {
      ...spec,
      timezone: 'Europe/Prague',
      from: new Date('2024-12-31T23:00:00Z'),
      to: new Date(Date.UTC(now.getUTCFullYear(), 11, 31, 23)),
    };
    t.equal(await keepCounts(db, prague), years, 'and their counts alike');
  });

  await t.test('the rebuild empties the table', async (t) => {
    await keepPercentiles(db, shapes[3]!.spec);
    await keepCounts(db, shapes[0]!.spec);
    t.ok((await keptCount(db)) > 0);
    t.ok((await keptCounts(db)) > 0);
    await db.transaction().execute((trx) => rebuildReportCounters(trx));
    t.equal(await keptCount(db), 0);
    t.equal(await keptCounts(db), 0);
  });

  const oneConnection = !db.getExecutor().adapter.supportsMultipleConnections;
  await t.test('over HTTP: kept after the answer, then the same answer', async (t) => {
    await forget(db);
    await forgetCounts(db);
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const url =
      '/v1/reports/departments?from=2025-01-01&to=2025-05-01&interval=month&timezone=Europe/Prague' +
      `&columns=${METRIC_KEYS.join(',')}`;
    const first = await ctx.request({ method: 'GET', url, token: admin.token });
    t.equal(first.statusCode, 200, first.statusCode === 200 ? 'the report' : first.body);
    if (oneConnection) {
      // ReportKeeper: on PGlite every request would wait behind it, so it keeps nothing.
      t.comment('PGlite: the server keeps no percentiles on its one connection');
      t.equal(await keptCount(db), 0, 'nothing kept (keep() returns at once: nothing runs later)');
      t.equal(await keptCounts(db), 0, 'no counts either');
      return;
    }
    // The keeper works after the response; wait for its entries (rows and totals: 4 + 1).
    let entries = 0;
    let counts = 0;
    for (let i = 0; i < 200 && (entries < 5 || counts < 5); i++) {
      entries = await keptCount(db);
      counts = await keptCounts(db);
      if (entries < 5 || counts < 5) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    t.equal(entries, 5, 'four months and the range');
    t.equal(counts, 5, 'their counts alike');
    const second = await ctx.request({ method: 'GET', url, token: admin.token });
    t.same(second.json(), first.json(), 'the same body from the kept percentiles');
  });
});
