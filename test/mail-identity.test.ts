import pg from 'pg';
import t from 'tap';
import { renderMail } from '../src/domains/mail-identity/render.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { testDatabaseKind } from './helpers/database.ts';
import { GHOST, makeTicket } from './helpers/tickets.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Department mail identity through HTTP: the help desk's defaults, each department's sender name,
// signature and support addresses, who may change them, and what renderMail sends from.

async function addressRows(ctx: TestContext) {
  return ctx.db
    .selectFrom('department_addresses')
    .select(['address', 'department_id', 'is_reply_from'])
    .orderBy('address')
    .execute();
}

async function settingsEvents(ctx: TestContext, type: string) {
  return ctx.db.selectFrom('settings_events').selectAll().where('type', '=', type).execute();
}

t.test('mail identity', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: salesManager } = await agentWithToken(ctx, { departments: [[sales, 'manager']] });
  const { token: supportManager } = await agentWithToken(ctx, { departments: [[support, 'manager']] });
  const { token: salesAgent } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const identityUrl = (id: string) => `/v1/departments/${id}/mail-identity`;
  const put = (id: string, token: string, payload: object, headers: Record<string, string> = {}) =>
    ctx.request({ method: 'PUT', url: identityUrl(id), token, payload, headers });

  await t.test('help-desk defaults: every agent reads, admins change, with If-Match', async (t) => {
    const read = await ctx.request({ method: 'GET', url: '/v1/mail-settings', token: salesAgent });
    t.equal(read.statusCode, 200, read.body);
    t.equal(read.json().help_desk_name, 'Help desk');
    t.equal(read.json().from_address, null);

    const refused = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: salesManager,
      payload: { help_desk_name: 'Mine' },
    });
    t.equal(refused.statusCode, 403);
    t.equal(refused.json().code, 'admin_required');

    const bad = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin,
      payload: { help_desk_name: 'Acme', from_address: 'not an address' },
    });
    t.equal(bad.statusCode, 422);
    t.equal(bad.json().code, 'invalid_address');
    t.same(
      bad.json().errors.map((e: { field: string }) => e.field),
      ['body/from_address'],
    );

    const changed = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin,
      headers: { 'if-match': String(read.headers.etag) },
      payload: {
        help_desk_name: 'Acme Support',
        from_address: 'Help@Acme.Example',
        signature_text: 'The Acme team',
        signature_html: '<p>The <b>Acme</b> team</p><script>alert(1)</script>',
      },
    });
    t.equal(changed.statusCode, 200, changed.body);
    t.equal(changed.json().from_address, 'help@acme.example', 'lower-cased');
    t.equal(changed.json().signature_html, '<p>The <b>Acme</b> team</p>', 'sanitised');
    t.not(changed.headers.etag, read.headers.etag);

    const stale = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin,
      headers: { 'if-match': String(read.headers.etag) },
      payload: { help_desk_name: 'Lost' },
    });
    t.equal(stale.statusCode, 412);
    const after = await ctx.request({ method: 'GET', url: '/v1/mail-settings', token: admin });
    t.equal(after.json().help_desk_name, 'Acme Support', 'the stale write changed nothing');
    t.equal((await settingsEvents(ctx, 'mail_settings.updated')).length, 1);

    const unknown = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin,
      payload: { smtp_password: 'x' },
    });
    t.equal(unknown.statusCode, 400, 'unknown fields are refused');
  });

  await t.test('a department without an identity of its own uses the defaults', async (t) => {
    const res = await ctx.request({ method: 'GET', url: identityUrl(support), token: salesAgent });
    t.equal(res.statusCode, 200, res.body);
    t.same(res.json(), {
      department_id: support,
      sender_name: null,
      signature_text: null,
      signature_html: null,
      addresses: [],
      effective: {
        sender_name: 'Acme Support',
        from_address: 'help@acme.example',
        signature_text: 'The Acme team',
        signature_html: '<p>The <b>Acme</b> team</p>',
      },
      updated_at: null,
    });
    const missing = await ctx.request({ method: 'GET', url: identityUrl(GHOST), token: admin });
    t.equal(missing.statusCode, 404);
    t.equal(missing.json().code, 'department_not_found');
  });

  await t.test('managers of the department and admins change it; others may not', async (t) => {
    const payload = { sender_name: 'Nope' };
    const byAgent = await put(sales, salesAgent, payload);
    t.equal(byAgent.statusCode, 403);
    t.equal(byAgent.json().code, 'department_manager_required');
    const byOtherManager = await put(sales, supportManager, payload);
    t.equal(byOtherManager.statusCode, 403);
    t.equal(
      (await ctx.request({ method: 'GET', url: identityUrl(sales), token: admin })).json().sender_name,
      null,
    );

    // Support addresses route mail: an admin sets them; the manager may send them back unchanged.
    const set = await put(sales, admin, {
      addresses: [{ address: 'Orders@Acme.Example' }, { address: 'sales@acme.example', reply_from: true }],
    });
    t.equal(set.statusCode, 200, set.body);
    const res = await put(sales, salesManager, {
      sender_name: '  Sales ',
      signature_text: 'Your Sales team\n+49 30 1234',
      signature_html:
        '<p onclick="steal()">Your <i>Sales</i> team</p><img src="x" onerror="alert(1)"><a href="javascript:alert(1)">x</a><img src="/v1/agents/me"><a href="/v1/tickets">rel</a><img src="https://acme.example/logo.png">',
      addresses: [{ address: 'SALES@acme.example', reply_from: true }, { address: ' orders@acme.example' }],
    });
    t.equal(res.statusCode, 200, res.body);
    const body = res.json();
    t.equal(body.sender_name, 'Sales', 'trimmed');
    t.notMatch(body.signature_html, /onclick|onerror|javascript|<script/i, 'no script survives');
    t.match(body.signature_html, /<p>Your <i>Sales<\/i> team<\/p>/);
    t.notMatch(body.signature_html, /src="x|\/v1\//, 'no relative image or link survives');
    t.match(body.signature_html, /<img src="https:\/\/acme\.example\/logo\.png" \/>/, 'an https image stays');
    t.same(body.addresses, [
      { address: 'sales@acme.example', reply_from: true },
      { address: 'orders@acme.example', reply_from: false },
    ]);
    t.same(body.effective, {
      sender_name: 'Sales',
      from_address: 'sales@acme.example',
      signature_text: 'Your Sales team\n+49 30 1234',
      signature_html: body.signature_html,
    });
    const events = await settingsEvents(ctx, 'mail_identity.updated');
    t.equal(events.length, 2, "the admin's and the manager's");
    t.ok(events.every((e) => e.department_id === sales));

    const byAdmin = await put(support, admin, { addresses: [{ address: 'support@acme.example' }] });
    t.equal(byAdmin.statusCode, 200, byAdmin.body);
    t.same(
      byAdmin.json().addresses,
      [{ address: 'support@acme.example', reply_from: true }],
      'the first is the reply-from',
    );
  });

  await t.test('addresses: syntax 422, duplicates 422, taken 409; nothing changes', async (t) => {
    const before = await addressRows(ctx);
    const current = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
    const cases: [object, number, string, string[]][] = [
      [
        { addresses: [{ address: 'ok@acme.example' }, { address: 'no-at-sign' }, { address: 'a@b' }] },
        422,
        'invalid_address',
        ['body/addresses/1/address', 'body/addresses/2/address'],
      ],
      [
        { addresses: [{ address: 'two words@acme.example' }] },
        422,
        'invalid_address',
        ['body/addresses/0/address'],
      ],
      [
        { addresses: [{ address: 'x@acme.example' }, { address: 'X@acme.example ' }] },
        422,
        'duplicate_address',
        ['body/addresses/1/address'],
      ],
      [
        {
          addresses: [
            { address: 'x@acme.example', reply_from: true },
            { address: 'y@acme.example', reply_from: true },
          ],
        },
        422,
        'several_reply_from',
        ['body/addresses/1/reply_from'],
      ],
      [{ addresses: [{ address: 'SALES@acme.example' }] }, 409, 'address_taken', []],
    ];
    for (const [payload, status, code, fields] of cases) {
      const res = await put(support, admin, payload);
      t.equal(res.statusCode, status, `${JSON.stringify(payload)}: ${res.body}`);
      t.equal(res.json().code, code);
      if (fields.length > 0)
        t.same(
          res.json().errors.map((e: { field: string }) => e.field),
          fields,
        );
    }
    const huge = await put(support, supportManager, { sender_name: 'x'.repeat(10_000) });
    t.equal(huge.statusCode, 400, 'over-long strings are refused');
    const wrongType = await put(support, supportManager, { addresses: 'support@acme.example' });
    t.equal(wrongType.statusCode, 400);
    t.same(await addressRows(ctx), before, 'no address changed');
    const after = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
    t.equal(after.headers.etag, current.headers.etag);
  });

  await t.test(
    'only owners and admins change the support addresses; nothing else changes then',
    async (t) => {
      // A manager listing another department's or a customer's address would take that mail, or
      // silence that customer (mail from a support address is ignored as our own).
      const before = await addressRows(ctx);
      const current = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
      const events = (await settingsEvents(ctx, 'mail_identity.updated')).length;
      for (const addresses of [
        [{ address: 'support@acme.example' }, { address: 'jane@customer.example' }],
        [{ address: 'other@acme.example' }],
        [],
      ]) {
        const res = await put(support, supportManager, { sender_name: 'Changed', addresses });
        t.equal(res.statusCode, 403, `${JSON.stringify(addresses)}: ${res.body}`);
        t.match(res.headers['content-type'], /application\/problem\+json/);
        t.equal(res.json().code, 'addresses_admin_required');
      }
      t.same(await addressRows(ctx), before, 'no address changed');
      const after = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
      t.equal(after.json().sender_name, current.json().sender_name, 'nor the sender name');
      t.equal(after.headers.etag, current.headers.etag, 'nor anything else');
      t.equal((await settingsEvents(ctx, 'mail_identity.updated')).length, events, 'no event');
      // The same addresses, in another case and spelling the service normalises: allowed.
      const same = await put(support, supportManager, {
        sender_name: 'Support',
        addresses: [{ address: ' Support@ACME.example' }],
      });
      t.equal(same.statusCode, 200, same.body);
      t.equal(same.json().sender_name, 'Support');
      t.same(same.json().addresses, [{ address: 'support@acme.example', reply_from: true }]);
    },
  );

  await t.test("another department's mailbox address is refused, also to admins", async (t) => {
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin,
      payload: {
        name: 'Sales inbox',
        department_id: sales,
        kind: 'imap',
        imap: { host: 'imap.acme.example', port: 993, username: 'Inbox@Acme.example', password: 'secret' },
      },
    });
    t.equal(created.statusCode, 201, created.body);
    const before = await addressRows(ctx);
    const current = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
    const res = await put(support, admin, {
      sender_name: 'Taken',
      addresses: [{ address: 'support@acme.example' }, { address: 'inbox@acme.example' }],
    });
    t.equal(res.statusCode, 409, res.body);
    t.match(res.headers['content-type'], /application\/problem\+json/);
    t.equal(res.json().code, 'address_of_mailbox');
    t.same(await addressRows(ctx), before, 'no address changed');
    const after = await ctx.request({ method: 'GET', url: identityUrl(support), token: admin });
    t.equal(after.headers.etag, current.headers.etag, 'nothing else either');
    // The mailbox's own department may list it.
    const own = await put(sales, admin, {
      addresses: [
        { address: 'sales@acme.example' },
        { address: 'orders@acme.example' },
        { address: 'inbox@acme.example' },
      ],
    });
    t.equal(own.statusCode, 200, own.body);
    await ctx.request({ method: 'DELETE', url: `/v1/mailboxes/${created.json().id}`, token: admin });
  });

  await t.test('two departments claiming one address at once: one gets it, the other 409', async (t) => {
    const a = await makeDepartment(ctx.db, 'Race A');
    const b = await makeDepartment(ctx.db, 'Race B');
    const claims = await Promise.all(
      [a, b].map((id) => put(id, admin, { addresses: [{ address: 'race@acme.example' }] })),
    );
    t.same(claims.map((r) => r.statusCode).sort(), [200, 409], claims.map((r) => r.body).join(' | '));
    t.equal(claims.find((r) => r.statusCode === 409)!.json().code, 'address_taken');
    const owners = (await addressRows(ctx)).filter((r) => r.address === 'race@acme.example');
    t.equal(owners.length, 1);
  });

  const mailboxRows = () =>
    ctx.db
      .selectFrom('mailboxes')
      .select(['id', 'department_id', 'address', 'imap_username'])
      .orderBy('id')
      .execute();

  await t.test(
    "an inbound mailbox's address is refused as another department's support address",
    async (t) => {
      const created = await ctx.request({
        method: 'POST',
        url: '/v1/mailboxes',
        token: admin,
        payload: {
          name: 'Sales forwarder',
          department_id: sales,
          kind: 'inbound',
          address: ' Forward@ACME.example',
        },
      });
      t.equal(created.statusCode, 201, created.body);
      t.equal(created.json().address, 'forward@acme.example', 'kept lower-cased');
      const before = await addressRows(ctx);
      const res = await put(support, admin, {
        addresses: [{ address: 'support@acme.example' }, { address: 'FORWARD@acme.example' }],
      });
      t.equal(res.statusCode, 409, res.body);
      t.match(res.headers['content-type'], /application\/problem\+json/);
      t.equal(res.json().code, 'address_of_mailbox');
      t.same(await addressRows(ctx), before, 'no address changed');
      await ctx.request({ method: 'DELETE', url: `/v1/mailboxes/${created.json().id}`, token: admin });
    },
  );

  await t.test("a mailbox may not receive at another department's support address", async (t) => {
    // support@acme.example is Support's (above).
    const before = await mailboxRows();
    const attempts = [
      { name: 'Inbound', department_id: sales, kind: 'inbound', address: 'Support@acme.example' },
      {
        name: 'IMAP',
        department_id: sales,
        kind: 'imap',
        imap: { host: 'imap.acme.example', port: 993, username: ' SUPPORT@acme.example', password: 'secret' },
      },
    ];
    for (const payload of attempts) {
      const res = await ctx.request({ method: 'POST', url: '/v1/mailboxes', token: admin, payload });
      t.equal(res.statusCode, 409, res.body);
      t.match(res.headers['content-type'], /application\/problem\+json/);
      t.equal(res.json().code, 'address_of_department', payload.kind);
    }
    t.same(await mailboxRows(), before, 'no mailbox was made');
    const invalid = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin,
      payload: { name: 'Bad', department_id: sales, kind: 'inbound', address: 'not an address' },
    });
    t.equal(invalid.statusCode, 422, invalid.body);
    t.equal(invalid.json().code, 'invalid_address');

    // Moving into it by PATCH is refused alike: a new address, username or department.
    const inSales = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin,
      payload: { name: 'Sales inbound', department_id: sales, kind: 'inbound', address: 'in@acme.example' },
    });
    t.equal(inSales.statusCode, 201, inSales.body);
    const ownSupport = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin,
      payload: {
        name: 'Support inbound',
        department_id: support,
        kind: 'inbound',
        address: 'support@acme.example',
      },
    });
    t.equal(ownSupport.statusCode, 201, 'its own department may receive at it');
    const stored = await mailboxRows();
    const patchAddress = await ctx.request({
      method: 'PATCH',
      url: `/v1/mailboxes/${inSales.json().id}`,
      token: admin,
      payload: { address: 'support@acme.example' },
    });
    t.equal(patchAddress.statusCode, 409, patchAddress.body);
    t.equal(patchAddress.json().code, 'address_of_department');
    const moveDepartment = await ctx.request({
      method: 'PATCH',
      url: `/v1/mailboxes/${ownSupport.json().id}`,
      token: admin,
      payload: { department_id: sales },
    });
    t.equal(moveDepartment.statusCode, 409, moveDepartment.body);
    t.equal(moveDepartment.json().code, 'address_of_department');
    t.same(await mailboxRows(), stored, 'nothing changed');
    const cleared = await ctx.request({
      method: 'PATCH',
      url: `/v1/mailboxes/${ownSupport.json().id}`,
      token: admin,
      payload: { address: null, department_id: sales },
    });
    t.equal(cleared.statusCode, 200, cleared.body);
    t.equal(cleared.json().address, null);
    for (const id of [inSales.json().id, ownSupport.json().id]) {
      await ctx.request({ method: 'DELETE', url: `/v1/mailboxes/${id}`, token: admin });
    }
  });

  await t.test('If-Match guards the identity', async (t) => {
    const read = await ctx.request({ method: 'GET', url: identityUrl(sales), token: admin });
    const ok = await put(
      sales,
      admin,
      { sender_name: 'Sales team' },
      { 'if-match': String(read.headers.etag) },
    );
    t.equal(ok.statusCode, 200, ok.body);
    const stale = await put(sales, admin, { sender_name: 'Lost' }, { 'if-match': String(read.headers.etag) });
    t.equal(stale.statusCode, 412);
    t.equal(stale.json().code, 'stale_version');
    const now = await ctx.request({ method: 'GET', url: identityUrl(sales), token: admin });
    t.equal(now.json().sender_name, 'Sales team');
  });

  await t.test('renderMail sends from the department, else the defaults', async (t) => {
    const salesTicket = await makeTicket(ctx.db, { department_id: sales });
    const mail = await renderMail(ctx.db, { kind: 'acknowledgement', ticketId: salesTicket.id });
    t.same(mail.from, { name: 'Sales team', address: 'sales@acme.example' });
    t.match(mail.text, /Your Sales team\n\+49 30 1234/, 'the department signature, by the template');
    t.ok(mail.subject.includes(`[Ticket#${salesTicket.number}]`));

    // Clearing the department's own values: the help desk's apply again.
    const cleared = await put(sales, admin, {
      sender_name: null,
      signature_text: null,
      signature_html: null,
      addresses: [],
    });
    t.equal(cleared.statusCode, 200, cleared.body);
    const fallback = await renderMail(ctx.db, { kind: 'acknowledgement', ticketId: salesTicket.id });
    t.same(fallback.from, { name: 'Acme Support', address: 'help@acme.example' });
    t.match(fallback.text, /The Acme team/);
    t.match(fallback.html, /<b>Acme<\/b>/);

    const none = await makeTicket(ctx.db, {});
    const noDepartment = await renderMail(ctx.db, { kind: 'acknowledgement', ticketId: none.id });
    t.same(noDepartment.from, { name: 'Acme Support', address: 'help@acme.example' });

    const reset = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin,
      payload: { from_address: null },
    });
    t.equal(reset.statusCode, 200);
    const nobody = await renderMail(ctx.db, { kind: 'acknowledgement', ticketId: none.id });
    t.equal(nobody.from.address, null, 'no sender configured');
    await t.rejects(renderMail(ctx.db, { kind: 'acknowledgement', ticketId: GHOST }), {
      code: 'ticket_not_found',
    });
  });

  await t.test('a deleted department takes its addresses and identity with it', async (t) => {
    const gone = await makeDepartment(ctx.db, 'Short-lived');
    t.equal(
      (await put(gone, admin, { sender_name: 'Gone', addresses: [{ address: 'gone@acme.example' }] }))
        .statusCode,
      200,
    );
    const del = await ctx.request({ method: 'DELETE', url: `/v1/departments/${gone}`, token: admin });
    t.equal(del.statusCode, 204, del.body);
    t.notOk((await addressRows(ctx)).some((r) => r.address === 'gone@acme.example'));
    const reuse = await put(support, admin, {
      addresses: [{ address: 'support@acme.example' }, { address: 'gone@acme.example' }],
    });
    t.equal(reuse.statusCode, 200, 'the address is free again');
  });
});

t.test(
  'a support address and a mailbox claiming one address at once: one wins, the other 409',
  {
    skip:
      (await testDatabaseKind()) === 'pglite'
        ? 'needs PostgreSQL: a second connection holds the address lock; embedded PGlite has one connection'
        : false,
  },
  async (t) => {
    const ctx = await buildTestApp(t);
    const sales = await makeDepartment(ctx.db, 'Sales');
    const support = await makeDepartment(ctx.db, 'Support');
    const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
    const address = 'race@acme.example';
    const other = new pg.Client({ connectionString: ctx.database.url! });
    await other.connect();
    t.teardown(() => other.end());
    // Another transaction holds the address: both requests must wait for it, neither may decide
    // on what it read before the other committed.
    await other.query('begin');
    await other.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `deskroute:mail-address:${address}`,
    ]);
    let settled = 0;
    const track = <T>(p: Promise<T>) => p.finally(() => settled++);
    const claims = [
      track(
        ctx.request({
          method: 'PUT',
          url: `/v1/departments/${support}/mail-identity`,
          token: admin,
          payload: { addresses: [{ address }] },
        }),
      ),
      track(
        ctx.request({
          method: 'POST',
          url: '/v1/mailboxes',
          token: admin,
          payload: { name: 'Racer', department_id: sales, kind: 'inbound', address },
        }),
      ),
    ];
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.equal(settled, 0, 'both wait for the address');
    await other.query('commit');
    const [identity, mailbox] = await Promise.all(claims);
    const statuses = [identity!.statusCode, mailbox!.statusCode];
    t.ok(
      statuses.includes(409) && statuses.some((s) => s < 300),
      `one wins, one 409: ${identity!.body} | ${mailbox!.body}`,
    );
    const listed = await ctx.db
      .selectFrom('department_addresses')
      .select('address')
      .where('address', '=', address)
      .execute();
    const received = await ctx.db
      .selectFrom('mailboxes')
      .select('id')
      .where('address', '=', address)
      .execute();
    t.equal(listed.length + received.length, 1, 'the address went one way only');
  },
);
