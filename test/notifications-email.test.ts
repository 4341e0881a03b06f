import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import pino from 'pino';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import type { Database } from '../src/db/types.ts';
import { attemptMails } from '../src/domains/mail-out/delivery.ts';
import {
  type Delivery,
  type EmailChannelDeps,
  emailChannel,
  inboxChannel,
} from '../src/domains/notifications/channels.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { rawMail } from './helpers/mail.ts';
import { settleNotifications } from './helpers/notifications.ts';
import { type ReceivedMail, startSmtpReceiver, waitFor } from './helpers/smtp.ts';

// Department notifications by email, through the real HTTP layer, the real job queue and a real
// SMTP server: who gets a mail, what it says, what it never says, and that answering it makes
// nothing.

t.setTimeout(600_000);

t.test('notifications by email', async (t) => {
  const smtp = await startSmtpReceiver();
  t.teardown(smtp.close);
  const env = {
    SMTP_URL: smtp.url,
    MAIL_FROM: 'desk@acme.test',
    MAIL_DISPATCH_INTERVAL_MS: '100',
    MAIL_RETRY_BASE_MS: '200',
    MAIL_RETRY_MAX_DELAY_MS: '400',
  };
  const ctx = await buildTestApp(t, env, { jobs: true });
  const mail: EmailChannelDeps = { config: loadConfig(env).mail, queue: ctx.jobs?.queue };
  const settle = () => settleNotifications(ctx.db, mail);
  /** What the consumer does with a batch's decisions: each channel in its transaction. */
  const handleBatchChannels = async (trx: Transaction<Database>, deliveries: Delivery[]) => {
    for (const channel of [inboxChannel, emailChannel(mail)]) await channel.deliver(trx, deliveries);
  };
  await settle(); // the consumer starts at the feed's head: run it before anything happens

  const returns = await makeDepartment(ctx.db, 'Returns');
  const other = await makeDepartment(ctx.db, 'Billing');
  await ctx.db
    .insertInto('department_addresses')
    .values({ address: 'returns@acme.test', department_id: returns, is_reply_from: true })
    .execute();
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const manager = await agentWithToken(ctx, { departments: [[returns, 'manager']] });
  const solver = await agentWithToken(ctx, { departments: [[returns, 'solver']] });
  const outsider = await agentWithToken(ctx, { departments: [[other, 'solver']] });
  // An agent whose address is one of our own: mailing it would come back in as mail.
  const looped = await agentWithToken(ctx, {
    email: 'returns@acme.test',
    departments: [[returns, 'reader']],
  });

  const api = async (
    method: 'GET' | 'PUT' | 'POST' | 'DELETE',
    url: string,
    token: string,
    payload?: object,
  ) => ctx.request({ method, url, token, ...(payload && { payload }) });
  const createTicket = async (subject: string, departmentId = returns) => {
    const res = await api('POST', '/v1/tickets', admin.token, {
      subject,
      channel: 'api',
      department_id: departmentId,
      contact: { email: `customer-${Math.random().toString(36).slice(2)}@example.com` },
      message: { body: 'Hello' },
    });
    if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`);
    // The number is the one customers' mail carries ([Ticket#n]); the API names tickets by id.
    return ctx.db
      .selectFrom('tickets')
      .select(['id', 'number'])
      .where('id', '=', res.json().id)
      .executeTakeFirstOrThrow();
  };
  const notificationRows = async (ticketId: string) =>
    ctx.db
      .selectFrom('mail_outbox')
      .select(['to_address', 'state', 'attempts', 'mail_message_id'])
      .where('kind', '=', 'notification')
      .where('ticket_id', '=', ticketId)
      .orderBy('to_address')
      .execute();
  const mailsAbout = (number: number) =>
    smtp.received.filter((m) => String(m.parsed.subject).includes(`#${number} `));
  /** Waits until every notification row of the ticket is sent; the mails that arrived for it. */
  const delivered = async (ticket: { id: string; number: number }): Promise<ReceivedMail[]> => {
    await waitFor('notification mails sent', async () => {
      const rows = await notificationRows(ticket.id);
      return rows.every((r) => r.state === 'sent') ? true : undefined;
    });
    return mailsAbout(ticket.number);
  };
  /** Attempts these outbox rows now, in this process, as the mail job would. */
  const attemptNow = (ids: string[]) =>
    attemptMails(
      {
        db: ctx.db,
        log: pino({ level: 'silent' }),
        config: mail.config,
        queue: undefined,
        blobs: ctx.app.blobs,
      },
      ids,
    );
  const inboxHas = async (token: string, ticketId: string) => {
    const res = await api('GET', '/v1/me/notifications', token);
    return (res.json().data as { ticket_id: string }[]).some((n) => n.ticket_id === ticketId);
  };

  await t.test('off by default: the inbox only', async (t) => {
    const ticket = await createTicket('Parcel lost');
    await settle();
    t.ok(await inboxHas(solver.token, ticket.id), 'the inbox has it');
    t.same(await notificationRows(ticket.id), [], 'no mail without a choice for it');
  });

  await t.test('a manager turns email on for the department; each member chooses', async (t) => {
    const forbidden = await api('PUT', `/v1/departments/${returns}/notification-defaults`, solver.token, {
      defaults: [{ kind: 'ticket_created', email: true }],
    });
    t.equal(forbidden.statusCode, 403, 'a solver may not');
    const defaults = await api('PUT', `/v1/departments/${returns}/notification-defaults`, manager.token, {
      defaults: [{ kind: 'ticket_created', email: true }],
    });
    t.equal(defaults.statusCode, 200, defaults.body);
    t.same(
      defaults.json().data.find((d: { kind: string }) => d.kind === 'ticket_created'),
      { kind: 'ticket_created', enabled: true, source: 'default', email: true, email_source: 'department' },
      'email on from the department, the inbox untouched',
    );
    const prefs = await api('GET', '/v1/me/notification-preferences', solver.token);
    t.same(
      prefs.json().data.find((p: { kind: string }) => p.kind === 'ticket_created'),
      {
        department_id: returns,
        kind: 'ticket_created',
        enabled: true,
        source: 'default',
        email: true,
        email_source: 'department',
      },
    );
    const audit = await ctx.db
      .selectFrom('settings_events')
      .select('payload')
      .where('type', '=', 'notification_defaults.updated')
      .where('department_id', '=', returns)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    t.same(
      (audit.payload as { email_changes: unknown }).email_changes,
      { ticket_created: { from: null, to: true } },
      'the audit event says what changed',
    );

    // Markup in a customer's subject is text in the mail, never HTML.
    const subject = '<img src=x onerror=alert(1)> Refund & "return"';
    const ticket = await createTicket(subject);
    await settle();
    const mails = await delivered(ticket);
    t.same(
      mails.map((m) => m.to).sort(),
      [[manager.agent.email], [solver.agent.email]].sort(),
      'each member with email on; never the author (admin), another department, or our own address',
    );
    t.same(
      (await notificationRows(ticket.id)).map((r) => r.to_address).sort(),
      [manager.agent.email, solver.agent.email].sort(),
      'nothing was written for the agent whose address is a support address',
    );
    t.ok(await inboxHas(looped.token, ticket.id), 'that agent still has it in the inbox');
    const one = mails[0]!.parsed;
    t.equal(one.subject, `[Returns] New ticket in Returns: #${ticket.number} ${subject}`);
    t.same(one.from?.value, [{ address: 'returns@acme.test', name: one.from?.value[0]?.name ?? '' }]);
    t.equal(one.headers.get('auto-submitted'), 'auto-generated');
    t.notOk(one.inReplyTo, 'no thread: a notification is no part of the conversation');
    t.match(String(one.text), `Ticket id: ${ticket.id}`);
    t.notMatch(String(one.html), /<img/i, 'the subject is escaped in HTML');
    t.match(String(one.html), /&lt;img src=x onerror=alert\(1\)&gt; Refund &amp; &quot;return&quot;/);
    const list = await api('GET', `/v1/tickets/${ticket.id}/mail`, admin.token);
    t.same(list.json().data, [], "the ticket's mail list holds its conversation's mails only");
  });

  await t.test("an agent's own choices win, per channel", async (t) => {
    const both = await api('PUT', '/v1/me/notification-preferences', solver.token, {
      preferences: [{ department_id: returns, kind: 'ticket_created', email: false }],
    });
    t.equal(both.statusCode, 200, both.body);
    // The manager wants mail but no inbox entry.
    await api('PUT', '/v1/me/notification-preferences', manager.token, {
      preferences: [{ department_id: returns, kind: 'ticket_created', enabled: false, email: true }],
    });
    const ticket = await createTicket('Wrong size');
    await settle();
    const mails = await delivered(ticket);
    t.same(
      mails.map((m) => m.to),
      [[manager.agent.email]],
    );
    t.notOk(await inboxHas(manager.token, ticket.id), 'inbox off: no inbox entry');
    t.ok(await inboxHas(solver.token, ticket.id), 'email off: the inbox still has it');

    const neither = await api('PUT', '/v1/me/notification-preferences', solver.token, {
      preferences: [{ department_id: returns, kind: 'ticket_created' }],
    });
    t.equal(neither.statusCode, 400);
    t.equal(neither.json().code, 'nothing_to_set');
    t.equal(neither.json().errors[0].field, 'body/preferences/0');
    const noDefault = await api('PUT', `/v1/departments/${returns}/notification-defaults`, manager.token, {
      defaults: [{ kind: 'ticket_created' }],
    });
    t.equal(noDefault.statusCode, 400);

    // null forgets the agent's choice: the department's default (email on) applies again.
    await api('PUT', '/v1/me/notification-preferences', solver.token, {
      preferences: [{ department_id: returns, kind: 'ticket_created', email: null }],
    });
    const again = await createTicket('Late again');
    await settle();
    t.same(
      (await delivered(again)).map((m) => m.to).sort(),
      [[manager.agent.email], [solver.agent.email]].sort(),
    );
    const elsewhere = await createTicket('Invoice', other);
    await settle();
    t.same(await notificationRows(elsewhere.id), [], "another department's defaults are its own");
    t.ok(await inboxHas(outsider.token, elsewhere.id));
  });

  await t.test('a refusing SMTP server: the mail is retried, not lost', async (t) => {
    smtp.behaviour.tempFailures = 2;
    const ticket = await createTicket('Retry me');
    await settle();
    await delivered(ticket);
    const rows = await notificationRows(ticket.id);
    t.ok(
      rows.some((r) => r.attempts > 1),
      `a mail needed more than one attempt (${JSON.stringify(rows)})`,
    );
  });

  await t.test('a reply to a notification mail is ignored by mail in', async (t) => {
    const ticket = await createTicket('Answer me');
    await settle();
    await delivered(ticket);
    const [row] = await notificationRows(ticket.id);
    const mailbox = await api('POST', '/v1/mailboxes', admin.token, {
      name: 'Returns inbound',
      department_id: returns,
      kind: 'inbound',
    });
    t.equal(mailbox.statusCode, 201, mailbox.body);
    const count = async () =>
      Number(
        (
          await ctx.db
            .selectFrom('tickets')
            .select((eb) => eb.fn.countAll().as('n'))
            .executeTakeFirstOrThrow()
        ).n,
      );
    const before = await count();
    const reply = (threading: { inReplyTo: string } | { references: string }, text: string) =>
      ctx.request({
        method: 'POST',
        url: '/v1/inbound/email',
        headers: {
          'content-type': 'message/rfc822',
          authorization: `Bearer ${mailbox.json().inbound_secret}`,
        },
        payload: rawMail({
          from: String(row!.to_address),
          to: 'returns@acme.test',
          subject: `Re: [Returns] New ticket in Returns: #${ticket.number} Answer me`,
          ...threading,
          text,
        }),
      });
    const res = await reply({ inReplyTo: `<${row!.mail_message_id}>` }, 'On it.');
    t.equal(res.statusCode, 202, res.body);
    t.equal(res.json().outcome, 'ignored');
    t.equal(await count(), before, 'no ticket made');
    // A client that names what it answers in References only (or forwards the notification on).
    const byReferences = await reply(
      { references: `<earlier@elsewhere.test> <${row!.mail_message_id}>` },
      'On it, again.',
    );
    t.equal(byReferences.statusCode, 202, byReferences.body);
    t.equal(byReferences.json().outcome, 'ignored');
    t.equal(await count(), before, 'no ticket made of it either');
    const messages = await api('GET', `/v1/tickets/${ticket.id}/messages`, admin.token);
    t.equal(messages.json().data.length, 1, 'nothing added to the ticket');
  });
  await t.test('an event of a department deleted since still mails, and blocks no batch', async (t) => {
    const doomed = await makeDepartment(ctx.db, 'Doomed');
    const heir = await makeDepartment(ctx.db, 'Heir');
    const agent = await agentWithToken(ctx, {
      departments: [
        [doomed, 'solver'],
        [heir, 'solver'],
      ],
    });
    const on = await api('PUT', '/v1/me/notification-preferences', agent.token, {
      preferences: [{ department_id: heir, kind: 'customer_replied', email: true }],
    });
    t.equal(on.statusCode, 200, on.body);
    const created = await api('POST', '/v1/tickets', admin.token, {
      subject: 'Moved along',
      channel: 'api',
      department_id: doomed,
      assignee_id: agent.agent.id,
      contact: { email: 'moved@example.com' },
      message: { body: 'Hello' },
    });
    t.equal(created.statusCode, 201, created.body);
    const ticketId = created.json().id as string;
    await settle();
    // The customer writes while the ticket is in Doomed; Doomed is deleted (its tickets go to
    // Heir, the assignee with them) before the consumer reads the reply.
    const reply = await api('POST', `/v1/tickets/${ticketId}/messages`, admin.token, {
      kind: 'customer',
      body: 'Any news?',
    });
    t.equal(reply.statusCode, 201, reply.body);
    const gone = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${doomed}?move_to_department_id=${heir}`,
      token: admin.token,
    });
    t.equal(gone.statusCode, 204, gone.body);
    await settle();
    t.same(
      (await notificationRows(ticketId)).map((r) => r.to_address),
      [agent.agent.email],
      'the assignee is mailed of the reply',
    );
    t.ok(await inboxHas(agent.token, ticketId), 'and the inbox has it');
  });
  await t.test('whether addresses are ours is read once per batch, not once per mail', async (t) => {
    const ticket = await createTicket('Busy department');
    const deliveries: Delivery[] = Array.from({ length: 40 }, (_, i) => ({
      notification: {
        id: randomUUID(),
        agent_id: (i % 2 === 0 ? manager : solver).agent.id,
        kind: 'ticket_created',
        event_id: `t:${i}`,
        ticket_id: ticket.id,
        department_id: returns,
        actor_agent_id: null,
        subject: 'Busy department',
      },
      inbox: false,
      email: (i % 2 === 0 ? manager : solver).agent.email,
    }));
    let lookups = 0;
    const rollback = new Error('rollback');
    await ctx.db
      .transaction()
      .execute(async (trx) => {
        const counted = trx.withPlugin({
          transformQuery: (args) => {
            const text = JSON.stringify(args.node);
            if (args.node.kind === 'SelectQueryNode' && /department_addresses|mail_settings/.test(text))
              lookups++;
            return args.node;
          },
          transformResult: async (args) => args.result,
        });
        await emailChannel(mail).deliver(counted, deliveries);
        const rows = await trx
          .selectFrom('mail_outbox')
          .select('id')
          .where('ticket_id', '=', ticket.id)
          .where('kind', '=', 'notification')
          .execute();
        t.equal(rows.length, 40, 'every mail written');
        throw rollback;
      })
      .catch((err: unknown) => {
        if (err !== rollback) throw err;
      });
    t.ok(lookups <= 6, `address and identity lookups do not grow with the mails (${lookups})`);
  });
  await t.test('an agent disabled before their mail goes out is not mailed', async (t) => {
    const leaver = await agentWithToken(ctx, { departments: [[returns, 'solver']] });
    const on = await api('PUT', '/v1/me/notification-preferences', leaver.token, {
      preferences: [{ department_id: returns, kind: 'ticket_created', email: true }],
    });
    t.equal(on.statusCode, 200, on.body);
    const ticket = await createTicket('After hours');
    // No job queue: the rows wait, queued, as they would behind an SMTP server that is away.
    await settleNotifications(ctx.db, { ...mail, queue: undefined });
    const row = await ctx.db
      .selectFrom('mail_outbox')
      .select('id')
      .where('kind', '=', 'notification')
      .where('ticket_id', '=', ticket.id)
      .where('to_address', '=', leaver.agent.email)
      .executeTakeFirstOrThrow();
    await ctx.db
      .updateTable('agents')
      .set({ status: 'disabled' })
      .where('id', '=', leaver.agent.id)
      .execute();
    await attemptNow([row.id]);
    t.notOk(
      smtp.received.some((m) => m.to.includes(leaver.agent.email)),
      'nothing reached the disabled agent',
    );
    const after = await ctx.db
      .selectFrom('mail_outbox')
      .select('state')
      .where('id', '=', row.id)
      .executeTakeFirstOrThrow();
    t.equal(after.state, 'cancelled');
  });
  await t.test(
    'an agent who may no longer read the ticket when their mail goes out is not mailed',
    async (t) => {
      // One leaves the department, one stays but the ticket moves to a department not theirs, and
      // one stays a member of the department the ticket stays in: only the last is mailed.
      const member = async () => {
        const agent = await agentWithToken(ctx, { departments: [[returns, 'solver']] });
        const on = await api('PUT', '/v1/me/notification-preferences', agent.token, {
          preferences: [{ department_id: returns, kind: 'ticket_created', email: true }],
        });
        t.equal(on.statusCode, 200, on.body);
        return agent;
      };
      const [leaver, stayer, control] = [await member(), await member(), await member()];
      const left = await createTicket('Left before the mail');
      const moved = await createTicket('Moved before the mail');
      // No job queue: the rows wait, queued, as they would behind an SMTP server that is away.
      await settleNotifications(ctx.db, { ...mail, queue: undefined });
      const rowsOf = async (ticketId: string) =>
        ctx.db
          .selectFrom('mail_outbox')
          .select(['id', 'to_address', 'state'])
          .where('kind', '=', 'notification')
          .where('ticket_id', '=', ticketId)
          .where('to_address', 'in', [leaver.agent.email, stayer.agent.email, control.agent.email])
          .execute();
      const before = [...(await rowsOf(left.id)), ...(await rowsOf(moved.id))];
      t.equal(before.length, 6, 'each of the three was to be mailed of each ticket');
      const removed = await api(
        'DELETE',
        `/v1/departments/${returns}/members/${leaver.agent.id}`,
        admin.token,
      );
      t.equal(removed.statusCode, 204, removed.body);
      const transferred = await api('POST', `/v1/tickets/${moved.id}/transfer`, admin.token, {
        department_id: other,
      });
      t.equal(transferred.statusCode, 200, transferred.body);
      await attemptNow(before.map((r) => r.id));
      const stateOf = async (ticketId: string, email: string) =>
        (await rowsOf(ticketId)).find((r) => r.to_address === email)?.state;
      t.equal(await stateOf(left.id, leaver.agent.email), 'cancelled', 'the leaver is not mailed');
      t.equal(
        await stateOf(left.id, stayer.agent.email),
        'sent',
        'a member is mailed of a ticket still theirs',
      );
      t.equal(await stateOf(moved.id, stayer.agent.email), 'cancelled', 'nor of a ticket moved out of reach');
      t.equal(await stateOf(moved.id, control.agent.email), 'cancelled');
      t.equal(await stateOf(left.id, control.agent.email), 'sent');
      t.notOk(
        smtp.received.some((m) => m.to.includes(leaver.agent.email)),
        'nothing reached the agent who left',
      );
    },
  );
  await t.test('a batch of thousands of mails is written, not refused by the parameter limit', async (t) => {
    const ticket = await createTicket('Burst');
    const deliveries: Delivery[] = Array.from({ length: 9000 }, (_, i) => ({
      notification: {
        id: randomUUID(),
        agent_id: solver.agent.id,
        kind: 'ticket_created',
        event_id: `burst:${i}`,
        ticket_id: ticket.id,
        department_id: returns,
        actor_agent_id: null,
        subject: 'Burst',
      },
      inbox: true,
      email: solver.agent.email,
    }));
    const rollback = new Error('rollback');
    await ctx.db
      .transaction()
      .execute(async (trx) => {
        await handleBatchChannels(trx, deliveries);
        const [mails, inbox] = await Promise.all([
          trx
            .selectFrom('mail_outbox')
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .where('ticket_id', '=', ticket.id)
            .where('kind', '=', 'notification')
            .executeTakeFirstOrThrow(),
          trx
            .selectFrom('notifications')
            .select((eb) => eb.fn.countAll<string>().as('n'))
            .where('ticket_id', '=', ticket.id)
            .executeTakeFirstOrThrow(),
        ]);
        t.equal(Number(mails.n), 9000, 'every mail written');
        t.equal(Number(inbox.n), 9000, 'every inbox entry written');
        throw rollback;
      })
      .catch((err: unknown) => {
        if (err !== rollback) throw err;
      });
  });
});
