import { sql } from 'kysely';
import pino from 'pino';
import t from 'tap';
import { convertZendesk } from '../scripts/convert/zendesk.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';

// Issue 16's "Done when" for imports: a year of history, imported through POST /v1/imports, gives
// the report figures a plain reference computes from the file itself (below, in this test, from
// the records, not from the server's code), in UTC and two other zones; running the import again
// changes nothing; a malformed line is reported and skipped, the others go on.

const ctx = await buildTestApp(t);
const { token: admin, agent: adminAgent } = await agentWithToken(ctx, { role: 'admin' });
const log = pino({ level: 'silent' });
const work = () => processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log });

type Rec = Record<string, unknown> & { type: string; external_id: string };

/** A deterministic pseudo-random year of a two-department help desk. */
function yearOfHistory(): Rec[] {
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const records: Rec[] = [
    { type: 'agent', external_id: 'a1', email: 'ann@old.test', name: 'Ann' },
    { type: 'agent', external_id: 'a2', email: 'bob@old.test', name: 'Bob' },
    { type: 'agent', external_id: 'a3', email: 'cyd@old.test', name: 'Cyd', role: 'admin' },
    { type: 'department', external_id: 'd1', name: 'Sales (old)' },
    { type: 'department', external_id: 'd2', name: 'Support (old)', description: 'Imported' },
    { type: 'contact_field', external_id: 'f1', key: 'plan', label: 'Plan', field_type: 'text' },
  ];
  for (const d of ['d1', 'd2'])
    for (const a of ['a1', 'a2', 'a3'])
      records.push({ type: 'membership', external_id: `${d}:${a}`, department: d, agent: a, role: 'solver' });
  for (let c = 1; c <= 12; c++) {
    records.push({
      type: 'contact',
      external_id: `c${c}`,
      name: `Customer ${c}`,
      emails: [`customer${c}@shop.test`],
      custom_fields: { plan: pick(['free', 'pro']) },
    });
  }
  const start = Date.parse('2025-01-01T00:00:00Z');
  const year = 365 * 86_400_000;
  let n = 0;
  for (let i = 1; i <= 70; i++) {
    // Some tickets open in the last hours of a month (UTC), where zones disagree on the month.
    let at =
      i % 7 === 0
        ? Date.parse(`2025-${String((i % 12) + 1).padStart(2, '0')}-01T00:00:00Z`) - 3_600_000 * (1 + (i % 5))
        : start + Math.floor(random() * (year - 20 * 86_400_000));
    if (at < start) at = start + 3_600_000;
    const ticket = `t${i}`;
    let department = pick(['d1', 'd2']);
    records.push({
      type: 'ticket',
      external_id: ticket,
      created_at: new Date(at).toISOString(),
      subject: `Order ${i}`,
      channel: pick(['email', 'contact_form', 'api']),
      contact: `c${1 + (i % 12)}`,
      department,
      tags: i % 3 === 0 ? ['vip'] : [],
      message: { body: `Hello, order ${i} is late.` },
    });
    const steps = 2 + Math.floor(random() * 6);
    let resolved = false;
    for (let s = 0; s < steps; s++) {
      at += Math.floor(random() * 30 * 3_600_000) + 60_000;
      const id = `e${++n}`;
      const when = new Date(at).toISOString();
      const r = random();
      if (r < 0.3) {
        records.push({
          type: 'message',
          external_id: id,
          ticket,
          at: when,
          kind: 'reply',
          body: 'On it.',
          agent: pick(['a1', 'a2']),
        });
      } else if (r < 0.45) {
        records.push({
          type: 'message',
          external_id: id,
          ticket,
          at: when,
          kind: 'customer',
          body: 'Any news?',
        });
        resolved = false;
      } else if (r < 0.52) {
        records.push({
          type: 'message',
          external_id: id,
          ticket,
          at: when,
          kind: 'note',
          body: 'Checking stock.',
          agent: 'a2',
        });
      } else if (r < 0.62) {
        department = department === 'd1' ? 'd2' : 'd1';
        records.push({ type: 'transfer', external_id: id, ticket, at: when, department, agent: 'a3' });
      } else if (r < 0.7) {
        records.push({
          type: 'assignment',
          external_id: id,
          ticket,
          at: when,
          assignee: pick(['a1', 'a2']),
          agent: 'a3',
        });
      } else if (r < 0.8) {
        if (!resolved) {
          records.push({
            type: 'status',
            external_id: id,
            ticket,
            at: when,
            status: 'resolved',
            agent: 'a1',
          });
          resolved = true;
        }
      } else if (r < 0.88) {
        const answered = random() < 0.6;
        records.push({
          type: 'call',
          external_id: id,
          ticket,
          at: when,
          direction: 'inbound',
          outcome: answered ? 'answered' : 'missed',
          ...(answered && {
            agent: 'a1',
            answered_at: new Date(at + 20_000).toISOString(),
            ended_at: new Date(at + 200_000).toISOString(),
          }),
          from_number: '+420601000111',
        });
        if (answered) resolved = false;
      } else if (r < 0.94) {
        records.push({ type: 'tags', external_id: id, ticket, at: when, tags: ['vip', 'late'], agent: 'a2' });
      } else {
        records.push({
          type: 'rating',
          external_id: id,
          ticket,
          at: when,
          value: random() < 0.7 ? 'positive' : 'negative',
        });
      }
    }
  }
  return records;
}

const FIGURES = [
  'created_tickets',
  'answers',
  'incoming_messages',
  'resolved_tickets',
  'reopened_tickets',
  'transfers_in',
  'transfers_out',
  'positive_ratings',
  'negative_ratings',
  'calls',
  'missed_calls',
  'incoming_calls',
] as const;
type Figures = Record<(typeof FIGURES)[number], number>;

/** The local month of an instant in a zone, as YYYY-MM: the report's monthly period. */
function monthIn(zone: string, at: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
  }).formatToParts(new Date(at));
  return `${parts.find((p) => p.type === 'year')!.value}-${parts.find((p) => p.type === 'month')!.value}`;
}

/**
 * The reference: what each record means for the department report, counted by hand from the file
 * (the department a thing happened in, the local month it happened in), in the spirit of
 * docs/metrics.md's definitions; it shares no code with the server.
 */
function reference(records: Rec[], zone: string, deptNames: Map<string, string>): Map<string, Figures> {
  const out = new Map<string, Figures>();
  const bump = (dept: string, at: string, figure: keyof Figures) => {
    const key = `${deptNames.get(dept)}|${monthIn(zone, at)}`;
    const row = out.get(key) ?? (Object.fromEntries(FIGURES.map((f) => [f, 0])) as Figures);
    row[figure]++;
    out.set(key, row);
  };
  const state = new Map<string, { dept: string; status: string }>();
  for (const r of records) {
    if (r.type === 'ticket') {
      const dept = r.department as string;
      state.set(r.external_id, { dept, status: 'new' });
      bump(dept, r.created_at as string, 'created_tickets');
      bump(dept, r.created_at as string, 'incoming_messages');
      continue;
    }
    const s = state.get(r.ticket as string);
    if (!s) continue;
    const at = r.at as string;
    switch (r.type) {
      case 'message':
        if (r.kind === 'reply') {
          bump(s.dept, at, 'answers');
          s.status = 'answered';
        } else if (r.kind === 'customer') {
          bump(s.dept, at, 'incoming_messages');
          if (s.status === 'resolved') bump(s.dept, at, 'reopened_tickets');
          if (['answered', 'resolved'].includes(s.status)) s.status = 'open';
        }
        break;
      case 'transfer':
        bump(s.dept, at, 'transfers_out');
        s.dept = r.department as string;
        bump(s.dept, at, 'transfers_in');
        break;
      case 'status':
        if (r.status === 'resolved' && s.status !== 'resolved') bump(s.dept, at, 'resolved_tickets');
        s.status = r.status as string;
        break;
      case 'call':
        // A missed inbound call opens a resolved ticket again (a reopening: resolved to open);
        // an answered one leaves it answered (not a reopening).
        bump(s.dept, at, 'incoming_calls');
        if (r.outcome === 'missed') {
          bump(s.dept, at, 'missed_calls');
          if (s.status === 'resolved') bump(s.dept, at, 'reopened_tickets');
          if (['answered', 'resolved'].includes(s.status)) s.status = 'open';
        } else {
          bump(s.dept, at, 'calls');
          s.status = 'answered';
        }
        break;
      case 'rating':
        bump(s.dept, at, r.value === 'positive' ? 'positive_ratings' : 'negative_ratings');
        break;
    }
  }
  return out;
}

const records = yearOfHistory();
const MALFORMED_AT = 40;
const lines = records.map((r) => JSON.stringify(r));
// A line cut short, and a line naming a ticket the file never brought: reported and skipped.
lines.splice(MALFORMED_AT, 0, '{"type":"contact","external_id":"broken","name":');
lines.splice(
  MALFORMED_AT + 1,
  0,
  JSON.stringify({
    type: 'message',
    external_id: 'orphan',
    ticket: 'nope',
    at: '2025-02-01T00:00:00Z',
    kind: 'note',
    body: 'x',
  }),
);
const file = `${lines.join('\n')}\n`;

async function upload(body: string, query = '', contentType = 'application/x-ndjson') {
  return ctx.request({
    method: 'POST',
    url: `/v1/imports${query}`,
    token: admin,
    headers: { 'content-type': contentType },
    payload: body,
  });
}

async function reportFigures(zone: string) {
  const query = [
    'from=2025-01-01',
    'to=2026-01-01',
    'interval=month',
    `timezone=${encodeURIComponent(zone)}`,
    'group_by=department',
    'group_by=time',
    'limit=1000',
    ...FIGURES.map((f) => `columns=${f}`),
  ].join('&');
  const res = await ctx.request({ method: 'GET', url: `/v1/reports/departments?${query}`, token: admin });
  if (res.statusCode !== 200) throw new Error(`report: ${res.statusCode} ${res.body}`);
  const got = new Map<string, Figures>();
  for (const row of res.json().data as Record<string, unknown>[]) {
    const figures = Object.fromEntries(FIGURES.map((f) => [f, Number(row[f] ?? 0)])) as Figures;
    if (Object.values(figures).every((v) => v === 0)) continue;
    got.set(`${row.department_name}|${String(row.period_start).slice(0, 7)}`, figures);
  }
  return got;
}

t.test('a year of history: imported in the background, figures equal the reference', async (t) => {
  const res = await upload(file, '?source=oldesk');
  t.equal(res.statusCode, 202, res.body);
  const created = res.json();
  t.equal(res.headers.location, `/v1/imports/${created.id}`);
  t.equal(created.state, 'queued');
  t.equal(await work(), 1, 'the worker finished one import');

  const done = (await ctx.request({ method: 'GET', url: `/v1/imports/${created.id}`, token: admin })).json();
  t.equal(done.state, 'finished');
  t.equal(done.counts.read, records.length + 2, 'every non-empty line was read');
  t.equal(done.counts.failed, 2, 'the two bad lines');
  t.equal(done.counts.created, records.length, 'every good record created something');
  t.equal(done.line, lines.length);

  const errors = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${created.id}/errors`, token: admin })
  ).json();
  t.same(
    errors.data.map((e: { line: number; code: string; external_id: string | null }) => [
      e.line,
      e.code,
      e.external_id,
    ]),
    [
      [MALFORMED_AT + 1, 'invalid_json', null],
      [MALFORMED_AT + 2, 'unknown_reference', 'orphan'],
    ],
  );

  const deptNames = new Map([
    ['d1', 'Sales (old)'],
    ['d2', 'Support (old)'],
  ]);
  for (const zone of ['UTC', 'Europe/Prague', 'Asia/Kathmandu']) {
    const expected = reference(records, zone, deptNames);
    const got = await reportFigures(zone);
    t.same(
      [...got.entries()].sort(),
      [...expected.entries()].sort(),
      `${zone}: every department and month as the reference counts them`,
    );
  }

  // Marked in history, at the original time, and nothing reacts to it.
  const { rows } = await sql<{ n: number; imported: number }>`
    select count(*)::int as n, count(import_id)::int as imported from ticket_events`.execute(ctx.db);
  t.ok(rows[0]!.n > records.length / 2);
  t.equal(rows[0]!.imported, rows[0]!.n, 'every history entry names the import');
  const first = (
    await ctx.request({ method: 'GET', url: '/v1/tickets?sort=created_at&limit=1', token: admin })
  ).json().data[0];
  t.equal(first.created_at.slice(0, 4), '2025', 'the ticket keeps its original time');
  const history = (
    await ctx.request({ method: 'GET', url: `/v1/tickets/${first.id}/history`, token: admin })
  ).json();
  t.equal(history.data[0].import_id, created.id);
});

t.test('an import cut off mid-way resumes after its last committed batch', async (t) => {
  const other = await buildTestApp(t);
  const { token } = await agentWithToken(other, { role: 'admin' });
  const res = await other.request({
    method: 'POST',
    url: '/v1/imports?source=oldesk',
    token,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: file,
  });
  const id = res.json().id;
  const deps = { db: other.db, blobs: other.app.blobs, log };
  // The first worker stops after its first batch, as a killed process would, lease and all.
  let batches = 0;
  await processPendingImports(deps, () => batches++ >= 1);
  const cut = (await other.request({ method: 'GET', url: `/v1/imports/${id}`, token })).json();
  t.equal(cut.state, 'running');
  t.ok(cut.line > 0 && cut.line < lines.length, `stopped at line ${cut.line}`);
  await sql`update imports set lease_until = now() + interval '1 hour', lease_token = gen_random_uuid()`.execute(
    other.db,
  );
  t.equal(await processPendingImports(deps), 0, 'nobody takes an import under a live lease');
  await sql`update imports set lease_until = now() - interval '1 second'`.execute(other.db);
  t.equal(await processPendingImports(deps), 1, 'after the lease, another worker finishes it');
  const done = (await other.request({ method: 'GET', url: `/v1/imports/${id}`, token })).json();
  t.same(done.counts, {
    read: records.length + 2,
    created: records.length,
    updated: 0,
    skipped: 0,
    failed: 2,
  });
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from tickets`.execute(other.db);
  t.equal(rows[0]!.n, records.filter((r) => r.type === 'ticket').length, 'every ticket once');
});

t.test(
  'two imports of one source worked at once create each record once',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'needs two workers on two connections; the embedded PGlite has one'
        : false,
  },
  async (t) => {
    const other = await buildTestApp(t);
    const { token } = await agentWithToken(other, { role: 'admin' });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await other.request({
        method: 'POST',
        url: '/v1/imports?source=twice',
        token,
        headers: { 'content-type': 'application/x-ndjson' },
        payload: file,
      });
      t.equal(res.statusCode, 202);
      ids.push(res.json().id);
    }
    // Two workers, as two instances would run them: each takes one of the imports, and their
    // batches create the same external ids at the same time. A deadlock or lock time-out between
    // them hands the import back (it throws); the next turn takes it up again.
    const deps = { db: other.db, blobs: other.app.blobs, log };
    const worker = async () => {
      for (let turn = 0; turn < 20; turn++) {
        try {
          await processPendingImports(deps);
          return;
        } catch {
          // Handed back already (processPendingImports): the next turn takes it.
        }
      }
    };
    await Promise.all([worker(), worker()]);
    const done = await Promise.all(
      ids.map(async (id) => (await other.request({ method: 'GET', url: `/v1/imports/${id}`, token })).json()),
    );
    t.same(
      done.map((d) => d.state),
      ['finished', 'finished'],
    );
    const applicable = records.length;
    t.equal(
      done[0].counts.created + done[1].counts.created,
      applicable,
      'each record created by one of the two imports',
    );
    const { rows } = await sql<{ tickets: number; keys: number }>`select
      (select count(*)::int from tickets) as tickets,
      (select count(*)::int from import_keys where source = 'twice') as keys`.execute(other.db);
    const tickets = records.filter((r) => r.type === 'ticket').length;
    t.equal(rows[0]!.tickets, tickets, 'every ticket once');
    t.equal(rows[0]!.keys, applicable, 'every external id has one key');
  },
);

t.test('running the same import again changes nothing', async (t) => {
  const count = async () =>
    (
      await sql<{
        tickets: number;
        events: number;
        messages: number;
        contacts: number;
        agents: number;
      }>`select
        (select count(*)::int from tickets) as tickets, (select count(*)::int from ticket_events) as events,
        (select count(*)::int from ticket_messages) as messages, (select count(*)::int from contacts) as contacts,
        (select count(*)::int from agents) as agents`.execute(ctx.db)
    ).rows[0];
  const before = await count();
  const figures = await reportFigures('Europe/Prague');
  const res = await upload(file, '?source=oldesk');
  t.equal(res.statusCode, 202);
  await work();
  const again = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token: admin })
  ).json();
  t.equal(again.state, 'finished');
  t.equal(again.counts.created, 0);
  t.equal(again.counts.skipped, records.length, 'every record was seen before');
  t.same(await count(), before, 'no row added');
  t.same(await reportFigures('Europe/Prague'), figures, 'the same figures');
});

t.test('a later import adds to an imported ticket; a changed contact is updated', async (t) => {
  const more = [
    JSON.stringify({
      type: 'contact',
      external_id: 'c1',
      name: 'Customer One',
      emails: ['customer1@shop.test'],
    }),
    JSON.stringify({
      type: 'message',
      external_id: 'late-1',
      ticket: 't1',
      at: '2025-12-30T10:00:00Z',
      kind: 'note',
      body: 'Added later.',
      agent: 'a1',
    }),
  ].join('\n');
  const res = await upload(more, '?source=oldesk');
  await work();
  const done = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token: admin })
  ).json();
  t.same(done.counts, { read: 2, created: 1, updated: 1, skipped: 0, failed: 0 });
  const { rows } = await sql<{ name: string }>`
    select c.name from contacts c join contact_emails e on e.contact_id = c.id where e.email = 'customer1@shop.test'`.execute(
    ctx.db,
  );
  t.equal(rows[0]?.name, 'Customer One');
});

t.test(
  'a contact field already here is taken if of the same type, gaining the options it lacks',
  async (t) => {
    const field = async (payload: object) => {
      const res = await ctx.request({ method: 'POST', url: '/v1/contact-fields', token: admin, payload });
      t.equal(res.statusCode, 201, 'field created');
      return res.json() as { id: string };
    };
    const tier = await field({ key: 'tier', label: 'Tier', type: 'choice', options: ['Gold'] });
    await field({ key: 'visits', label: 'Visits', type: 'text' });
    const options = async () =>
      (await ctx.request({ method: 'GET', url: `/v1/contact-fields/${tier.id}`, token: admin })).json()
        .options;
    const run = async (records: object[]) => {
      const res = await upload(records.map((r) => JSON.stringify(r)).join('\n'), '?source=fields-src');
      t.equal(res.statusCode, 202, 'accepted');
      await work();
      const id = res.json().id;
      const done = (await ctx.request({ method: 'GET', url: `/v1/imports/${id}`, token: admin })).json();
      const errors = (
        await ctx.request({ method: 'GET', url: `/v1/imports/${id}/errors`, token: admin })
      ).json();
      return {
        counts: done.counts,
        errors: errors.data.map((e: { external_id: string; code: string }) => [e.external_id, e.code]),
      };
    };
    const first = await run([
      {
        type: 'contact_field',
        external_id: 'f-tier',
        key: 'tier',
        label: 'Level',
        field_type: 'choice',
        options: ['Gold', 'Silver'],
      },
      {
        type: 'contact_field',
        external_id: 'f-visits',
        key: 'visits',
        label: 'Visits',
        field_type: 'number',
      },
      {
        type: 'contact',
        external_id: 'c-silver',
        name: 'Silvia',
        emails: ['silvia@shop.test'],
        custom_fields: { tier: 'Silver' },
      },
    ]);
    t.same(first.counts, { read: 3, created: 2, updated: 0, skipped: 0, failed: 1 });
    t.same(
      first.errors,
      [['f-visits', 'contact_field_type_differs']],
      'a field of another type is refused, by name',
    );
    t.same(await options(), ['Gold', 'Silver'], 'the option the source has is added; Gold stays');

    // The source gained an option since: the changed record adds it, and its contacts are taken.
    const second = await run([
      {
        type: 'contact_field',
        external_id: 'f-tier',
        key: 'tier',
        label: 'Level',
        field_type: 'choice',
        options: ['Gold', 'Silver', 'Platinum'],
      },
      {
        type: 'contact',
        external_id: 'c-platinum',
        name: 'Pat',
        emails: ['pat@shop.test'],
        custom_fields: { tier: 'Platinum' },
      },
    ]);
    t.same(second.counts, { read: 2, created: 1, updated: 1, skipped: 0, failed: 0 });
    t.same(second.errors, []);
    t.same(await options(), ['Gold', 'Silver', 'Platinum']);
    const label = (
      await ctx.request({ method: 'GET', url: `/v1/contact-fields/${tier.id}`, token: admin })
    ).json().label;
    t.equal(label, 'Tier', 'the label given here stays');

    // A change the field here takes nothing from (its label) writes nothing: skipped.
    const third = await run([
      {
        type: 'contact_field',
        external_id: 'f-tier',
        key: 'tier',
        label: 'Tier level',
        field_type: 'choice',
        options: ['Gold', 'Platinum'],
      },
    ]);
    t.same(third.counts, { read: 1, created: 0, updated: 0, skipped: 1, failed: 0 });
    t.same(await options(), ['Gold', 'Silver', 'Platinum'], 'no option is removed');
  },
);

t.test('contacts from a CSV, custom fields by header', async (t) => {
  const csv =
    'external_id,name,email,phone,plan\nx1,Jane Doe,jane@csv.test,+420601234567,pro\nx2,"Doe, John",john@csv.test;jd@csv.test,,\nx3,Bad,not-an-email,,\n';
  const res = await upload(csv, '?source=crm', 'text/csv');
  t.equal(res.statusCode, 202, res.body);
  t.equal(res.json().format, 'csv');
  await work();
  const done = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token: admin })
  ).json();
  t.same(done.counts, { read: 3, created: 2, updated: 0, skipped: 0, failed: 1 });
  const errors = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}/errors`, token: admin })
  ).json();
  t.same(
    errors.data.map((e: { line: number; code: string }) => [e.line, e.code]),
    [[4, 'invalid_record']],
  );
  const john = (
    await ctx.request({ method: 'GET', url: '/v1/contacts?q=john%40csv.test', token: admin })
  ).json().data[0];
  t.same(john.emails, ['john@csv.test', 'jd@csv.test']);
  t.equal(john.name, 'Doe, John');
  const jane = (
    await ctx.request({ method: 'GET', url: '/v1/contacts?q=jane%40csv.test', token: admin })
  ).json().data[0];
  t.same(jane.custom_fields, { plan: 'pro' });

  const unknown = await upload('external_id,shoe_size\nx9,44\n', '?source=crm', 'text/csv');
  await work();
  const e2 = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${unknown.json().id}/errors`, token: admin })
  ).json();
  t.equal(e2.data[0].code, 'unknown_column');
});

t.test('who may import, and what the route refuses', async (t) => {
  const { token: agent } = await agentWithToken(ctx);
  const refused = await ctx.request({
    method: 'POST',
    url: '/v1/imports',
    token: agent,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: '{"type":"department","external_id":"z","name":"Z"}\n',
  });
  t.equal(refused.statusCode, 403);
  t.equal((await ctx.request({ method: 'GET', url: '/v1/imports', token: agent })).statusCode, 403);
  const json = await ctx.request({
    method: 'POST',
    url: '/v1/imports',
    token: admin,
    payload: { type: 'department' },
  });
  t.equal(json.statusCode, 415, 'JSON is not an import file');
  const untyped = await ctx.request({ method: 'POST', url: '/v1/imports', token: admin });
  t.equal(untyped.statusCode, 415, 'no Content-Type');
  t.match(untyped.json().detail, /\(none\)$/, `says there was none: ${untyped.json().detail}`);
  t.equal((await upload('')).statusCode, 400, 'an empty file');
  t.equal((await upload('{}', '?source=Not%20ok')).statusCode, 400, 'a bad source');
  t.equal(
    (
      await ctx.request({
        method: 'GET',
        url: '/v1/imports/00000000-0000-4000-8000-000000000000',
        token: admin,
      })
    ).statusCode,
    404,
  );
  const list = (await ctx.request({ method: 'GET', url: '/v1/imports?limit=2', token: admin })).json();
  t.equal(list.data.length, 2);
  t.type(list.next_cursor, 'string');
  const { rows } = await sql<{
    n: number;
  }>`select count(*)::int as n from departments where name = 'Z'`.execute(ctx.db);
  t.equal(rows[0]!.n, 0, 'nothing from the refused upload');
  t.ok(adminAgent.id);
});

t.test('a file larger than IMPORT_MAX_BYTES is refused whole', async (t) => {
  const small = await buildTestApp(t, { IMPORT_MAX_BYTES: '100' });
  const { token } = await agentWithToken(small, { role: 'admin' });
  const res = await small.request({
    method: 'POST',
    url: '/v1/imports',
    token,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: `${'{"type":"department","external_id":"z","name":"Z"}\n'.repeat(5)}`,
  });
  t.equal(res.statusCode, 413);
  t.equal(res.json().code, 'import_too_large');
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from imports`.execute(small.db);
  t.equal(rows[0]!.n, 0);
});

t.test(
  'a Zendesk export, converted by scripts/convert/zendesk.ts, imports without a refused line',
  async (t) => {
    const desk = await buildTestApp(t);
    const { token } = await agentWithToken(desk, { role: 'admin' });
    const converted: string[] = [];
    for await (const r of convertZendesk(new URL('./fixtures/zendesk/', import.meta.url).pathname)) {
      converted.push(JSON.stringify(r));
    }
    const res = await desk.request({
      method: 'POST',
      url: '/v1/imports?source=zendesk',
      token,
      headers: { 'content-type': 'application/x-ndjson' },
      payload: converted.join('\n'),
    });
    t.equal(res.statusCode, 202);
    await processPendingImports({ db: desk.db, blobs: desk.app.blobs, log });
    const done = (await desk.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token })).json();
    const errors = (
      await desk.request({ method: 'GET', url: `/v1/imports/${res.json().id}/errors`, token })
    ).json();
    t.same(errors.data, [], 'no line refused');
    t.same(done.counts, {
      read: converted.length,
      created: converted.length,
      updated: 0,
      skipped: 0,
      failed: 0,
    });
    const tickets = converted.filter((l) => JSON.parse(l).type === 'ticket').length;
    const list = (await desk.request({ method: 'GET', url: '/v1/tickets?limit=50', token })).json();
    t.equal(list.data.length, tickets, 'every Zendesk ticket is a ticket here');
    // Zendesk's user fields and organization, as contact fields.
    const carl = (await desk.request({ method: 'GET', url: '/v1/contacts?q=carl@shop.test', token })).json()
      .data;
    t.same(
      carl.map((c: { custom_fields: object }) => c.custom_fields),
      [
        {
          plan: 'Gold',
          vip: true,
          customer_since: '2023-04-01',
          orders: 12,
          region_code: 'CZ-10',
          interests: 'Bikes, Tents',
          organization: 'Shop s.r.o.',
        },
      ],
      "Carl's user fields and organization",
    );
    // Ticket 101 opened at normal priority under its first subject; an audit changed both.
    const parcel = list.data.find(
      (x: { subject: string }) => x.subject === 'Parcel arrived damaged: refunded',
    );
    t.match(parcel, { priority: 'high' }, 'ticket 101 as it is now in Zendesk');
    const history = (
      await desk.request({ method: 'GET', url: `/v1/tickets/${parcel?.id}/history?limit=200`, token })
    ).json();
    t.same(
      history.data
        .filter((e: { type: string }) => e.type === 'priority_changed' || e.type === 'subject_changed')
        .map((e: { type: string; occurred_at: string; data: { from: string; to: string } }) => [
          e.type,
          e.occurred_at,
          e.data.from,
          e.data.to,
        ]),
      [
        ['priority_changed', '2025-03-01T11:30:00.000Z', 'normal', 'high'],
        [
          'subject_changed',
          '2025-03-01T11:30:00.000Z',
          'Parcel arrived damaged',
          'Parcel arrived damaged: refunded',
        ],
      ],
      'its priority and subject changes, replayed at their time',
    );
    // Ticket 103's voice comments: an answered inbound call and a missed call back, as calls.
    const printer = list.data.find((x: { subject: string }) => x.subject === 'Printer on floor 2');
    const calls = (
      await desk.request({ method: 'GET', url: `/v1/tickets/${printer?.id}/history?limit=200`, token })
    )
      .json()
      .data.filter((e: { type: string }) => e.type === 'call_recorded');
    t.same(
      calls.map(
        (e: {
          occurred_at: string;
          data: { direction: string; outcome: string; duration_seconds: number };
        }) => [e.occurred_at, e.data.direction, e.data.outcome, e.data.duration_seconds],
      ),
      [
        ['2025-03-04T08:00:00.000Z', 'inbound', 'answered', 95],
        ['2025-03-04T09:00:00.000Z', 'outbound', 'missed', 0],
      ],
      'its voice comments, recorded as calls at their time',
    );
  },
);

t.test('imported open tickets carry no SLA clock and the SLA timers leave them be', async (t) => {
  const desk = await buildTestApp(t);
  const { token } = await agentWithToken(desk, { role: 'admin' });
  const policy = await desk.request({
    method: 'POST',
    url: '/v1/sla-policies',
    token,
    payload: {
      name: 'Everything',
      conditions: { all: [] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
    },
  });
  t.equal(policy.statusCode, 201, policy.body);
  const old = [
    { type: 'contact', external_id: 'c1', name: 'Old customer', emails: ['old@shop.test'] },
    {
      type: 'ticket',
      external_id: 't1',
      created_at: '2023-05-01T09:00:00Z',
      subject: 'Still open',
      contact: 'c1',
      message: { body: 'Hello?' },
    },
  ];
  const res = await desk.request({
    method: 'POST',
    url: '/v1/imports',
    token,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: old.map((r) => JSON.stringify(r)).join('\n'),
  });
  await processPendingImports({ db: desk.db, blobs: desk.app.blobs, log });
  t.same(
    (await desk.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token })).json().counts.created,
    2,
  );
  await fireSlaTimers(desk.db);
  const { rows } = await sql<{ n: number; sla: number }>`
    select count(*)::int as n, count(sla_state)::int as sla from tickets`.execute(desk.db);
  t.same(rows[0], { n: 1, sla: 0 }, 'the 2023 ticket got no clock, not even from the timers');
  const { rows: events } = await sql<{ n: number }>`
    select count(*)::int as n from ticket_events where type like 'sla.%'`.execute(desk.db);
  t.equal(events[0]!.n, 0, 'no breach fired for a due of 2023');
});

t.test('a line with a NUL character, and a CSV row with too many cells, are refused alone', async (t) => {
  const res = await upload(`${JSON.stringify({ type: '\u0000', external_id: 'x\u0000' })}\n`, '?source=nul');
  await work();
  const done = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${res.json().id}`, token: admin })
  ).json();
  t.equal(done.state, 'finished');
  t.equal(done.counts.failed, 1);
  // A valid record whose external id holds a NUL: refused alone, its neighbours go in.
  const valid = [
    { type: 'contact', external_id: 'n1', name: 'Ana' },
    { type: 'contact', external_id: 'n\u00002', name: 'Bob' },
    { type: 'contact', external_id: 'n3', name: 'Cyd' },
  ];
  const mixed = await upload(`${valid.map((r) => JSON.stringify(r)).join('\n')}\n`, '?source=nul');
  await work();
  const mixedDone = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${mixed.json().id}`, token: admin })
  ).json();
  t.equal(mixedDone.state, 'finished');
  t.same(mixedDone.counts, { read: 3, created: 2, updated: 0, skipped: 0, failed: 1 });
  const csv = await upload('external_id,name\ny1,Yan,extra,cells\ny2,Zoe\n', '?source=nul', 'text/csv');
  await work();
  const csvDone = (
    await ctx.request({ method: 'GET', url: `/v1/imports/${csv.json().id}`, token: admin })
  ).json();
  t.equal(csvDone.state, 'finished');
  t.equal(csvDone.counts.created, 2, 'cells past the header are dropped');
});
