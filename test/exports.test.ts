import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { type KyselyPlugin, sql } from 'kysely';
import pino from 'pino';
import t from 'tap';
import { type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { exportTickets } from '../src/domains/exports/service.ts';
import { processPendingImports } from '../src/domains/imports/run.ts';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeDepartment, sessionPrincipal } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';

// The records of the import format (the lead's import-format brief), as the importer reads them.
const Id = Type.String({ minLength: 1, maxLength: 200 });
const At = Type.String({ format: 'date-time' });
const Agent = Type.Optional(Type.Union([Id, Type.Null()]));
const timeline = (type: string, fields: Record<string, TSchema>) =>
  Type.Object(
    { type: Type.Literal(type), external_id: Id, ticket: Id, at: At, agent: Agent, ...fields },
    { additionalProperties: false },
  );
const ImportRecord = Type.Union([
  Type.Object(
    {
      type: Type.Literal('contact'),
      external_id: Id,
      name: Type.String(),
      emails: Type.Array(Type.String()),
      phones: Type.Array(Type.String()),
      custom_fields: Type.Record(Type.String(), Type.Unknown()),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('ticket'),
      external_id: Id,
      created_at: At,
      subject: Type.String(),
      channel: Type.String(),
      contact: Id,
      department: Type.Union([Id, Type.Null()]),
      priority: Type.Union(['low', 'normal', 'high', 'urgent'].map((p) => Type.Literal(p))),
      tags: Type.Array(Type.String()),
      message: Type.Optional(
        Type.Object(
          {
            body: Type.String(),
            author: Type.Union([Type.Literal('contact'), Type.Literal('agent')]),
            agent: Type.Optional(Id),
          },
          { additionalProperties: false },
        ),
      ),
    },
    { additionalProperties: false },
  ),
  timeline('message', {
    kind: Type.Union([Type.Literal('customer'), Type.Literal('reply'), Type.Literal('note')]),
    body: Type.String(),
  }),
  timeline('status', {
    status: Type.Union(['open', 'answered', 'postponed', 'resolved', 'spam'].map((s) => Type.Literal(s))),
  }),
  timeline('transfer', { department: Id }),
  timeline('assignment', { assignee: Type.Union([Id, Type.Null()]) }),
  timeline('tags', { tags: Type.Array(Type.String()) }),
  timeline('priority', {
    priority: Type.Union(['low', 'normal', 'high', 'urgent'].map((p) => Type.Literal(p))),
  }),
  timeline('subject', { subject: Type.String() }),
  Type.Object(
    {
      type: Type.Literal('rating'),
      external_id: Id,
      ticket: Id,
      at: At,
      value: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
      comment: Type.Optional(Type.String()),
    },
    { additionalProperties: false },
  ),
]);

const lines = (body: string) =>
  body
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown> & { id: string; type: string; external_id: string });

t.test('exports', async (t) => {
  const ctx = await buildTestApp(t);
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const a = await makeDepartment(ctx.db, 'Alpha');
  const b = await makeDepartment(ctx.db, 'Beta');
  const memberA = await agentWithToken(ctx, { departments: [[a, 'solver']] });
  const get = (url: string, token = admin.token) => ctx.request({ method: 'GET', url, token });
  const open = async (subject: string, departmentId: string | null, email: string) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token: admin.token,
      payload: {
        subject,
        contact: { email, name: subject.startsWith('=') ? '@SUM(1)' : 'Carl' },
        message: { body: `About ${subject}` },
        department_id: departmentId,
        tags: ['first'],
      },
    });
    t.equal(res.statusCode, 201, res.body);
    return res.json() as { id: string; contact: { id: string } };
  };
  const ta = await open('=HYPERLINK("http://evil")', a, 'alpha@example.com');
  const tb = await open('Beta secret', b, 'beta@example.com');

  await t.test('ndjson by default: each ticket as GET returns it, with its headers', async (t) => {
    const res = await get('/v1/exports/tickets');
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/x-ndjson/);
    t.match(res.headers['content-disposition'], /^attachment; filename="deskroute-tickets-.+\.ndjson"$/);
    t.type(res.headers['export-next-cursor'], 'string', 'the next cursor is sent before the body');
    const tickets = lines(res.body);
    t.same(
      tickets.map((x) => x.id),
      [ta.id, tb.id],
      'in (updated_at, id) order',
    );
    for (const ticket of tickets) {
      const one = await get(`/v1/tickets/${ticket.id}`);
      t.same(ticket, one.json(), 'the same representation as GET');
    }
  });

  await t.test('a member of A never gets B tickets, in any format', async (t) => {
    for (const format of ['ndjson', 'csv', 'import']) {
      const res = await get(`/v1/exports/tickets?format=${format}`, memberA.token);
      t.equal(res.statusCode, 200);
      t.ok(res.body.includes(ta.id), `${format}: A's ticket`);
      t.notOk(res.body.includes(tb.id), `${format}: never B's ticket`);
      t.notOk(res.body.includes('Beta secret'), `${format}: nor its subject`);
    }
  });

  await t.test('filters are the ticket list filters', async (t) => {
    const onlyB = await get(`/v1/exports/tickets?department_id=${b}`);
    t.same(
      lines(onlyB.body).map((x) => x.id),
      [tb.id],
    );
    const bySearch = await get('/v1/exports/tickets?tag=first&status=new&status=open');
    t.equal(lines(bySearch.body).length, 2);
    const none = await get('/v1/exports/tickets?status=resolved');
    t.equal(none.body, '', 'nothing matches: an empty body');
  });

  await t.test('CSV: flat columns, formulas neutralised', async (t) => {
    const res = await get('/v1/exports/tickets?format=csv');
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^text\/csv/);
    t.match(res.headers['content-disposition'], /filename="deskroute-tickets-.+\.csv"/);
    const rows = res.body.split('\r\n').filter((r) => r !== '');
    t.match(rows[0], /^id,reference,subject,channel,status,priority,department_id,/);
    t.equal(rows.length, 3);
    t.ok(rows[1]!.includes(`"'=HYPERLINK(""http://evil"")"`), 'the formula is quoted and prefixed');
    t.ok(rows[1]!.includes(",'@SUM(1),"), 'the contact name too');
    const contacts = await get('/v1/exports/contacts?format=csv');
    t.match(contacts.body, /^id,name,emails,phones,custom_fields,created_at,updated_at\r\n/);
    t.ok(contacts.body.includes("'@SUM(1)"));
  });

  await t.test('bad parameters answer 400', async (t) => {
    for (const url of [
      '/v1/exports/tickets?format=xml',
      '/v1/exports/tickets?cursor=garbage',
      '/v1/exports/tickets?unknown=1',
      '/v1/exports/tickets?updated_from=yesterday',
      '/v1/exports/tickets?department_id=nope',
      '/v1/exports/contacts?format=pdf',
      '/v1/exports/contacts?updated_from=2026-13-01',
    ]) {
      const res = await get(url);
      t.equal(res.statusCode, 400, url);
      t.match(res.headers['content-type'], /problem\+json/);
    }
    const contactsCursor = (await get('/v1/exports/contacts')).headers['export-next-cursor'];
    const foreign = await get(`/v1/exports/tickets?cursor=${contactsCursor}`);
    t.equal(foreign.statusCode, 400, "another export's cursor");
    const otherFilter = (await get(`/v1/exports/tickets?department_id=${a}`)).headers['export-next-cursor'];
    t.equal((await get(`/v1/exports/tickets?cursor=${otherFilter}`)).statusCode, 400, 'other filters');
    const unauthenticated = await ctx.request({ method: 'GET', url: '/v1/exports/tickets' });
    t.equal(unauthenticated.statusCode, 401);

    // What only the database refuses (a NUL in the text query) is refused before any byte or
    // header of the download, in every format: a CSV's header row once went first, then a cut.
    for (const what of ['tickets', 'contacts']) {
      for (const format of ['csv', 'ndjson', 'import']) {
        const url = `/v1/exports/${what}?format=${format}&q=%00`;
        const res = await get(url);
        t.equal(res.statusCode, 400, url);
        t.match(res.headers['content-type'], /problem\+json/);
        t.equal(res.headers['content-disposition'], undefined, `${url}: no download header`);
        t.equal(res.headers['export-next-cursor'], undefined, `${url}: no cursor`);
      }
    }
  });

  await t.test('the cursor gives each change once, across calls', async (t) => {
    const seen = new Map<string, number>();
    let cursor = (await get('/v1/exports/tickets')).headers['export-next-cursor'] as string;
    const pull = async () => {
      const res = await get(`/v1/exports/tickets?cursor=${cursor}`);
      t.equal(res.statusCode, 200);
      for (const x of lines(res.body))
        seen.set(`${x.id}@${x.updated_at}`, (seen.get(`${x.id}@${x.updated_at}`) ?? 0) + 1);
      cursor = res.headers['export-next-cursor'] as string;
    };
    await pull();
    const changed = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ta.id}`,
      token: admin.token,
      payload: { priority: 'high' },
    });
    t.equal(changed.statusCode, 200);
    for (let i = 0; i < 3; i++) await pull();
    const changedAgain = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${ta.id}`,
      token: admin.token,
      payload: { priority: 'low' },
    });
    for (let i = 0; i < 3; i++) await pull();
    t.same(
      [...seen.entries()].sort(),
      [
        [`${ta.id}@${changed.json().updated_at}`, 1],
        [`${ta.id}@${changedAgain.json().updated_at}`, 1],
      ].sort(),
      'each change exactly once, none before the cursor',
    );
  });

  await t.test('a change committed late is exported by the next call', async (t) => {
    if (!ctx.database.url) {
      t.comment('skipped on PGlite: needs a second connection to hold a transaction open');
      return;
    }
    const cursor0 = (await get('/v1/exports/tickets')).headers['export-next-cursor'] as string;
    const held = Promise.withResolvers<void>();
    const written = Promise.withResolvers<void>();
    const late = ctx.db.transaction().execute(async (trx) => {
      await sql`update tickets set subject = 'late', updated_at = deskroute_now(), changed_at = now() where id = ${tb.id}`.execute(
        trx,
      );
      written.resolve();
      await held.promise;
    });
    await written.promise;
    await new Promise((r) => setTimeout(r, 20));
    const during = await get(`/v1/exports/tickets?cursor=${cursor0}`);
    t.notOk(during.body.includes(tb.id), 'not committed yet: not exported');
    const cursor1 = during.headers['export-next-cursor'] as string;
    held.resolve();
    await late;
    const after = await get(`/v1/exports/tickets?cursor=${cursor1}`);
    t.same(
      lines(after.body).map((x) => [x.id, x.subject]),
      [[tb.id, 'late']],
      'the late commit comes with the next cursor',
    );
  });

  await t.test('format=import: records of the import format, ticket then timeline', async (t) => {
    const c = await open('History', a, 'history@example.com');
    const act = async (method: 'POST' | 'PATCH', url: string, payload: object) => {
      const res = await ctx.request({ method, url, token: admin.token, payload });
      t.ok(res.statusCode < 300, `${url}: ${res.body}`);
    };
    await act('POST', `/v1/tickets/${c.id}/messages`, { kind: 'reply', body: 'We are on it' });
    await act('POST', `/v1/tickets/${c.id}/messages`, { kind: 'note', body: 'internal' });
    await act('POST', `/v1/tickets/${c.id}/tags`, { add: ['vip'] });
    await act('PATCH', `/v1/tickets/${c.id}`, { assignee_id: memberA.agent.id });
    await act('POST', `/v1/tickets/${c.id}/transfer`, { department_id: b });
    await act('PATCH', `/v1/tickets/${c.id}`, { status: 'resolved' });
    await act('POST', `/v1/tickets/${c.id}/ratings`, { value: 'positive', comment: 'thanks' });
    const res = await get(`/v1/exports/tickets?format=import&contact_id=${c.contact.id}`);
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-disposition'], /\.import\.ndjson"$/);
    const records = lines(res.body);
    for (const record of records) {
      t.ok(Value.Check(ImportRecord, record), `valid ${record.type}: ${JSON.stringify(record)}`);
    }
    const types = records.map((r) => r.type);
    t.same(types.slice(0, 6), ['ticket', 'message', 'status', 'message', 'tags', 'assignment']);
    t.same(types.slice(-4), ['transfer', 'assignment', 'status', 'rating'], 'the transfer unassigns');
    const of = (type: string) => records.filter((r) => r.type === type);
    t.match(records[0], {
      external_id: c.id,
      subject: 'History',
      contact: c.contact.id,
      department: a,
      tags: ['first'],
      message: { body: 'About History', author: 'contact' },
    });
    t.match(records[1], { kind: 'reply', body: 'We are on it', agent: admin.agent.id, ticket: c.id });
    t.match(records[2], { status: 'answered' });
    t.match(records[3], { kind: 'note', body: 'internal' });
    t.match(records[4], { tags: ['first', 'vip'] });
    t.match(records[5], { assignee: memberA.agent.id, agent: admin.agent.id });
    t.match(of('transfer'), [{ department: b }]);
    t.match(records.at(-2), { status: 'resolved' });
    t.match(records.at(-1), { value: 'positive', comment: 'thanks' });
    t.equal(
      new Set(records.map((r) => `${r.type}:${r.external_id}`)).size,
      records.length,
      'ids unique per type',
    );
    const contacts = lines((await get(`/v1/exports/contacts?format=import&q=history`)).body);
    t.same(contacts, [
      {
        type: 'contact',
        external_id: c.contact.id,
        name: 'Carl',
        emails: ['history@example.com'],
        phones: [],
        custom_fields: {},
      },
    ]);
    t.ok(Value.Check(ImportRecord, contacts[0]));
  });

  await t.test('contacts: as GET returns them, filtered like the list, incremental', async (t) => {
    const res = await get('/v1/exports/contacts', memberA.token);
    t.equal(res.statusCode, 200, 'every agent may export contacts');
    const contacts = lines(res.body);
    t.equal(contacts.length, 3);
    for (const contact of contacts) t.same(contact, (await get(`/v1/contacts/${contact.id}`)).json());
    const cursor = res.headers['export-next-cursor'] as string;
    const renamed = await ctx.request({
      method: 'PATCH',
      url: `/v1/contacts/${ta.contact.id}`,
      token: admin.token,
      payload: { name: 'Renamed' },
    });
    t.equal(renamed.statusCode, 200);
    let got: string[] = [];
    let next = cursor;
    for (let i = 0; i < 3; i++) {
      const page = await get(`/v1/exports/contacts?cursor=${next}`, memberA.token);
      got = [...got, ...lines(page.body).map((x) => `${x.id}:${x.name}`)];
      next = page.headers['export-next-cursor'] as string;
    }
    t.same(got, [`${ta.contact.id}:Renamed`]);
    const since = await get(
      `/v1/exports/contacts?updated_from=${encodeURIComponent(renamed.json().updated_at)}`,
    );
    t.same(
      lines(since.body).map((x) => x.id),
      [ta.contact.id],
    );
  });

  await t.test(
    'backpressure and cancellation: a batch is read only once the previous one is taken',
    async (t) => {
      await sql`insert into tickets (subject, channel, status, priority, contact_id, tags, created_at, updated_at, waiting_since)
      select 'Bulk ' || g, 'email', 'open', 'normal', ${ta.contact.id}::uuid, '{}', now() - interval '1 hour',
             now() - interval '1 hour', now()
      from generate_series(1, 4500) g`.execute(ctx.db);
      // Counts the ticket batches the export reads (the statements ordered by updated_at).
      let batches = 0;
      const counter: KyselyPlugin = {
        transformQuery: (args) => {
          if (args.node.kind === 'SelectQueryNode' && JSON.stringify(args.node).includes('"updated_at"'))
            batches++;
          return args.node;
        },
        transformResult: async (args) => args.result,
      };
      const db = ctx.db.withPlugin(counter);
      const principal = sessionPrincipal(admin.agent, ['read']);
      const whole = await exportTickets(db, principal, {});
      let rows = 0;
      for await (const chunk of whole.body) rows += String(chunk).split('\n').length - 1;
      const all = batches;
      t.ok(rows > 4500 && all >= 5, `read whole: ${rows} rows in ${all} batches`);

      batches = 0;
      const partial = await exportTickets(db, principal, {});
      await sleep(100);
      // The first batch is read before the answer starts (a query the database refuses answers
      // problem+json); nothing more until the client asks.
      t.equal(batches, 1, 'only the first batch is read before the client asks');
      await once(partial.body, 'readable');
      partial.body.read();
      await sleep(200);
      t.ok(
        batches >= 1 && batches <= 3,
        `a client that takes one chunk gets at most the next read ahead (${batches})`,
      );
      partial.body.destroy();
      await sleep(200);
      const atCancel = batches;
      await sleep(200);
      t.equal(batches, atCancel, 'destroyed (the client went away): no more reads');
      t.ok(atCancel < all, 'the export stopped before its end');
    },
  );

  await t.test('tickets imported with their history after a cursor come with that cursor', async (t) => {
    // An import replays a ticket at its own time: its updated_at is in 2021, below the cursor.
    // Exports follow when the ticket changed here (changed_at), or the warehouse never gets it.
    const cursor = (await get('/v1/exports/tickets')).headers['export-next-cursor'] as string;
    const records = [
      { type: 'contact', external_id: 'old-c1', name: 'Old customer', emails: ['old-export@shop.test'] },
      {
        type: 'ticket',
        external_id: 'old-t1',
        created_at: '2021-03-01T09:00:00Z',
        subject: 'From the old desk',
        contact: 'old-c1',
        message: { body: 'Hello from 2021' },
      },
    ];
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/imports?source=old-desk',
      token: admin.token,
      headers: { 'content-type': 'application/x-ndjson' },
      payload: records.map((r) => JSON.stringify(r)).join('\n'),
    });
    t.equal(res.statusCode, 202, res.body);
    await processPendingImports({ db: ctx.db, blobs: ctx.app.blobs, log: pino({ level: 'silent' }) });
    const after = await get(`/v1/exports/tickets?cursor=${cursor}`);
    t.equal(after.statusCode, 200);
    t.same(
      lines(after.body).map((x) => [x.subject, x.updated_at]),
      [['From the old desk', '2021-03-01T09:00:00.000Z']],
      'the imported ticket, with its own time, and nothing else',
    );
    const next = after.headers['export-next-cursor'] as string;
    t.same(lines((await get(`/v1/exports/tickets?cursor=${next}`)).body), [], 'once');
  });
});

// An SLA warning or breach is written by the timer without touching updated_at (it is no change
// by anyone), yet the exported ticket changed: its sla and its history. It comes with the next
// cursor (tickets.changed_at moves); before, a warehouse syncing by cursor never saw the breach.
t.test('an SLA breach comes with the next cursor, though updated_at stays', async (t) => {
  const ctx = await buildTestApp(t);
  await installClock(ctx.db, '2026-11-27T10:00:00Z');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const support = await makeDepartment(ctx.db, 'Support');
  const call = async (method: 'GET' | 'POST', url: string, payload?: object) =>
    ctx.request({ method, url, token: admin.token, ...(payload && { payload }) });
  const policy = await call('POST', '/v1/sla-policies', {
    name: 'First answer in an hour',
    conditions: { all: [{ field: 'department_id', operator: 'is', value: support }] },
    targets: { normal: { first_answer: { minutes: 60, business: false } } },
    warn_before_minutes: 10,
  });
  t.equal(policy.statusCode, 201, 'policy created');
  const created = await call('POST', '/v1/tickets', {
    subject: 'Where is my parcel?',
    contact: { email: 'late@example.com' },
    message: { body: 'I ordered last week.' },
    department_id: support,
  });
  t.equal(created.statusCode, 201, 'ticket created');
  const ticket = created.json();
  let cursor = (await call('GET', '/v1/exports/tickets')).headers['export-next-cursor'] as string;
  const pull = async () => {
    const res = await call('GET', `/v1/exports/tickets?cursor=${cursor}`);
    t.equal(res.statusCode, 200, 'exported');
    cursor = res.headers['export-next-cursor'] as string;
    return lines(res.body) as unknown as {
      id: string;
      updated_at: string;
      sla: { breached: boolean } | null;
    }[];
  };
  t.same(await pull(), [], 'nothing changed since the cursor');

  await setClock(ctx.db, '2026-11-27T10:55:00Z');
  t.ok((await fireSlaTimers(ctx.db)) >= 1, 'the warning fired');
  const warned = await pull();
  t.same(
    warned.map((x) => [x.id, x.updated_at, x.sla?.breached]),
    [[ticket.id, ticket.updated_at, false]],
    'the warned ticket comes again, its updated_at as it was',
  );

  await setClock(ctx.db, '2026-11-27T11:05:00Z');
  t.ok((await fireSlaTimers(ctx.db)) >= 1, 'the breach fired');
  const breached = await pull();
  t.same(
    breached.map((x) => [x.id, x.updated_at, x.sla?.breached]),
    [[ticket.id, ticket.updated_at, true]],
    'the breached ticket comes again, breached',
  );
  t.same(await pull(), [], 'once');

  // A new policy elsewhere: every live ticket's clock is planned again, and this one's comes out
  // as it was. Nothing an export shows changed, so the ticket does not come again.
  const billing = await makeDepartment(ctx.db, 'Billing');
  const elsewhere = await call('POST', '/v1/sla-policies', {
    name: 'Billing',
    conditions: { all: [{ field: 'department_id', operator: 'is', value: billing }] },
    targets: { normal: { first_answer: { minutes: 60, business: false } } },
  });
  t.equal(elsewhere.statusCode, 201, 'policy created');
  t.ok((await fireSlaTimers(ctx.db)) >= 1, 'the ticket was planned again');
  t.same(await pull(), [], 'a re-plan that changes nothing exports nothing');

  // A call recorded on the ticket: its record is history, so the ticket comes again, once.
  const call_ = await call('POST', '/v1/calls', {
    ticket_id: ticket.id,
    direction: 'inbound',
    outcome: 'missed',
    from_number: '+420601000222',
    started_at: '2026-11-27T11:00:00Z',
  });
  t.equal(call_.statusCode, 201, 'call recorded');
  t.same(
    (await pull()).map((x) => x.id),
    [ticket.id],
    'the ticket with its call',
  );
  t.same(await pull(), [], 'once');
});
