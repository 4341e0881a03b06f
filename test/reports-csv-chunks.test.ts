import { sql } from 'kysely';
import pg from 'pg';
import t from 'tap';
import type { Db } from '../src/db/database.ts';
import { METRICS } from '../src/domains/reports/metrics.ts';
import { chunkable, periodStartsQuery } from '../src/domains/reports/query.ts';
import {
  countPendingEvents,
  exportChunks,
  type ReportSpec,
  reportQuery,
  streamReportRows,
} from '../src/domains/reports/repository.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment } from './helpers/app.ts';
import { parseCsv } from './helpers/reports.ts';

// A CSV export whose rows go period by period is computed a few periods at a time (one
// statement per chunk): its rows must be exactly those of the whole report as one statement.

type Row = Record<string, unknown>;

t.test('chunked CSV exports', async (t) => {
  const ctx = await buildTestApp(t);
  const db: Db = ctx.db;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const ann = await makeAgent(db, { name: 'Ann', departments: [[sales, 'solver']] });
  const bob = await makeAgent(db, { name: 'Bob', departments: [[support, 'solver']] });
  const admin = await agentWithToken(ctx, { role: 'admin' });

  // A year of tickets in Prague, every 4 days, near local midnight on both sides of it and of
  // the DST changes (29 March, 25 October 2026), answered, resolved, some transferred, some
  // rated or breached weeks later: figures counted in an earlier period than their event's.
  const contact = await db
    .insertInto('contacts')
    .values({ name: 'Customer' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const start = Date.parse('2025-12-28T22:50:00Z');
  for (let i = 0; i < 95; i++) {
    // A tag seen only from October on: a report by tag has a row for it in every period.
    const tags = i >= 70 ? ['late'] : i % 4 === 0 ? ['vip'] : [];
    const at = (minutes: number) => new Date(start + i * 4 * 86_400_000 + minutes * 60_000);
    const [department, agent] = i % 3 === 0 ? [support, bob] : [sales, ann];
    const channel = (['email', 'chat', 'call'] as const)[i % 3]!;
    const ticket = await db
      .insertInto('tickets')
      .values({
        subject: `Ticket ${i}`,
        channel,
        status: 'resolved',
        priority: 'normal',
        department_id: department,
        assignee_id: agent.id,
        contact_id: contact.id,
        tags,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const event = (type: string, when: Date, data: Row, actor: string | null = null) => ({
      ticket_id: ticket.id,
      type,
      actor_type: actor ? ('agent' as const) : ('contact' as const),
      actor_agent_id: actor,
      actor_contact_id: null,
      department_id: department,
      agent_id: agent.id,
      channel,
      data: JSON.stringify(data),
      occurred_at: when,
    });
    const resolvedAt = at(60 + (i % 7) * 45);
    const list = [
      event('created', at(0), { tags }),
      event('message_added', at(0), { kind: 'customer' }),
      event(
        'message_added',
        at(20 + i * 7),
        { kind: 'agent', first_answer: true, wait_seconds: 1200 + i * 420 },
        agent.id,
      ),
      event(
        'status_changed',
        resolvedAt,
        { from: 'answered', to: 'resolved', first_resolution: true, resolution_seconds: 3600 + i * 60 },
        agent.id,
      ),
    ];
    if (i % 5 === 0) {
      list.push(
        event('transferred', at(30), { from_department_id: sales, to_department_id: support }, ann.id),
      );
    }
    if (i % 4 === 1) {
      list.push(
        event('rated', at(60 * 24 * (20 + i)), {
          value: i % 8 === 1 ? 'negative' : 'positive',
          rated_agent_id: agent.id,
        }),
      );
    }
    if (i % 6 === 2) {
      list.push(event('sla.breached', at(60 * 24 * 30), { kind: 'resolution', at: at(90).toISOString() }));
    }
    await db.insertInto('ticket_events').values(list).execute();
  }
  // A ticket never answered, tagged alone: counted (created), but no duration to take a median
  // of. A report of percentiles alone still lists its tag, as one with counts does.
  const quiet = await db
    .insertInto('tickets')
    .values({
      subject: 'Never answered',
      channel: 'email',
      status: 'new',
      priority: 'normal',
      department_id: sales,
      contact_id: contact.id,
      tags: ['unanswered'],
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('ticket_events')
    .values({
      ticket_id: quiet.id,
      type: 'created',
      actor_type: 'contact',
      actor_agent_id: null,
      actor_contact_id: contact.id,
      department_id: sales,
      agent_id: null,
      channel: 'email',
      data: JSON.stringify({ tags: ['unanswered'] }),
      occurred_at: new Date('2026-06-10T10:00:00Z'),
    })
    .execute();
  await countPendingEvents(db);

  const base: ReportSpec = {
    from: new Date('2025-12-31T23:00:00Z'), // 2026-01-01 in Prague
    to: new Date('2026-12-31T23:00:00Z'),
    timezone: 'Europe/Prague',
    interval: 'day',
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

  /** The rows streamed for an export, raw, as the CSV reads them. */
  const streamed = async (spec: ReportSpec) => {
    const rows: Row[] = [];
    await streamReportRows(db, spec, {
      batch: 7,
      signal: new AbortController().signal,
      onRows: async (batch) => {
        rows.push(...batch);
      },
    });
    return rows;
  };
  const chunksOf = async (spec: ReportSpec) =>
    exportChunks(
      spec,
      (await periodStartsQuery(spec).execute(db)).rows.map((r) => new Date(r.s)),
    );

  await t.test('the chunks are whole periods, small first, then growing', async (t) => {
    const chunks = await chunksOf(base);
    t.same(
      chunks.slice(0, 4).map((c) => c.chunk?.from.toISOString()),
      [
        '2025-12-31T23:00:00.000Z',
        '2026-01-02T23:00:00.000Z', // after 2 days
        '2026-01-06T23:00:00.000Z', // after 4 more
        '2026-01-14T23:00:00.000Z', // after 8 more
      ],
    );
    t.equal(chunks.at(-1)?.chunk?.to.toISOString(), base.to.toISOString(), 'the last ends with the range');
    const summer = chunks.find((c) => c.chunk!.from > new Date('2026-04-01'))!;
    t.match(summer.chunk!.from.toISOString(), /T22:00:00\.000Z$/, 'a summer chunk starts at local midnight');
  });

  const cases: [string, ReportSpec][] = [
    ['by day, department, agent and channel (the benchmark)', base],
    ['by day, time alone', { ...base, groupBy: ['time'] }],
    ['by day and department alone', { ...base, groupBy: ['time', 'department'] }],
    ['by day and tag, a tag first seen in October', { ...base, groupBy: ['time', 'tag'] }],
    [
      'by day and tag, percentiles alone (the entities read from the counted groups)',
      {
        ...base,
        groupBy: ['time', 'tag'],
        metrics: METRICS.filter((m) => 'percentile' in m.formula),
      },
    ],
    [
      'by week and agent, percentiles alone, from the events (the entities read from the percentiles)',
      {
        ...base,
        source: 'events',
        interval: 'week',
        groupBy: ['time', 'agent'],
        metrics: METRICS.filter((m) => 'percentile' in m.formula),
      },
    ],
    [
      'by week and tag, from the events (attribution=current)',
      { ...base, attribution: 'current', source: 'events', interval: 'week', groupBy: ['time', 'tag'] },
    ],
    [
      'by week and agent, from the events',
      { ...base, source: 'events', interval: 'week', groupBy: ['time', 'agent'] },
    ],
    [
      'by week starting on Sunday',
      { ...base, interval: 'week', weekShift: 6, groupBy: ['time', 'agent', 'channel'] },
    ],
    [
      'by hour across the October DST change (25 hours on the 25th)',
      {
        ...base,
        interval: 'hour',
        from: new Date('2026-10-23T22:00:00Z'),
        to: new Date('2026-10-27T23:00:00Z'),
        groupBy: ['time', 'department', 'channel'],
      },
    ],
    [
      'by hour across the March DST change, from a quarter past',
      {
        ...base,
        interval: 'hour',
        from: new Date('2026-03-27T23:15:00Z'),
        to: new Date('2026-03-31T21:45:00Z'),
        groupBy: ['time', 'department', 'agent'],
      },
    ],
    ['by month, sorted by time', { ...base, interval: 'month', sort: [{ key: 'time', direction: 'asc' }] }],
    ['from the events (attribution=current)', { ...base, attribution: 'current', source: 'events' }],
    [
      'from the events by week, a range starting mid-week',
      { ...base, source: 'events', interval: 'week', from: new Date('2026-01-07T23:00:00Z') },
    ],
  ];
  for (const [name, spec] of cases) {
    await t.test(name, async (t) => {
      t.ok(chunkable(spec), 'chunkable');
      t.ok((await chunksOf(spec)).length > 1, 'several chunks');
      const whole = (await reportQuery(spec).execute(db)).rows;
      t.ok(whole.length > 0, 'some rows');
      if (spec.groupBy.includes('tag') && spec.groupBy.length === 2) {
        t.ok(
          whole.some((r) => r.tag === 'late' && String(r.period_start_local).startsWith('2026-01')),
          'the late tag has its rows in January (with zeros) too',
        );
      }
      t.same(await streamed(spec), whole, 'the chunks give the whole statement’s rows, in its order');
    });
  }

  await t.test('a one-dimension report lists the same entities whichever columns it asks for', async (t) => {
    const medians = METRICS.filter((m) => 'percentile' in m.formula);
    const counts = METRICS.filter((m) => m.key === 'created_tickets');
    const keysOf = (rows: Row[], dim: string) =>
      rows.map((r) => `${r.period_start_local} ${r[dim] ?? 'none'}`).sort();
    for (const [dim, groupBy] of [
      ['tag', ['time', 'tag']],
      ['agent_id', ['time', 'agent']],
      ['tag', ['tag']],
    ] as const) {
      // From the events, the entities are those of the figures asked for (query.ts, figureCtes).
      for (const source of ['counters'] as const) {
        const spec = {
          ...base,
          groupBy: [...groupBy],
          source,
          interval: groupBy.length > 1 ? 'month' : 'none',
        } as ReportSpec;
        const withCounts = (await reportQuery({ ...spec, metrics: counts }).execute(db)).rows;
        const alone = (await reportQuery({ ...spec, metrics: medians }).execute(db)).rows;
        t.same(
          keysOf(alone, dim),
          keysOf(withCounts, dim),
          `${groupBy.join(',')} from the ${source}: the same rows`,
        );
        if (dim === 'tag') {
          const row = alone.find((r) => r.tag === 'unanswered' && r.m_created_tickets === undefined);
          t.ok(
            row,
            `${groupBy.join(',')} from the ${source}: the tag of a ticket never answered has its row`,
          );
          t.equal(row?.m_median_first_answer_time, null, 'with no median');
        }
      }
    }
  });

  await t.test('a chunked export stops at once when its client goes away', async (t) => {
    const gone = new AbortController();
    let batches = 0;
    await t.rejects(
      streamReportRows(db, base, {
        batch: 7,
        signal: gone.signal,
        onRows: async () => {
          batches++;
          gone.abort(new Error('the client went away'));
        },
      }),
      /the client went away/,
    );
    t.equal(batches, 1, 'no more rows, no later chunk');
    t.ok((await streamed(base)).length > 0, 'the next export runs');
  });

  await t.test(
    'a client gone while the entities are listed cancels that statement',
    {
      skip: process.env.TEST_DATABASE_URL
        ? false
        : 'needs a second connection to hold the departments and to cancel from (PGlite has one)',
    },
    async (t) => {
      const spec: ReportSpec = { ...base, groupBy: ['time', 'department'] };
      // Another session holds the departments, which only the entities' list reads before the
      // first chunk: the export waits in that statement.
      const blocker = new pg.Client({ connectionString: ctx.database.url! });
      await blocker.connect();
      await blocker.query('begin');
      await blocker.query('lock table departments in access exclusive mode');
      t.teardown(async () => {
        await blocker.query('rollback').catch(() => {});
        await blocker.end();
      });
      const gone = new AbortController();
      let batches = 0;
      const running = streamReportRows(db, spec, {
        batch: 7,
        signal: gone.signal,
        onRows: async () => {
          batches++;
        },
      });
      const waiting = async () =>
        (
          await sql<{ n: number }>`
            select count(*)::int as n from pg_locks l join pg_stat_activity a using (pid)
            where not l.granted and l.relation = 'departments'::regclass
              and a.query not like 'declare report_rows%'`.execute(db)
        ).rows[0]?.n === 1;
      let waited = false;
      for (let i = 0; i < 300 && !waited; i++) {
        waited = await waiting();
        if (!waited) await new Promise((r) => setTimeout(r, 100));
      }
      t.ok(waited, 'the entities’ list waits for the departments');
      gone.abort(new Error('the client went away'));
      // Without its cancel, the statement would wait as long as the lock is held.
      const settled = await Promise.race([
        running.then(
          () => 'finished',
          (error: Error) => error.message,
        ),
        new Promise((r) => setTimeout(() => r('still waiting after 20 s'), 20_000)),
      ]);
      t.equal(settled, 'the client went away', 'the export ends with the hang-up, the lock still held');
      t.equal(batches, 0, 'no rows were sent');
      t.notOk(await waiting(), 'no statement of it is left waiting');
      await blocker.query('rollback');
      t.ok((await streamed(spec)).length > 0, 'the next export runs');
    },
  );

  await t.test('reports that cannot go period by period are one statement', async (t) => {
    for (const [name, spec] of [
      ['no interval', { ...base, interval: 'none', groupBy: ['department', 'agent'] }],
      ['sorted by a figure', { ...base, sort: [{ key: 'created_tickets', direction: 'desc' }] }],
      ['sorted by time, latest first', { ...base, sort: [{ key: 'time', direction: 'desc' }] }],
    ] as [string, ReportSpec][]) {
      t.notOk(chunkable(spec), name);
      t.same(await streamed(spec), (await reportQuery(spec).execute(db)).rows, `${name}: the same rows`);
    }
  });

  await t.test('the CSV of a chunked export is the JSON report, row for row', async (t) => {
    for (const query of [
      'from=2026-01-01&to=2027-01-01&interval=day&group_by=department,agent,channel&timezone=Europe/Prague',
      'from=2026-03-01&to=2026-11-01&interval=week&week_start=sunday&group_by=agent,channel&columns=created_tickets,answers,median_first_answer_time&attribution=current&timezone=Europe/Prague',
      'from=2026-01-01&to=2027-01-01&interval=day&group_by=department&timezone=Europe/Prague',
    ]) {
      const data: Row[] = [];
      let json: Row = {};
      let cursor: string | null = null;
      do {
        const page = await ctx.request({
          method: 'GET',
          url: `/v1/reports/departments?${query}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
          token: admin.token,
        });
        t.equal(page.statusCode, 200, `${query}: a page of JSON`);
        json = page.json();
        data.push(...(json.data as Row[]));
        cursor = json.next_cursor as string | null;
      } while (cursor);
      const csv = await ctx.request({
        method: 'GET',
        url: `/v1/reports/departments.csv?${query}`,
        token: admin.token,
      });
      t.equal(csv.statusCode, 200, `${query}: CSV`);
      const lines = parseCsv(csv.body);
      const fields = [
        ...(json.dimensions as Row[]).map((d) => d.key as string),
        ...(json.columns as Row[]).map((c) => c.key as string),
      ];
      t.equal(lines.length - 1, data.length, `${query}: one line per row`);
      t.same(
        lines.slice(1),
        data.map((r) => fields.map((f) => (r[f] === null ? '' : String(r[f])))),
        query,
      );
    }
  });
});
