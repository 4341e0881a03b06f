import { Writable } from 'node:stream';
import t from 'tap';
import { smtpSettingsOfDepartment } from '../src/domains/mailboxes/repository.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { rawMail } from './helpers/mail.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// The app logs into memory, unredacted, so the test can read every line it logged and prove no
// password or secret is among them.
async function appWithLog(t: Parameters<typeof buildTestApp>[0]) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const ctx = await buildTestApp(t, {}, { logger: { level: 'trace', stream } });
  return { ctx, log: () => lines.join('') };
}

const IMAP_PASSWORD = 'imap-pa55word-that-must-never-show';
const SMTP_PASSWORD = 'smtp-pa55word-that-must-never-show';

t.test('mailboxes', async (t) => {
  const { ctx, log } = await appWithLog(t);
  const { db } = ctx;
  const sales = await makeDepartment(db, 'Sales');
  const support = await makeDepartment(db, 'Support');
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const manager = await agentWithToken(ctx, { departments: [[sales, 'manager']] });
  const call = (
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    url: string,
    payload?: unknown,
    token = admin.token,
  ) => ctx.request({ method, url, token, ...(payload !== undefined && { payload: payload as object }) });

  let id = '';
  let secret = '';
  await t.test('an admin connects an IMAP mailbox with SMTP; secrets are write-only', async (t) => {
    const res = await call('POST', '/v1/mailboxes', {
      name: 'Sales',
      department_id: sales,
      kind: 'imap',
      imap: { host: 'imap.acme.test', port: 993, username: 'sales@acme.test', password: IMAP_PASSWORD },
      smtp: {
        host: 'smtp.acme.test',
        port: 465,
        secure: true,
        username: 'sales@acme.test',
        password: SMTP_PASSWORD,
      },
    });
    t.equal(res.statusCode, 201, res.body);
    t.equal(res.headers.location, `/v1/mailboxes/${res.json().id}`);
    ({ id, inbound_secret: secret } = res.json());
    t.match(res.json(), {
      kind: 'imap',
      active: true,
      imap: {
        host: 'imap.acme.test',
        port: 993,
        tls: true,
        folder: 'INBOX',
        password_set: true,
        poll_seconds: null,
      },
      smtp: {
        host: 'smtp.acme.test',
        port: 465,
        secure: true,
        username: 'sales@acme.test',
        password_set: true,
      },
      last_polled_at: null,
      last_error: null,
    });
    for (const read of [res, await call('GET', `/v1/mailboxes/${id}`), await call('GET', '/v1/mailboxes')]) {
      t.notMatch(read.body, IMAP_PASSWORD);
      t.notMatch(read.body, SMTP_PASSWORD);
    }
    t.notMatch((await call('GET', `/v1/mailboxes/${id}`)).body, secret, 'the secret is shown once');
    const stored = await db
      .selectFrom('mailboxes')
      .select('inbound_secret_hash')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    t.not(stored.inbound_secret_hash, secret, 'only a hash is kept');
    const events = await call('GET', '/v1/events?types=mailbox.created');
    t.equal(events.statusCode, 200, events.body);
    t.notMatch(events.body, IMAP_PASSWORD);
  });

  await t.test('smtpSettingsOfDepartment: the first active mailbox with SMTP', async (t) => {
    t.same(await smtpSettingsOfDepartment(db, sales), {
      host: 'smtp.acme.test',
      port: 465,
      secure: true,
      user: 'sales@acme.test',
      password: SMTP_PASSWORD,
    });
    t.equal(await smtpSettingsOfDepartment(db, support), undefined);
    await call('PATCH', `/v1/mailboxes/${id}`, { active: false });
    t.equal(await smtpSettingsOfDepartment(db, sales), undefined, 'inactive mailboxes do not count');
    await call('PATCH', `/v1/mailboxes/${id}`, { active: true });
  });

  await t.test('changes: a password left out is kept, null removes SMTP', async (t) => {
    const res = await call('PATCH', `/v1/mailboxes/${id}`, {
      name: 'Sales mail',
      imap: { folder: 'Support' },
      smtp: { host: 'smtp.acme.test', port: 587 },
    });
    t.equal(res.statusCode, 200, res.body);
    t.match(res.json(), {
      name: 'Sales mail',
      imap: { folder: 'Support', password_set: true },
      smtp: { port: 587, password_set: true },
    });
    t.equal((await smtpSettingsOfDepartment(db, sales))?.password, SMTP_PASSWORD);
    const removed = await call('PATCH', `/v1/mailboxes/${id}`, { smtp: null });
    t.equal(removed.json().smtp, null);
    t.equal(await smtpSettingsOfDepartment(db, sales), undefined);
  });

  await t.test('a new IMAP host, port or username needs the password again', async (t) => {
    const before = await db
      .selectFrom('mailboxes')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    for (const imap of [{ host: 'attacker.test' }, { port: 2993 }, { username: 'someone-else' }]) {
      const res = await call('PATCH', `/v1/mailboxes/${id}`, { imap });
      t.equal(res.statusCode, 422, res.body);
      t.match(res.json(), { code: 'password_required', errors: [{ field: 'body/imap/password' }] });
    }
    const after = await db.selectFrom('mailboxes').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    t.same(
      [after.imap_host, after.imap_port, after.imap_username, after.imap_password],
      [before.imap_host, before.imap_port, before.imap_username, before.imap_password],
      'nothing changed',
    );
    const moved = await call('PATCH', `/v1/mailboxes/${id}`, {
      imap: { host: 'imap2.acme.test', password: 'the-new-one' },
    });
    t.equal(moved.statusCode, 200, moved.body);
    t.match(moved.json().imap, { host: 'imap2.acme.test', password_set: true });
  });

  await t.test('bad input answers 4xx and changes nothing', async (t) => {
    const before = await db.selectFrom('mailboxes').selectAll().orderBy('id').execute();
    const cases: [unknown, number][] = [
      [{ name: 'x', department_id: sales, kind: 'imap' }, 422],
      [
        {
          name: 'x',
          department_id: sales,
          kind: 'inbound',
          imap: { host: 'h', port: 1, username: 'u', password: 'p' },
        },
        422,
      ],
      [{ name: 'x', department_id: '00000000-0000-4000-8000-000000000000', kind: 'inbound' }, 422],
      [{ name: 'x', department_id: 'nope', kind: 'inbound' }, 400],
      [{ name: 'x', department_id: sales, kind: 'pop3' }, 400],
      [{ name: 'x', department_id: sales, kind: 'inbound', extra: 1 }, 400],
      [{ name: 'x'.repeat(201), department_id: sales, kind: 'inbound' }, 400],
      [{ name: 'Sales MAIL', department_id: sales, kind: 'inbound' }, 409],
      [
        {
          name: 'x',
          department_id: sales,
          kind: 'imap',
          imap: { host: 'h', port: 70000, username: 'u', password: 'p' },
        },
        400,
      ],
      [{ name: 'x', department_id: sales, kind: 'inbound', smtp: { host: 'h', port: '25' } }, 400],
    ];
    for (const [payload, status] of cases) {
      const res = await call('POST', '/v1/mailboxes', payload);
      t.equal(res.statusCode, status, `${JSON.stringify(payload).slice(0, 80)}: ${res.body}`);
    }
    t.equal((await call('PATCH', `/v1/mailboxes/${id}`, {})).statusCode, 400);
    t.equal(
      (await call('PATCH', '/v1/mailboxes/00000000-0000-4000-8000-000000000000', { active: true }))
        .statusCode,
      404,
    );
    t.equal((await call('GET', '/v1/mailboxes/not-a-uuid')).statusCode, 400);
    t.same(await db.selectFrom('mailboxes').selectAll().orderBy('id').execute(), before);
  });

  await t.test('only owners and admins manage mailboxes', async (t) => {
    for (const [method, url, payload] of [
      ['GET', '/v1/mailboxes', undefined],
      ['GET', `/v1/mailboxes/${id}`, undefined],
      ['POST', '/v1/mailboxes', { name: 'm', department_id: sales, kind: 'inbound' }],
      ['PATCH', `/v1/mailboxes/${id}`, { active: false }],
      ['POST', `/v1/mailboxes/${id}/rotate-secret`, undefined],
      ['DELETE', `/v1/mailboxes/${id}`, undefined],
    ] as const) {
      const res = await call(method, url, payload, manager.token);
      t.equal(res.statusCode, 403, `${method} ${url}`);
    }
    t.equal((await ctx.request({ method: 'GET', url: '/v1/mailboxes' })).statusCode, 401);
  });

  await t.test('the inbound secret works, rotates, and never reaches the log', async (t) => {
    const inbound = (key: string) =>
      ctx.request({
        method: 'POST',
        url: '/v1/inbound/email',
        headers: { 'content-type': 'message/rfc822', authorization: `Bearer ${key}` },
        payload: rawMail({ from: 'alice@customer.test' }),
      });
    t.equal((await inbound(secret)).statusCode, 202);
    const rotated = await call('POST', `/v1/mailboxes/${id}/rotate-secret`);
    t.equal(rotated.statusCode, 200);
    t.equal((await inbound(secret)).statusCode, 401);
    t.equal((await inbound(rotated.json().inbound_secret)).statusCode, 202);
    const text = log();
    t.match(text, /inbound mail received/, 'the log was written');
    for (const hidden of [IMAP_PASSWORD, SMTP_PASSWORD, secret, rotated.json().inbound_secret, admin.token]) {
      t.notOk(text.includes(hidden), 'no secret in the log');
    }
  });

  await t.test('a department with mailboxes is not deleted from under them', async (t) => {
    const blocked = await call('DELETE', `/v1/departments/${sales}`);
    t.equal(blocked.statusCode, 409, blocked.body);
    t.match(JSON.stringify(blocked.json().blockers), /mailbox/);
    const deleted = await call('DELETE', `/v1/mailboxes/${id}`);
    t.equal(deleted.statusCode, 204);
    t.equal((await call('GET', `/v1/mailboxes/${id}`)).statusCode, 404);
  });
});
