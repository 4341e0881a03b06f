import { pino } from 'pino';
import t from 'tap';
import { loadConfig } from '../src/config.ts';
import { attemptMails } from '../src/domains/mail-out/delivery.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { startSmtpReceiver, waitFor } from './helpers/smtp.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// CSAT surveys through HTTP and a real SMTP server: the department's setting, the survey mail
// after a resolve, and its link rating the ticket once.

const ENV = {
  MAIL_DISPATCH_INTERVAL_MS: '100',
  MAIL_FROM: 'help@example.test',
  PUBLIC_BASE_URL: 'https://help.example.test/',
  PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '1000',
};

async function call(ctx: TestContext, method: string, url: string, token?: string, payload?: object) {
  return ctx.request({ method: method as 'GET', url, ...(token && { token }), ...(payload && { payload }) });
}

t.test('CSAT surveys', async (t) => {
  const smtp = await startSmtpReceiver();
  t.teardown(smtp.close);
  const ctx = await buildTestApp(t, { ...ENV, SMTP_URL: smtp.url }, { jobs: true });
  const sales = await makeDepartment(ctx.db, 'Sales');
  const other = await makeDepartment(ctx.db, 'Other');
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: manager } = await agentWithToken(ctx, { departments: [[sales, 'manager']] });
  const { token: solver } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const { token: outsider } = await agentWithToken(ctx, { departments: [[other, 'manager']] });

  await t.test('the department setting: who reads it, who changes it, what is refused', async (t) => {
    const url = `/v1/departments/${sales}/csat`;
    const initial = await call(ctx, 'GET', url, solver);
    t.equal(initial.statusCode, 200);
    t.same(initial.json(), { department_id: sales, enabled: false, delay_minutes: 60, source: 'default' });
    t.equal((await call(ctx, 'GET', url, outsider)).statusCode, 404, 'not their department');
    t.equal((await call(ctx, 'PUT', url, outsider, { enabled: true, delay_minutes: 0 })).statusCode, 404);
    const bySolver = await call(ctx, 'PUT', url, solver, { enabled: true, delay_minutes: 0 });
    t.equal(bySolver.statusCode, 403);
    t.equal(bySolver.json().code, 'manager_required');
    for (const bad of [
      { enabled: true },
      { enabled: 'yes', delay_minutes: 0 },
      { enabled: true, delay_minutes: -1 },
      { enabled: true, delay_minutes: 43_201 },
      { enabled: true, delay_minutes: 1.5 },
      { enabled: true, delay_minutes: '5' },
      { enabled: true, delay_minutes: 5, extra: 1 },
    ]) {
      const res = await call(ctx, 'PUT', url, manager, bad);
      t.equal(res.statusCode, 400, JSON.stringify(bad));
    }
    t.equal(
      (
        await call(ctx, 'PUT', '/v1/departments/00000000-0000-4000-8000-000000000000/csat', admin, {
          enabled: true,
          delay_minutes: 0,
        })
      ).statusCode,
      404,
    );
    t.equal((await call(ctx, 'GET', url, solver)).json().source, 'default', 'nothing changed');
    const set = await call(ctx, 'PUT', url, manager, { enabled: true, delay_minutes: 0 });
    t.equal(set.statusCode, 200);
    t.same(set.json(), { department_id: sales, enabled: true, delay_minutes: 0, source: 'department' });
    const events = await ctx.db
      .selectFrom('settings_events')
      .select(['payload'])
      .where('type', '=', 'csat_settings.updated')
      .execute();
    t.equal(events.length, 1);
    t.same((events[0]!.payload as { changes: unknown }).changes, {
      enabled: { from: false, to: true },
      delay_minutes: { from: 60, to: 0 },
    });
  });

  let n = 0;
  const resolvedTicket = async () => {
    const res = await call(ctx, 'POST', '/v1/tickets', admin, {
      subject: `Broken widget ${++n}`,
      channel: 'email',
      contact: { email: `rater-${n}@customer.example`, name: `Rater ${n}` },
      message: { body: 'It broke.' },
      department_id: sales,
    });
    if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`);
    const id = res.json().id as string;
    const done = await call(ctx, 'PATCH', `/v1/tickets/${id}`, admin, { status: 'resolved' });
    if (done.statusCode !== 200) throw new Error(`resolve: ${done.statusCode} ${done.body}`);
    return { id, reference: res.json().reference as string, address: `rater-${n}@customer.example` };
  };
  const surveyToken = async (address: string) => {
    const mail = await waitFor('the survey mail', async () =>
      smtp.received.find((m) => m.to.includes(address) && /How did we do/.test(m.parsed.subject ?? '')),
    );
    const match = /https:\/\/help\.example\.test\/ratings\/([A-Za-z0-9_-]+)/.exec(mail.parsed.text ?? '');
    if (!match) throw new Error(`no survey link in: ${mail.parsed.text}`);
    return { token: match[1]!, mail };
  };

  await t.test('a survey link rates the ticket once', async (t) => {
    const ticket = await resolvedTicket();
    const { token, mail } = await surveyToken(ticket.address);
    t.equal(mail.parsed.headers.get('auto-submitted'), 'auto-replied');
    const kept = await waitFor('the sent survey’s text cleared', async () => {
      const rows = await ctx.db
        .selectFrom('mail_outbox')
        .select(['text_body', 'html_body', 'state'])
        .where('kind', '=', 'csat_survey')
        .where('state', '=', 'sent')
        .execute();
      return rows.length > 0 && rows.every((r) => r.text_body === '' && r.html_body === '')
        ? rows
        : undefined;
    });
    t.notMatch(JSON.stringify(kept), token, 'the link is not kept once sent');
    const number = ticket.reference.replace(/^T-/, '');
    t.match(mail.parsed.subject, `[Ticket#${number}]`);
    const page = await call(ctx, 'GET', `/v1/public/ratings/${token}`);
    t.equal(page.statusCode, 200);
    t.match(page.json(), {
      reference: `[Ticket#${number}]`,
      subject: `Broken widget ${n}`,
      department: 'Sales',
      rated: false,
    });
    t.equal(
      (await call(ctx, 'POST', `/v1/public/ratings/${token}`, undefined, { rating: 'great' })).statusCode,
      400,
    );
    t.equal(
      (await call(ctx, 'POST', `/v1/public/ratings/${token}`, undefined, { rating: 'positive', x: 1 }))
        .statusCode,
      400,
    );
    const rated = await call(ctx, 'POST', `/v1/public/ratings/${token}`, undefined, {
      rating: 'positive',
      comment: 'Fixed fast, thanks',
    });
    t.equal(rated.statusCode, 201, rated.body);
    t.match(rated.json(), {
      reference: `[Ticket#${number}]`,
      rating: 'positive',
      comment: 'Fixed fast, thanks',
    });
    const again = await call(ctx, 'POST', `/v1/public/ratings/${token}`, undefined, { rating: 'negative' });
    t.equal(again.statusCode, 409);
    t.equal(again.json().code, 'survey_used');
    t.equal((await call(ctx, 'GET', `/v1/public/ratings/${token}`)).json().rated, true);
    const ratings = await ctx.db
      .selectFrom('ratings')
      .selectAll()
      .where('ticket_id', '=', ticket.id)
      .execute();
    t.equal(ratings.length, 1, 'one rating');
    t.match(ratings[0], { value: 'positive', comment: 'Fixed fast, thanks', department_id: sales });
    const history = await call(ctx, 'GET', `/v1/tickets/${ticket.id}/history`, admin);
    const ratedEvents = (history.json().data as { type: string; actor: { type: string } }[]).filter(
      (e) => e.type === 'rated',
    );
    t.equal(ratedEvents.length, 1, 'the ticket history (and so the reports) has the rating');
    t.equal(ratedEvents[0]?.actor.type, 'contact');
    const quarter = 15 * 60_000;
    const from = new Date(Math.floor((Date.now() - 3_600_000) / quarter) * quarter).toISOString();
    const to = new Date(Math.ceil((Date.now() + 3_600_000) / quarter) * quarter).toISOString();
    const report = await call(
      ctx,
      'GET',
      `/v1/reports/departments?from=${from}&to=${to}&columns=positive_ratings,negative_ratings`,
      admin,
    );
    t.equal(report.statusCode, 200, report.body);
    const row = (report.json().data as { department_id: string; positive_ratings: number }[]).find(
      (r) => r.department_id === sales,
    );
    t.match(row, { positive_ratings: 1, negative_ratings: 0 }, 'counted in the reports');
  });

  await t.test('forged and expired links', async (t) => {
    const forged = 'A'.repeat(43);
    t.equal((await call(ctx, 'GET', `/v1/public/ratings/${forged}`)).statusCode, 404);
    t.equal(
      (await call(ctx, 'POST', `/v1/public/ratings/${forged}`, undefined, { rating: 'positive' })).statusCode,
      404,
    );
    t.equal((await call(ctx, 'GET', `/v1/public/ratings/${'x'.repeat(201)}`)).statusCode, 400);
    const ticket = await resolvedTicket();
    const { token } = await surveyToken(ticket.address);
    await ctx.db
      .updateTable('csat_surveys')
      .set({ expires_at: new Date(Date.now() - 60_000) })
      .where('ticket_id', '=', ticket.id)
      .execute();
    t.equal((await call(ctx, 'GET', `/v1/public/ratings/${token}`)).statusCode, 410);
    const late = await call(ctx, 'POST', `/v1/public/ratings/${token}`, undefined, { rating: 'positive' });
    t.equal(late.statusCode, 410);
    t.equal(late.json().code, 'survey_expired');
    const ratings = await ctx.db
      .selectFrom('ratings')
      .select('id')
      .where('ticket_id', '=', ticket.id)
      .execute();
    t.equal(ratings.length, 0, 'nothing recorded');
  });

  await t.test('a ticket reopened before the delay gets no survey', async (t) => {
    const set = await call(ctx, 'PUT', `/v1/departments/${sales}/csat`, manager, {
      enabled: true,
      delay_minutes: 60,
    });
    t.equal(set.statusCode, 200);
    const ticket = await resolvedTicket();
    const survey = await waitFor('the survey queued', async () =>
      ctx.db
        .selectFrom('mail_outbox')
        .select(['id', 'state', 'next_attempt_at'])
        .where('ticket_id', '=', ticket.id)
        .where('kind', '=', 'csat_survey')
        .executeTakeFirst(),
    );
    t.equal(survey.state, 'queued');
    t.ok(survey.next_attempt_at && survey.next_attempt_at.getTime() > Date.now() + 50 * 60_000, 'an hour on');
    const reopened = await call(ctx, 'POST', `/v1/tickets/${ticket.id}/messages`, admin, {
      kind: 'customer',
      body: 'Broken again.',
    });
    t.equal(reopened.statusCode, 201);
    // The delay runs out: its job comes.
    await ctx.db
      .updateTable('mail_outbox')
      .set({ next_attempt_at: new Date() })
      .where('id', '=', survey.id)
      .execute();
    const config = loadConfig({ ...ENV, SMTP_URL: smtp.url });
    await attemptMails(
      {
        db: ctx.db,
        log: pino({ level: 'silent' }),
        config: config.mail,
        queue: undefined,
        blobs: ctx.app.blobs,
      },
      [survey.id],
    );
    const after = await call(ctx, 'GET', `/v1/tickets/${ticket.id}/mail`, admin);
    const row = (after.json().data as { kind: string; state: string; attempts: number }[]).find(
      (m) => m.kind === 'csat_survey',
    );
    t.equal(row?.state, 'cancelled');
    t.equal(row?.attempts, 0);
    t.notOk(
      smtp.received.some(
        (m) => m.to.includes(ticket.address) && /How did we do/.test(m.parsed.subject ?? ''),
      ),
      'no survey mail',
    );
    // Resolved again: a new survey, the cancelled one is no open link.
    const done = await call(ctx, 'PATCH', `/v1/tickets/${ticket.id}`, admin, { status: 'resolved' });
    t.equal(done.statusCode, 200);
    const again = await waitFor('a second survey', async () => {
      const rows = await ctx.db
        .selectFrom('mail_outbox')
        .select(['state'])
        .where('ticket_id', '=', ticket.id)
        .where('kind', '=', 'csat_survey')
        .orderBy('created_at')
        .execute();
      return rows.length === 2 ? rows : undefined;
    });
    t.same(
      again.map((r) => r.state),
      ['cancelled', 'queued'],
    );
  });
});

t.test('the survey page is rate limited like the contact form', async (t) => {
  const ctx = await buildTestApp(t, { PUBLIC_FORM_RATE_LIMIT_PER_MINUTE: '2' });
  const codes: number[] = [];
  for (let i = 0; i < 3; i++)
    codes.push((await call(ctx, 'GET', `/v1/public/ratings/${'B'.repeat(43)}`)).statusCode);
  t.same(codes, [404, 404, 429]);
});
