import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { dsn, rawMail } from './helpers/mail.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// POST /v1/inbound/email through HTTP on a real database: routing, threading, duplicates, loops,
// bounces, sanitised HTML, attachments and the raw download.

const MAX = 64 * 1024;

t.test('inbound email', async (t) => {
  const ctx = await buildTestApp(t, { INBOUND_MAIL_MAX_BYTES: String(MAX), MAIL_FROM: 'desk@acme.test' });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  await db
    .insertInto('department_addresses')
    .values([
      { address: 'sales@acme.test', department_id: sales, is_reply_from: true },
      { address: 'help@acme.test', department_id: support, is_reply_from: true },
    ])
    .execute();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const salesAgent = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const supportAgent = await agentWithToken(ctx, { departments: [[support, 'solver']] });
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/mailboxes',
    token: admin.token,
    payload: { name: 'Support inbound', department_id: support, kind: 'inbound' },
  });
  t.equal(created.statusCode, 201, created.body);
  const secret = created.json().inbound_secret as string;
  t.match(secret, /^drm_[A-Za-z0-9_-]{43}$/);

  const post = (raw: string | Buffer, options: { auth?: string | null; type?: string } = {}) =>
    ctx.request({
      method: 'POST',
      url: '/v1/inbound/email',
      headers: {
        'content-type': options.type ?? 'message/rfc822',
        ...(options.auth !== null && { authorization: options.auth ?? `Bearer ${secret}` }),
      },
      payload: raw,
    });
  const ticketCount = async () =>
    Number(
      (
        await db
          .selectFrom('tickets')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const messagesOf = async (ticketId: string) => {
    const res = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${ticketId}/messages`,
      token: admin.token,
    });
    t.equal(res.statusCode, 200, res.body);
    return res.json().data as Record<string, unknown>[];
  };
  const ticket = async (id: string) =>
    (await ctx.request({ method: 'GET', url: `/v1/tickets/${id}`, token: admin.token })).json();

  await t.test(
    'no secret, a wrong one, an agent token, a wrong type or an empty body change nothing',
    async (t) => {
      const raw = rawMail({ from: 'x@customer.test', to: 'sales@acme.test' });
      for (const auth of [
        null,
        'Bearer drm_wrong',
        `Bearer ${admin.token}`,
        'Basic Zm9vOmJhcg==',
        `Bearer ${secret}x`,
      ]) {
        const res = await post(raw, { auth });
        t.equal(res.statusCode, 401, `${auth}: ${res.body}`);
        t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
      }
      const json = await post(JSON.stringify({ raw }), { type: 'application/json' });
      t.equal(json.statusCode, 415, json.body);
      const empty = await post('');
      t.equal(empty.statusCode, 400, empty.body);
      const huge = await post(Buffer.alloc(MAX + 1, 'a'));
      t.equal(huge.statusCode, 413, huge.body);
      t.equal(huge.json().code, 'payload_too_large');
      t.equal(await ticketCount(), 0);
    },
  );

  let first: { ticket_id: string; message_id: string; mail_message_id: string };
  const logo = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  const original = rawMail({
    from: 'Alice Example <Alice@Customer.test>',
    to: 'Sales <sales@acme.test>',
    subject: 'Price list please',
    messageId: '<first-1@customer.test>',
    text: 'Could you send me the price list?',
    html: '<p onclick="steal()">Could you send me the <b>price list</b>?</p><img src="/v1/agents/me"><img src="logo.png" alt="rel"><a href="/v1/tickets">rel</a><a href="//evil.test/x">pr</a><a href="https://acme.example/help">help</a><script>alert(1)</script><img src="https://tracker.test/p.gif" alt="pixel"><img src="cid:logo@x"><a href="javascript:alert(1)">x</a><form action="https://evil.test"><input name="a"></form><iframe src="https://evil.test"></iframe><style>p{}</style>',
    attachment: { filename: 'logo.png', contentType: 'image/png', content: logo },
  });

  await t.test('a new mail to a support address opens a ticket in its department', async (t) => {
    const res = await post(original);
    t.equal(res.statusCode, 202, res.body);
    first = res.json();
    t.match(first, { outcome: 'created', mail_message_id: 'first-1@customer.test', reason: null });
    const opened = await ticket(first.ticket_id);
    t.match(opened, {
      subject: 'Price list please',
      channel: 'email',
      department_id: sales,
      status: 'new',
      support_address: 'sales@acme.test',
    });
    t.equal(opened.contact.email, 'alice@customer.test');
    t.equal(opened.contact.name, 'Alice Example');
    const [message] = await messagesOf(first.ticket_id);
    t.match(message, {
      id: first.message_id,
      kind: 'customer',
      body: 'Could you send me the price list?',
      mail_message_id: 'first-1@customer.test',
      mail_address: 'alice@customer.test',
      mail_auto_submitted: false,
      raw_available: true,
    });
    const html = String(message!.html_body);
    t.match(html, /<b>price list<\/b>/);
    for (const bad of [
      /script/i,
      /onclick/i,
      /tracker\.test/,
      /javascript:/i,
      /<form/i,
      /<input/i,
      /<iframe/i,
      /<style/i,
      /evil\.test/,
      /\/v1\//,
      /logo\.png/,
    ])
      t.notMatch(html, bad, `no ${bad}`);
    t.match(html, /<a href="https:\/\/acme\.example\/help"/, 'an absolute link stays');
    t.match(html, /<img src="cid:logo@x" \/>/, 'inline cid: images stay');
    t.match(html, /alt="pixel"/, 'a remote image keeps its alt text, not its source');
    const attachments = await db
      .selectFrom('attachments')
      .selectAll()
      .where('ticket_id', '=', first.ticket_id)
      .execute();
    t.equal(attachments.length, 1);
    t.match(attachments[0], { filename: 'logo.png', message_id: first.message_id, size_bytes: logo.length });
    const events = await db
      .selectFrom('ticket_events')
      .select('type')
      .where('ticket_id', '=', first.ticket_id)
      .orderBy('id')
      .execute();
    t.same(
      events.map((e) => e.type).slice(0, 2),
      ['created', 'message_added'],
      'written through the one write path',
    );
  });

  await t.test('the raw mail downloads byte-identical, only for who may see the ticket', async (t) => {
    const url = `/v1/tickets/${first.ticket_id}/messages/${first.message_id}/raw`;
    const res = await ctx.request({ method: 'GET', url, token: salesAgent.token });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.headers['content-type'], 'message/rfc822');
    t.equal(res.headers['content-disposition'], `attachment; filename="${first.message_id}.eml"`);
    t.ok(res.rawPayload.equals(Buffer.from(original)), 'the bytes as they came');
    const outside = await ctx.request({ method: 'GET', url, token: supportAgent.token });
    t.equal(outside.statusCode, 404, 'out of reach: 404');
    const other = await ctx.request({
      method: 'GET',
      url: `/v1/tickets/${first.ticket_id}/messages/00000000-0000-4000-8000-000000000000/raw`,
      token: admin.token,
    });
    t.equal(other.statusCode, 404);
  });

  await t.test('the same Message-ID again makes nothing new', async (t) => {
    const before = await ticketCount();
    for (const auth of [`Bearer ${secret}`, `Basic ${Buffer.from(`mta:${secret}`).toString('base64')}`]) {
      const res = await post(original, { auth, type: 'application/octet-stream' });
      t.equal(res.statusCode, 202, res.body);
      t.match(res.json(), { outcome: 'duplicate', ticket_id: first.ticket_id, message_id: first.message_id });
    }
    t.equal(await ticketCount(), before);
    t.equal((await messagesOf(first.ticket_id)).length, 1);
    const twice = await Promise.all(
      [1, 2].map(() =>
        post(rawMail({ from: 'bob@customer.test', to: 'help@acme.test', messageId: '<race@customer.test>' })),
      ),
    );
    t.same(
      twice.map((r) => r.statusCode),
      [202, 202],
    );
    t.same(
      twice.map((r) => r.json().outcome).sort(),
      ['created', 'duplicate'],
      'concurrent deliveries make one',
    );
  });

  await t.test('a reply threads by In-Reply-To and reopens the ticket', async (t) => {
    const resolved = await ctx.request({
      method: 'PATCH',
      url: `/v1/tickets/${first.ticket_id}`,
      token: admin.token,
      payload: { status: 'resolved' },
    });
    t.equal(resolved.statusCode, 200, resolved.body);
    const res = await post(
      rawMail({
        from: 'alice@customer.test',
        to: 'help@acme.test',
        subject: 'Re: Price list please',
        inReplyTo: '<first-1@customer.test>',
        text: 'Any news?',
      }),
      { type: 'text/plain' },
    );
    t.equal(res.statusCode, 202, res.body);
    t.match(res.json(), { outcome: 'threaded', ticket_id: first.ticket_id });
    t.equal((await ticket(first.ticket_id)).status, 'open');
    t.equal((await ticket(first.ticket_id)).department_id, sales, 'stays where it is');
  });

  await t.test('an answer to an acknowledgement threads into its ticket', async (t) => {
    // What mail out records when it acknowledges a ticket: an outbox row, no message.
    await db
      .insertInto('mail_outbox')
      .values({
        kind: 'acknowledgement',
        ticket_id: first.ticket_id,
        to_address: 'alice@customer.test',
        from_name: 'Sales',
        from_address: 'sales@acme.test',
        subject: 'We got your mail',
        text_body: 'Thanks',
        html_body: '<p>Thanks</p>',
        mail_message_id: 'ack-1@acme.test',
        state: 'sent',
      })
      .execute();
    const res = await post(
      rawMail({
        from: 'alice@customer.test',
        to: 'someone@elsewhere.test',
        subject: 'Re: We got your mail',
        inReplyTo: '<ack-1@acme.test>',
        text: 'One more thing.',
      }),
    );
    t.equal(res.statusCode, 202, res.body);
    t.match(res.json(), { outcome: 'threaded', ticket_id: first.ticket_id });
  });

  await t.test('[Ticket#n] in the subject threads only for the ticket’s contact', async (t) => {
    const { number } = await db
      .selectFrom('tickets')
      .select('number')
      .where('id', '=', first.ticket_id)
      .executeTakeFirstOrThrow();
    const stranger = await post(
      rawMail({ from: 'mallory@evil.test', to: 'sales@acme.test', subject: `Re: [Ticket#${number}] hi` }),
    );
    t.equal(stranger.json().outcome, 'created', 'a stranger opens a ticket of their own');
    t.not(stranger.json().ticket_id, first.ticket_id);
    const owner = await post(
      rawMail({ from: 'ALICE@customer.test', to: 'sales@acme.test', subject: `Re: [Ticket#${number}] hi` }),
    );
    t.match(owner.json(), { outcome: 'threaded', ticket_id: first.ticket_id });
  });

  await t.test(
    'auto-replies: recorded in their thread without a status change, never a new ticket',
    async (t) => {
      await ctx.request({
        method: 'PATCH',
        url: `/v1/tickets/${first.ticket_id}`,
        token: admin.token,
        payload: { status: 'resolved' },
      });
      const before = await ticketCount();
      const headers: Record<string, string>[] = [
        { 'Auto-Submitted': 'auto-replied' },
        { Precedence: 'bulk' },
        { 'X-Autoreply': 'yes' },
        { 'X-Auto-Response-Suppress': 'All' },
        { 'List-Id': '<news.customer.test>' },
      ];
      for (const h of headers) {
        const res = await post(
          rawMail({
            from: 'alice@customer.test',
            to: 'sales@acme.test',
            subject: 'Out of office',
            headers: h,
          }),
        );
        t.equal(res.statusCode, 202);
        t.equal(res.json().outcome, 'auto_submitted', JSON.stringify(h));
        t.equal(res.json().ticket_id, null);
      }
      const notAuto = await post(
        rawMail({ from: 'carol@customer.test', to: 'sales@acme.test', headers: { 'Auto-Submitted': 'no' } }),
      );
      t.equal(notAuto.json().outcome, 'created', 'Auto-Submitted: no is a person');
      t.equal(await ticketCount(), before + 1);
      const inThread = await post(
        rawMail({
          from: 'alice@customer.test',
          to: 'sales@acme.test',
          subject: 'Automatic reply',
          inReplyTo: '<first-1@customer.test>',
          headers: { 'Auto-Submitted': 'auto-replied' },
        }),
      );
      t.match(inThread.json(), { outcome: 'threaded', ticket_id: first.ticket_id });
      const after = await ticket(first.ticket_id);
      t.equal(after.status, 'resolved', 'no reopen');
      const last = (await messagesOf(first.ticket_id)).at(-1)!;
      t.match(last, { id: inThread.json().message_id, mail_auto_submitted: true, kind: 'customer' });
    },
  );

  await t.test('our own mail and mail without a sender are ignored', async (t) => {
    const before = await ticketCount();
    const ours = await post(rawMail({ from: 'Sales <SALES@acme.test>', to: 'help@acme.test' }));
    t.match(ours.json(), { outcome: 'ignored', ticket_id: null });
    const settings = await ctx.request({
      method: 'PUT',
      url: '/v1/mail-settings',
      token: admin.token,
      payload: { from_address: 'noreply@acme.test' },
    });
    t.equal(settings.statusCode, 200, settings.body);
    for (const from of ['sales@acme.test.', 'Help@ACME.test.', 'desk@acme.test', 'NoReply@Acme.Test.']) {
      const res = await post(rawMail({ from, to: 'help@acme.test' }));
      t.match(res.json(), { outcome: 'ignored', ticket_id: null }, `${from} is ours`);
    }
    const nobody = await post('Subject: hi\r\nMessage-ID: <n@x>\r\n\r\nhello\r\n');
    t.match(nobody.json(), { outcome: 'ignored' });
    t.equal(await ticketCount(), before);
  });

  await t.test(
    'a mail to no support address goes to the mailbox’s department; one without Message-ID gets a stable one',
    async (t) => {
      const raw = rawMail({
        from: 'dave@customer.test',
        to: 'someone@elsewhere.test',
        messageId: null,
        html: '<p>Only <i>HTML</i> here</p>',
      });
      const res = await post(raw);
      t.equal(res.json().outcome, 'created');
      t.match(res.json().mail_message_id, /^sha256-[0-9a-f]{64}@deskroute\.invalid$/);
      t.equal((await ticket(res.json().ticket_id)).department_id, support);
      t.equal((await ticket(res.json().ticket_id)).support_address, null);
      const [message] = await messagesOf(res.json().ticket_id);
      t.match(String(message!.body), /Only HTML here/i, 'a text part derived from the HTML');
      const again = await post(raw);
      t.match(again.json(), {
        outcome: 'duplicate',
        ticket_id: res.json().ticket_id,
        mail_message_id: res.json().mail_message_id,
      });
      const cc = await post(
        rawMail({ from: 'erin@customer.test', to: 'someone@elsewhere.test', cc: 'sales@acme.test' }),
      );
      t.equal((await ticket(cc.json().ticket_id)).department_id, sales, 'Cc counts');
      const delivered = await post(
        rawMail({
          from: 'erin@customer.test',
          to: 'list@elsewhere.test',
          headers: { 'Delivered-To': 'sales@acme.test' },
        }),
      );
      t.equal((await ticket(delivered.json().ticket_id)).department_id, sales, 'Delivered-To counts');
    },
  );

  await t.test('a bounce marks our message and the contact’s address', async (t) => {
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${first.ticket_id}/messages`,
      token: admin.token,
      payload: { kind: 'reply', body: 'Here it is.' },
    });
    t.equal(reply.statusCode, 201, reply.body);
    // What mail out records when it sends the reply.
    await db
      .updateTable('ticket_messages')
      .set({
        mail_message_id: 'out-1@acme.test',
        mail_address: 'alice@customer.test',
        delivery_state: 'sent',
      })
      .where('id', '=', reply.json().id)
      .execute();
    const before = await ticketCount();
    const res = await post(dsn({ returnedMessageId: 'out-1@acme.test', to: 'alice@customer.test' }));
    t.equal(res.statusCode, 202, res.body);
    t.match(res.json(), { outcome: 'bounce', ticket_id: first.ticket_id, message_id: reply.json().id });
    t.match(res.json().reason, /550 5\.1\.1 user unknown/);
    const message = await db
      .selectFrom('ticket_messages')
      .selectAll()
      .where('id', '=', reply.json().id)
      .executeTakeFirstOrThrow();
    t.equal(message.delivery_state, 'bounced');
    t.match(message.delivery_error, /user unknown/);
    const address = await db
      .selectFrom('contact_emails')
      .selectAll()
      .where('email', '=', 'alice@customer.test')
      .executeTakeFirstOrThrow();
    t.ok(address.bounced_at, 'the address is marked');
    t.match(address.bounce_reason, /user unknown/);
    const unknown = await post(
      dsn({ returnedMessageId: 'nothing-of-ours@acme.test', to: 'x@customer.test' }),
    );
    t.match(unknown.json(), { outcome: 'ignored' });
    t.equal(await ticketCount(), before, 'a bounce opens no ticket');
  });

  await t.test('a bounced notice marks only the address it went to, not the reply before it', async (t) => {
    const opened = await post(rawMail({ from: 'carol@customer.test', to: 'sales@acme.test' }));
    const ticketId = opened.json().ticket_id as string;
    const { contact_id } = await db
      .selectFrom('tickets')
      .select('contact_id')
      .where('id', '=', ticketId)
      .executeTakeFirstOrThrow();
    await db
      .insertInto('contact_emails')
      .values({ contact_id: contact_id!, email: 'carol.work@customer.test' })
      .execute();
    const reply = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticketId}/messages`,
      token: admin.token,
      payload: { kind: 'reply', body: 'Done.' },
    });
    t.equal(reply.statusCode, 201, reply.body);
    // What mail out records: the reply went to the first address, the notice to the second.
    await db
      .updateTable('ticket_messages')
      .set({
        mail_message_id: 'reply-c@acme.test',
        mail_address: 'carol@customer.test',
        delivery_state: 'sent',
      })
      .where('id', '=', reply.json().id)
      .execute();
    await db
      .insertInto('mail_outbox')
      .values({
        kind: 'resolved_notice',
        ticket_id: ticketId,
        to_address: 'carol.work@customer.test',
        from_name: 'Sales',
        from_address: 'sales@acme.test',
        subject: 'Resolved',
        text_body: 'Resolved',
        html_body: '<p>Resolved</p>',
        headers: JSON.stringify({ 'In-Reply-To': '<reply-c@acme.test>' }),
        mail_message_id: 'notice-c@acme.test',
        state: 'sent',
      })
      .execute();
    // The returned headers name the reply too (In-Reply-To, References): it was delivered.
    const bounce = dsn({ returnedMessageId: 'notice-c@acme.test', to: 'carol.work@customer.test' }).replace(
      'Message-ID: <notice-c@acme.test>',
      'Message-ID: <notice-c@acme.test>\r\nIn-Reply-To: <reply-c@acme.test>\r\nReferences: <reply-c@acme.test>',
    );
    const res = await post(bounce);
    t.equal(res.statusCode, 202, res.body);
    t.match(res.json(), { outcome: 'bounce', ticket_id: ticketId, message_id: null });
    const message = await db
      .selectFrom('ticket_messages')
      .select('delivery_state')
      .where('id', '=', reply.json().id)
      .executeTakeFirstOrThrow();
    t.equal(message.delivery_state, 'sent', 'the delivered reply stays delivered');
    const addresses = await db
      .selectFrom('contact_emails')
      .select(['email', 'bounced_at'])
      .where('contact_id', '=', contact_id!)
      .orderBy('email')
      .execute();
    t.match(addresses, [
      { email: 'carol.work@customer.test', bounced_at: Date },
      { email: 'carol@customer.test', bounced_at: null },
    ]);
  });

  await t.test('an inactive mailbox’s secret stops working; a rotated one too', async (t) => {
    const id = created.json().id;
    const rotated = await ctx.request({
      method: 'POST',
      url: `/v1/mailboxes/${id}/rotate-secret`,
      token: admin.token,
    });
    t.equal(rotated.statusCode, 200);
    const old = await post(rawMail({ from: 'x@customer.test' }));
    t.equal(old.statusCode, 401);
    const fresh = rotated.json().inbound_secret;
    t.equal((await post(rawMail({ from: 'x@customer.test' }), { auth: `Bearer ${fresh}` })).statusCode, 202);
    await ctx.request({
      method: 'PATCH',
      url: `/v1/mailboxes/${id}`,
      token: admin.token,
      payload: { active: false },
    });
    t.equal((await post(rawMail({ from: 'x@customer.test' }), { auth: `Bearer ${fresh}` })).statusCode, 401);
  });
});
