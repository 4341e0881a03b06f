import { sql } from 'kysely';
import t from 'tap';
import type { Db } from '../src/db/database.ts';
import { contactSummaries, normalisePhone, resolveContact } from '../src/domains/contacts/repository.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';

const GHOST = '00000000-0000-4000-8000-000000000000';

/** Everything the contacts domain stores, to prove a refused request changed nothing. */
async function snapshot(db: Db) {
  const [fields, contacts, emails, phones] = await Promise.all([
    db.selectFrom('contact_fields').selectAll().orderBy('id').execute(),
    db.selectFrom('contacts').selectAll().orderBy('id').execute(),
    db.selectFrom('contact_emails').selectAll().orderBy('email').execute(),
    db.selectFrom('contact_phones').selectAll().orderBy('phone').execute(),
  ]);
  return JSON.stringify({ fields, contacts, emails, phones });
}

let ticketSeq = 0;
async function makeTicket(
  db: Db,
  contactId: string,
  options: { department_id?: string | null; assignee_id?: string | null; created_at?: string } = {},
) {
  const row = await db
    .insertInto('tickets')
    .values({
      subject: `Ticket ${++ticketSeq}`,
      channel: 'email',
      status: 'new',
      priority: 'normal',
      contact_id: contactId,
      department_id: options.department_id ?? null,
      assignee_id: options.assignee_id ?? null,
      ...(options.created_at && { created_at: options.created_at }),
    })
    .returning(['id', 'number'])
    .executeTakeFirstOrThrow();
  return row;
}

t.test('normalisePhone', async (t) => {
  const cases: [string, string | null][] = [
    ['+1 (555) 010-0199', '+15550100199'],
    ['030.1234.5678', '03012345678'],
    ['1234', '1234'],
    ['123', null],
    ['+'.concat('1'.repeat(21)), null],
    ['555-CALL-NOW', null],
    ['++1234', null],
    ['12+34', null],
    ['', null],
  ];
  for (const [raw, expected] of cases) t.equal(normalisePhone(raw), expected, raw);
});

t.test('contacts', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: agentToken } = await agentWithToken(ctx);

  const post = (url: string, payload: unknown, token = admin) =>
    ctx.request({ method: 'POST', url, token, payload: payload as object });
  const patch = (url: string, payload: unknown, headers: Record<string, string> = {}, token = admin) =>
    ctx.request({ method: 'PATCH', url, token, headers, payload: payload as object });
  const get = (url: string, token = admin) => ctx.request({ method: 'GET', url, token });

  const field = async (payload: object) => {
    const res = await post('/v1/contact-fields', payload);
    if (res.statusCode !== 201) throw new Error(res.body);
    return res.json() as { id: string; key: string };
  };
  await field({ key: 'plan', label: 'Plan', type: 'choice', options: ['Free', 'Pro', 'Enterprise'] });
  await field({ key: 'customer_since', label: 'Customer since', type: 'date' });
  await field({ key: 'seats', label: 'Seats', type: 'number' });
  await field({ key: 'vip', label: 'VIP', type: 'boolean' });
  await field({ key: 'notes', label: 'Notes', type: 'text' });

  const contact = async (payload: object) => {
    const res = await post('/v1/contacts', payload);
    if (res.statusCode !== 201) throw new Error(res.body);
    return res.json() as { id: string; name: string; emails: string[]; phones: string[] };
  };

  await t.test('contact fields: define, list, get', async (t) => {
    const res = await post('/v1/contact-fields', {
      key: 'region',
      label: '  Region  ',
      type: 'choice',
      options: ['EU', 'US'],
    });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body, { key: 'region', label: 'Region', type: 'choice', options: ['EU', 'US'] });
    t.equal(res.headers.location, `/v1/contact-fields/${body.id}`);
    t.match(res.headers.etag, /^".+"$/);
    const one = await get(`/v1/contact-fields/${body.id}`, agentToken);
    t.equal(one.statusCode, 200, 'agents read field definitions');
    t.same(one.json(), body);
    t.equal(one.headers.etag, res.headers.etag);
    const text = await get(`/v1/contact-fields`, agentToken);
    t.same(
      text.json().data.map((f: { key: string }) => f.key),
      ['customer_since', 'notes', 'plan', 'region', 'seats', 'vip'],
      'sorted by key',
    );
    t.same(
      text.json().data.find((f: { key: string }) => f.key === 'notes').options,
      [],
      'no options unless choice',
    );
    const first = await get('/v1/contact-fields?limit=4');
    const second = await get(`/v1/contact-fields?limit=4&cursor=${first.json().next_cursor}`);
    t.same(
      [...first.json().data, ...second.json().data].map((f: { key: string }) => f.key),
      ['customer_since', 'notes', 'plan', 'region', 'seats', 'vip'],
    );
    t.equal(second.json().next_cursor, null);
  });

  await t.test('contact field mistakes answer 4xx and change nothing', async (t) => {
    const before = await snapshot(ctx.db);
    const cases: [unknown, number, string, string][] = [
      [{ label: 'x', type: 'text' }, 400, 'validation_failed', 'body/key'],
      [{ key: 'Plan2', label: 'x', type: 'text' }, 400, 'validation_failed', 'body/key'],
      [{ key: '2plan', label: 'x', type: 'text' }, 400, 'validation_failed', 'body/key'],
      [{ key: 'a-b', label: 'x', type: 'text' }, 400, 'validation_failed', 'body/key'],
      [{ key: `a${'b'.repeat(63)}`, label: 'x', type: 'text' }, 400, 'validation_failed', 'body/key'],
      [{ key: 'ok', label: '', type: 'text' }, 400, 'validation_failed', 'body/label'],
      [{ key: 'ok', label: '   ', type: 'text' }, 400, 'validation_failed', 'body/label'],
      [{ key: 'ok', label: 'x'.repeat(101), type: 'text' }, 400, 'validation_failed', 'body/label'],
      [{ key: 'ok', label: 'x', type: 'money' }, 400, 'validation_failed', 'body/type'],
      [{ key: 'ok', label: 'x', type: 'text', extra: 1 }, 400, 'validation_failed', 'body/extra'],
      [{ key: 'ok', label: 7, type: 'text' }, 400, 'validation_failed', 'body/label'],
      [{ key: 'ok', label: 'x', type: 'choice' }, 400, 'options_required', 'body/options'],
      [{ key: 'ok', label: 'x', type: 'text', options: ['a'] }, 400, 'options_not_allowed', 'body/options'],
      [{ key: 'ok', label: 'x', type: 'choice', options: [] }, 400, 'validation_failed', 'body/options'],
      [
        { key: 'ok', label: 'x', type: 'choice', options: ['a', 'a'] },
        400,
        'validation_failed',
        'body/options',
      ],
      [{ key: 'ok', label: 'x', type: 'choice', options: [''] }, 400, 'validation_failed', 'body/options/0'],
      [
        { key: 'ok', label: 'x', type: 'choice', options: ['o'.repeat(101)] },
        400,
        'validation_failed',
        'body/options/0',
      ],
      [
        { key: 'ok', label: 'x', type: 'choice', options: Array.from({ length: 101 }, (_, i) => `o${i}`) },
        400,
        'validation_failed',
        'body/options',
      ],
      [
        { key: 'ok', label: 'x', type: 'choice', options: [1, 2] },
        400,
        'validation_failed',
        'body/options/0',
      ],
      [{ key: 'plan', label: 'Again', type: 'text' }, 409, 'contact_field_key_taken', 'body/key'],
    ];
    for (const [payload, status, code, field] of cases) {
      const res = await post('/v1/contact-fields', payload);
      t.equal(res.statusCode, status, JSON.stringify(payload).slice(0, 80));
      t.equal(res.json().code, code);
      t.ok(
        res.json().errors?.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.equal(await snapshot(ctx.db), before);
  });

  await t.test('create a contact: trims the name, normalises phones, keeps custom fields', async (t) => {
    const res = await post('/v1/contacts', {
      name: '  Maria Keller ',
      emails: ['Maria.Keller@Example.com', 'maria@home.example'],
      phones: ['+49 (30) 1234-5678', '030.555.0100'],
      custom_fields: { plan: 'Pro', customer_since: '2024-02-29', seats: 12.5, vip: false, notes: '' },
    });
    t.equal(res.statusCode, 201);
    const body = res.json();
    t.match(body, {
      name: 'Maria Keller',
      emails: ['Maria.Keller@Example.com', 'maria@home.example'],
      phones: ['+493012345678', '0305550100'],
      custom_fields: { plan: 'Pro', customer_since: '2024-02-29', seats: 12.5, vip: false, notes: '' },
    });
    t.equal(res.headers.location, `/v1/contacts/${body.id}`);
    const one = await get(`/v1/contacts/${body.id}`, agentToken);
    t.same(one.json(), body);
    t.equal(one.headers.etag, res.headers.etag, 'same representation, same ETag');

    const emailOnly = await post('/v1/contacts', { emails: ['only@example.com'] }, agentToken);
    t.equal(emailOnly.statusCode, 201, 'agents create contacts; a name is optional');
    t.equal(emailOnly.json().name, '');
    const phoneOnly = await post('/v1/contacts', { phones: ['5550199'], custom_fields: { plan: null } });
    t.equal(phoneOnly.statusCode, 201);
    t.same(phoneOnly.json().custom_fields, {}, 'null on create is no value');
  });

  await t.test('contact mistakes answer 4xx with the offending field and change nothing', async (t) => {
    await contact({ name: 'Taken', emails: ['taken@example.com'], phones: ['+1 555 0100'] });
    const before = await snapshot(ctx.db);
    const cases: [unknown, number, string, string][] = [
      [{}, 400, 'contact_identity_required', 'body'],
      [{ name: '   ' }, 400, 'contact_identity_required', 'body'],
      [{ name: '', emails: [], phones: [] }, 400, 'contact_identity_required', 'body'],
      [{ name: 'x'.repeat(201) }, 400, 'validation_failed', 'body/name'],
      [{ name: 'x'.repeat(100_000) }, 400, 'validation_failed', 'body/name'],
      [{ name: 42 }, 400, 'validation_failed', 'body/name'],
      [{ name: null }, 400, 'validation_failed', 'body/name'],
      [{ name: 'x', owner: 'me' }, 400, 'validation_failed', 'body/owner'],
      [{ emails: 'a@example.com' }, 400, 'validation_failed', 'body/emails'],
      [{ emails: ['not-an-email'] }, 400, 'validation_failed', 'body/emails/0'],
      [{ emails: [42] }, 400, 'validation_failed', 'body/emails/0'],
      [{ emails: [`${'a'.repeat(250)}@example.com`] }, 400, 'validation_failed', 'body/emails/0'],
      [
        { emails: Array.from({ length: 21 }, (_, i) => `e${i}@example.com`) },
        400,
        'validation_failed',
        'body/emails',
      ],
      [{ emails: ['Twice@example.com', 'twice@EXAMPLE.com'] }, 400, 'duplicate_email', 'body/emails/1'],
      [{ phones: ['123'] }, 400, 'invalid_phone', 'body/phones/0'],
      [{ phones: ['555-CALL-NOW'] }, 400, 'invalid_phone', 'body/phones/0'],
      [{ phones: ['1'.repeat(21)] }, 400, 'invalid_phone', 'body/phones/0'],
      [{ phones: ['1'.repeat(65)] }, 400, 'validation_failed', 'body/phones/0'],
      [{ phones: [5550100] }, 400, 'validation_failed', 'body/phones/0'],
      [{ phones: [''] }, 400, 'validation_failed', 'body/phones/0'],
      [{ phones: ['+1 555 0199', '+1-555-0199'] }, 400, 'duplicate_phone', 'body/phones/1'],
      [
        { phones: Array.from({ length: 21 }, (_, i) => `55501${i}`) },
        400,
        'validation_failed',
        'body/phones',
      ],
      [{ name: 'x', custom_fields: [] }, 400, 'validation_failed', 'body/custom_fields'],
      [
        { name: 'x', custom_fields: { notes: { a: 1 } } },
        400,
        'validation_failed',
        'body/custom_fields/notes',
      ],
      [{ name: 'x', custom_fields: { notes: ['a'] } }, 400, 'validation_failed', 'body/custom_fields/notes'],
      [
        { name: 'x', custom_fields: { colour: 'red' } },
        422,
        'unknown_custom_field',
        'body/custom_fields/colour',
      ],
      [{ name: 'x', custom_fields: { 'a/b': null } }, 422, 'unknown_custom_field', 'body/custom_fields/a~1b'],
      [{ name: 'x', custom_fields: { notes: 42 } }, 400, 'invalid_custom_field', 'body/custom_fields/notes'],
      [
        { name: 'x', custom_fields: { notes: 'n'.repeat(10_001) } },
        400,
        'invalid_custom_field',
        'body/custom_fields/notes',
      ],
      [
        { name: 'x', custom_fields: { seats: '12' } },
        400,
        'invalid_custom_field',
        'body/custom_fields/seats',
      ],
      [
        { name: 'x', custom_fields: { seats: true } },
        400,
        'invalid_custom_field',
        'body/custom_fields/seats',
      ],
      [
        { name: 'x', custom_fields: { customer_since: '2023-02-29' } },
        400,
        'invalid_custom_field',
        'body/custom_fields/customer_since',
      ],
      [
        { name: 'x', custom_fields: { customer_since: '2024-1-5' } },
        400,
        'invalid_custom_field',
        'body/custom_fields/customer_since',
      ],
      [
        { name: 'x', custom_fields: { customer_since: '2024-01-05T00:00:00Z' } },
        400,
        'invalid_custom_field',
        'body/custom_fields/customer_since',
      ],
      [
        { name: 'x', custom_fields: { customer_since: 20240105 } },
        400,
        'invalid_custom_field',
        'body/custom_fields/customer_since',
      ],
      [{ name: 'x', custom_fields: { vip: 'true' } }, 400, 'invalid_custom_field', 'body/custom_fields/vip'],
      [{ name: 'x', custom_fields: { vip: 1 } }, 400, 'invalid_custom_field', 'body/custom_fields/vip'],
      [{ name: 'x', custom_fields: { plan: 'pro' } }, 400, 'invalid_custom_field', 'body/custom_fields/plan'],
      [{ name: 'x', custom_fields: { plan: 1 } }, 400, 'invalid_custom_field', 'body/custom_fields/plan'],
      [{ emails: ['TAKEN@example.COM'] }, 409, 'contact_email_taken', 'body/emails/0'],
      [
        { emails: ['new@example.com'], phones: ['+1 (555) 0100'] },
        409,
        'contact_phone_taken',
        'body/phones/0',
      ],
      [[{ name: 'x' }], 400, 'validation_failed', 'body'],
    ];
    for (const [payload, status, code, field] of cases) {
      const res = await post('/v1/contacts', payload, agentToken);
      t.equal(res.statusCode, status, JSON.stringify(payload).slice(0, 80));
      t.equal(res.json().code, code, JSON.stringify(payload).slice(0, 80));
      t.ok(
        res.json().errors?.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    const infinite = await ctx.request({
      method: 'POST',
      url: '/v1/contacts',
      token: admin,
      headers: { 'content-type': 'application/json' },
      payload: '{"name": "x", "custom_fields": {"seats": 1e400}}',
    });
    t.equal(infinite.statusCode, 400, 'a number too large for a double is not finite');
    t.equal(infinite.json().code, 'invalid_custom_field');
    t.equal(await snapshot(ctx.db), before);
  });

  await t.test('update: fields, lists replaced, custom fields merged; If-Match honoured', async (t) => {
    const c = await contact({
      name: 'Ann',
      emails: ['ann@example.com'],
      phones: ['5550001'],
      custom_fields: { plan: 'Free', vip: true, seats: 3 },
    });
    const etag = String((await get(`/v1/contacts/${c.id}`)).headers.etag);
    const ok = await patch(
      `/v1/contacts/${c.id}`,
      {
        name: ' Ann Lee ',
        emails: ['ANN@example.com', 'ann.lee@example.com'],
        custom_fields: { plan: 'Pro', vip: null, notes: 'prefers email' },
      },
      { 'if-match': etag },
      agentToken,
    );
    t.equal(ok.statusCode, 200, 'agents update contacts');
    t.match(ok.json(), {
      name: 'Ann Lee',
      emails: ['ANN@example.com', 'ann.lee@example.com'],
      phones: ['5550001'],
    });
    t.same(ok.json().custom_fields, { plan: 'Pro', seats: 3, notes: 'prefers email' });
    t.not(ok.headers.etag, etag, 'new version, new ETag');

    const other = await contact({ emails: ['other@example.com'], phones: ['5550002'] });
    const before = await snapshot(ctx.db);
    const stale = await patch(`/v1/contacts/${c.id}`, { name: 'Nope' }, { 'if-match': etag });
    t.equal(stale.statusCode, 412);
    t.equal(stale.json().code, 'stale_version');
    const mistakes: [unknown, number, string][] = [
      [{}, 400, 'validation_failed'],
      [{ name: 5 }, 400, 'validation_failed'],
      [{ id: c.id }, 400, 'validation_failed'],
      [{ emails: ['Other@Example.com'] }, 409, 'contact_email_taken'],
      [{ phones: ['555-0002'] }, 409, 'contact_phone_taken'],
      [{ phones: ['12'] }, 400, 'invalid_phone'],
      [{ emails: ['a@example.com', 'A@example.com'] }, 400, 'duplicate_email'],
      [{ name: '', emails: [], phones: [] }, 400, 'contact_identity_required'],
      [{ custom_fields: { colour: null } }, 422, 'unknown_custom_field'],
      [{ custom_fields: { seats: 'many' } }, 400, 'invalid_custom_field'],
    ];
    for (const [payload, status, code] of mistakes) {
      const res = await patch(`/v1/contacts/${c.id}`, payload);
      t.equal(res.statusCode, status, JSON.stringify(payload));
      t.equal(res.json().code, code, JSON.stringify(payload));
    }
    t.equal(await snapshot(ctx.db), before, 'refused updates changed nothing');

    const clear = await patch(`/v1/contacts/${c.id}`, { name: '', phones: [] }, { 'if-match': '*' });
    t.equal(clear.statusCode, 200, 'emails alone keep the contact identifiable');
    t.same(clear.json().phones, []);
    const own = await patch(`/v1/contacts/${other.id}`, { phones: ['555 0002', '5550001'] });
    t.equal(own.statusCode, 200, "a phone another contact gave up is free, and a contact's own is kept");
    t.same(own.json().phones, ['5550002', '5550001']);
  });

  await t.test('unknown, malformed ids and read-only tokens', async (t) => {
    for (const [method, url] of [
      ['GET', `/v1/contacts/${GHOST}`],
      ['PATCH', `/v1/contacts/${GHOST}`],
      ['DELETE', `/v1/contacts/${GHOST}`],
      ['GET', `/v1/contacts/${GHOST}/tickets`],
    ] as const) {
      const res = await ctx.request({
        method,
        url,
        token: admin,
        ...(method === 'PATCH' && { payload: { name: 'x' } }),
      });
      t.equal(res.statusCode, 404, `${method} ${url}`);
      t.equal(res.json().code, 'contact_not_found');
    }
    for (const [method, url] of [
      ['GET', `/v1/contact-fields/${GHOST}`],
      ['PATCH', `/v1/contact-fields/${GHOST}`],
      ['DELETE', `/v1/contact-fields/${GHOST}`],
    ] as const) {
      const res = await ctx.request({
        method,
        url,
        token: admin,
        ...(method === 'PATCH' && { payload: { label: 'x' } }),
      });
      t.equal(res.statusCode, 404, `${method} ${url}`);
      t.equal(res.json().code, 'contact_field_not_found');
    }
    for (const url of [
      '/v1/contacts/not-a-uuid',
      '/v1/contacts/not-a-uuid/tickets',
      '/v1/contact-fields/42',
    ]) {
      const res = await get(url);
      t.equal(res.statusCode, 400, url);
      t.equal(res.json().errors[0].field, 'params/id');
    }
    const created = await post('/v1/api-tokens', { name: 'reader', scopes: ['read'] }, agentToken);
    const readOnly = created.json().secret as string;
    t.equal((await get('/v1/contacts', readOnly)).statusCode, 200);
    const before = await snapshot(ctx.db);
    const write = await post('/v1/contacts', { name: 'Via token' }, readOnly);
    t.equal(write.statusCode, 403);
    t.equal(write.json().code, 'insufficient_scope');
    t.equal(await snapshot(ctx.db), before);
  });

  await t.test('search by name, email and phone; sorted by name; cursor pages', async (t) => {
    await contact({ name: 'Zoë Search', emails: ['zoe.s@Mail.example'], phones: ['+44 20 7946 0958'] });
    await contact({ name: 'Asearch_under', emails: ['under@example.com'] });
    await contact({ name: 'Searchless', phones: ['+44 20 7946 0000'] });
    const names = async (q: string) =>
      (await get(`/v1/contacts?q=${encodeURIComponent(q)}`, agentToken))
        .json()
        .data.map((c: { name: string }) => c.name);
    t.same(await names('SEARCH'), ['Asearch_under', 'Searchless', 'Zoë Search'], 'name, ignoring case');
    t.same(await names('zoe.S@mail'), ['Zoë Search'], 'email, ignoring case');
    t.same(await names('7946 0958'), ['Zoë Search'], 'phone, ignoring punctuation');
    t.same(await names('(20) 7946-'), ['Searchless', 'Zoë Search']);
    t.same(await names('h_u'), ['Asearch_under'], '_ is literal');
    t.same(await names('%'), [], '% is literal');
    t.same(await names('\\'), []);

    for (let i = 0; i < 7; i++) await contact({ name: `Pager ${i % 2 === 0 ? 'even' : 'odd'} ${i}` });
    await contact({ name: 'pager even 0' });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/contacts?q=pager&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await get(url);
      t.equal(res.statusCode, 200);
      seen.push(...res.json().data.map((c: { name: string }) => c.name));
      cursor = res.json().next_cursor;
    } while (cursor);
    t.equal(seen.length, 8);
    t.same(
      seen.map((n) => n.toLowerCase()),
      [...seen.map((n) => n.toLowerCase())].sort(),
      'sorted by name ignoring case',
    );
    t.same(new Set(seen).size, 8, 'no repeats');
    const first = await get('/v1/contacts?q=pager&limit=3');
    const foreign = await get(`/v1/contacts?limit=3&cursor=${first.json().next_cursor}`);
    t.equal(foreign.statusCode, 400);
    t.equal(foreign.json().code, 'invalid_cursor');
    for (const bad of ['limit=0', 'limit=201', 'q=', `q=${'x'.repeat(255)}`, 'sort=name']) {
      t.equal((await get(`/v1/contacts?${bad}`)).statusCode, 400, bad);
    }
  });

  await t.test('delete: admins only, If-Match, refused while tickets refer to the contact', async (t) => {
    const c = await contact({ name: 'Leaving', emails: ['leaving@example.com'], phones: ['5559999'] });
    const busy = await contact({ name: 'Busy' });
    await makeTicket(ctx.db, busy.id);
    await makeTicket(ctx.db, busy.id);
    const before = await snapshot(ctx.db);
    const byAgent = await ctx.request({ method: 'DELETE', url: `/v1/contacts/${c.id}`, token: agentToken });
    t.equal(byAgent.statusCode, 403);
    t.equal(byAgent.json().code, 'admin_required');
    const stale = await ctx.request({
      method: 'DELETE',
      url: `/v1/contacts/${c.id}`,
      token: admin,
      headers: { 'if-match': '"nope"' },
    });
    t.equal(stale.statusCode, 412);
    const blocked = await ctx.request({ method: 'DELETE', url: `/v1/contacts/${busy.id}`, token: admin });
    t.equal(blocked.statusCode, 409);
    t.equal(blocked.json().code, 'contact_has_tickets');
    t.same(blocked.json().blockers, [
      { kind: 'tickets', count: 2, detail: '2 tickets belong to the contact' },
    ]);
    t.equal(await snapshot(ctx.db), before, 'refused deletions changed nothing');

    const etag = String((await get(`/v1/contacts/${c.id}`)).headers.etag);
    const res = await ctx.request({
      method: 'DELETE',
      url: `/v1/contacts/${c.id}`,
      token: admin,
      headers: { 'if-match': etag },
    });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal((await get(`/v1/contacts/${c.id}`)).statusCode, 404);
    const leftovers = await ctx.db
      .selectFrom('contact_emails')
      .select('email')
      .where('email', '=', 'leaving@example.com')
      .execute();
    t.same(leftovers, [], 'its emails went with it');
    t.equal(
      (await post('/v1/contacts', { emails: ['Leaving@example.com'] })).statusCode,
      201,
      'and are free',
    );
  });

  await t.test('contact fields: who may change what', async (t) => {
    const tier = await field({ key: 'tier', label: 'Tier', type: 'choice', options: ['Gold', 'Silver'] });
    const before = await snapshot(ctx.db);
    const create = await post('/v1/contact-fields', { key: 'nope', label: 'Nope', type: 'text' }, agentToken);
    t.equal(create.statusCode, 403);
    t.equal(create.json().code, 'admin_required');
    t.equal((await patch(`/v1/contact-fields/${tier.id}`, { label: 'x' }, {}, agentToken)).statusCode, 403);
    const del = await ctx.request({
      method: 'DELETE',
      url: `/v1/contact-fields/${tier.id}`,
      token: agentToken,
    });
    t.equal(del.statusCode, 403);
    t.equal(await snapshot(ctx.db), before);
  });

  await t.test('contact fields: changes that would strand values are refused', async (t) => {
    const tier = await field({ key: 'tier2', label: 'Tier', type: 'choice', options: ['Gold', 'Silver'] });
    const url = `/v1/contact-fields/${tier.id}`;
    const etag = String((await get(url)).headers.etag);

    // no values yet: key and type may change
    const renamed = await patch(url, { key: 'loyalty', type: 'choice' }, { 'if-match': etag });
    t.equal(renamed.statusCode, 200);
    t.equal(renamed.json().key, 'loyalty');
    t.equal((await patch(url, { label: 'x' }, { 'if-match': etag })).statusCode, 412, 'stale ETag');

    const member = await contact({ name: 'Gold member', custom_fields: { loyalty: 'Gold' } });
    const before = await snapshot(ctx.db);
    const refusals: [unknown, number, string][] = [
      [{ type: 'text' }, 409, 'contact_field_in_use'],
      [{ key: 'loyalty_tier' }, 409, 'contact_field_in_use'],
      [{ options: ['Silver', 'Bronze'] }, 409, 'contact_field_option_in_use'],
      [{ key: 'Loyalty' }, 400, 'validation_failed'],
      [{ options: [] }, 400, 'validation_failed'],
      [{ type: 'list' }, 400, 'validation_failed'],
      [{}, 400, 'validation_failed'],
      [{ label: 'x', colour: 'red' }, 400, 'validation_failed'],
    ];
    for (const [payload, status, code] of refusals) {
      const res = await patch(url, payload);
      t.equal(res.statusCode, status, JSON.stringify(payload));
      t.equal(res.json().code, code, JSON.stringify(payload));
    }
    const inUse = await patch(url, { type: 'text' });
    t.same(inUse.json().blockers, [
      { kind: 'contacts', count: 1, detail: '1 contact has a value for the field' },
    ]);
    t.equal(await snapshot(ctx.db), before, 'refused changes changed nothing');

    const relabelled = await patch(url, { label: 'Loyalty tier', options: ['Gold', 'Platinum'] });
    t.equal(relabelled.statusCode, 200, 'label and options that keep every value may change');
    t.same(relabelled.json().options, ['Gold', 'Platinum']);
    const platinum = await patch(`/v1/contacts/${member.id}`, { custom_fields: { loyalty: 'Platinum' } });
    t.equal(platinum.statusCode, 200);
    const silver = await patch(`/v1/contacts/${member.id}`, { custom_fields: { loyalty: 'Silver' } });
    t.equal(silver.statusCode, 400, 'a removed option is refused');

    const text = await field({ key: 'nickname', label: 'Nickname', type: 'text' });
    const taken = await patch(`/v1/contact-fields/${text.id}`, { key: 'plan' });
    t.equal(taken.statusCode, 409);
    t.equal(taken.json().code, 'contact_field_key_taken');
    const noOptions = await patch(`/v1/contact-fields/${text.id}`, { options: ['a'] });
    t.equal(noOptions.statusCode, 400);
    t.equal(noOptions.json().code, 'options_not_allowed');
    const needsOptions = await patch(`/v1/contact-fields/${text.id}`, { type: 'choice' });
    t.equal(needsOptions.statusCode, 400);
    t.equal(needsOptions.json().code, 'options_required');
    const toChoice = await patch(`/v1/contact-fields/${text.id}`, { type: 'choice', options: ['A'] });
    t.equal(toChoice.statusCode, 200);
    const back = await patch(`/v1/contact-fields/${text.id}`, { type: 'boolean' });
    t.equal(back.statusCode, 200);
    t.same(back.json().options, [], 'options go when the field stops being a choice');
  });

  await t.test('deleting a field removes its values from every contact', async (t) => {
    const shoe = await field({ key: 'shoe_size', label: 'Shoe size', type: 'number' });
    const a = await contact({ name: 'Foot A', custom_fields: { shoe_size: 42, vip: true } });
    const b = await contact({ name: 'Foot B', custom_fields: { shoe_size: 38 } });
    const untouched = await contact({ name: 'No feet', custom_fields: { vip: false } });
    const untouchedEtag = (await get(`/v1/contacts/${untouched.id}`)).headers.etag;
    const stale = await ctx.request({
      method: 'DELETE',
      url: `/v1/contact-fields/${shoe.id}`,
      token: admin,
      headers: { 'if-match': '"old"' },
    });
    t.equal(stale.statusCode, 412);
    const res = await ctx.request({ method: 'DELETE', url: `/v1/contact-fields/${shoe.id}`, token: admin });
    t.equal(res.statusCode, 204);
    t.same((await get(`/v1/contacts/${a.id}`)).json().custom_fields, { vip: true });
    t.same((await get(`/v1/contacts/${b.id}`)).json().custom_fields, {});
    t.equal((await get(`/v1/contacts/${untouched.id}`)).headers.etag, untouchedEtag, 'others untouched');
    t.equal((await get(`/v1/contact-fields/${shoe.id}`)).statusCode, 404);
    const again = await post('/v1/contacts', { name: 'Foot C', custom_fields: { shoe_size: 40 } });
    t.equal(again.statusCode, 422, 'the key is unknown now');
  });

  await t.test(
    'contact fields that active automation rules read cannot go or change under them',
    async (t) => {
      const segment = await field({
        key: 'segment',
        label: 'Segment',
        type: 'choice',
        options: ['Retail', 'Wholesale', 'Partner'],
      });
      const region = await field({ key: 'region_code', label: 'Region code', type: 'text' });
      const rule = async (name: string, conditions: object, active = true) => {
        const res = await post('/v1/automation-rules', {
          name,
          active,
          triggers: ['ticket.created'],
          conditions,
          actions: [{ type: 'add_tags', tags: ['routed'] }],
        });
        if (res.statusCode !== 201) throw new Error(res.body);
        return res.json() as { id: string };
      };
      const wholesale = await rule('Wholesale routing', {
        all: [{ field: 'contact.custom.segment', operator: 'is_one_of', value: ['Wholesale', 'Partner'] }],
      });
      await rule('Regional routing', {
        any: [
          { field: 'channel', operator: 'is', value: 'email' },
          { not: { field: 'contact.custom.region_code', operator: 'is_empty' } },
        ],
      });
      const dormant = await rule(
        'Retail routing (off)',
        { all: [{ field: 'contact.custom.segment', operator: 'is', value: 'Retail' }] },
        false,
      );
      const del = (id: string) =>
        ctx.request({ method: 'DELETE', url: `/v1/contact-fields/${id}`, token: admin });
      const rulesBefore = JSON.stringify(
        await ctx.db.selectFrom('automation_rules').selectAll().orderBy('id').execute(),
      );
      const before = await snapshot(ctx.db);

      const refused = await del(segment.id);
      t.equal(refused.statusCode, 409);
      t.equal(refused.json().code, 'contact_field_in_use');
      t.same(
        refused.json().blockers,
        [
          {
            kind: 'automation_rules',
            count: 1,
            detail: '1 automation rule refers to the field: "Wholesale routing"',
          },
        ],
        'the active rule is named; the inactive one blocks nothing',
      );
      const renamed = await patch(`/v1/contact-fields/${segment.id}`, { key: 'tier_segment' });
      t.equal(renamed.statusCode, 409);
      t.equal(renamed.json().code, 'contact_field_in_use');
      t.same(
        renamed.json().blockers.map((b: { kind: string }) => b.kind),
        ['automation_rules'],
        'no contact has a value',
      );
      const retyped = await patch(`/v1/contact-fields/${region.id}`, { type: 'number' });
      t.equal(retyped.statusCode, 409, 'a leaf deep in the tree counts');
      t.match(retyped.json().blockers[0].detail, /"Regional routing"/);
      const dropped = await patch(`/v1/contact-fields/${segment.id}`, { options: ['Retail', 'Wholesale'] });
      t.equal(dropped.statusCode, 409, 'an option a rule compares with stays');
      t.equal(dropped.json().code, 'contact_field_option_in_use');
      t.same(dropped.json().blockers, [
        {
          kind: 'automation_rules',
          count: 1,
          detail: '1 automation rule refers to an option this change removes: "Wholesale routing"',
        },
      ]);
      t.equal(await snapshot(ctx.db), before, 'refusals changed no field and no contact');
      t.equal(
        JSON.stringify(await ctx.db.selectFrom('automation_rules').selectAll().orderBy('id').execute()),
        rulesBefore,
        'nor any rule',
      );

      const unused = await patch(`/v1/contact-fields/${segment.id}`, {
        options: ['Retail', 'Wholesale', 'Partner', 'Reseller'],
      });
      t.equal(unused.statusCode, 200, 'adding an option is always fine');
      t.equal(
        (await patch(`/v1/contact-fields/${segment.id}`, { options: ['Retail', 'Wholesale', 'Partner'] }))
          .statusCode,
        200,
        'so is dropping one that no rule names (the inactive rule names Retail, which stays)',
      );
      // Rules compare choices folded, as validation accepts them: a change of case drops nothing,
      // and a rule that typed the option in lower case still holds it.
      const typed = await rule('Retail, as typed', {
        all: [{ field: 'contact.custom.segment', operator: 'is', value: 'retail' }],
      });
      const recased = await patch(`/v1/contact-fields/${segment.id}`, {
        options: ['RETAIL', 'Wholesale', 'Partner'],
      });
      t.equal(recased.statusCode, 200, `a change of case only: ${recased.body}`);
      const dropRetail = await patch(`/v1/contact-fields/${segment.id}`, {
        options: ['Wholesale', 'Partner'],
      });
      t.equal(dropRetail.statusCode, 409);
      t.match(dropRetail.json().blockers[0].detail, /"Retail, as typed"/);
      t.equal((await patch(`/v1/automation-rules/${typed.id}`, { active: false })).statusCode, 200);
      const off = await patch(`/v1/automation-rules/${wholesale.id}`, { active: false });
      t.equal(off.statusCode, 200);
      t.equal((await del(segment.id)).statusCode, 204, 'once no active rule reads it, the field goes');
      const revived = await patch(`/v1/automation-rules/${dormant.id}`, { active: true });
      t.equal(revived.statusCode, 422, 'a rule switched on is checked against the fields again');
      t.match(revived.json().errors, [{ message: /unknown contact field "segment"/ }]);
    },
  );

  await t.test("a contact's tickets: newest first, only those the caller may see", async (t) => {
    const mine = await makeDepartment(ctx.db, 'Contacts: mine');
    const theirs = await makeDepartment(ctx.db, 'Contacts: theirs');
    const { agent: member, token: memberToken } = await agentWithToken(ctx, {
      departments: [[mine, 'reader']],
    });
    const { token: outsider } = await agentWithToken(ctx, { departments: [[theirs, 'manager']] });
    const { token: loner } = await agentWithToken(ctx);
    const c = await contact({ name: 'Ticket holder' });
    const inMine = await makeTicket(ctx.db, c.id, {
      department_id: mine,
      created_at: '2026-01-01T10:00:00.000Z',
    });
    const inTheirs = await makeTicket(ctx.db, c.id, {
      department_id: theirs,
      created_at: '2026-01-02T10:00:00.000Z',
    });
    const assigned = await makeTicket(ctx.db, c.id, {
      department_id: theirs,
      assignee_id: member.id,
      created_at: '2026-01-03T10:00:00.000Z',
    });
    const unfiled = await makeTicket(ctx.db, c.id, { created_at: '2026-01-04T10:00:00.000Z' });
    const elsewhere = await contact({ name: 'Someone else' });
    await makeTicket(ctx.db, elsewhere.id, { created_at: '2026-01-05T10:00:00.000Z' });

    const ids = async (token: string) => {
      const res = await get(`/v1/contacts/${c.id}/tickets`, token);
      t.equal(res.statusCode, 200);
      return res.json().data.map((x: { id: string }) => x.id);
    };
    t.same(
      await ids(admin),
      [unfiled.id, assigned.id, inTheirs.id, inMine.id],
      'admins see all, newest first',
    );
    t.same(await ids(memberToken), [unfiled.id, assigned.id, inMine.id], 'department, assigned, unfiled');
    t.same(await ids(outsider), [unfiled.id, assigned.id, inTheirs.id]);
    t.same(await ids(loner), [unfiled.id], 'an agent in no department sees unfiled tickets only');

    const first = await get(`/v1/contacts/${c.id}/tickets?limit=2`);
    t.match(first.json().data[0], {
      id: unfiled.id,
      reference: `T-${unfiled.number}`,
      subject: String,
      channel: 'email',
      status: 'new',
      priority: 'normal',
      department_id: null,
      created_at: '2026-01-04T10:00:00.000Z',
    });
    const second = await get(`/v1/contacts/${c.id}/tickets?limit=2&cursor=${first.json().next_cursor}`);
    t.same(
      second.json().data.map((x: { id: string }) => x.id),
      [inTheirs.id, inMine.id],
    );
    t.equal(second.json().next_cursor, null);
    const foreign = await get(`/v1/contacts/${elsewhere.id}/tickets?cursor=${first.json().next_cursor}`);
    t.equal(foreign.statusCode, 400, "another contact's cursor is refused");
  });

  await t.test('changing a contact: owners, admins, and agents who may work all its tickets', async (t) => {
    // A contact's emails decide where its tickets' replies go and whose mail threads into them.
    const a = await makeDepartment(ctx.db, 'Contacts: A');
    const b = await makeDepartment(ctx.db, 'Contacts: B');
    const { agent: aSolverAgent, token: aSolver } = await agentWithToken(ctx, {
      departments: [[a, 'solver']],
    });
    const { token: aReader } = await agentWithToken(ctx, { departments: [[a, 'reader']] });
    const { token: loner } = await agentWithToken(ctx);
    const refused = async (token: string, id: string, why: string) => {
      const before = await snapshot(ctx.db);
      const res = await patch(
        `/v1/contacts/${id}`,
        { emails: ['mallory@evil.example'], name: 'Mallory' },
        {},
        token,
      );
      t.equal(res.statusCode, 403, `${why}: ${res.body}`);
      t.match(res.headers['content-type'], /application\/problem\+json/);
      t.equal(res.json().code, 'contact_shared_beyond_you', why);
      t.equal(await snapshot(ctx.db), before, `${why}: nothing changed`);
    };
    const allowed = async (token: string, id: string, why: string) => {
      const res = await patch(`/v1/contacts/${id}`, { name: `Renamed ${why}` }, {}, token);
      t.equal(res.statusCode, 200, `${why}: ${res.body}`);
      t.equal(res.json().name, `Renamed ${why}`);
    };

    // A customer of both A and B: no one of A may redirect B's replies.
    const shared = await contact({ name: 'Jane', emails: ['jane@customer.example'] });
    await makeTicket(ctx.db, shared.id, { department_id: a });
    await makeTicket(ctx.db, shared.id, { department_id: b });
    await refused(aSolver, shared.id, 'an A solver, the contact also in B');
    await refused(aReader, shared.id, 'an A reader');
    await refused(loner, shared.id, 'an agent in no department');
    const del = await ctx.request({ method: 'DELETE', url: `/v1/contacts/${shared.id}`, token: aSolver });
    t.equal(del.statusCode, 403, 'deleting stays for owners and admins');
    const byAdmin = await patch(`/v1/contacts/${shared.id}`, { emails: ['jane@new.example'] });
    t.equal(byAdmin.statusCode, 200, 'an admin may change every contact');
    t.same(byAdmin.json().emails, ['jane@new.example']);

    // Only A tickets (and a deleted one in B, which does not count): A's solver may, its reader not.
    const ofA = await contact({ name: 'Only A', emails: ['only-a@customer.example'] });
    await makeTicket(ctx.db, ofA.id, { department_id: a });
    const gone = await makeTicket(ctx.db, ofA.id, { department_id: b });
    await ctx.db.updateTable('tickets').set({ status: 'deleted' }).where('id', '=', gone.id).execute();
    await allowed(aSolver, ofA.id, 'a solver of every live ticket');
    await refused(aReader, ofA.id, 'a reader of its only ticket');
    // A B ticket assigned to A's solver is theirs to work; an unfiled ticket is every agent's.
    const assigned = await contact({ name: 'Assigned', emails: ['assigned@customer.example'] });
    await makeTicket(ctx.db, assigned.id, { department_id: b, assignee_id: aSolverAgent.id });
    await allowed(aSolver, assigned.id, 'the assignee');
    await refused(loner, assigned.id, 'not the assignee');
    const unfiled = await contact({ name: 'Unfiled', emails: ['unfiled@customer.example'] });
    await makeTicket(ctx.db, unfiled.id);
    await allowed(loner, unfiled.id, 'a ticket in no department');
    // No ticket at all: any agent whose token may write.
    const fresh = await contact({ name: 'Fresh' });
    await allowed(loner, fresh.id, 'no ticket');

    // A B ticket being created while A's solver changes the contact: the change waits for it,
    // sees it and is refused (it does not slip in between the check and the commit).
    const raced = await contact({ name: 'Raced', emails: ['raced@customer.example'] });
    await makeTicket(ctx.db, raced.id, { department_id: a });
    let change: ReturnType<typeof patch> | undefined;
    await ctx.db.transaction().execute(async (trx) => {
      await makeTicket(trx, raced.id, { department_id: b });
      change = patch(`/v1/contacts/${raced.id}`, { emails: ['mallory@evil.example'] }, {}, aSolver);
      await new Promise((r) => setTimeout(r, 300));
    });
    const racedAnswer = await change!;
    t.equal(racedAnswer.statusCode, 403, racedAnswer.body);
    t.same((await get(`/v1/contacts/${raced.id}`)).json().emails, ['raced@customer.example']);
  });

  await t.test('resolveContact: reuses by email or phone, creates otherwise', async (t) => {
    const known = await contact({ name: 'Known', emails: ['known@example.com'], phones: ['+1 555 7000'] });
    const resolveSeen = (input: Parameters<typeof resolveContact>[1]) =>
      ctx.db.transaction().execute((trx) => resolveContact(trx, input));
    const resolve = async (input: Parameters<typeof resolveContact>[1]) => (await resolveSeen(input)).id;
    // The statement also reads what the ticket's rules need next: their key and the contact.
    const { rules_key } = await ctx.db
      .selectFrom('automation_rules_state')
      .select('rules_key')
      .executeTakeFirstOrThrow();
    const found = await resolveSeen({ email: 'KNOWN@example.com', name: 'Ignored' });
    // The same statement reads what the SLA clock needs: no policy active, the transaction's time.
    t.equal(found.seen?.sla?.key, null);
    t.ok(found.seen?.sla?.now instanceof Date);
    t.same(
      { ...found, seen: { ...found.seen, sla: undefined } },
      {
        id: known.id,
        seen: {
          rulesKey: String(rules_key),
          contact: { name: 'Known', email: 'known@example.com', custom: {} },
          scheduleKey: null,
          sla: undefined,
        },
      },
      'a found contact as stored, with its first email',
    );
    const fresh = await resolveSeen({ email: ' Seen.New@example.com ', name: ' Seen New ' });
    t.same(
      { ...fresh.seen, sla: undefined },
      {
        rulesKey: String(rules_key),
        contact: { name: 'Seen New', email: 'Seen.New@example.com', custom: {} },
        scheduleKey: null,
        sla: undefined,
      },
    );
    t.equal((await resolveSeen({ id: known.id })).seen, null, 'by id: the rules read the contact themselves');
    t.equal(await resolve({ email: 'KNOWN@example.com' }), known.id, 'email, ignoring case');
    t.equal(await resolve({ phone: '+1 (555) 7000' }), known.id, 'phone, normalised');
    t.equal(await resolve({ email: 'brand-new@example.com', phone: '+1 555-7000' }), known.id);
    t.equal(await resolve({ id: known.id }), known.id);
    const missing = await resolve({ id: GHOST }).catch((e) => e);
    t.equal(missing.code, 'contact_not_found');
    t.equal(missing.kind, 'unprocessable');
    t.same(missing.errors, [{ field: 'body/contact/id', message: 'no such contact' }]);
    t.equal((await resolve({ phone: '12' }).catch((e) => e)).code, 'invalid_phone');
    t.equal((await resolve({ name: ' ' }).catch((e) => e)).code, 'contact_identity_required');

    const created = await resolve({
      name: ' New Person ',
      email: 'New.Person@example.com',
      phone: '555 8000',
    });
    t.not(created, known.id);
    const summaries = await contactSummaries(ctx.db, [created, known.id, GHOST]);
    t.same(summaries.get(created), {
      id: created,
      name: 'New Person',
      email: 'New.Person@example.com',
      phone: '5558000',
    });
    t.same(summaries.get(known.id), {
      id: known.id,
      name: 'Known',
      email: 'known@example.com',
      phone: '+15557000',
    });
    t.notOk(summaries.has(GHOST));
    const nameOnly = await resolve({ name: 'Walk-in' });
    t.same((await contactSummaries(ctx.db, [nameOnly])).get(nameOnly), {
      id: nameOnly,
      name: 'Walk-in',
      email: null,
      phone: null,
    });
  });

  await t.test('resolveContact: concurrent tickets from one new email end with one contact', async (t) => {
    const countContacts = async (where: 'email' | 'phone', value: string) =>
      (
        await ctx.db
          .selectFrom(where === 'email' ? 'contact_emails' : 'contact_phones')
          .select('contact_id')
          // Emails compare without case: whichever racer won, its spelling is the one stored.
          .where(where === 'email' ? sql<string>`lower(email)` : sql<string>`phone`, '=', value.toLowerCase())
          .execute()
      ).length;
    const before = Number(
      (
        await ctx.db
          .selectFrom('contacts')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
    const race = (input: Parameters<typeof resolveContact>[1]) =>
      ctx.db.transaction().execute(async (trx) => {
        const { id } = await resolveContact(trx, input);
        // Hold the transaction open a moment, as creating the ticket would, so the others overlap it.
        await new Promise((r) => setTimeout(r, 20));
        return id;
      });
    const byEmail = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        race({ name: `Racer ${i}`, email: i % 2 ? 'RACE@example.com' : 'race@example.com' }),
      ),
    );
    t.equal(new Set(byEmail).size, 1, 'every transaction got the same contact');
    t.equal(await countContacts('email', 'race@example.com'), 1);

    const byPhone = await Promise.all(
      Array.from({ length: 8 }, (_, i) => race({ phone: i % 2 ? '+1 555 4242' : '+1-555-4242' })),
    );
    t.equal(new Set(byPhone).size, 1);

    const mixed = await Promise.all(
      Array.from({ length: 6 }, (_, i) => race({ email: `mixed${i}@example.com`, phone: '555 1717' })),
    );
    t.equal(new Set(mixed).size, 1, 'a shared new phone also ends with one contact');
    const after = Number(
      (
        await ctx.db
          .selectFrom('contacts')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
    t.equal(after, before + 3, 'no stray contacts left behind');
  });
});
