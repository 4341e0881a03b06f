import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { inboundMailbox, rawMail } from './helpers/mail.ts';

// Headers and bounces that list tens of thousands of ids or addresses: PostgreSQL takes at most
// 65,535 parameters in a query, so each list is capped before it reaches one.

const MANY = 70_000;

t.test('inbound email with huge lists', async (t) => {
  const ctx = await buildTestApp(t, { INBOUND_MAIL_MAX_BYTES: String(8 * 1024 * 1024) });
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  await db
    .insertInto('department_addresses')
    .values({ address: 'sales@acme.test', department_id: sales, is_reply_from: true })
    .execute();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const post = await inboundMailbox(t, ctx, admin.token, sales);

  const first = await post(rawMail({ from: 'alice@customer.test', to: 'sales@acme.test' }));
  t.equal(first.json().outcome, 'created', first.body);
  const firstId = `<${first.json().mail_message_id}>`;

  await t.test('References of 70,000 ids: threads by the latest', async (t) => {
    const ids = Array.from({ length: MANY }, (_, i) => `<${i}@c>`);
    const res = await post(
      rawMail({
        from: 'alice@customer.test',
        to: 'sales@acme.test',
        // Short ids on one line: mailparser takes at most 1 MiB of header.
        references: [...ids, firstId].join(' '),
      }),
    );
    t.equal(res.statusCode, 202, res.body);
    t.match(res.json(), { outcome: 'threaded', ticket_id: first.json().ticket_id });
  });

  await t.test('To of 70,000 addresses: routed by the first', async (t) => {
    const to = ['sales@acme.test', ...Array.from({ length: MANY }, (_, i) => `${i}@e.t`)];
    const res = await post(rawMail({ from: 'bob@customer.test', to: to.join(',') }));
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'created');
    const ticket = await db
      .selectFrom('tickets')
      .select(['department_id', 'support_address'])
      .where('id', '=', res.json().ticket_id)
      .executeTakeFirstOrThrow();
    t.match(ticket, { department_id: sales, support_address: 'sales@acme.test' });
  });

  await t.test('an X-Original-To of 100,000 characters without an address is read at once', async (t) => {
    // Anyone who can mail the help desk writes this header. Addresses were picked out of it by a
    // regular expression that backtracks quadratically without an @: 100,000 characters held the
    // event loop (every request of the instance) for about a minute, and mailparser takes 1 MiB.
    const started = performance.now();
    const res = await post(
      rawMail({
        from: 'carol@customer.test',
        to: 'sales@acme.test',
        headers: { 'X-Original-To': 'x'.repeat(100_000) },
      }),
    );
    const ms = performance.now() - started;
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'created');
    t.ok(ms < 5_000, `answered in ${Math.round(ms)} ms`);
  });

  await t.test('X-Original-To still routes by the addresses it names', async (t) => {
    const billing = await makeDepartment(db, 'Billing');
    await db
      .insertInto('department_addresses')
      .values({ address: 'billing@acme.test', department_id: billing, is_reply_from: true })
      .execute();
    const res = await post(
      rawMail({
        from: 'dave@customer.test',
        to: 'someone@elsewhere.test',
        headers: { 'X-Original-To': 'nobody, <x@@y> "Billing" <BILLING@acme.test>;other@e.t' },
      }),
    );
    t.equal(res.statusCode, 202, res.body);
    const ticket = await db
      .selectFrom('tickets')
      .select(['department_id', 'support_address'])
      .where('id', '=', res.json().ticket_id)
      .executeTakeFirstOrThrow();
    t.match(ticket, { department_id: billing, support_address: 'billing@acme.test' });
  });

  await t.test('a "bounce" with a long Final-Recipient line is read at once', async (t) => {
    // Anyone may send one (From: MAILER-DAEMON@...). The address was matched with an expression
    // that backtracks quadratically over a line of @s that does not end right: 100,000
    // characters held the event loop for about 30 s, and a mail's body may be 25 MiB.
    const raw = [
      'From: MAILER-DAEMON@mx.elsewhere.test',
      'To: sales@acme.test',
      'Subject: Undelivered Mail Returned to Sender',
      'Message-ID: <bounce-long@mx.elsewhere.test>',
      'Content-Type: text/plain',
      '',
      `Final-Recipient: rfc822; ${'a@'.repeat(50_000)}<`,
      'Final-Recipient: rfc822; <alice@customer.test>',
      '',
    ].join('\r\n');
    const started = performance.now();
    const res = await post(raw);
    const ms = performance.now() - started;
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'ignored');
    t.ok(ms < 5_000, `answered in ${Math.round(ms)} ms`);
  });

  await t.test('a From with a long run of dots is read at once', async (t) => {
    // The sender's address was compared with ours without its trailing dots by /\.+$/, which
    // backtracks quadratically over a run of dots inside it: 100,000 held the event loop for
    // about a minute (mailparser takes 1 MiB of header).
    const started = performance.now();
    const res = await post(rawMail({ from: `x@y${'.'.repeat(100_000)}z`, to: 'sales@acme.test' }));
    const ms = performance.now() - started;
    t.not(res.statusCode, 500, res.body);
    t.ok(ms < 5_000, `answered in ${Math.round(ms)} ms`);
  });

  await t.test('a bounce quoting 70,000 Message-IDs is answered, not a 500', async (t) => {
    const lines = Array.from({ length: MANY }, (_, i) => `Message-ID: <m${i}@acme.test>`);
    const raw = [
      'From: MAILER-DAEMON@mx.customer.test',
      'To: sales@acme.test',
      'Subject: Undelivered Mail Returned to Sender',
      'Message-ID: <bounce-many@mx.customer.test>',
      'Content-Type: text/plain',
      '',
      ...lines,
      '',
    ].join('\r\n');
    const res = await post(raw);
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'ignored');
  });
});
