import t from 'tap';
import type { Db } from '../src/db/database.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

const GHOST = '00000000-0000-4000-8000-000000000000';

async function counts(db: Db) {
  const n = async (table: 'tickets' | 'contacts' | 'ticket_messages' | 'ticket_events') =>
    Number(
      (
        await db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    tickets: await n('tickets'),
    contacts: await n('contacts'),
    messages: await n('ticket_messages'),
    events: await n('ticket_events'),
  };
}

const selectable = (db: Db, id: string, on = true) =>
  db.updateTable('departments').set({ selectable_on_contact_form: on }).where('id', '=', id).execute();

t.test('the public contact form', async (t) => {
  const ctx = await buildTestApp(t, { PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '100000' });
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const billing = await makeDepartment(ctx.db, 'Billing');
  const returns = await makeDepartment(ctx.db, 'returns');
  const internal = await makeDepartment(ctx.db, 'Internal');
  await selectable(ctx.db, billing);
  await selectable(ctx.db, returns);

  const form = (payload: unknown, headers: Record<string, string> = {}) =>
    ctx.request({ method: 'POST', url: '/v1/public/tickets', payload: payload as object, headers });
  const valid = {
    name: 'Jane Doe',
    email: 'jane@example.com',
    subject: '  Parcel arrived broken ',
    message: 'My order 5521 arrived broken.',
    department_id: billing,
  };

  await t.test(
    'lists the selectable departments by name, id, name and availability now, without credentials',
    async (t) => {
      const res = await ctx.request({ method: 'GET', url: '/v1/public/departments' });
      t.equal(res.statusCode, 200);
      // No schedule anywhere: always open, every channel available.
      const always = {
        open: true,
        next_change: null,
        available: { chat: true, phone: true, messaging: true },
      };
      t.same(res.json(), {
        data: [
          { id: billing, name: 'Billing', ...always },
          { id: returns, name: 'returns', ...always },
        ],
      });
      const garbage = await ctx.request({
        method: 'GET',
        url: '/v1/public/departments',
        headers: { authorization: 'Bearer not-a-token' },
      });
      t.equal(garbage.statusCode, 200, 'a made-up Authorization header does not matter');
      t.same(garbage.json(), res.json());
    },
  );

  await t.test('a message opens a ticket and answers 202 with the reference only', async (t) => {
    const res = await form(valid);
    t.equal(res.statusCode, 202);
    const body = res.json();
    t.same(Object.keys(body).sort(), ['message', 'reference']);
    t.equal(body.message, 'received');
    t.match(body.reference, /^T-\d+$/);

    const ticket = await ctx.db
      .selectFrom('tickets')
      .selectAll()
      .where('number', '=', Number(body.reference.slice(2)))
      .executeTakeFirstOrThrow();
    t.match(ticket, {
      subject: 'Parcel arrived broken',
      channel: 'contact_form',
      status: 'new',
      priority: 'normal',
      department_id: billing,
      assignee_id: null,
    });
    const contact = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token: admin });
    t.match(contact.json().contact, { name: 'Jane Doe', email: 'jane@example.com' });

    const messages = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: admin,
    });
    t.match(messages.json().data, [
      {
        kind: 'customer',
        channel: 'contact_form',
        author_agent_id: null,
        author_contact_id: ticket.contact_id,
        body: valid.message,
      },
    ]);
    const history = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticket.id}/history`,
      token: admin,
    });
    const created = history.json().data.find((e: { type: string }) => e.type === 'created');
    t.match(created, {
      actor: { type: 'contact', agent_id: null, contact_id: ticket.contact_id },
      department_id: billing,
      data: { subject: 'Parcel arrived broken', status: 'new' },
    });
    t.notOk(
      history.json().data.some((e: { actor: { type: string } }) => e.actor.type !== 'contact'),
      'every event of the new ticket is the contact’s',
    );
  });

  await t.test('a returning sender is the same contact, and keeps the name on file', async (t) => {
    const before = await counts(ctx.db);
    const res = await form({
      ...valid,
      name: 'Someone Else',
      email: 'JANE@example.com',
      department_id: undefined,
      subject: 'Another one',
    });
    t.equal(res.statusCode, 202);
    const after = await counts(ctx.db);
    t.equal(after.tickets, before.tickets + 1);
    t.equal(after.contacts, before.contacts, 'no new contact');
    const ticket = await ctx.db
      .selectFrom('tickets')
      .selectAll()
      .where('number', '=', Number(res.json().reference.slice(2)))
      .executeTakeFirstOrThrow();
    t.equal(ticket.department_id, null, 'without a department the ticket is in none');
    const contact = await ctx.db
      .selectFrom('contacts')
      .selectAll()
      .where('id', '=', ticket.contact_id)
      .executeTakeFirstOrThrow();
    t.equal(contact.name, 'Jane Doe', 'the name on file is not changed by the form');
  });

  await t.test('unknown and unselectable departments answer the same 422 and create nothing', async (t) => {
    const before = await counts(ctx.db);
    const answers = [];
    for (const department_id of [internal, GHOST]) {
      const res = await form({ ...valid, email: 'new-sender@example.com', department_id });
      t.equal(res.statusCode, 422);
      t.match(res.headers['content-type'], /^application\/problem\+json/);
      const { request_id: _id, ...problem } = res.json();
      answers.push(problem);
    }
    t.equal(answers[0].code, 'department_not_selectable');
    t.same(answers[0], answers[1], 'the answer does not tell which');
    t.same(await counts(ctx.db), before, 'nothing created, not even the contact');
  });

  await t.test('bad, unknown and oversized fields answer 400 (or 413) and create nothing', async (t) => {
    const before = await counts(ctx.db);
    const cases: [unknown, string][] = [
      [{ ...valid, name: undefined }, 'body/name'],
      [{ ...valid, name: '' }, 'body/name'],
      [{ ...valid, name: '   ' }, 'body/name'],
      [{ ...valid, name: 'n'.repeat(201) }, 'body/name'],
      [{ ...valid, email: 'not-an-email' }, 'body/email'],
      [{ ...valid, email: `${'e'.repeat(250)}@example.com` }, 'body/email'],
      [{ ...valid, email: undefined }, 'body/email'],
      [{ ...valid, subject: '' }, 'body/subject'],
      [{ ...valid, subject: 's'.repeat(501) }, 'body/subject'],
      [{ ...valid, message: '' }, 'body/message'],
      [{ ...valid, message: 'm'.repeat(20_001) }, 'body/message'],
      [{ ...valid, message: 42 }, 'body/message'],
      [{ ...valid, department_id: 'billing' }, 'body/department_id'],
      [{ ...valid, department_id: null }, 'body/department_id'],
      [{ ...valid, priority: 'urgent' }, 'body/priority'],
      [{ ...valid, channel: 'api' }, 'body/channel'],
      [{ ...valid, assignee_id: GHOST }, 'body/assignee_id'],
      [[valid], 'body'],
    ];
    for (const [payload, field] of cases) {
      const res = await form(payload);
      t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 80));
      t.equal(res.json().code, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    const huge = await form({ ...valid, message: 'm'.repeat(300_000) });
    t.equal(huge.statusCode, 413, 'a body far beyond any valid form is refused before it is parsed');
    t.equal(huge.json().code, 'payload_too_large');
    const text = await form('name=Jane', { 'content-type': 'text/plain' });
    t.equal(text.statusCode, 415);
    // No Content-Type, no body: nothing to read the form from (it was a 500).
    const none = await ctx.request({ method: 'POST', url: '/v1/public/tickets' });
    t.equal(none.statusCode, 415, none.body);
    t.match(none.json(), { code: 'unsupported_media_type', detail: /\(none\)/ });
    t.same(await counts(ctx.db), before);
  });

  await t.test('no credentials needed; a made-up Authorization header does not matter', async (t) => {
    const res = await form({ ...valid, email: 'bob@example.com' }, { authorization: 'Bearer garbage' });
    t.equal(res.statusCode, 202);
    const other = await form({ ...valid, email: 'bob@example.com' }, { authorization: 'Basic Zm9vOmJhcg==' });
    t.equal(other.statusCode, 202);
  });
});

t.test('the contact form has a small budget per address', async (t) => {
  const ctx = await buildTestApp(t, { PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '2' });
  const dep = await makeDepartment(ctx.db);
  await selectable(ctx.db, dep);
  const submit = (authorization?: string, remoteAddress = '203.0.113.7') =>
    ctx.request({
      method: 'POST',
      url: '/v1/public/tickets',
      remoteAddress,
      headers: authorization ? { authorization } : {},
      payload: {
        name: 'Flood',
        email: 'flood@example.com',
        subject: 'Hi',
        message: 'Hi',
        department_id: dep,
      },
    });
  const codes = [];
  // Made-up tokens do not buy a fresh budget: the form counts per address only.
  for (const authorization of [undefined, 'Bearer one', 'Bearer two', 'Bearer three'])
    codes.push((await submit(authorization)).statusCode);
  t.same(codes, [202, 202, 429, 429]);
  const limited = await submit();
  t.equal(limited.statusCode, 429);
  t.match(limited.headers['content-type'], /^application\/problem\+json/);
  t.equal(limited.json().code, 'rate_limited');
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After in seconds');
  t.equal(limited.headers['ratelimit-limit'], '2');
  const tickets = await ctx.db
    .selectFrom('tickets')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  t.equal(Number(tickets.n), 2, 'refused requests created nothing');
  t.equal((await submit(undefined, '198.51.100.9')).statusCode, 202, 'another address has its own budget');

  const lists = [];
  for (let i = 0; i < 3; i++)
    lists.push(
      (await ctx.request({ method: 'GET', url: '/v1/public/departments', remoteAddress: '192.0.2.1' }))
        .statusCode,
    );
  t.same(lists, [200, 200, 429], 'the department list is limited the same way');
});
