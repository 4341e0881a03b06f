import { sql } from 'kysely';
import { pino } from 'pino';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { attemptMails } from '../src/domains/mail-out/delivery.ts';
import { drainMailFeed } from '../src/domains/mail-out/service.ts';
import { insertNewTicket } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { startSilentServer, startSmtpReceiver, waitFor } from './helpers/smtp.ts';
import { GHOST } from './helpers/tickets.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Mail out through HTTP and a real SMTP server (smtp-server, in-process): replies, notices and
// acknowledgements leave from the feed consumer through the outbox and the job queue.

const FAST = {
  MAIL_DISPATCH_INTERVAL_MS: '100',
  MAIL_RETRY_BASE_MS: '200',
  MAIL_RETRY_MAX_DELAY_MS: '400',
  MAIL_FROM: 'help@example.test',
};

async function call(ctx: TestContext, method: string, url: string, token: string, payload?: object) {
  return ctx.request({ method: method as 'GET', url, token, ...(payload && { payload }) });
}

async function mails(ctx: TestContext, token: string, ticketId: string) {
  const res = await call(ctx, 'GET', `/v1/tickets/${ticketId}/mail`, token);
  if (res.statusCode !== 200) throw new Error(`mail list: ${res.statusCode} ${res.body}`);
  return res.json().data as {
    kind: string;
    state: string;
    attempts: number;
    last_error: string | null;
    mail_message_id: string;
    to: string | null;
    from: { name: string; address: string | null };
  }[];
}

async function messages(ctx: TestContext, token: string, ticketId: string) {
  const res = await call(ctx, 'GET', `/v1/tickets/${ticketId}/messages`, token);
  if (res.statusCode !== 200) throw new Error(`messages: ${res.statusCode} ${res.body}`);
  return res.json().data as {
    id: string;
    kind: string;
    delivery_state?: string | null;
    delivery_error?: string | null;
  }[];
}

/** A ticket by mail from `email`, with the customer's first message; its id. */
async function mailedTicket(ctx: TestContext, token: string, subject: string, email: string) {
  const res = await call(ctx, 'POST', '/v1/tickets', token, {
    subject,
    channel: 'email',
    contact: { email },
    message: { body: 'Hello' },
  });
  if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`);
  return res.json().id as string;
}

t.test('mail out', async (t) => {
  const smtp = await startSmtpReceiver();
  t.teardown(smtp.close);
  const ctx = await buildTestApp(t, { ...FAST, SMTP_URL: smtp.url }, { jobs: true });
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  // Sales' identity, set as a manager would (docs/email.md, "Department identity")
  const identity = await call(ctx, 'PUT', `/v1/departments/${sales}/mail-identity`, admin, {
    sender_name: 'Sales',
    addresses: [
      { address: 'sales@example.test', reply_from: true },
      { address: 'orders@example.test', reply_from: false },
    ],
  });
  if (identity.statusCode !== 200) throw new Error(`identity: ${identity.statusCode} ${identity.body}`);
  const { token: outsider } = await agentWithToken(ctx, { departments: [[support, 'solver']] });
  let n = 0;
  const open = async (extra: Record<string, unknown> = {}, email = `customer-${++n}@customer.example`) => {
    const res = await call(ctx, 'POST', '/v1/tickets', admin, {
      subject: `Order ${n} is late`,
      channel: 'email',
      contact: { email, name: `Customer ${n}` },
      message: { body: 'Where is my order?' },
      department_id: sales,
      ...extra,
    });
    if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`);
    const body = res.json() as { id: string; reference: string; contact: { id: string } };
    return { ...body, number: Number(body.reference.replace(/^T-/, '')) };
  };
  const mailTo = (address: string, kind?: (m: (typeof smtp.received)[number]) => boolean) =>
    smtp.received.filter((m) => m.to.includes(address) && (kind ? kind(m) : true));
  const settled = (ticketId: string, kind: string) =>
    waitFor(`${kind} settled`, async () => {
      const found = (await mails(ctx, admin, ticketId)).find((m) => m.kind === kind);
      return found && found.state !== 'queued' ? found : undefined;
    });

  await t.test('a new email ticket is acknowledged from the department, as an auto-reply', async (t) => {
    const ticket = await open();
    const address = `customer-${n}@customer.example`;
    const ack = await settled(ticket.id, 'acknowledgement');
    t.equal(ack.state, 'sent', ack.last_error ?? '');
    const [mail] = mailTo(address);
    t.ok(mail, 'arrived');
    const parsed = mail!.parsed;
    t.same(parsed.from?.value, [{ name: 'Sales', address: 'sales@example.test' }]);
    t.equal(parsed.headers.get('auto-submitted'), 'auto-replied');
    t.match(parsed.subject, `[Ticket#${ticket.number}]`);
    t.equal(parsed.messageId, `<${ack.mail_message_id}>`);
    t.match(ack.mail_message_id, /^[0-9a-f-]{36}@example\.test$/);
    t.ok(parsed.text && parsed.text.length > 0, 'a text part');
    t.ok(typeof parsed.html === 'string' && parsed.html.length > 0, 'an HTML part');
  });

  await t.test('an agent reply threads after the customer’s mail and shows its delivery', async (t) => {
    const ticket = await open();
    const address = `customer-${n}@customer.example`;
    await settled(ticket.id, 'acknowledgement');
    // A customer message as mail in records it: with its Message-ID.
    const customer = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'customer',
      body: 'Any news?',
    });
    t.equal(customer.statusCode, 201);
    await ctx.db
      .updateTable('ticket_messages')
      .set({ mail_message_id: 'question-1@customer.example', mail_address: address })
      .where('id', '=', customer.json().id)
      .execute();
    const reply = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'reply',
      body: 'It ships tomorrow.',
    });
    t.equal(reply.statusCode, 201);
    const sent = await settled(ticket.id, 'agent_reply');
    t.equal(sent.state, 'sent', sent.last_error ?? '');
    const mail = mailTo(address, (m) => m.parsed.messageId === `<${sent.mail_message_id}>`)[0];
    t.ok(mail, 'the reply arrived');
    const parsed = mail!.parsed;
    t.same(parsed.from?.value, [{ name: 'Sales', address: 'sales@example.test' }]);
    t.equal(parsed.inReplyTo, '<question-1@customer.example>');
    t.same([parsed.references].flat(), ['<question-1@customer.example>']);
    t.equal(parsed.headers.get('auto-submitted'), undefined, 'a person’s reply is no auto-reply');
    t.match(parsed.subject, `[Ticket#${ticket.number}]`);
    t.match(parsed.text, 'It ships tomorrow.');
    t.ok(typeof parsed.html === 'string' && parsed.html.includes('It ships tomorrow.'), 'HTML part');
    const listed = (await messages(ctx, admin, ticket.id)).find((m) => m.id === reply.json().id);
    t.equal(listed?.delivery_state, 'sent');
    const stored = await ctx.db
      .selectFrom('ticket_messages')
      .select(['mail_message_id', 'mail_address', 'delivered_at'])
      .where('id', '=', reply.json().id)
      .executeTakeFirstOrThrow();
    t.equal(stored.mail_message_id, sent.mail_message_id, 'the customer’s answer can thread on it');
    t.equal(stored.mail_address, address);
    t.ok(stored.delivered_at);

    // A second reply references the whole thread, the first reply included.
    await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, { kind: 'reply', body: 'Shipped.' });
    const second = await waitFor('second reply', async () => {
      const all = (await mails(ctx, admin, ticket.id)).filter((m) => m.kind === 'agent_reply');
      return all.length === 2 && all[1]!.state === 'sent' ? all[1] : undefined;
    });
    const parsed2 = mailTo(address, (m) => m.parsed.messageId === `<${second.mail_message_id}>`)[0]!.parsed;
    t.same([parsed2.references].flat(), ['<question-1@customer.example>', `<${sent.mail_message_id}>`]);
  });

  await t.test('a bounced address and our own addresses are suppressed', async (t) => {
    const ticket = await open();
    await settled(ticket.id, 'acknowledgement');
    const before = smtp.received.length;
    await ctx.db
      .updateTable('contact_emails')
      .set({ bounced_at: new Date(), bounce_reason: '550 no such user' })
      .where('contact_id', '=', ticket.contact.id)
      .execute();
    const reply = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'reply',
      body: 'Hello?',
    });
    const out = await settled(ticket.id, 'agent_reply');
    t.equal(out.state, 'suppressed');
    t.match(out.last_error, /bounced: 550 no such user/);
    const listed = (await messages(ctx, admin, reply.json().id ? ticket.id : ticket.id)).find(
      (m) => m.id === reply.json().id,
    );
    t.equal(listed?.delivery_state, 'suppressed');
    t.match(listed?.delivery_error, /bounced/);

    // A contact whose address is one of ours (a forwarded loop) gets nothing either.
    const own = await open({}, 'orders@example.test');
    const ack = await settled(own.id, 'acknowledgement');
    t.equal(ack.state, 'suppressed');
    t.match(ack.last_error, /our own support addresses/);
    t.equal(smtp.received.length, before, 'nothing was sent');
  });

  await t.test('a 4xx answer is retried, then the mail goes once', async (t) => {
    const ticket = await open();
    const address = `customer-${n}@customer.example`;
    await settled(ticket.id, 'acknowledgement');
    smtp.behaviour.tempFailures = 1;
    await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, { kind: 'reply', body: 'Retry me.' });
    const out = await settled(ticket.id, 'agent_reply');
    t.equal(out.state, 'sent');
    t.equal(out.attempts, 2, 'the first attempt met 451');
    t.equal(smtp.behaviour.tempFailures, 0);
    t.equal(mailTo(address, (m) => m.parsed.messageId === `<${out.mail_message_id}>`).length, 1, 'sent once');
  });

  await t.test('a 5xx answer fails at once with the reason', async (t) => {
    const ticket = await open();
    await settled(ticket.id, 'acknowledgement');
    smtp.behaviour.permanent = true;
    t.teardown(() => {
      smtp.behaviour.permanent = false;
    });
    const reply = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'reply',
      body: 'Doomed.',
    });
    const out = await settled(ticket.id, 'agent_reply');
    t.equal(out.state, 'failed');
    t.equal(out.attempts, 1, 'no retry of a permanent refusal');
    t.match(out.last_error, /550/);
    const listed = (await messages(ctx, admin, ticket.id)).find((m) => m.id === reply.json().id);
    t.equal(listed?.delivery_state, 'failed');
    t.match(listed?.delivery_error, /550/);
  });

  await t.test('no acknowledgement for a machine, at most three an hour per address', async (t) => {
    // Opened by an auto-reply (mail in marks it): recorded, never answered.
    const machine = await ctx.db.transaction().execute(async (trx) => {
      const opened = await insertNewTicket(
        trx,
        {
          subject: 'Out of office',
          channel: 'email',
          contact: { email: 'robot@customer.example' },
          message: { body: 'I am away.' },
          department_id: sales,
        },
        { type: 'contact', agentId: null, contactId: null },
        null,
      );
      await trx
        .updateTable('ticket_messages')
        .set({ mail_auto_submitted: true })
        .where('ticket_id', '=', opened.id)
        .execute();
      return opened;
    });
    // Something after it on the feed: once that is mailed, the opening was looked at.
    await call(ctx, 'POST', `/v1/tickets/${machine.id}/messages`, admin, { kind: 'reply', body: 'Noted.' });
    await settled(machine.id, 'agent_reply');
    t.same(
      (await mails(ctx, admin, machine.id)).map((m) => m.kind),
      ['agent_reply'],
      'no acknowledgement',
    );

    const email = 'chatty@customer.example';
    const states: string[] = [];
    for (let i = 0; i < 4; i++) {
      const ticket = await open({}, email);
      states.push((await settled(ticket.id, 'acknowledgement')).state);
    }
    t.same(states, ['sent', 'sent', 'sent', 'suppressed']);
    t.equal(mailTo(email).length, 3);
  });

  await t.test('transfer and resolved notices; the sender falls back to MAIL_FROM', async (t) => {
    const ticket = await open();
    const address = `customer-${n}@customer.example`;
    await settled(ticket.id, 'acknowledgement');
    const moved = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/transfer`, admin, {
      department_id: support,
    });
    t.equal(moved.statusCode, 200, moved.body);
    const notice = await settled(ticket.id, 'transfer_notice');
    t.equal(notice.state, 'sent');
    // Support set no identity: the help desk's sender name and MAIL_FROM
    t.same(notice.from, { name: 'Help desk', address: 'help@example.test' });
    const resolved = await call(ctx, 'PATCH', `/v1/tickets/${ticket.id}`, admin, { status: 'resolved' });
    t.equal(resolved.statusCode, 200, resolved.body);
    const done = await settled(ticket.id, 'resolved_notice');
    t.equal(done.state, 'sent');
    const kinds = mailTo(address).map((m) => m.parsed.headers.get('auto-submitted'));
    t.same(kinds, ['auto-replied', 'auto-replied', 'auto-replied'], 'notices are auto-replies');
    t.notOk(
      (await mails(ctx, admin, ticket.id)).some((m) => m.kind === 'csat_survey'),
      'no survey: CSAT is off by default',
    );
  });

  await t.test('the mail list is for those who may read the ticket', async (t) => {
    const ticket = await open();
    t.equal((await call(ctx, 'GET', `/v1/tickets/${ticket.id}/mail`, outsider)).statusCode, 404);
    t.equal((await call(ctx, 'GET', `/v1/tickets/${GHOST}/mail`, admin)).statusCode, 404);
    t.equal((await call(ctx, 'GET', `/v1/tickets/not-a-uuid/mail`, admin)).statusCode, 400);
    t.equal((await call(ctx, 'GET', `/v1/tickets/${ticket.id}/mail?cursor=garbage`, admin)).statusCode, 400);
    t.equal((await call(ctx, 'GET', `/v1/tickets/${ticket.id}/mail?limit=0`, admin)).statusCode, 400);
    const res = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}/mail` });
    t.equal(res.statusCode, 401);
  });

  await t.test('chat tickets send nothing', async (t) => {
    const ticket = await open({ channel: 'chat' });
    await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'reply',
      body: 'Hi in chat',
    });
    // A later email ticket's acknowledgement shows the consumer went past both events.
    const later = await open();
    await settled(later.id, 'acknowledgement');
    t.same(await mails(ctx, admin, ticket.id), []);
    t.equal((await messages(ctx, admin, ticket.id)).at(-1)?.delivery_state, null);
  });
});

t.test('an SMTP server that hangs: attempts time out, retry, then fail; the API keeps serving', async (t) => {
  const silent = await startSilentServer();
  t.teardown(silent.close);
  const ctx = await buildTestApp(
    t,
    { ...FAST, SMTP_URL: silent.url, MAIL_SEND_TIMEOUT_MS: '300', MAIL_MAX_ATTEMPTS: '2' },
    { jobs: true },
  );
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const id = await mailedTicket(ctx, token, 'Silent', 'someone@customer.example');
  const reply = await call(ctx, 'POST', `/v1/tickets/${id}/messages`, token, { kind: 'reply', body: 'Hi' });
  const queuedWithReason = await waitFor('a failed first attempt', async () => {
    const m = (await messages(ctx, token, id)).find((x) => x.id === reply.json().id);
    return m?.delivery_error ? m : undefined;
  });
  t.ok(['queued', 'failed'].includes(queuedWithReason.delivery_state ?? ''), 'queued (or already failed)');
  t.match(queuedWithReason.delivery_error, /ETIMEDOUT|timeout|no answer/i);
  const started = Date.now();
  t.equal((await ctx.request({ method: 'GET', url: '/healthz' })).statusCode, 200, 'still serving');
  t.ok(Date.now() - started < 1000);
  const out = await waitFor('the reply failed', async () => {
    const m = (await mails(ctx, token, id)).find((x) => x.kind === 'agent_reply');
    return m?.state === 'failed' ? m : undefined;
  });
  t.equal(out.attempts, 2);
  t.equal((await messages(ctx, token, id)).find((x) => x.id === reply.json().id)?.delivery_state, 'failed');

  // A job for a settled mail (a duplicate, a crash retry) sends nothing again.
  const row = await ctx.db
    .selectFrom('mail_outbox')
    .select('id')
    .where('ticket_id', '=', id)
    .where('kind', '=', 'agent_reply')
    .executeTakeFirstOrThrow();
  const config = loadConfig({ ...FAST, SMTP_URL: silent.url });
  await attemptMails(
    {
      db: ctx.db,
      log: pino({ level: 'silent' }),
      config: config.mail,
      queue: undefined,
      blobs: ctx.app.blobs,
    },
    [row.id],
  );
  t.equal((await mails(ctx, token, id)).find((x) => x.kind === 'agent_reply')?.attempts, 2, 'not attempted');
});

t.test(
  'each mail is sent once across workers; a lost outcome resends with the same Message-ID',
  async (t) => {
    const smtp = await startSmtpReceiver();
    t.teardown(smtp.close);
    // No job queue: the consumer and the workers are run by hand, as two processes would.
    const env = { ...FAST, SMTP_URL: smtp.url };
    const ctx = await buildTestApp(t, env);
    const config = loadConfig(env).mail;
    const deps = {
      db: ctx.db,
      log: pino({ level: 'silent' }),
      config,
      queue: undefined,
      blobs: ctx.app.blobs,
    };
    const { token } = await agentWithToken(ctx, { role: 'admin' });
    // The consumer starts at the feed head the first time it runs.
    await drainMailFeed(ctx.db, { config, queue: undefined });
    const id = await mailedTicket(ctx, token, 'Twice?', 'once@customer.example');
    await waitFor('the acknowledgement planned', async () => {
      await drainMailFeed(ctx.db, { config, queue: undefined });
      return (await mails(ctx, token, id)).find((m) => m.kind === 'acknowledgement');
    });
    const row = await ctx.db
      .selectFrom('mail_outbox')
      .select(['id', 'mail_message_id'])
      .where('ticket_id', '=', id)
      .executeTakeFirstOrThrow();
    await Promise.all([
      attemptMails(deps, [row.id]),
      attemptMails(deps, [row.id]),
      attemptMails(deps, [row.id]),
    ]);
    t.equal(smtp.received.length, 1, 'three workers, one mail');
    t.equal((await mails(ctx, token, id))[0]?.attempts, 1);

    // A worker that sent but died before writing the outcome: its lease runs out, and the mail
    // goes again with the same Message-ID.
    await ctx.db
      .updateTable('mail_outbox')
      .set({ state: 'queued', sent_at: null, locked_until: new Date(Date.now() + 60_000) })
      .where('id', '=', row.id)
      .execute();
    await attemptMails(deps, [row.id]);
    t.equal(smtp.received.length, 1, 'not while another worker holds the lease');
    await ctx.db
      .updateTable('mail_outbox')
      .set({ locked_until: new Date(Date.now() - 1) })
      .where('id', '=', row.id)
      .execute();
    await attemptMails(deps, [row.id]);
    t.equal(smtp.received.length, 2);
    t.same(
      smtp.received.map((m) => m.parsed.messageId),
      [`<${row.mail_message_id}>`, `<${row.mail_message_id}>`],
      'the same Message-ID',
    );
  },
);

t.test('a reply whose file is gone from storage fails at once, saying so', async (t) => {
  const smtp = await startSmtpReceiver();
  t.teardown(smtp.close);
  const env = { ...FAST, SMTP_URL: smtp.url };
  const ctx = await buildTestApp(t, env);
  const config = loadConfig(env).mail;
  const deps = { db: ctx.db, log: pino({ level: 'silent' }), config, queue: undefined, blobs: ctx.app.blobs };
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  await drainMailFeed(ctx.db, { config, queue: undefined });
  const id = await mailedTicket(ctx, token, 'With a file', 'files@customer.example');
  const boundary = 'deskroute-test-boundary';
  const staged = await ctx.request({
    method: 'POST',
    url: `/v1/tickets/${id}/attachments`,
    token,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="price.txt"\r\n\r\n40 chairs\r\n--${boundary}--\r\n`,
  });
  t.equal(staged.statusCode, 201, staged.body);
  const fileId = staged.json().data[0].id as string;
  const replied = await call(ctx, 'POST', `/v1/tickets/${id}/messages`, token, {
    kind: 'reply',
    body: 'Our prices, attached.',
    attachment_ids: [fileId],
  });
  t.equal(replied.statusCode, 201, replied.body);
  const reply = await waitFor('the reply planned', async () => {
    await drainMailFeed(ctx.db, { config, queue: undefined });
    return (await mails(ctx, token, id)).find((m) => m.kind === 'agent_reply');
  });
  t.equal(reply.state, 'queued');
  const { blob_key } = await ctx.db
    .selectFrom('attachments')
    .select('blob_key')
    .where('id', '=', fileId)
    .executeTakeFirstOrThrow();
  await ctx.app.blobs.delete(blob_key);
  const row = await ctx.db
    .selectFrom('mail_outbox')
    .select('id')
    .where('ticket_id', '=', id)
    .where('kind', '=', 'agent_reply')
    .executeTakeFirstOrThrow();
  await attemptMails(deps, [row.id]);
  const after = (await mails(ctx, token, id)).find((m) => m.kind === 'agent_reply')!;
  t.equal(after.state, 'failed', 'not retried for ever');
  t.equal(after.attempts, 1);
  t.match(after.last_error, /price\.txt.*missing from storage/);
  t.notOk(
    smtp.received.some((m) => m.parsed.text?.includes('Our prices')),
    'nothing half-sent',
  );
  const [message] = (await messages(ctx, token, id)).filter((m) => m.kind === 'agent');
  t.equal(message?.delivery_state, 'failed');
});

t.test('an event that cannot be mailed is passed over alone; the rest of its batch is mailed', async (t) => {
  const smtp = await startSmtpReceiver();
  t.teardown(smtp.close);
  // No job queue: the consumer runs by hand, so both replies fall in one batch.
  const env = { ...FAST, SMTP_URL: smtp.url };
  const ctx = await buildTestApp(t, env);
  const config = loadConfig(env).mail;
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  await drainMailFeed(ctx.db, { config, queue: undefined });
  const id = await mailedTicket(ctx, token, 'Two replies', 'two@customer.example');
  const reply = async (body: string) => {
    const sent = await call(ctx, 'POST', `/v1/tickets/${id}/messages`, token, { kind: 'reply', body });
    t.equal(sent.statusCode, 201, sent.body);
    return sent.json().id as string;
  };
  const failing = await reply('This one fails.');
  const fine = await reply('This one goes.');
  // A fault of one event's own (a bug, say): the database refuses its outbox row alone.
  await sql`
    create function refuse_one_outbox_row() returns trigger language plpgsql as $$
    begin
      if new.message_id = ${sql.lit(failing)}::uuid then raise exception 'refused for the test'; end if;
      return new;
    end $$`.execute(ctx.db);
  await sql`
    create trigger refuse_one before insert on mail_outbox
    for each row execute function refuse_one_outbox_row()`.execute(ctx.db);
  await drainMailFeed(ctx.db, { config, queue: undefined });
  const planned = async () =>
    await ctx.db
      .selectFrom('mail_outbox')
      .select(['kind', 'message_id'])
      .where('ticket_id', '=', id)
      .execute();
  const rows = await planned();
  t.same(
    rows.map((m) => m.kind).sort(),
    ['acknowledgement', 'agent_reply'],
    'the acknowledgement and one reply are planned',
  );
  t.equal(rows.find((m) => m.kind === 'agent_reply')?.message_id, fine, 'the reply that could be planned');
  await sql`drop trigger refuse_one on mail_outbox`.execute(ctx.db);
  await drainMailFeed(ctx.db, { config, queue: undefined });
  t.equal((await planned()).length, 2, 'the consumer moved past the one it could not plan');
});
