import { randomBytes, randomUUID } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import pino from 'pino';
import t from 'tap';
import { startImapWatcher } from '../src/domains/mailboxes/imap.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { dovecotMissing, startDovecot } from './helpers/dovecot.ts';
import { rawMail } from './helpers/mail.ts';
import { startSmtpReceiver, waitFor } from './helpers/smtp.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Issue 15's "Done when", end to end through HTTP, a real Dovecot and a real SMTP server: a
// message appended to the Sales mailbox becomes a Sales ticket; the agent's reply (with a file)
// leaves from "Sales <sales@...>" with the Sales signature and threading headers; the customer's
// answer threads into the same ticket; an auto-reply starts no loop; attachments come out byte for
// byte; the survey link rates the ticket once.

/** A multipart/form-data body with one file. */
function multipart(filename: string, content: Buffer) {
  const boundary = `----deskroute-${randomUUID()}`;
  const payload = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    ),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

const missing = dovecotMissing();
if (missing) {
  t.comment(`skipped: ${missing}`);
  t.pass('skipped: no Dovecot');
} else {
  t.test('email per department, end to end', async (t) => {
    const dovecot = await startDovecot();
    t.teardown(() => dovecot.stop());
    const smtp = await startSmtpReceiver();
    t.teardown(smtp.close);
    const ctx: TestContext = await buildTestApp(
      t,
      {
        SMTP_URL: smtp.url,
        MAIL_DISPATCH_INTERVAL_MS: '100',
        MAIL_RETRY_BASE_MS: '200',
        MAIL_RETRY_MAX_DELAY_MS: '400',
        PUBLIC_BASE_URL: 'https://help.acme.test',
        IMAP_TIMEOUT_MS: '3000',
      },
      { jobs: true },
    );
    const sales = await makeDepartment(ctx.db, 'Sales');
    const support = await makeDepartment(ctx.db, 'Support');
    const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
    const { token: seller } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
    const api = (method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, token: string, payload?: object) =>
      ctx.request({ method, url, token, ...(payload && { payload }) });

    // Sales' identity and the Support mailbox (mail written to orders@ goes to Sales all the same).
    // The IMAP login is sales@ (the Dovecot helper's user): a support address of Sales equal to
    // a Support mailbox's login would be refused, 409 address_of_department.
    const identity = await api('PUT', `/v1/departments/${sales}/mail-identity`, admin, {
      sender_name: 'Sales',
      signature_text: 'Acme Sales, +1 555 0100',
      signature_html: '<p>Acme Sales, +1 555 0100</p>',
      addresses: [{ address: 'orders@acme.test', reply_from: true }],
    });
    t.equal(identity.statusCode, 200, identity.body);
    const csat = await api('PUT', `/v1/departments/${sales}/csat`, admin, {
      enabled: true,
      delay_minutes: 0,
    });
    t.equal(csat.statusCode, 200, csat.body);
    const mailbox = await api('POST', '/v1/mailboxes', admin, {
      name: 'Help desk IMAP',
      department_id: support,
      kind: 'imap',
      imap: {
        host: dovecot.host,
        port: dovecot.port,
        tls: false,
        username: dovecot.user,
        password: dovecot.password,
        poll_seconds: 1,
      },
    });
    t.equal(mailbox.statusCode, 201, mailbox.body);
    t.notMatch(mailbox.body, dovecot.password, 'the IMAP password never comes back');

    const watcher = startImapWatcher({
      db: ctx.db,
      blobs: ctx.app.blobs,
      log: pino({ level: 'silent' }),
      config: ctx.app.config.mailIn,
      tickMs: 100,
    });
    t.teardown(() => watcher.stop());
    const customer = new ImapFlow({
      host: dovecot.host,
      port: dovecot.port,
      secure: false,
      auth: { user: dovecot.user, pass: dovecot.password },
      logger: false,
    });
    await customer.connect();
    t.teardown(() => customer.logout().catch(() => {}));

    const ticketsOf = async () =>
      (await api('GET', '/v1/tickets?limit=200', admin)).json().data as {
        id: string;
        subject: string;
        department_id: string;
        status: string;
      }[];
    const messagesOf = async (id: string) =>
      (await api('GET', `/v1/tickets/${id}/messages`, admin)).json().data as {
        id: string;
        kind: string;
        body: string;
        mail_message_id?: string | null;
        attachments: { id: string; filename: string }[];
      }[];

    // 1. a customer's mail with a file, appended to the mailbox
    const photo = randomBytes(40_000);
    const firstId = `<first-${randomUUID()}@customer.test>`;
    await customer.append(
      'INBOX',
      rawMail({
        from: 'Carla Customer <carla@customer.test>',
        to: 'orders@acme.test',
        subject: 'A quote for 40 chairs',
        messageId: firstId,
        text: 'Could you send me a quote? A photo of the chair is attached.',
        attachment: { filename: 'chair.bin', contentType: 'application/octet-stream', content: photo },
      }),
    );
    const ticket = await waitFor('the Sales ticket', async () =>
      (await ticketsOf()).find((x) => x.subject === 'A quote for 40 chairs'),
    );
    t.equal(ticket.department_id, sales, 'routed by the address written to');
    const [opening] = await messagesOf(ticket.id);
    t.equal(opening!.kind, 'customer');
    t.equal(opening!.attachments.length, 1);
    const download = await ctx.request({
      method: 'GET',
      url: `/v1/attachments/${opening!.attachments[0]!.id}`,
      token: seller,
    });
    t.equal(download.statusCode, 200);
    t.ok(download.rawPayload.equals(photo), 'the mailed file comes out byte for byte');

    const acknowledgement = await waitFor('the acknowledgement', async () =>
      smtp.received.find((m) => m.to.includes('carla@customer.test')),
    );
    t.equal(acknowledgement.parsed.headers.get('auto-submitted'), 'auto-replied');

    // 2. the agent's reply, with a file of their own
    const quote = randomBytes(12_345);
    const staged = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/attachments`,
      token: seller,
      ...multipart('quote.bin', quote),
    });
    t.equal(staged.statusCode, 201, staged.body);
    const stagedId = (staged.json().data as { id: string }[])[0]!.id;
    const replied = await api('POST', `/v1/tickets/${ticket.id}/messages`, seller, {
      kind: 'reply',
      body: 'Here is your quote: 40 chairs at 80 EUR each.',
      attachment_ids: [stagedId],
    });
    t.equal(replied.statusCode, 201, replied.body);
    const reply = await waitFor('the reply at the SMTP server', async () =>
      smtp.received.find((m) => m.parsed.text?.includes('40 chairs at 80 EUR')),
    );
    const from = reply.parsed.from?.value[0];
    t.equal(from?.name, 'Sales');
    t.equal(from?.address, 'orders@acme.test');
    t.match(reply.parsed.text, /Acme Sales, \+1 555 0100/, 'the Sales signature, text part');
    t.match(String(reply.parsed.html), /Acme Sales, \+1 555 0100/, 'the Sales signature, HTML part');
    t.equal(reply.parsed.inReplyTo, firstId, 'In-Reply-To: the customer’s message');
    const references = [reply.parsed.references ?? []].flat();
    t.ok(references.includes(firstId), 'References carry the thread');
    t.ok(reply.parsed.messageId, 'a Message-ID of its own');
    t.notOk(reply.parsed.headers.get('auto-submitted'), 'a person’s reply is not auto-submitted');
    const sentFile = reply.parsed.attachments.find((a) => a.filename === 'quote.bin');
    t.ok(sentFile?.content.equals(quote), 'the agent’s file arrives byte for byte');

    // 3. the customer answers the reply: same ticket
    await customer.append(
      'INBOX',
      rawMail({
        from: 'Carla Customer <carla@customer.test>',
        to: 'orders@acme.test',
        subject: `Re: ${reply.parsed.subject}`,
        inReplyTo: reply.parsed.messageId!,
        references: `${firstId} ${reply.parsed.messageId}`,
        text: 'Thanks, I take them.',
      }),
    );
    await waitFor('the customer’s answer in the same ticket', async () =>
      (await messagesOf(ticket.id)).some((m) => m.body.includes('Thanks, I take them')) ? true : undefined,
    );
    t.equal((await ticketsOf()).filter((x) => x.subject.includes('40 chairs')).length, 1, 'no second ticket');

    // 4. an out-of-office answering our mail: recorded at most, never answered
    const sentBefore = smtp.received.length;
    const ticketsBefore = (await ticketsOf()).length;
    await customer.append(
      'INBOX',
      rawMail({
        from: 'Carla Customer <carla@customer.test>',
        to: 'orders@acme.test',
        subject: 'Out of office',
        inReplyTo: reply.parsed.messageId!,
        headers: { 'Auto-Submitted': 'auto-replied' },
        text: 'I am away until Monday.',
      }),
    );
    await customer.append(
      'INBOX',
      rawMail({
        from: 'Robot <noreply@elsewhere.test>',
        to: 'orders@acme.test',
        subject: 'Automatic reply: your message',
        headers: { 'Auto-Submitted': 'auto-replied', Precedence: 'auto_reply' },
        text: 'This mailbox is not monitored.',
      }),
    );
    // a plain mail after them: once it is in, the watcher has read the two before it
    await customer.append(
      'INBOX',
      rawMail({ from: 'Dan <dan@customer.test>', to: 'orders@acme.test', subject: 'Marker' }),
    );
    await waitFor('the marker ticket', async () => (await ticketsOf()).find((x) => x.subject === 'Marker'));
    await waitFor('the marker’s acknowledgement', async () =>
      smtp.received.find((m) => m.to.includes('dan@customer.test')),
    );
    t.equal((await ticketsOf()).length, ticketsBefore + 1, 'the auto-replies opened no ticket');
    t.equal(
      smtp.received.filter((m) => !m.to.includes('dan@customer.test')).length,
      sentBefore,
      'and nothing was mailed back to them',
    );

    // 5. resolved: the survey link rates the ticket once
    const resolved = await api('PATCH', `/v1/tickets/${ticket.id}`, seller, { status: 'resolved' });
    t.equal(resolved.statusCode, 200, resolved.body);
    const survey = await waitFor('the survey', async () =>
      smtp.received.find(
        (m) => m.to.includes('carla@customer.test') && /ratings\//.test(m.parsed.text ?? ''),
      ),
    );
    t.equal(survey.parsed.headers.get('auto-submitted'), 'auto-replied');
    const token = /https:\/\/help\.acme\.test\/ratings\/([A-Za-z0-9_-]+)/.exec(survey.parsed.text ?? '')?.[1];
    t.ok(token, 'the survey mail carries the link');
    const rate = () =>
      ctx.request({
        method: 'POST',
        url: `/v1/public/ratings/${token}`,
        payload: { rating: 'positive', comment: 'Fast and friendly' },
      });
    const first = await rate();
    t.ok(first.statusCode === 200 || first.statusCode === 201, first.body);
    t.equal((await rate()).statusCode, 409, 'the link rates once');
    const history = (await api('GET', `/v1/tickets/${ticket.id}/history?limit=200`, admin)).json().data as {
      type: string;
    }[];
    t.equal(history.filter((e) => e.type === 'rated').length, 1, 'one rating on the ticket');
  });
}
