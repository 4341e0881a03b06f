import { sql } from 'kysely';
import t from 'tap';
import { loadTicketAccess } from '../src/access/tickets.ts';
import { countMatching, ticketsMatching } from '../src/domains/tickets/repository.ts';
import { agentWithToken, buildTestApp, makeDepartment, sessionPrincipal } from './helpers/app.ts';
import { GHOST, makeTicket } from './helpers/tickets.ts';

t.setTimeout(300_000);

// Saved views through HTTP: who sees and manages each scope, filters checked on save, the
// view's tickets and counts through the list's own query with the reader's visibility and "me".

interface Made {
  id: string;
  department_id: string | null;
  assignee_id: string | null;
  priority: string;
  tags: string[];
  status: string;
}

t.test('saved views', async (t) => {
  const ctx = await buildTestApp(t);
  const sales = await makeDepartment(ctx.db, 'Sales');
  const support = await makeDepartment(ctx.db, 'Support');
  const { agent: adminAgent, token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const { token: salesManager } = await agentWithToken(ctx, { departments: [[sales, 'manager']] });
  const { token: supportManager } = await agentWithToken(ctx, { departments: [[support, 'manager']] });
  const { agent: sam, token: salesAgent } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const { agent: sue, token: salesAgent2 } = await agentWithToken(ctx, { departments: [[sales, 'solver']] });
  const { agent: bob, token: supportAgent } = await agentWithToken(ctx, {
    departments: [[support, 'solver']],
  });

  // Tickets of every kind the filters tell apart.
  const made: Made[] = [];
  const ticket = async (input: {
    department_id?: string | null;
    assignee_id?: string | null;
    priority?: 'low' | 'normal' | 'high' | 'urgent';
    tags?: string[];
    status?: 'resolved';
  }) => {
    const row = await makeTicket(ctx.db, input);
    if (input.status)
      await ctx.db.updateTable('tickets').set({ status: input.status }).where('id', '=', row.id).execute();
    made.push({
      id: row.id,
      department_id: input.department_id ?? null,
      assignee_id: input.assignee_id ?? null,
      priority: input.priority ?? 'normal',
      tags: input.tags ?? [],
      status: input.status ?? 'new',
    });
  };
  for (let i = 0; i < 3; i++) await ticket({ department_id: sales, assignee_id: sam.id, priority: 'urgent' });
  for (let i = 0; i < 2; i++) await ticket({ department_id: sales, assignee_id: sue.id, tags: ['vip'] });
  await ticket({ department_id: sales, assignee_id: null, priority: 'high' });
  await ticket({ department_id: sales, assignee_id: sam.id, status: 'resolved' });
  for (let i = 0; i < 2; i++)
    await ticket({ department_id: support, assignee_id: bob.id, priority: 'urgent' });
  await ticket({ department_id: support, assignee_id: null, tags: ['vip'] });
  await ticket({ department_id: null, assignee_id: null, priority: 'urgent' });

  const create = (token: string, payload: object) =>
    ctx.request({ method: 'POST', url: '/v1/views', token, payload });
  const get = (token: string, url: string) => ctx.request({ method: 'GET', url, token });
  const viewCount = async () =>
    Number(
      (
        await ctx.db
          .selectFrom('saved_views')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  /** Every ticket id of a view, following the cursors with small pages. */
  const viewTickets = async (token: string, id: string) => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await get(token, `/v1/views/${id}/tickets?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      if (res.statusCode !== 200) throw new Error(res.body);
      ids.push(...res.json().data.map((x: { id: string }) => x.id));
      cursor = res.json().next_cursor;
    } while (cursor);
    return ids;
  };
  const counts = async (token: string) => {
    const res = await get(token, '/v1/views/counts');
    t.equal(res.statusCode, 200, res.body);
    return new Map<string, { count: number; capped: boolean }>(
      res.json().data.map((c: { view_id: string; count: number; capped: boolean }) => [c.view_id, c]),
    );
  };
  const listed = async (token: string) => {
    const res = await get(token, '/v1/views');
    t.equal(res.statusCode, 200, res.body);
    return res.json().data.map((v: { name: string }) => v.name);
  };

  await t.test('GET /v1/tickets?assignee_id=me is the caller', async (t) => {
    for (const [token, agent] of [
      [salesAgent, sam],
      [salesAgent2, sue],
    ] as const) {
      const res = await get(token, '/v1/tickets?assignee_id=me&limit=200');
      t.equal(res.statusCode, 200, res.body);
      const expected = made
        .filter((m) => m.assignee_id === agent.id && m.status !== 'deleted')
        .map((m) => m.id);
      t.same(
        res
          .json()
          .data.map((x: { id: string }) => x.id)
          .sort(),
        expected.sort(),
      );
    }
    const both = await get(salesAgent, '/v1/tickets?assignee_id=me&assignee_id=none&limit=200');
    t.equal(
      both.json().data.length,
      made.filter((m) => m.assignee_id === sam.id || (m.assignee_id === null && m.department_id !== support))
        .length,
      'me or unassigned, of what Sam may see',
    );
    t.equal((await get(salesAgent, '/v1/tickets?assignee_id=you')).statusCode, 400);
  });

  const ids: Record<string, string> = {};

  await t.test('personal views: the creator’s only; ETag and If-Match', async (t) => {
    const res = await create(salesAgent, {
      name: ' Mine ',
      filters: { assignee_id: ['me'], status: ['new', 'open'] },
      sort: 'sla_due_at',
      position: 1,
    });
    t.equal(res.statusCode, 201, res.body);
    const view = res.json();
    t.match(view, {
      name: 'Mine',
      scope: 'personal',
      owner_agent_id: sam.id,
      department_id: null,
      sort: 'sla_due_at',
      position: 1,
    });
    t.equal(res.headers.location, `/v1/views/${view.id}`);
    ids.mine = view.id;
    const etag = res.headers.etag as string;
    t.ok(etag);

    t.equal((await get(salesAgent, `/v1/views/${view.id}`)).statusCode, 200);
    for (const other of [salesAgent2, admin, salesManager]) {
      t.equal((await get(other, `/v1/views/${view.id}`)).statusCode, 404, 'another agent, even an admin');
      t.equal((await get(other, `/v1/views/${view.id}/tickets`)).statusCode, 404);
      const patched = await ctx.request({
        method: 'PATCH',
        url: `/v1/views/${view.id}`,
        token: other,
        payload: { name: 'Stolen' },
      });
      t.equal(patched.statusCode, 404);
    }
    t.notOk((await counts(salesAgent2)).has(view.id));

    const renamed = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${view.id}`,
      token: salesAgent,
      headers: { 'if-match': etag },
      payload: { name: 'My open ones' },
    });
    t.equal(renamed.statusCode, 200, renamed.body);
    t.equal(renamed.json().name, 'My open ones');
    t.same(renamed.json().filters, { assignee_id: ['me'], status: ['new', 'open'] }, 'the rest kept');
    t.equal(renamed.json().sort, 'sla_due_at', 'sort kept');
    const stale = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${view.id}`,
      token: salesAgent,
      headers: { 'if-match': etag },
      payload: { name: 'Again' },
    });
    t.equal(stale.statusCode, 412);
    t.equal(stale.json().code, 'stale_version');
    t.equal((await get(salesAgent, `/v1/views/${view.id}`)).json().name, 'My open ones', 'unchanged');
    const staleDelete = await ctx.request({
      method: 'DELETE',
      url: `/v1/views/${view.id}`,
      token: salesAgent,
      headers: { 'if-match': etag },
    });
    t.equal(staleDelete.statusCode, 412);

    const doomed = (await create(salesAgent, { name: 'Doomed' })).json();
    t.same(doomed.filters, {});
    t.equal(doomed.sort, '-created_at');
    const current = (await get(salesAgent, `/v1/views/${doomed.id}`)).headers.etag as string;
    const deleted = await ctx.request({
      method: 'DELETE',
      url: `/v1/views/${doomed.id}`,
      token: salesAgent,
      headers: { 'if-match': current },
    });
    t.equal(deleted.statusCode, 204);
    t.equal((await get(salesAgent, `/v1/views/${doomed.id}`)).statusCode, 404);
    t.equal((await get(salesAgent, `/v1/views/${GHOST}`)).statusCode, 404);
  });

  await t.test('department views: members see them, managers and admins manage them', async (t) => {
    const payload = {
      name: 'Sales urgent',
      scope: 'department',
      department_id: sales,
      filters: { priority: ['urgent'] },
    };
    const byMember = await create(salesAgent, payload);
    t.equal(byMember.statusCode, 403);
    t.equal(byMember.json().code, 'department_manager_required');
    t.equal((await create(supportManager, payload)).statusCode, 403, 'another department’s manager');
    const own = await create(salesManager, payload);
    t.equal(own.statusCode, 201, own.body);
    ids.salesUrgent = own.json().id;
    t.equal((await create(salesManager, { ...payload, department_id: support })).statusCode, 403);
    const byAdmin = await create(admin, {
      name: 'Support vip',
      scope: 'department',
      department_id: support,
      filters: { tag: ['VIP'] },
    });
    t.equal(byAdmin.statusCode, 201, byAdmin.body);
    ids.supportVip = byAdmin.json().id;

    t.same(await listed(salesAgent), ['My open ones', 'Sales urgent']);
    t.same(await listed(supportAgent), ['Support vip']);
    t.same(await listed(admin), ['Sales urgent', 'Support vip'], 'admins see every department’s');

    // A member of support never sees sales' view, its tickets or its count.
    t.equal((await get(supportAgent, `/v1/views/${ids.salesUrgent}`)).statusCode, 404);
    t.equal((await get(supportAgent, `/v1/views/${ids.salesUrgent}/tickets`)).statusCode, 404);
    t.notOk((await counts(supportAgent)).has(ids.salesUrgent!));
    t.notOk((await counts(salesAgent)).has(ids.supportVip!));

    const memberPatch = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${ids.salesUrgent}`,
      token: salesAgent,
      payload: { position: 0 },
    });
    t.equal(memberPatch.statusCode, 403, 'a member sees it but may not change it');
    const memberDelete = await ctx.request({
      method: 'DELETE',
      url: `/v1/views/${ids.salesUrgent}`,
      token: salesAgent,
    });
    t.equal(memberDelete.statusCode, 403);
    const managerPatch = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${ids.salesUrgent}`,
      token: salesManager,
      payload: { position: 0 },
    });
    t.equal(managerPatch.statusCode, 200, managerPatch.body);
    t.same(await listed(salesAgent), ['Sales urgent', 'My open ones'], 'by position');

    const mismatch = await create(salesManager, { name: 'x', scope: 'department' });
    t.equal(mismatch.statusCode, 422);
    t.equal(mismatch.json().errors[0].field, 'body/department_id');
    const stray = await create(salesManager, { name: 'x', department_id: sales });
    t.equal(stray.statusCode, 422, 'department_id on a personal view');
    const ghost = await create(admin, { name: 'x', scope: 'department', department_id: GHOST });
    t.equal(ghost.statusCode, 422);
    t.equal(ghost.json().code, 'department_not_found');
  });

  await t.test('help-desk views: everyone sees them, owners and admins manage them', async (t) => {
    const payload = { name: 'Everything urgent', scope: 'helpdesk', filters: { priority: ['urgent'] } };
    const byManager = await create(salesManager, payload);
    t.equal(byManager.statusCode, 403);
    t.equal(byManager.json().code, 'admin_required');
    const res = await create(admin, payload);
    t.equal(res.statusCode, 201, res.body);
    ids.urgent = res.json().id;
    const mine = await create(admin, {
      name: 'Mine, anyone',
      scope: 'helpdesk',
      filters: { assignee_id: ['me'] },
    });
    ids.anyonesMine = mine.json().id;
    const salesAll = await create(admin, {
      name: 'All of sales',
      scope: 'helpdesk',
      filters: { department_id: [sales] },
    });
    ids.salesAll = salesAll.json().id;
    for (const token of [salesAgent, supportAgent, salesManager]) {
      t.ok((await listed(token)).includes('Everything urgent'));
    }
    const patch = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${ids.urgent}`,
      token: salesManager,
      payload: { name: 'Mine now' },
    });
    t.equal(patch.statusCode, 403);
  });

  await t.test('a shared view shows each reader only what they may see; me is the reader', async (t) => {
    // Sales' tickets through a help-desk view: support's agent may see none of them.
    t.same(await viewTickets(supportAgent, ids.salesAll!), []);
    t.equal((await counts(supportAgent)).get(ids.salesAll!)?.count, 0);
    const salesOpen = made.filter((m) => m.department_id === sales && m.status !== 'deleted');
    t.same((await viewTickets(salesAgent, ids.salesAll!)).sort(), salesOpen.map((m) => m.id).sort());

    // me: the same view, each reader's own tickets.
    for (const [token, agent] of [
      [salesAgent, sam],
      [salesAgent2, sue],
      [supportAgent, bob],
      [admin, adminAgent],
    ] as const) {
      const expected = made.filter((m) => m.assignee_id === agent.id).map((m) => m.id);
      t.same((await viewTickets(token, ids.anyonesMine!)).sort(), expected.sort(), 'me resolves per reader');
      t.equal((await counts(token)).get(ids.anyonesMine!)?.count, expected.length);
    }
  });

  await t.test('counts equal the lists’ totals, computed here from the tickets made', async (t) => {
    const sees = (token: string, m: Made) => {
      if (token === admin) return true;
      const mine = token === supportAgent ? [support] : [sales];
      const me =
        token === supportAgent
          ? bob.id
          : token === salesAgent
            ? sam.id
            : token === salesAgent2
              ? sue.id
              : null;
      return m.department_id === null || mine.includes(m.department_id) || m.assignee_id === me;
    };
    const expectedOf: Record<string, (m: Made, token: string) => boolean> = {
      urgent: (m) => m.priority === 'urgent',
      salesAll: (m) => m.department_id === sales,
      salesUrgent: (m) => m.priority === 'urgent',
      supportVip: (m) => m.tags.includes('vip'),
    };
    for (const token of [admin, salesAgent, supportAgent, salesManager]) {
      const got = await counts(token);
      const views = (await get(token, '/v1/views')).json().data as { id: string }[];
      t.same(
        [...got.keys()],
        views.map((v) => v.id),
        'every visible view, in list order',
      );
      for (const [name, matches] of Object.entries(expectedOf)) {
        const id = ids[name]!;
        if (!got.has(id)) continue;
        const expected = made.filter(
          (m) => m.status !== 'deleted' && sees(token, m) && matches(m, token),
        ).length;
        t.equal(got.get(id)!.count, expected, `${name}`);
        t.equal(got.get(id)!.capped, false);
        t.equal((await viewTickets(token, id)).length, expected, `${name}: the list agrees`);
      }
    }
  });

  await t.test('the count stops past its cap', async (t) => {
    const [principal] = await ctx.db
      .selectFrom('agents')
      .select(['id', 'role'])
      .where('id', '=', adminAgent.id)
      .execute();
    const access = await loadTicketAccess(ctx.db, sessionPrincipal(principal!));
    t.same(
      await countMatching(ctx.db, access, [{}, { priority: ['urgent'] }, { tag: ['nope'] }], 3),
      [4, 4, 0],
    );
    t.same(await countMatching(ctx.db, access, [{ priority: ['urgent'] }], 100), [6]);

    // Many filters go a few per statement, two statements at once: each count is still its own.
    const filters = [
      {},
      { priority: ['urgent' as const] },
      { tag: ['nope'] },
      { tag: ['vip'] },
      { department_id: [sales] },
      { department_id: [support] },
      { department_id: ['none'] },
      { assignee_id: ['none'] },
      { status: ['new' as const] },
      { status: ['deleted' as const] },
      { priority: ['low' as const, 'normal' as const] },
    ];
    const alone = [];
    for (const filter of filters) alone.push(...(await countMatching(ctx.db, access, [filter], 100)));
    t.ok(new Set(alone).size >= 4, `the filters count differently (${alone.join(', ')})`);
    t.same(await countMatching(ctx.db, access, filters, 100), alone, 'together as alone, in order');
    t.same(await countMatching(ctx.db, access, [], 100), []);
  });

  await t.test('counts read visibility in parts: the parts are the whole rule, none twice', async (t) => {
    // An agent in no department who holds a Sales ticket, and agents in one department each.
    const { agent: loner } = await agentWithToken(ctx, {});
    const held = made.find((m) => m.department_id === sales && m.assignee_id === null)!;
    await ctx.db.updateTable('tickets').set({ assignee_id: loner.id }).where('id', '=', held.id).execute();
    // And Sales' sam holds a Support ticket: the third part (their own tickets elsewhere).
    const elsewhere = made.find((m) => m.department_id === support && m.status !== 'deleted')!;
    await ctx.db.updateTable('tickets').set({ assignee_id: sam.id }).where('id', '=', elsewhere.id).execute();
    t.teardown(async () => {
      await ctx.db.updateTable('tickets').set({ assignee_id: null }).where('id', '=', held.id).execute();
      await ctx.db
        .updateTable('tickets')
        .set({ assignee_id: elsewhere.assignee_id })
        .where('id', '=', elsewhere.id)
        .execute();
    });
    const filters = [{}, { priority: ['high' as const] }, { department_id: [sales] }, { tag: ['vip'] }];
    for (const [name, agent] of [
      ['no department', loner],
      ['sales', sam],
      ['support', bob],
      ['admin', adminAgent],
    ] as const) {
      const access = await loadTicketAccess(ctx.db, sessionPrincipal(agent, ['read']));
      const whole = [];
      for (const filter of filters) {
        const row = await ctx.db
          .selectNoFrom(
            sql<string>`(select count(*) from (${ticketsMatching(ctx.db, access, filter).select(sql`1`.as('one'))}) m)`.as(
              'n',
            ),
          )
          .executeTakeFirstOrThrow();
        whole.push(Number(row.n));
      }
      t.same(await countMatching(ctx.db, access, filters, 1000), whole, `${name}: ${whole.join(', ')}`);
      if (name === 'no department')
        t.equal(
          whole[0],
          made.filter((m) => m.department_id === null && m.status !== 'deleted').length + 1,
          'their ticket and those in no department',
        );
      if (name === 'sales')
        t.equal(
          whole[0],
          made.filter(
            (m) =>
              m.status !== 'deleted' &&
              (m.department_id === sales || m.department_id === null || m.id === elsewhere.id),
          ).length,
          'Sales, no department, and their Support ticket',
        );
    }
  });

  await t.test(
    'at most 50 views per holder, also when they are created at once',
    {
      skip:
        ctx.database.kind === 'pglite'
          ? 'creations at once need two connections to race (PGlite runs one transaction at a time)'
          : false,
    },
    async (t) => {
      const { token } = await agentWithToken(ctx, { departments: [[support, 'manager']] });
      const create = (name: string, scope: 'personal' | 'department' = 'personal') =>
        ctx.request({
          method: 'POST',
          url: '/v1/views',
          token,
          payload: { name, scope, ...(scope === 'department' && { department_id: support }) },
        });
      for (let i = 0; i < 45; i++) t.equal((await create(`v${i}`)).statusCode, 201);
      // Ten at once for the last five places: each counts under the holder's lock.
      const racing = await Promise.all(Array.from({ length: 10 }, (_, i) => create(`race${i}`)));
      const codes = racing.map((r) => r.statusCode).sort();
      t.same(codes, [...Array(5).fill(201), ...Array(5).fill(409)]);
      t.ok(
        racing.filter((r) => r.statusCode === 409).every((r) => r.json().code === 'too_many_views'),
        '409 too_many_views',
      );
      const personal = (await get(token, '/v1/views'))
        .json()
        .data.filter((v: { scope: string }) => v.scope === 'personal');
      t.equal(personal.length, 50, 'exactly 50 held');
      // Another holder's limit is its own: a department view still fits.
      t.equal((await create('support, shared', 'department')).statusCode, 201);
    },
  );

  await t.test('bad filters: 400 for what the list refuses, 422 for unknown references', async (t) => {
    const before = await viewCount();
    for (const filters of [
      { status: ['bogus'] },
      { assignee_id: ['someone'] },
      { department_id: 'not-an-array' },
      { colour: ['red'] },
      { contact_id: GHOST },
      { q: '' },
      { tag: Array.from({ length: 51 }, (_, i) => `t${i}`) },
      { created_from: 'yesterday' },
      // An empty list names nothing (and `in ()` is no SQL): refused, like the list's own query.
      { status: [] },
      { channel: [] },
      { priority: [] },
      { department_id: [] },
      { assignee_id: [] },
      { tag: [] },
    ]) {
      const res = await create(salesAgent, { name: 'Bad', filters });
      t.equal(res.statusCode, 400, JSON.stringify(filters));
    }
    // RFC 3339 instants outside the years 0001-9999 in UTC: pg takes them ("0001 BC"), embedded
    // PGlite refuses them (toISOString), so a view saved with one broke GET /v1/views/counts and
    // its own tickets with a 400 on every later read. Refused when saved, on both backends.
    for (const instant of [
      '0000-01-01T00:00:00Z',
      '9999-12-31T23:59:59-23:59',
      '0001-01-01T00:00:00+01:00',
    ]) {
      const res = await create(salesAgent, { name: 'Year 0', filters: { updated_to: instant } });
      t.equal(res.statusCode, 400, instant);
      t.equal(res.json().code, 'validation_failed', instant);
      t.same(res.json().errors?.[0]?.field, 'body/filters/updated_to', instant);
      const patched = await ctx.request({
        method: 'PATCH',
        url: `/v1/views/${ids.mine}`,
        token: salesAgent,
        payload: { filters: { created_from: instant } },
      });
      t.equal(patched.statusCode, 400, `PATCH ${instant}`);
      const listed = await get(salesAgent, `/v1/tickets?updated_to=${encodeURIComponent(instant)}`);
      t.equal(
        listed.json().code,
        'validation_failed',
        `the list, ${instant}: the same answer on both backends`,
      );
    }
    t.equal((await get(salesAgent, '/v1/views/counts')).statusCode, 200, 'the counts still answer');
    for (const payload of [
      { name: '' },
      { name: 'x', sort: 'name' },
      { name: 'x', extra: 1 },
      { name: 'x', scope: 'team' },
    ]) {
      t.equal((await create(salesAgent, payload)).statusCode, 400, JSON.stringify(payload));
    }
    const unknown = await create(salesAgent, {
      name: 'Ghosts',
      filters: { department_id: ['none', GHOST], assignee_id: ['me', sam.id, GHOST] },
    });
    t.equal(unknown.statusCode, 422);
    t.equal(unknown.json().code, 'view_filter_unknown_reference');
    t.same(
      unknown.json().errors.map((e: { field: string }) => e.field),
      ['body/filters/department_id/1', 'body/filters/assignee_id/2'],
    );
    const patch = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${ids.mine}`,
      token: salesAgent,
      payload: { filters: { assignee_id: [GHOST] } },
    });
    t.equal(patch.statusCode, 422);
    const emptied = await ctx.request({
      method: 'PATCH',
      url: `/v1/views/${ids.mine}`,
      token: salesAgent,
      payload: { filters: { status: [] } },
    });
    t.equal(emptied.statusCode, 400, emptied.body);
    t.equal(await viewCount(), before, 'nothing saved');
    t.equal(
      (await get(salesAgent, `/v1/views/${ids.mine}`)).json().filters.assignee_id[0],
      'me',
      'unchanged',
    );
  });

  await t.test('views saved with an empty list before they were refused match no ticket', async (t) => {
    const stored: Record<string, string> = {};
    for (const [field, value] of [
      ['status', []],
      ['channel', []],
      ['priority', []],
      ['department_id', []],
      ['assignee_id', []],
      ['tag', []],
      ['status_and_more', { status: [], priority: ['urgent'] }],
      ['none', {}],
    ] as const) {
      const row = await ctx.db
        .insertInto('saved_views')
        .values({
          scope: 'helpdesk',
          name: `legacy empty ${field}`,
          filters: JSON.stringify(Array.isArray(value) ? { [field]: value } : value),
          sort: '-created_at',
          created_by: adminAgent.id,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      stored[field] = row.id;
    }
    const every = await viewTickets(admin, stored.none!);
    t.ok(every.length > 0);
    t.same(await viewTickets(admin, stored.tag!), every, 'tag []: all of no tags, every ticket');
    const sidebar = await counts(salesAgent);
    for (const [field, id] of Object.entries(stored)) {
      const view = await get(admin, `/v1/views/${id}`);
      t.equal(view.statusCode, 200, `${field}: the view reads`);
      if (field === 'tag' || field === 'none') continue;
      t.same(await viewTickets(admin, id), [], `${field}: no ticket`);
      t.match(sidebar.get(id), { count: 0, capped: false }, `${field}: counted 0 for another agent`);
    }
    await ctx.db.deleteFrom('saved_views').where('id', 'in', Object.values(stored)).execute();
  });
});
