import { randomUUID } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import pino from 'pino';
import t from 'tap';
import { receiveMail } from '../src/domains/mail-in/receive.ts';
import { MESSAGE_ATTEMPTS, readMailbox, startImapWatcher } from '../src/domains/mailboxes/imap.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { startDnsServer } from './helpers/dns.ts';
import { dovecotMissing, startDovecot } from './helpers/dovecot.ts';
import { rawMail } from './helpers/mail.ts';
import { closedPort } from './helpers/network.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Against a real Dovecot started for this file (private port and folder): messages appended over
// IMAP become tickets through the watcher, seen through HTTP.

const missing = dovecotMissing();
if (missing) {
  t.comment(`skipped: ${missing}`);
  t.pass('skipped: no Dovecot');
} else {
  t.test('IMAP mailboxes', async (t) => {
    const dovecot = await startDovecot();
    t.teardown(() => dovecot.stop());
    // Mailbox host names are asked of this DNS server (IMAP_DNS_SERVERS): imap.test is Dovecot's
    // address, silent.test never answers.
    const dns = await startDnsServer(t, { 'imap.test': { a: [dovecot.host] }, 'silent.test': 'silent' });
    const ctx = await buildTestApp(t, { IMAP_TIMEOUT_MS: '3000', IMAP_DNS_SERVERS: dns.server });
    const { db } = ctx;
    const sales = await makeDepartment(db, 'Sales');
    const support = await makeDepartment(db, 'Support');
    // Not the IMAP login (sales@, the Dovecot helper's user): a Support mailbox may not receive at
    // a support address of Sales (409 address_of_department).
    await db
      .insertInto('department_addresses')
      .values({ address: 'orders@acme.test', department_id: sales, is_reply_from: true })
      .execute();
    const admin = await agentWithToken(ctx, { role: 'admin' });
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/mailboxes',
      token: admin.token,
      payload: {
        name: 'Sales IMAP',
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
      },
    });
    t.equal(created.statusCode, 201, created.body);
    const mailboxId = created.json().id as string;

    const customer = new ImapFlow({
      host: dovecot.host,
      port: dovecot.port,
      secure: false,
      auth: { user: dovecot.user, pass: dovecot.password },
      logger: false,
    });
    await customer.connect();
    t.teardown(() => customer.logout().catch(() => {}));
    const append = (raw: string) => customer.append('INBOX', raw);

    const watchers = [1, 2].map(() =>
      startImapWatcher({
        db,
        blobs: ctx.app.blobs,
        log: pino({ level: 'silent' }),
        config: ctx.app.config.mailIn,
        tickMs: 100,
      }),
    );
    t.teardown(async () => {
      for (const w of watchers) await w.stop();
    });

    const ticketsNow = async () => {
      const res = await ctx.request({ method: 'GET', url: '/v1/tickets?limit=200', token: admin.token });
      t.equal(res.statusCode, 200, res.body);
      return res.json().data as { id: string; subject: string; department_id: string; status: string }[];
    };
    const messagesOf = async (id: string) =>
      (await ctx.request({ method: 'GET', url: `/v1/tickets/${id}/messages`, token: admin.token })).json()
        .data as {
        mail_message_id: string;
        mail_auto_submitted: boolean;
      }[];
    const until = async <T>(
      what: string,
      probe: () => Promise<T>,
      ms = 20_000,
    ): Promise<Exclude<T, undefined | false | null>> => {
      const deadline = Date.now() + ms;
      for (;;) {
        const value = await probe();
        if (value) return value as Exclude<T, undefined | false | null>;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    let ticketId = '';
    await t.test(
      'a message appended to the mailbox becomes a ticket of the department written to',
      async (t) => {
        await append(
          rawMail({
            from: 'Alice <alice@customer.test>',
            to: 'orders@acme.test',
            subject: 'Quote needed',
            messageId: '<imap-1@customer.test>',
          }),
        );
        const ticket = await until('the ticket', async () =>
          (await ticketsNow()).find((x) => x.subject === 'Quote needed'),
        );
        ticketId = ticket.id;
        t.equal(ticket.department_id, sales);
        const lock = await customer.getMailboxLock('INBOX');
        try {
          const seen = await until('the \\Seen flag', async () => {
            const message = await customer.fetchOne('1', { flags: true });
            return message ? message.flags?.has('\\Seen') : false;
          });
          t.ok(seen, 'marked \\Seen and kept on the server');
        } finally {
          lock.release();
        }
        const mailbox = await until('last_polled_at', async () => {
          const res = await ctx.request({
            method: 'GET',
            url: `/v1/mailboxes/${mailboxId}`,
            token: admin.token,
          });
          return res.json().last_polled_at ? res.json() : undefined;
        });
        t.equal(mailbox.last_error, null);
        t.notMatch(JSON.stringify(mailbox), dovecot.password);
      },
    );

    await t.test('a reply threads, a duplicate delivery and an auto-reply open nothing', async (t) => {
      await append(
        rawMail({
          from: 'alice@customer.test',
          to: 'orders@acme.test',
          subject: 'Re: Quote needed',
          messageId: '<imap-2@customer.test>',
          inReplyTo: '<imap-1@customer.test>',
        }),
      );
      await append(
        rawMail({
          from: 'alice@customer.test',
          to: 'orders@acme.test',
          subject: 'Quote needed',
          messageId: '<imap-1@customer.test>',
        }),
      );
      await append(
        rawMail({
          from: 'bob@customer.test',
          to: 'orders@acme.test',
          subject: 'Out of office',
          headers: { 'Auto-Submitted': 'auto-replied' },
        }),
      );
      await append(
        rawMail({
          from: 'carol@customer.test',
          to: 'orders@acme.test',
          subject: 'Last one',
          messageId: '<imap-5@customer.test>',
        }),
      );
      await until('the last message', async () => (await ticketsNow()).find((x) => x.subject === 'Last one'));
      const messages = await messagesOf(ticketId);
      t.same(
        messages.map((m) => m.mail_message_id),
        ['imap-1@customer.test', 'imap-2@customer.test'],
        'threaded once each',
      );
      const all = await ticketsNow();
      t.equal(all.length, 2, 'no ticket for the duplicate nor the auto-reply');
      t.notOk(all.some((x) => x.subject === 'Out of office'));
      // Progress is written right after each message's ticket, so it may trail the HTTP view a little.
      const lastUid = await until('the progress', async () => {
        const row = await db
          .selectFrom('mailboxes')
          .select(['imap_last_uid'])
          .where('id', '=', mailboxId)
          .executeTakeFirstOrThrow();
        return Number(row.imap_last_uid) === 5 ? 5 : undefined;
      });
      t.equal(lastUid, 5, 'read up to the last UID');
    });

    await t.test(
      'a message that always fails is skipped after a few tries, unread; the next one imported',
      async (t) => {
        await customer.mailboxCreate('Poison');
        const made = await ctx.request({
          method: 'POST',
          url: '/v1/mailboxes',
          token: admin.token,
          payload: {
            name: 'Poison IMAP',
            department_id: support,
            kind: 'imap',
            // Off for the running watchers from the start: this test reads it itself (made
            // active, a watcher could claim it before it was turned off, and read it first).
            active: false,
            imap: {
              host: dovecot.host,
              port: dovecot.port,
              tls: false,
              username: dovecot.user,
              password: dovecot.password,
              folder: 'Poison',
            },
          },
        });
        t.equal(made.statusCode, 201, made.body);
        await customer.append(
          'Poison',
          rawMail({ from: 'p@customer.test', to: 'orders@acme.test', subject: 'Poison pill' }),
        );
        await customer.append(
          'Poison',
          rawMail({ from: 'p@customer.test', to: 'orders@acme.test', subject: 'After the pill' }),
        );
        // Ingestion that a bug breaks for one message (not a DomainError, not the database away).
        const receive: typeof receiveMail = async (deps, mailbox, raw) => {
          if (raw.toString('latin1').includes('Poison pill'))
            throw new TypeError('a bug this message triggers');
          return receiveMail(deps, mailbox, raw);
        };
        const attempts = new Map<string, number>();
        const deps = {
          db,
          blobs: ctx.app.blobs,
          log: pino({ level: 'silent' }),
          config: ctx.app.config.mailIn,
          receive,
          attempts,
        };
        const row = async () =>
          db.selectFrom('mailboxes').selectAll().where('id', '=', made.json().id).executeTakeFirstOrThrow();
        for (let i = 1; i < MESSAGE_ATTEMPTS; i++) {
          await t.rejects(
            readMailbox(deps, await row(), () => false),
            /a bug/,
            `attempt ${i} fails`,
          );
        }
        t.equal(await readMailbox(deps, await row(), () => false), 2, 'then skipped, and the next one read');
        const subjects = (await ticketsNow()).map((x) => x.subject);
        t.ok(subjects.includes('After the pill'), 'the next message is a ticket');
        t.notOk(subjects.includes('Poison pill'));
        const lock = await customer.getMailboxLock('Poison');
        try {
          const flags: Record<string, boolean> = {};
          for await (const m of customer.fetch('1:*', { envelope: true, flags: true })) {
            flags[m.envelope?.subject ?? ''] = m.flags?.has('\\Seen') ?? false;
          }
          t.same(flags, { 'Poison pill': false, 'After the pill': true }, 'the skipped one stays unread');
        } finally {
          lock.release();
        }
      },
    );

    await t.test('a mailbox host name is asked of DNS, within IMAP_TIMEOUT_MS', async (t) => {
      const row = await db
        .selectFrom('mailboxes')
        .selectAll()
        .where('id', '=', mailboxId)
        .executeTakeFirstOrThrow();
      // A copy of the mailbox under an id no row has, read from its first message: what it takes
      // in is only recorded, and its progress lands nowhere.
      const copy = { ...row, id: randomUUID(), imap_last_uid: null, imap_uidvalidity: null };
      const taken: Buffer[] = [];
      const deps = {
        db,
        blobs: ctx.app.blobs,
        log: pino({ level: 'silent' }),
        config: ctx.app.config.mailIn,
        receive: (async (_deps, _mailbox, raw) => {
          taken.push(raw);
          return {
            outcome: 'ignored',
            ticket_id: null,
            message_id: null,
            mail_message_id: '',
            reason: 'recorded',
          };
        }) satisfies typeof receiveMail,
      };
      const asked = dns.asked.length;
      const fed = await readMailbox(deps, { ...copy, imap_host: 'imap.test' }, () => false);
      t.ok(fed >= 1, `read ${fed} messages through the name`);
      t.equal(taken.length, fed);
      t.ok(dns.asked.slice(asked).includes('A imap.test'), 'imap.test was asked of DNS, not of getaddrinfo');

      const silent = await readMailbox(deps, { ...copy, imap_host: 'silent.test' }, () => false).catch(
        (e: NodeJS.ErrnoException) => e,
      );
      t.match(silent, { code: 'ETIMEOUT', message: /silent\.test took over 1500 ms/ }, 'ends at the limit');
      t.ok(dns.asked.slice(asked).includes('A silent.test'));

      // The watcher records it as the mailbox's failure, and stops at once while one is under way.
      const lost = await ctx.request({
        method: 'POST',
        url: '/v1/mailboxes',
        token: admin.token,
        payload: {
          name: 'Silent DNS',
          department_id: support,
          kind: 'imap',
          imap: {
            host: 'silent.test',
            port: 143,
            tls: false,
            username: 'u',
            password: 'not-said-in-any-error',
          },
        },
      });
      t.equal(lost.statusCode, 201, lost.body);
      const failed = await until('the DNS failure', async () => {
        const res = await ctx.request({
          method: 'GET',
          url: `/v1/mailboxes/${lost.json().id}`,
          token: admin.token,
        });
        return res.json().last_error ? res.json() : undefined;
      });
      t.match(failed.last_error, /^ETIMEOUT: the DNS look-up of silent\.test took over 1500 ms/);
      await ctx.request({ method: 'DELETE', url: `/v1/mailboxes/${lost.json().id}`, token: admin.token });

      const stopped = new AbortController();
      stopped.abort();
      const askedBefore = dns.asked.length;
      const cut = await readMailbox(
        { ...deps, signal: stopped.signal },
        { ...copy, imap_host: 'silent.test' },
        () => false,
      ).catch((e: NodeJS.ErrnoException) => e);
      t.match(cut, { code: 'ECANCELLED' }, 'a stop before the look-up');
      t.equal(dns.asked.length, askedBefore, 'nobody was asked');

      // A stop while the look-up waits (here with a limit of ten minutes: without the stop this
      // read would hold the test until tap's timeout).
      const before = dns.asked.filter((q) => q === 'A silent.test').length;
      const halting = new AbortController();
      const long = { ...ctx.app.config.mailIn, dns: { servers: [dns.server], timeoutMs: 600_000 } };
      const waiting = readMailbox(
        { ...deps, config: { ...long, imapTimeoutMs: 600_000 }, signal: halting.signal },
        { ...copy, imap_host: 'silent.test' },
        () => false,
      ).catch((e: NodeJS.ErrnoException) => e);
      await until('the look-up under way', async () =>
        dns.asked.filter((q) => q === 'A silent.test').length > before ? true : undefined,
      );
      halting.abort();
      t.match(await waiting, { code: 'ECANCELLED' }, 'a stop ends the look-up under way');
    });

    await t.test(
      'a refused login and a server that is down give last_error and backoff, never a hang',
      async (t) => {
        const wrong = await ctx.request({
          method: 'PATCH',
          url: `/v1/mailboxes/${mailboxId}`,
          token: admin.token,
          payload: { imap: { password: 'not-the-password-xyz' } },
        });
        t.equal(wrong.statusCode, 200, wrong.body);
        const failed = await until('the login failure', async () => {
          const res = await ctx.request({
            method: 'GET',
            url: `/v1/mailboxes/${mailboxId}`,
            token: admin.token,
          });
          return res.json().last_error ? res.json() : undefined;
        });
        t.match(failed.last_error, /login refused/i);
        t.notMatch(failed.last_error, 'not-the-password-xyz');
        const row = await db
          .selectFrom('mailboxes')
          .select(['failures', 'next_poll_at'])
          .where('id', '=', mailboxId)
          .executeTakeFirstOrThrow();
        t.ok(row.failures >= 1);
        t.ok(row.next_poll_at && row.next_poll_at.getTime() > Date.now() + 10_000, 'backs off');

        const down = await ctx.request({
          method: 'POST',
          url: '/v1/mailboxes',
          token: admin.token,
          payload: {
            name: 'Down',
            department_id: support,
            kind: 'imap',
            imap: { host: '127.0.0.1', port: await closedPort(), tls: false, username: 'u', password: 'p' },
          },
        });
        t.equal(down.statusCode, 201);
        const downFailed = await until('the connection failure', async () => {
          const res = await ctx.request({
            method: 'GET',
            url: `/v1/mailboxes/${down.json().id}`,
            token: admin.token,
          });
          return res.json().last_error ? res.json() : undefined;
        });
        t.match(downFailed.last_error, /ECONNREFUSED|connect/i);
      },
    );
  });
}
