import pg from 'pg';
import t, { type Test } from 'tap';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { installClock } from './helpers/clock.ts';
import { testDatabaseKind } from './helpers/database.ts';

// A creation by email opens its ticket in one statement when this process last read that no rule
// acts on creation, no SLA policy is active and the department follows no schedule
// (src/domains/tickets/one-statement.ts): the statement finds or makes the contact itself, and
// checks what it staked. These tests change each stake behind the process's back (through the
// API, which does not tell the creations' memory) and expect the next creation to see the
// change, as the long way does. The round trips are counted in round-trips.test.ts.

t.test('one-statement creations: the contact, and every stake read again when it moved', async (t) => {
  const ctx = await buildTestApp(t);
  await installClock(ctx.db, null);
  const department = await makeDepartment(ctx.db);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = async (method: 'POST' | 'PATCH' | 'DELETE' | 'GET', url: string, payload?: object) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  let n = 0;
  const create = async (email: string, name = 'Ada') => {
    const res = await api('POST', '/v1/tickets', {
      subject: `Question ${++n} about an order`,
      channel: 'email',
      contact: { email, name },
      message: { body: 'Where is it?' },
      department_id: department,
    });
    t.equal(res.statusCode, 201, res.body);
    return res.json();
  };
  // The first creation reads the stakes the long way; the ones after stake them.
  await create('first@example.com');
  await create('second@example.com');

  await t.test('a new customer gets a contact; a returning one keeps theirs', async (t) => {
    const opened = await create('Returning@Example.com', 'Grace Hopper');
    t.same(
      { name: opened.contact.name, email: opened.contact.email, phone: opened.contact.phone },
      { name: 'Grace Hopper', email: 'Returning@Example.com', phone: null },
      'a new contact holds what was given',
    );
    const contact = await api('GET', `/v1/contacts/${opened.contact.id}`);
    t.equal(contact.statusCode, 200, contact.body);
    t.equal(contact.json().name, 'Grace Hopper');
    const phoned = await api('PATCH', `/v1/contacts/${opened.contact.id}`, { phones: ['+44 20 7946 0000'] });
    t.equal(phoned.statusCode, 200, phoned.body);

    const again = await create('returning@example.COM', 'Somebody Else');
    t.equal(again.contact.id, opened.contact.id, 'the email, in any case, finds the contact');
    t.same(
      { name: again.contact.name, email: again.contact.email, phone: again.contact.phone },
      { name: 'Grace Hopper', email: 'Returning@Example.com', phone: '+442079460000' },
      'the ticket shows the contact as stored, not the name given',
    );
    const messages = await api('GET', `/v1/tickets/${again.id}/messages`);
    t.equal(messages.json().data[0].author_contact_id, opened.contact.id, 'the message is the contact’s');
    const history = await api('GET', `/v1/tickets/${again.id}/history`);
    t.same(
      history
        .json()
        .data.map((e: { type: string; actor: { type: string; contact_id: string } }) => [
          e.type,
          e.actor.type,
          e.actor.contact_id,
        ]),
      [
        ['created', 'contact', opened.contact.id],
        ['message_added', 'contact', opened.contact.id],
      ],
      'the history names the contact found',
    );
    const count = await ctx.db
      .selectFrom('contact_emails')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where((eb) => eb(eb.fn('lower', ['email']), '=', 'returning@example.com'))
      .executeTakeFirstOrThrow();
    t.equal(Number(count.n), 1, 'no second contact for the email');
  });

  await t.test('a rule on creation added meanwhile acts on the next creation', async (t) => {
    await create('warm-rules@example.com');
    const rule = await api('POST', '/v1/automation-rules', {
      name: 'Tag orders',
      triggers: ['ticket.created'],
      conditions: { all: [{ field: 'subject', operator: 'contains', value: 'order' }] },
      actions: [{ type: 'add_tags', tags: ['orders'] }],
    });
    t.equal(rule.statusCode, 201, rule.body);
    t.same((await create('ruled@example.com')).tags, ['orders'], 'the new rule acted');
    t.same((await create('ruled-again@example.com')).tags, ['orders'], 'and keeps acting');
    const deleted = await api('DELETE', `/v1/automation-rules/${rule.json().id}`);
    t.equal(deleted.statusCode, 204, deleted.body);
    t.same((await create('unruled@example.com')).tags, [], 'the deleted rule no longer acts');
    t.same((await create('unruled-again@example.com')).tags, []);
  });

  await t.test('an SLA policy made active meanwhile starts the next ticket’s clock', async (t) => {
    await create('warm-sla@example.com');
    const policy = await api('POST', '/v1/sla-policies', {
      name: 'One hour',
      conditions: { all: [{ field: 'department_id', operator: 'is', value: department }] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
    });
    t.equal(policy.statusCode, 201, policy.body);
    const clocked = await create('clocked@example.com');
    t.not(clocked.sla, null, 'the new policy applies');
    t.equal(clocked.sla?.policy_id, policy.json().id);
    const deleted = await api('DELETE', `/v1/sla-policies/${policy.json().id}`);
    t.equal(deleted.statusCode, 204, deleted.body);
    t.equal((await create('unclocked@example.com')).sla, null, 'no policy, no clock');
    t.equal((await create('unclocked-again@example.com')).sla, null);
  });

  await t.test('a schedule given to the department meanwhile decides working hours', async (t) => {
    await create('warm-hours@example.com');
    t.equal((await create('open@example.com')).created_in_working_hours, true, 'no schedule: always open');
    // Open one hour a week, an hour from now in UTC: closed now, whatever the day.
    const at = new Date(Date.now() + 3_600_000);
    const day = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'][
      at.getUTCDay()
    ];
    const hh = String(at.getUTCHours()).padStart(2, '0');
    const end = at.getUTCHours() === 23 ? '24:00' : `${String(at.getUTCHours() + 1).padStart(2, '0')}:00`;
    const schedule = await api('POST', '/v1/schedules', {
      name: 'One hour a week',
      time_zone: 'UTC',
      intervals: [{ day, start: `${hh}:00`, end }],
    });
    t.equal(schedule.statusCode, 201, schedule.body);
    const moved = await api('PATCH', `/v1/departments/${department}`, { schedule_id: schedule.json().id });
    t.equal(moved.statusCode, 200, moved.body);
    t.equal((await create('closed@example.com')).created_in_working_hours, false, 'the schedule is read');
    t.equal((await create('closed-again@example.com')).created_in_working_hours, false);
  });
});

/**
 * An app whose process has learned the stakes (two creations by email in one department, no rule,
 * policy or schedule), and `create`, a creation by email there with these fields.
 */
async function taughtApp(t: Test, fields: { subject: string; name: string; body: string }) {
  const ctx = await buildTestApp(t);
  const department = await makeDepartment(ctx.db);
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const create = (email: string) =>
    ctx.request({
      method: 'POST',
      url: '/v1/tickets',
      token,
      payload: {
        subject: fields.subject,
        contact: { email, name: fields.name },
        message: { body: fields.body },
        department_id: department,
      },
    });
  for (const email of ['warm-1@example.com', 'warm-2@example.com'])
    t.equal((await create(email)).statusCode, 201);
  return { ctx, create };
}

t.test(
  'concurrent one-statement creations for one new email end with one contact',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'PGlite has one connection: nothing runs concurrently'
        : false,
  },
  async (t) => {
    // The racers go the one-statement way.
    const { ctx, create } = await taughtApp(t, { subject: 'Racing', name: 'Racer', body: 'Me first.' });
    for (let round = 0; round < 3; round++) {
      const email = `race-${round}@example.com`;
      const all = await Promise.all(
        Array.from({ length: 8 }, (_, i) => create(i % 2 ? email.toUpperCase() : email)),
      );
      t.same(
        all.map((r) => r.statusCode),
        Array(8).fill(201),
        all.map((r) => r.body).join('\n'),
      );
      t.equal(new Set(all.map((r) => r.json().contact.id)).size, 1, `round ${round}: one contact for all`);
      const rows = await ctx.db
        .selectFrom('contact_emails')
        .select('contact_id')
        .where((eb) => eb(eb.fn('lower', ['email']), '=', email))
        .execute();
      t.equal(rows.length, 1, 'one email row');
      const strays = await ctx.db
        .selectFrom('contacts')
        .select('id')
        .where('name', '=', 'Racer')
        .where('id', 'not in', (eb) => eb.selectFrom('contact_emails').select('contact_id'))
        .execute();
      t.equal(strays.length, 0, 'no contact without its email left behind');
    }
  },
);

/** Sessions of this database waiting for a lock, asked on a connection of the test's own. */
async function lockWaiters(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`);
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

t.test(
  'a contact changed while a creation by its email waits for it: the ticket shows it changed',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'needs PostgreSQL: a second connection holds the contact while the creation waits; PGlite has one connection'
        : false,
  },
  async (t) => {
    // The creation below goes the one-statement way.
    const { ctx, create } = await taughtApp(t, { subject: 'Waiting', name: 'As given', body: 'Hello' });
    const url = ctx.database.url!;
    t.equal((await create('changing@example.com')).statusCode, 201);
    const contact = (await create('changing@example.com')).json().contact.id;

    // An update of the contact as updateContact makes it (FOR UPDATE, row, emails, phones).
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    t.teardown(() => holder.end());
    await holder.query('begin');
    await holder.query('select 1 from contacts where id = $1 for update', [contact]);
    await holder.query(`update contacts set name = 'Renamed', updated_at = now() where id = $1`, [contact]);
    await holder.query('delete from contact_emails where contact_id = $1', [contact]);
    await holder.query(
      `insert into contact_emails (contact_id, email, position)
       values ($1, 'first-now@example.com', 0), ($1, 'changing@example.com', 1)`,
      [contact],
    );
    await holder.query(
      `insert into contact_phones (contact_id, phone, position) values ($1, '+15550111', 0)`,
      [contact],
    );
    const created = create('changing@example.com');
    for (let i = 0; i < 200 && (await lockWaiters(url)) < 1; i++) await new Promise((r) => setTimeout(r, 25));
    t.equal(await lockWaiters(url), 1, 'the creation waits for the contact');
    await holder.query('commit');
    const res = await created;
    t.equal(res.statusCode, 201, res.body);
    t.same(
      res.json().contact,
      { id: contact, name: 'Renamed', email: 'first-now@example.com', phone: '+15550111' },
      'the contact as it is when the ticket is opened, not half of it',
    );
  },
);
