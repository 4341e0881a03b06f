import { sql } from 'kysely';
import t, { type Test } from 'tap';
import type { Db } from '../src/db/database.ts';
import { FIGURES } from '../src/domains/reports/figures.ts';
import { compactReportTables, rebuildReportCounters } from '../src/domains/reports/repository.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

// Reports by tag (migrations/0038): figures per tag checked against a plain reference computed
// here from the very events the test writes, in UTC and in Asia/Kathmandu (UTC+5:45), two-tag
// tickets in both rows, totals counted once, visibility per department, GET /v1/tags, CSV.

type Row = Record<string, unknown>;
interface HistoryEvent {
  type: string;
  at: Date;
  data: Record<string, unknown>;
}
interface Ticket {
  department: string | null;
  events: HistoryEvent[];
  tagsNow: string[];
}

const MINUTE = 60_000;
const COLUMNS = [
  'created_tickets',
  'incoming_messages',
  'answers',
  'avg_first_answer_time',
  'median_first_answer_time',
  'resolved_tickets',
  'avg_resolution_time',
] as const;

/** The tags right after each event: the created event's, then each tags_changed, in order. */
function tagsAt(ticket: Ticket): Set<string>[] {
  const now = new Set<string>();
  return ticket.events.map((e) => {
    if (e.type === 'created') for (const tag of e.data.tags as string[]) now.add(tag);
    if (e.type === 'tags_changed') {
      for (const tag of e.data.added as string[]) now.add(tag);
      for (const tag of e.data.removed as string[]) now.delete(tag);
    }
    return new Set(now);
  });
}

function localDate(at: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(at);
}

/** percentile_cont over the exact values. */
function percentile(values: number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const h = q * (sorted.length - 1);
  const k = Math.floor(h);
  return sorted[k]! + (h - k) * ((sorted[k + 1] ?? sorted[k]!) - sorted[k]!);
}

interface Figures {
  created_tickets: number;
  incoming_messages: number;
  answers: number;
  waits: number[];
  resolved_tickets: number;
  resolutions: number[];
}

/** The reference: figures per (local day, tag) from the events, each event once per tag. */
function reference(tickets: Ticket[], timeZone: string, visible: (d: string | null) => boolean) {
  const out = new Map<string, Figures>();
  const totals: Figures = {
    created_tickets: 0,
    incoming_messages: 0,
    answers: 0,
    waits: [],
    resolved_tickets: 0,
    resolutions: [],
  };
  for (const ticket of tickets) {
    if (!visible(ticket.department)) continue;
    const tags = tagsAt(ticket);
    ticket.events.forEach((e, i) => {
      const keys = tags[i]!.size > 0 ? [...tags[i]!] : [null];
      for (const figures of [
        ...keys.map((tag) => {
          const key = `${localDate(e.at, timeZone)}|${tag}`;
          if (!out.has(key))
            out.set(key, {
              created_tickets: 0,
              incoming_messages: 0,
              answers: 0,
              waits: [],
              resolved_tickets: 0,
              resolutions: [],
            });
          return out.get(key)!;
        }),
        totals,
      ]) {
        if (e.type === 'created') figures.created_tickets++;
        if (e.type === 'message_added' && e.data.kind === 'customer') figures.incoming_messages++;
        if (e.type === 'message_added' && e.data.kind === 'agent') {
          figures.answers++;
          figures.waits.push(e.data.wait_seconds as number);
        }
        if (e.type === 'status_changed' && e.data.to === 'resolved') {
          figures.resolved_tickets++;
          figures.resolutions.push(e.data.resolution_seconds as number);
        }
      }
    });
  }
  return { rows: out, totals };
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;
const avg = (values: number[]) =>
  values.length === 0 ? null : round3(values.reduce((a, b) => a + b, 0) / values.length);

function expectFigures(t: Test, actual: Row, expected: Figures | undefined, label: string) {
  const e = expected ?? {
    created_tickets: 0,
    incoming_messages: 0,
    answers: 0,
    waits: [],
    resolved_tickets: 0,
    resolutions: [],
  };
  t.same(
    {
      created_tickets: actual.created_tickets,
      incoming_messages: actual.incoming_messages,
      answers: actual.answers,
      avg_first_answer_time: actual.avg_first_answer_time,
      resolved_tickets: actual.resolved_tickets,
      avg_resolution_time: actual.avg_resolution_time,
    },
    {
      created_tickets: e.created_tickets,
      incoming_messages: e.incoming_messages,
      answers: e.answers,
      avg_first_answer_time: avg(e.waits),
      resolved_tickets: e.resolved_tickets,
      avg_resolution_time: avg(e.resolutions),
    },
    label,
  );
  // Percentiles come from histograms: within 0.5 % of the exact value (docs/metrics.md).
  const exact = percentile(e.waits, 0.5);
  if (exact === null) t.equal(actual.median_first_answer_time, null, `${label}: no median`);
  else
    t.ok(
      Math.abs((actual.median_first_answer_time as number) - exact) <= exact * 0.005 + 0.001,
      `${label}: median ${actual.median_first_answer_time} ≈ ${exact}`,
    );
}

async function writeTicket(db: Db, ticket: Ticket, channel: 'email' | 'chat') {
  const contact = await db
    .insertInto('contacts')
    .values({ name: 'Customer' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const row = await db
    .insertInto('tickets')
    .values({
      subject: 'Tagged',
      channel,
      status: 'resolved',
      priority: 'normal',
      department_id: ticket.department,
      assignee_id: null,
      contact_id: contact.id,
      tags: ticket.tagsNow,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('ticket_events')
    .values(
      ticket.events.map((e) => ({
        ticket_id: row.id,
        type: e.type as 'created',
        actor_type: 'system' as const,
        actor_agent_id: null,
        actor_contact_id: null,
        department_id: ticket.department,
        agent_id: null,
        channel,
        data: JSON.stringify(e.data),
        occurred_at: e.at,
      })),
    )
    .execute();
}

t.test('reports by tag', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const sam = await agentWithToken(ctx, { name: 'Sam', departments: [[sales, 'solver']] });
  const get = async (url: string, token = admin.token) => {
    const res = await ctx.request({ method: 'GET', url, token });
    return res;
  };
  const json = async (url: string, token = admin.token) => {
    const res = await get(url, token);
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json();
  };

  // Sixteen tickets over two days, their times crossing midnight in UTC and in Kathmandu
  // (18:15 UTC); some with two tags, some with none, some retagged midway (the answer then
  // counts for the new tags, the creation for the old ones). Support-only tag: "refund".
  const TAG_SETS = [['billing'], ['billing', 'vip'], [], ['shipping'], ['vip', 'shipping'], ['=cmd|calc']];
  const departments = [sales, support, null];
  const tickets: Ticket[] = [];
  for (let i = 0; i < 16; i++) {
    const department = departments[i % 3]!;
    const t0 = new Date(Date.UTC(2026, 0, 10, 17, 50) + i * 97 * MINUTE);
    const initial = department === support ? [...TAG_SETS[i % 6]!, 'refund'] : TAG_SETS[i % 6]!;
    const events: HistoryEvent[] = [
      {
        type: 'created',
        at: t0,
        data: { subject: 'Tagged', status: 'new', priority: 'normal', tags: initial },
      },
      { type: 'message_added', at: t0, data: { kind: 'customer' } },
    ];
    let now = [...initial];
    if (i % 4 === 1) {
      const removed = initial.slice(0, 1);
      events.push({
        type: 'tags_changed',
        at: new Date(t0.getTime() + 20 * MINUTE),
        data: { added: ['late'], removed },
      });
      now = [...initial.filter((x) => !removed.includes(x)), 'late'];
    }
    events.push({
      type: 'message_added',
      at: new Date(t0.getTime() + 30 * MINUTE),
      data: { kind: 'agent', first_answer: true, wait_seconds: 1800 + i * 7 },
    });
    const resolvedAfter = (60 + i * 13) * 60;
    events.push({
      type: 'status_changed',
      at: new Date(t0.getTime() + resolvedAfter * 1000),
      data: { from: 'answered', to: 'resolved', first_resolution: true, resolution_seconds: resolvedAfter },
    });
    tickets.push({ department, events, tagsNow: now });
  }
  for (const [i, ticket] of tickets.entries()) await writeTicket(ctx.db, ticket, i % 2 ? 'email' : 'chat');

  const range = 'from=2026-01-10&to=2026-01-14';
  const columns = `columns=${COLUMNS.join(',')}`;
  const everything = () => true;

  const checkReport = async (
    t: Test,
    report: { data: Row[]; totals: Row },
    timeZone: string,
    visible: (d: string | null) => boolean,
  ) => {
    const ref = reference(tickets, timeZone, visible);
    const seen = new Set<string>();
    for (const row of report.data) {
      const key = `${(row.period_start as string).slice(0, 10)}|${row.tag}`;
      seen.add(key);
      expectFigures(t, row, ref.rows.get(key), `${timeZone} ${key}`);
    }
    for (const key of ref.rows.keys()) t.ok(seen.has(key), `${timeZone}: a row for ${key}`);
    expectFigures(t, report.totals, ref.totals, `${timeZone} totals`);
  };

  for (const timeZone of ['UTC', 'Asia/Kathmandu']) {
    await t.test(`figures per tag by day in ${timeZone}`, async (t) => {
      const report = await json(`/v1/reports/tags?${range}&interval=day&timezone=${timeZone}&${columns}`);
      t.equal(report.report, 'tags');
      t.same(report.group_by, ['time', 'tag']);
      t.equal(report.overlapping_groups, true, 'rows by tag overlap: the metadata says so');
      await checkReport(t, report, timeZone, everything);
      // Two-tag tickets count in both rows: the rows add up to more than the totals.
      const created = report.data.reduce((s: number, r: Row) => s + (r.created_tickets as number), 0);
      t.equal(report.totals.created_tickets, 16, 'totals count each ticket once');
      t.ok(created > 16, `rows add up to ${created}, more than the 16 tickets`);
    });
  }

  await t.test('the same after compaction and after a rebuild', async (t) => {
    const url = `/v1/reports/tags?${range}&interval=day&timezone=Asia/Kathmandu&${columns}`;
    const before = await json(url);
    await ctx.db.transaction().execute((trx) => compactReportTables(trx));
    t.same((await json(url)).data, before.data, 'compacted');
    await ctx.db.transaction().execute((trx) => rebuildReportCounters(trx));
    t.same((await json(url)).data, before.data, 'rebuilt');
    // Computed from the events instead (tag with channel): the same figures per tag.
    const byChannel = await json(
      `/v1/reports/tags?${range}&group_by=tag,channel&columns=created_tickets,answers`,
    );
    const sums = new Map<string, number[]>();
    for (const r of byChannel.data) {
      const s = sums.get(String(r.tag)) ?? [0, 0];
      sums.set(String(r.tag), [s[0]! + (r.created_tickets as number), s[1]! + (r.answers as number)]);
    }
    const byTag = await json(`/v1/reports/tags?${range}&columns=created_tickets,answers`);
    for (const r of byTag.data)
      t.same(sums.get(String(r.tag)), [r.created_tickets, r.answers], `tag ${r.tag}`);
  });

  await t.test('over every department, fresh rows and folds onto compacted rows count once', async (t) => {
    // The tag counters summed over departments (migrations/0043) take what a fold adds to a
    // compacted row (an update), not only the rows it creates: every compacted tag counter row
    // is appended again as fresh, doubling each count, read fresh, then folded onto itself.
    const url = `/v1/reports/tags?${range}&interval=day&timezone=Asia/Kathmandu&columns=created_tickets,answers`;
    const once = (await json(url)).data as Row[];
    t.ok(
      once.some((r) => (r.created_tickets as number) > 0),
      'some tickets created',
    );
    const twice = once.map((r) => ({
      ...r,
      created_tickets: 2 * (r.created_tickets as number),
      answers: 2 * (r.answers as number),
    }));
    const figures = sql.join(FIGURES.map((f) => sql.ref(f)));
    for (const grain of ['15m', 'day', 'month']) {
      const table = sql.table(`report_tag_counters_${grain}`);
      await sql`insert into ${table} (bucket, tag, department_id, fresh, ${figures})
        select bucket, tag, department_id, true, ${figures} from ${table} where not fresh`.execute(ctx.db);
    }
    t.same((await json(url)).data, twice, 'the fresh copies count beside the compacted rows');
    await ctx.db.transaction().execute((trx) => compactReportTables(trx));
    t.same((await json(url)).data, twice, 'folded onto the compacted rows: still counted once each');
    await ctx.db.transaction().execute((trx) => rebuildReportCounters(trx));
    t.same((await json(url)).data, once, 'rebuilt from the events');
    // A rebuild of an earlier version truncates the tag counters alone: their totals go too.
    await sql`truncate report_tag_counters_15m, report_tag_counters_day, report_tag_counters_month`.execute(
      ctx.db,
    );
    const left = await sql<{ n: number }>`select ((select count(*) from report_tag_total_counters_15m)
      + (select count(*) from report_tag_total_counters_day)
      + (select count(*) from report_tag_total_counters_month))::int as n`.execute(ctx.db);
    t.equal(left.rows[0]?.n, 0, 'emptied with the tag counters');
    await ctx.db.transaction().execute((trx) => rebuildReportCounters(trx));
    t.same((await json(url)).data, once, 'rebuilt again');
  });

  await t.test('group_by=tag on every report, JSON and CSV', async (t) => {
    const tags = await json(`/v1/reports/tags?${range}&${columns}`);
    for (const kind of ['departments', 'agents', 'channels']) {
      const report = await json(`/v1/reports/${kind}?${range}&group_by=tag&${columns}`);
      t.same(report.data, tags.data, `${kind} by tag`);
      t.same(report.totals, tags.totals);
      const csv = await get(`/v1/reports/${kind}.csv?${range}&group_by=tag&columns=created_tickets`);
      t.equal(csv.statusCode, 200);
      t.match(csv.body, /^Tag,Created tickets\r?\n/);
    }
    const departments = await json(`/v1/reports/departments?${range}&${columns}`);
    t.equal(departments.overlapping_groups, false);
    const byDepartment = await json(
      `/v1/reports/tags?${range}&group_by=department,tag&columns=created_tickets`,
    );
    const billingSales = byDepartment.data.find((r: Row) => r.tag === 'billing' && r.department_id === sales);
    const expected = tickets.filter(
      (x) => x.department === sales && (x.events[0]!.data.tags as string[]).includes('billing'),
    ).length;
    t.ok(expected > 0);
    t.equal(billingSales?.created_tickets, expected, 'tag by department');
  });

  await t.test('CSV cells that would start a formula are neutralised', async (t) => {
    const csv = await get(`/v1/reports/tags.csv?${range}&columns=created_tickets`);
    t.equal(csv.statusCode, 200);
    t.match(csv.headers['content-disposition'], /deskroute-tags-2026-01-10--2026-01-14\.csv/);
    t.match(csv.body, /\n"?'=cmd\|calc"?,\d+/);
    t.notMatch(csv.body, /\n=cmd/);
  });

  await t.test('an agent sees their departments and tickets in no department', async (t) => {
    const visible = (d: string | null) => d === sales || d === null;
    const report = await json(`/v1/reports/tags?${range}&interval=day&timezone=UTC&${columns}`, sam.token);
    await checkReport(t, report, 'UTC', visible);
    t.notOk(
      report.data.some((r: Row) => r.tag === 'refund'),
      'no row for a tag only Support tickets carry',
    );
    const other = await get(`/v1/reports/tags?${range}&department_id=${support}`, sam.token);
    t.equal(other.statusCode, 403);
    t.equal(other.json().code, 'department_not_visible');
    const mine = await json(`/v1/reports/tags?${range}&department_id=${sales}&${columns}`, sam.token);
    t.equal(mine.totals.created_tickets, tickets.filter((x) => x.department === sales).length);
    t.ok(mine.data.every((r: Row) => r.tag !== 'refund'));
  });

  await t.test('GET /v1/tags counts the tickets the caller may see', async (t) => {
    const count = (visible: (d: string | null) => boolean) => {
      const out = new Map<string, number>();
      for (const x of tickets)
        if (visible(x.department)) for (const tag of x.tagsNow) out.set(tag, (out.get(tag) ?? 0) + 1);
      return [...out]
        .map(([tag, n]) => ({ tag, tickets: n }))
        .sort((a, b) => b.tickets - a.tickets || (a.tag < b.tag ? -1 : 1));
    };
    t.same((await json('/v1/tags')).data, count(everything));
    const samTags = (await json('/v1/tags', sam.token)).data;
    t.same(
      samTags,
      count((d) => d === sales || d === null),
    );
    t.notOk(
      samTags.some((x: Row) => x.tag === 'refund'),
      'Support’s tag stays hidden',
    );
    t.same(
      (await json('/v1/tags?q=%20Vi&limit=5')).data,
      count(everything).filter((x) => x.tag.startsWith('vi')),
    );
    t.equal((await json('/v1/tags?limit=1')).data.length, 1);
    t.equal((await get('/v1/tags?limit=0')).statusCode, 400);
    t.equal((await get('/v1/tags?colour=red')).statusCode, 400);
    t.equal((await get('/v1/tags', '')).statusCode, 401);
  });

  await t.test('tags through the API: created with a tag, retagged, answered', async (t) => {
    const ticket = (
      await ctx.request({
        method: 'POST',
        url: '/v1/tickets',
        token: admin.token,
        payload: {
          subject: 'API tags',
          channel: 'email',
          contact: { email: 'tags@example.com' },
          message: { body: 'Hello' },
          department_id: sales,
          tags: ['Api-Before'],
        },
      })
    ).json();
    const retag = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/tags`,
      token: admin.token,
      payload: { add: ['api-after'], remove: ['api-before'] },
    });
    t.equal(retag.statusCode, 200);
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: admin.token,
      payload: { kind: 'reply', body: 'Hi' },
    });
    t.equal(reply.statusCode, 201);
    const report = await json('/v1/reports/tags?preset=today&columns=created_tickets,answers');
    const row = (tag: string) => report.data.find((r: Row) => r.tag === tag);
    t.same(
      [row('api-before')?.created_tickets, row('api-before')?.answers],
      [1, 0],
      'created under the old tag',
    );
    t.same(
      [row('api-after')?.created_tickets, row('api-after')?.answers],
      [0, 1],
      'answered under the new one',
    );
    const current = await json(
      '/v1/reports/tags?preset=today&attribution=current&columns=created_tickets,answers',
    );
    const now = current.data.find((r: Row) => r.tag === 'api-after');
    t.same([now?.created_tickets, now?.answers], [1, 1], 'attribution=current: the tags it has now');
  });
});
