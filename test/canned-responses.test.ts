import t from 'tap';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';
import { GHOST, makeTicket, ticketState } from './helpers/tickets.ts';

// Real servers, many round trips: a loaded CI machine needs more than tap's default 120 s.
t.setTimeout(300_000);

// Canned responses through HTTP: who manages and who sees them, Liquid checked on save, and a
// reply filled for a ticket with its tags and status in the same write.

async function cannedCount(ctx: TestContext) {
  const row = await ctx.db
    .selectFrom('canned_responses')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

t.test('canned responses', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: salesManager } = await agentWithToken(ctx, { departments: [[sales, 'manager']] });
  const { token: supportManager } = await agentWithToken(ctx, { departments: [[support, 'manager']] });
  const { agent: seller, token: salesAgent } = await agentWithToken(ctx, {
    name: 'Sam Seller',
    departments: [[sales, 'solver']],
  });
  const { token: supportAgent } = await agentWithToken(ctx, { departments: [[support, 'solver']] });
  const create = (token: string, payload: object) =>
    ctx.request({ method: 'POST', url: '/v1/canned-responses', token, payload });
  const ids: Record<string, string> = {};

  await t.test('admins manage help-desk-wide ones, managers their department’s', async (t) => {
    const wide = {
      title: 'Thanks for waiting',
      body: 'Hello {{ contact.name }}, thank you for your patience with {{ ticket.reference }}.',
    };
    const byManager = await create(salesManager, wide);
    t.equal(byManager.statusCode, 403);
    t.equal(byManager.json().code, 'admin_required');
    const byAdmin = await create(admin, wide);
    t.equal(byAdmin.statusCode, 201, byAdmin.body);
    t.equal(byAdmin.headers.location, `/v1/canned-responses/${byAdmin.json().id}`);
    ids.wide = byAdmin.json().id;

    const refund = {
      department_id: sales,
      title: 'Refund sent',
      body: 'Hello {{ contact.name }},\n\nyour refund for {{ ticket.reference }} ("{{ ticket.subject }}") is on its way.\n\n{{ agent.name }}, {{ department.name }}',
      tags: ['Refund', ' refund ', 'Billing'],
      status: 'resolved',
    };
    const other = await create(supportManager, refund);
    t.equal(other.statusCode, 403, 'a manager of another department');
    t.equal(other.json().code, 'department_manager_required');
    const agent = await create(salesAgent, refund);
    t.equal(agent.statusCode, 403, 'an agent of the department');
    const own = await create(salesManager, refund);
    t.equal(own.statusCode, 201, own.body);
    t.same(own.json().tags, ['refund', 'billing'], 'tags normalised');
    t.equal(own.json().status, 'resolved');
    ids.refund = own.json().id;
    const supportOne = await create(supportManager, {
      department_id: support,
      title: 'Reset password',
      body: 'Use the link.',
    });
    t.equal(supportOne.statusCode, 201);
    ids.support = supportOne.json().id;

    const ghost = await create(admin, { ...refund, department_id: GHOST });
    t.equal(ghost.statusCode, 422);
    t.equal(ghost.json().code, 'department_not_found');
    const events = await ctx.db
      .selectFrom('settings_events')
      .select('type')
      .where('type', '=', 'canned_response.created')
      .execute();
    t.equal(events.length, 3);
  });

  await t.test('the body is checked on save: 422 with the position', async (t) => {
    const before = await cannedCount(ctx);
    const cases: [object, RegExp][] = [
      [{ title: 'x', body: 'Hi\n  {{ contact.nam }}' }, /line 2, column 6: unknown variable contact\.nam/],
      [{ title: 'x', body: '{{ message.text }}' }, /message is only available in agent_reply/],
      [{ title: 'x', body: '{{ ticket.subject | nope }}' }, /line 1, column 1: .*nope/],
      [{ title: 'x', body: '{% if ticket.subject %}' }, /not closed/],
    ];
    for (const [payload, message] of cases) {
      const res = await create(admin, payload);
      t.equal(res.statusCode, 422, res.body);
      t.equal(res.json().code, 'invalid_template');
      t.equal(res.json().errors[0].field, 'body/body');
      t.match(res.json().errors[0].message, message);
    }
    for (const payload of [
      { title: 'x', body: 'y', status: 'spam' },
      { title: '', body: 'y' },
      { title: 'x', body: 5 },
      { title: 'x', body: 'y', extra: 1 },
    ]) {
      t.equal((await create(admin, payload)).statusCode, 400, JSON.stringify(payload));
    }
    t.equal(await cannedCount(ctx), before, 'nothing saved');
  });

  await t.test('agents see help-desk-wide ones and their departments’; search', async (t) => {
    const titles = async (token: string, query = '') => {
      const res = await ctx.request({ method: 'GET', url: `/v1/canned-responses${query}`, token });
      t.equal(res.statusCode, 200, res.body);
      return res.json().data.map((c: { title: string }) => c.title);
    };
    t.same(await titles(salesAgent), ['Refund sent', 'Thanks for waiting']);
    t.same(await titles(supportAgent), ['Reset password', 'Thanks for waiting']);
    t.same(await titles(admin), ['Refund sent', 'Reset password', 'Thanks for waiting']);
    t.same(await titles(salesAgent, '?q=REFUND'), ['Refund sent'], 'title, any case');
    t.same(await titles(salesAgent, '?q=patience'), ['Thanks for waiting'], 'body');
    t.same(await titles(salesAgent, '?q=100%25'), []);
    t.same(await titles(admin, `?department_id=${support}`), ['Reset password', 'Thanks for waiting']);
    t.same(
      await titles(salesAgent, `?department_id=${support}`),
      ['Thanks for waiting'],
      'not theirs: only the wide ones',
    );
    const page = await ctx.request({ method: 'GET', url: '/v1/canned-responses?limit=1', token: admin });
    const next = await ctx.request({
      method: 'GET',
      url: `/v1/canned-responses?limit=1&cursor=${page.json().next_cursor}`,
      token: admin,
    });
    t.same(
      next.json().data.map((c: { title: string }) => c.title),
      ['Reset password'],
      'keyset pages',
    );

    const hidden = await ctx.request({
      method: 'GET',
      url: `/v1/canned-responses/${ids.refund}`,
      token: supportAgent,
    });
    t.equal(hidden.statusCode, 404, 'another department’s answers 404');
    t.equal(hidden.json().code, 'canned_response_not_found');
    const visible = await ctx.request({
      method: 'GET',
      url: `/v1/canned-responses/${ids.wide}`,
      token: supportAgent,
    });
    t.equal(visible.statusCode, 200);
  });

  await t.test('update and delete with If-Match', async (t) => {
    const read = await ctx.request({
      method: 'GET',
      url: `/v1/canned-responses/${ids.support}`,
      token: supportManager,
    });
    const byOther = await ctx.request({
      method: 'PATCH',
      url: `/v1/canned-responses/${ids.support}`,
      token: salesManager,
      payload: { title: 'Mine' },
    });
    t.equal(byOther.statusCode, 404, 'out of reach');
    const ok = await ctx.request({
      method: 'PATCH',
      url: `/v1/canned-responses/${ids.support}`,
      token: supportManager,
      headers: { 'if-match': String(read.headers.etag) },
      payload: { title: 'Reset your password', tags: ['password'] },
    });
    t.equal(ok.statusCode, 200, ok.body);
    t.equal(ok.json().title, 'Reset your password');
    const stale = await ctx.request({
      method: 'DELETE',
      url: `/v1/canned-responses/${ids.support}`,
      token: supportManager,
      headers: { 'if-match': String(read.headers.etag) },
    });
    t.equal(stale.statusCode, 412);
    const bySupportAgent = await ctx.request({
      method: 'DELETE',
      url: `/v1/canned-responses/${ids.support}`,
      token: supportAgent,
    });
    t.equal(bySupportAgent.statusCode, 403);
    const gone = await ctx.request({
      method: 'DELETE',
      url: `/v1/canned-responses/${ids.support}`,
      token: supportManager,
      headers: { 'if-match': String(ok.headers.etag) },
    });
    t.equal(gone.statusCode, 204);
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/canned-responses/${ids.support}`, token: admin }))
        .statusCode,
      404,
    );
  });

  await t.test('a reply filled from a canned response, tags and status in the same write', async (t) => {
    const ticket = await makeTicket(ctx.db, {
      department_id: sales,
      subject: 'Broken parcel',
      contact: { name: 'Alex Buyer', email: 'alex@example.com' },
      tags: ['vip'],
    });
    const res = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: salesAgent,
      payload: { kind: 'reply', canned_response_id: ids.refund },
    });
    t.equal(res.statusCode, 201, res.body);
    t.equal(
      res.json().body,
      `Hello Alex Buyer,\n\nyour refund for [Ticket#${ticket.number}] ("Broken parcel") is on its way.\n\nSam Seller, Sales`,
    );
    t.equal(res.json().author_agent_id, seller.id);
    const after = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token: salesAgent });
    t.equal(after.json().status, 'resolved');
    t.same([...after.json().tags].sort(), ['billing', 'refund', 'vip']);
    const events = await ctx.db
      .selectFrom('ticket_events')
      .select(['type', 'tx'])
      .where('ticket_id', '=', ticket.id)
      .where('type', 'in', ['message_added', 'tags_changed', 'status_changed'])
      .orderBy('id')
      .execute();
    const last = events.filter((e) => e.tx === events.at(-1)!.tx);
    t.same(
      last.map((e) => e.type).sort(),
      ['message_added', 'status_changed', 'status_changed', 'tags_changed'].sort(),
      'one transaction: the reply, answered then resolved, the tags',
    );

    const note = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: salesAgent,
      payload: { kind: 'note', canned_response_id: ids.wide },
    });
    t.equal(note.statusCode, 201, note.body);
    t.match(note.json().body, /thank you for your patience with \[Ticket#/);
  });

  await t.test('a canned status on someone else’s ticket needs a supervisor, as PATCH does', async (t) => {
    const { agent: colleague } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
    const ticket = await makeTicket(ctx.db, { department_id: sales, assignee_id: colleague.id });
    const before = await ticketState(ctx.db, ticket.id);
    for (const kind of ['reply', 'note'] as const) {
      const res = await ctx.request({
        method: 'POST',
        url: `/v1/tickets/${ticket.id}/messages`,
        token: salesAgent,
        payload: { kind, canned_response_id: ids.refund },
      });
      t.equal(res.statusCode, 403, `${kind}: ${res.body}`);
      t.equal(res.json().code, 'supervisor_required');
    }
    t.same(await ticketState(ctx.db, ticket.id), before, 'no message, no status, no tags');
    const byManager = await ctx.request({
      method: 'POST',
      url: `/v1/tickets/${ticket.id}/messages`,
      token: salesManager,
      payload: { kind: 'note', canned_response_id: ids.refund },
    });
    t.equal(byManager.statusCode, 201, byManager.body);
    const after = await ctx.request({ method: 'GET', url: `/v1/tickets/${ticket.id}`, token: salesManager });
    t.equal(after.json().status, 'resolved');
  });

  await t.test('refusals change nothing', async (t) => {
    const salesTicket = await makeTicket(ctx.db, { department_id: sales });
    const supportTicket = await makeTicket(ctx.db, { department_id: support });
    const cases: [string, string, object, number, string][] = [
      [
        salesTicket.id,
        salesAgent,
        { kind: 'reply', body: 'Hi', canned_response_id: ids.wide },
        400,
        'canned_response_not_allowed',
      ],
      [
        salesTicket.id,
        salesAgent,
        { kind: 'customer', canned_response_id: ids.wide },
        400,
        'canned_response_not_allowed',
      ],
      [salesTicket.id, salesAgent, { kind: 'reply' }, 400, 'body_required'],
      [
        salesTicket.id,
        salesAgent,
        { kind: 'reply', canned_response_id: GHOST },
        404,
        'canned_response_not_found',
      ],
      [
        supportTicket.id,
        admin,
        { kind: 'reply', canned_response_id: ids.refund },
        422,
        'canned_response_other_department',
      ],
      [
        supportTicket.id,
        salesAgent,
        { kind: 'reply', canned_response_id: ids.wide },
        404,
        'ticket_not_found',
      ],
      [
        salesTicket.id,
        supportAgent,
        { kind: 'reply', canned_response_id: ids.refund },
        404,
        'ticket_not_found',
      ],
      [
        salesTicket.id,
        salesAgent,
        { kind: 'reply', canned_response_id: 'not-a-uuid' },
        400,
        'validation_failed',
      ],
    ];
    for (const [ticketId, token, payload, status, code] of cases) {
      const before = await ticketState(ctx.db, ticketId);
      const res = await ctx.request({
        method: 'POST',
        url: `/v1/tickets/${ticketId}/messages`,
        token,
        payload,
      });
      t.equal(res.statusCode, status, `${JSON.stringify(payload)}: ${res.body}`);
      if (status !== 400 || code !== 'validation_failed') t.equal(res.json().code, code);
      t.same(await ticketState(ctx.db, ticketId), before, 'nothing changed');
    }
  });
});
