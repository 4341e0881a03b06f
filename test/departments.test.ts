import t from 'tap';
import { deleteDepartment } from '../src/domains/departments/service.ts';
import { agentWithToken, buildTestApp, makeAgent, makeDepartment, sessionPrincipal } from './helpers/app.ts';

t.test('departments', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const countDepartments = async () =>
    Number(
      (
        await ctx.db
          .selectFrom('departments')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  await t.test(
    'create trims the name, applies defaults and answers 201 with Location and ETag',
    async (t) => {
      const res = await ctx.request({
        method: 'POST',
        url: '/v1/departments',
        token: admin,
        payload: { name: '  Returns  ', description: 'Refunds and RMAs' },
      });
      t.equal(res.statusCode, 201);
      const body = res.json();
      t.equal(body.name, 'Returns');
      t.equal(body.to_solve_enabled, true);
      t.equal(body.selectable_on_contact_form, false);
      t.equal(body.member_count, 0);
      t.equal(res.headers.location, `/v1/departments/${body.id}`);
      t.match(res.headers.etag, /^".+"$/);
      const get = await ctx.request({ method: 'GET', url: `/v1/departments/${body.id}`, token: admin });
      t.same(get.json(), body);
      t.equal(get.headers.etag, res.headers.etag, 'same representation, same ETag');
    },
  );

  await t.test('names are unique regardless of case and surrounding spaces', async (t) => {
    const before = await countDepartments();
    for (const name of ['returns', 'RETURNS', ' Returns ']) {
      const res = await ctx.request({
        method: 'POST',
        url: '/v1/departments',
        token: admin,
        payload: { name },
      });
      t.equal(res.statusCode, 409, name);
      t.equal(res.json().code, 'department_name_taken');
      t.match(res.headers['content-type'], /^application\/problem\+json/);
    }
    t.equal(await countDepartments(), before, 'nothing created');
  });

  await t.test('bad bodies answer 400 with the offending fields and create nothing', async (t) => {
    const before = await countDepartments();
    const cases: [unknown, string][] = [
      [{}, 'body/name'],
      [{ name: '' }, 'body/name'],
      [{ name: '   ' }, 'body/name'],
      [{ name: 'x'.repeat(101) }, 'body/name'],
      [{ name: 42 }, 'body/name'],
      [{ name: 'Ok', to_solve_enabled: 'yes' }, 'body/to_solve_enabled'],
      [{ name: 'Ok', to_solve_enabled: 1 }, 'body/to_solve_enabled'],
      [{ name: 'Ok', owner: 'me' }, 'body/owner'],
      [{ name: 'Ok', description: 'd'.repeat(2001) }, 'body/description'],
      [[{ name: 'Ok' }], 'body'],
    ];
    for (const [payload, field] of cases) {
      const res = await ctx.request({
        method: 'POST',
        url: '/v1/departments',
        token: admin,
        payload: payload as object,
      });
      t.equal(res.statusCode, 400, JSON.stringify(payload).slice(0, 60));
      t.equal(res.json().code, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.equal(await countDepartments(), before);
  });

  await t.test('update honours If-Match; a stale ETag answers 412 and changes nothing', async (t) => {
    const id = await makeDepartment(ctx.db, 'Billing');
    const first = await ctx.request({ method: 'GET', url: `/v1/departments/${id}`, token: admin });
    const etag = String(first.headers.etag);
    const ok = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${id}`,
      token: admin,
      headers: { 'if-match': etag },
      payload: { to_solve_enabled: false, selectable_on_contact_form: true },
    });
    t.equal(ok.statusCode, 200);
    t.equal(ok.json().to_solve_enabled, false);
    t.not(ok.headers.etag, etag, 'new version, new ETag');
    const stale = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${id}`,
      token: admin,
      headers: { 'if-match': etag },
      payload: { name: 'Invoices' },
    });
    t.equal(stale.statusCode, 412);
    t.equal(stale.json().code, 'stale_version');
    const row = await ctx.db
      .selectFrom('departments')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    t.equal(row.name, 'Billing', 'the stale write changed nothing');
    // An ETag with its quotes stripped is not a stale version but a malformed header: 412 would
    // send the client to read and retry forever.
    for (const malformed of [String(ok.headers.etag).replaceAll('"', ''), '3', '"a" "b"', 'W/']) {
      const bad = await ctx.request({
        method: 'PATCH',
        url: `/v1/departments/${id}`,
        token: admin,
        headers: { 'if-match': malformed },
        payload: { name: 'Invoices' },
      });
      t.equal(bad.statusCode, 400, `If-Match ${malformed}`);
      t.equal(bad.json().code, 'validation_failed');
      t.equal(bad.json().errors[0].field, 'headers/if-match');
    }
    const unchanged = await ctx.db
      .selectFrom('departments')
      .select('name')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    t.equal(unchanged.name, 'Billing', 'a malformed If-Match changed nothing');
    const wildcard = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${id}`,
      token: admin,
      headers: { 'if-match': '*' },
      payload: { name: 'Invoices' },
    });
    t.equal(wildcard.statusCode, 200);
    const empty = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${id}`,
      token: admin,
      payload: {},
    });
    t.equal(empty.statusCode, 400, 'an empty patch is a mistake');
    const clash = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${id}`,
      token: admin,
      payload: { name: 'RETURNS' },
    });
    t.equal(clash.statusCode, 409);
    t.equal(clash.json().code, 'department_name_taken');
  });

  await t.test('concurrent updates with the same If-Match: exactly one wins', async (t) => {
    const id = await makeDepartment(ctx.db);
    const etag = String(
      (await ctx.request({ method: 'GET', url: `/v1/departments/${id}`, token: admin })).headers.etag,
    );
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        ctx.request({
          method: 'PATCH',
          url: `/v1/departments/${id}`,
          token: admin,
          headers: { 'if-match': etag },
          payload: { description: `writer ${i}` },
        }),
      ),
    );
    const codes = results.map((r) => r.statusCode).sort();
    t.same(codes, [200, 412, 412, 412, 412, 412]);
  });

  await t.test('unknown, malformed and missing ids', async (t) => {
    const unknown = await ctx.request({
      method: 'GET',
      url: '/v1/departments/00000000-0000-4000-8000-000000000000',
      token: admin,
    });
    t.equal(unknown.statusCode, 404);
    t.equal(unknown.json().code, 'department_not_found');
    const malformed = await ctx.request({ method: 'GET', url: '/v1/departments/not-a-uuid', token: admin });
    t.equal(malformed.statusCode, 400);
    t.equal(malformed.json().errors[0].field, 'params/id');
    const patch = await ctx.request({
      method: 'PATCH',
      url: '/v1/departments/00000000-0000-4000-8000-000000000000',
      token: admin,
      payload: { name: 'x' },
    });
    t.equal(patch.statusCode, 404);
  });

  await t.test('list: sorted by name, cursor pages without gaps or repeats, filters', async (t) => {
    for (let i = 0; i < 12; i++) await makeDepartment(ctx.db, `Page ${String(i).padStart(2, '0')}`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/departments?q=page&limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await ctx.request({ method: 'GET', url, token: admin });
      t.equal(res.statusCode, 200);
      const body = res.json();
      seen.push(...body.data.map((d: { name: string }) => d.name));
      cursor = body.next_cursor;
      pages++;
      if (pages === 1) {
        // a department inserted between pages, sorting before the cursor, does not shift the next page
        await makeDepartment(ctx.db, 'Page 00a');
      }
    } while (cursor);
    t.equal(pages, 3);
    t.same(
      seen,
      Array.from({ length: 12 }, (_, i) => `Page ${String(i).padStart(2, '0')}`),
    );
    const other = await ctx.request({ method: 'GET', url: '/v1/departments?q=page&limit=5', token: admin });
    const foreign = await ctx.request({
      method: 'GET',
      url: `/v1/departments?limit=5&cursor=${other.json().next_cursor}`,
      token: admin,
    });
    t.equal(foreign.statusCode, 400, "another filter's cursor is refused");
    t.equal(foreign.json().code, 'invalid_cursor');
    const garbage = await ctx.request({ method: 'GET', url: '/v1/departments?cursor=%%%', token: admin });
    t.equal(garbage.statusCode, 400);
    for (const bad of [
      'limit=0',
      'limit=201',
      'limit=abc',
      'sort=name',
      'selectable_on_contact_form=maybe',
    ]) {
      const res = await ctx.request({ method: 'GET', url: `/v1/departments?${bad}`, token: admin });
      t.equal(res.statusCode, 400, bad);
    }
    const wildcard = await ctx.request({ method: 'GET', url: '/v1/departments?q=%25', token: admin });
    t.equal(wildcard.json().data.length, 0, 'LIKE wildcards in q are matched literally');
  });

  await t.test('members: add, change role, list, remove, replace, add all', async (t) => {
    const dep = await makeDepartment(ctx.db, 'Wholesale');
    const a = await makeAgent(ctx.db, { name: 'Alice' });
    const b = await makeAgent(ctx.db, { name: 'Bob' });
    const c = await makeAgent(ctx.db, { name: 'Carol' });

    const add = await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members/${a.id}`,
      token: admin,
      payload: {},
    });
    t.equal(add.statusCode, 201);
    t.equal(add.json().role, 'solver', 'solver by default');
    const again = await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members/${a.id}`,
      token: admin,
      payload: { role: 'supervisor' },
    });
    t.equal(again.statusCode, 200);
    t.equal(again.json().role, 'supervisor');
    const keep = await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members/${a.id}`,
      token: admin,
      payload: {},
    });
    t.equal(keep.json().role, 'supervisor', 'no role keeps the current one');

    const replaced = await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members`,
      token: admin,
      payload: { members: [{ agent_id: b.id, role: 'manager' }, { agent_id: c.id }] },
    });
    t.equal(replaced.statusCode, 200);
    t.same(
      replaced.json().data.map((m: { name: string; role: string }) => [m.name, m.role]),
      [
        ['Bob', 'manager'],
        ['Carol', 'solver'],
      ],
    );

    const agent = await ctx.request({ method: 'GET', url: `/v1/agents/${b.id}`, token: admin });
    t.same(agent.json().departments, [
      { department_id: dep, department_name: 'Wholesale', role: 'manager', level: 1 },
    ]);
    const department = await ctx.request({ method: 'GET', url: `/v1/departments/${dep}`, token: admin });
    t.equal(department.json().member_count, 2);

    const one = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/members/${c.id}`,
      token: admin,
    });
    t.equal(one.json().role, 'solver');
    const notMember = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/members/${a.id}`,
      token: admin,
    });
    t.equal(notMember.statusCode, 404);
    t.equal(notMember.json().code, 'member_not_found');

    const removed = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${dep}/members/${c.id}`,
      token: admin,
    });
    t.equal(removed.statusCode, 204);
    const removedAgain = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${dep}/members/${c.id}`,
      token: admin,
    });
    t.equal(removedAgain.statusCode, 404);

    const disabled = await makeAgent(ctx.db, { name: 'Dormant' });
    await ctx.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', disabled.id).execute();
    const all = await ctx.request({
      method: 'POST',
      url: `/v1/departments/${dep}/members/add-all`,
      token: admin,
      payload: { role: 'reader' },
    });
    t.equal(all.statusCode, 200);
    const total = Number(
      (
        await ctx.db
          .selectFrom('agents')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('status', '=', 'active')
          .executeTakeFirstOrThrow()
      ).n,
    );
    t.equal(all.json().added, total - 1, 'every active agent but Bob, who was a member');
    const bob = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/members/${b.id}`,
      token: admin,
    });
    t.equal(bob.json().role, 'manager', 'existing members keep their role');
    const dormant = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/members/${disabled.id}`,
      token: admin,
    });
    t.equal(dormant.statusCode, 404, 'disabled agents are left out by default');
    const readers = await ctx.request({
      method: 'GET',
      url: `/v1/departments/${dep}/members?role=reader&limit=200`,
      token: admin,
    });
    t.equal(readers.json().data.length, total - 1);
  });

  await t.test('member mistakes answer 4xx and change nothing', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const a = await makeAgent(ctx.db);
    await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members/${a.id}`,
      token: admin,
      payload: {},
    });
    const members = () =>
      ctx.db
        .selectFrom('department_members')
        .select(['agent_id', 'role'])
        .where('department_id', '=', dep)
        .execute();
    const before = await members();
    const ghost = '00000000-0000-4000-8000-000000000001';
    const cases = [
      { url: `/v1/departments/${dep}/members/${ghost}`, method: 'PUT' as const, payload: {}, status: 422 },
      {
        url: `/v1/departments/${dep}/members/${a.id}`,
        method: 'PUT' as const,
        payload: { role: 'boss' },
        status: 400,
      },
      { url: `/v1/departments/${ghost}/members/${a.id}`, method: 'PUT' as const, payload: {}, status: 404 },
      {
        url: `/v1/departments/${dep}/members`,
        method: 'PUT' as const,
        payload: { members: [{ agent_id: a.id }, { agent_id: a.id, role: 'reader' }] },
        status: 400,
      },
      {
        url: `/v1/departments/${dep}/members`,
        method: 'PUT' as const,
        payload: { members: [{ agent_id: ghost }] },
        status: 422,
      },
      { url: `/v1/departments/${dep}/members`, method: 'PUT' as const, payload: { agents: [] }, status: 400 },
    ];
    for (const c of cases) {
      const res = await ctx.request({ method: c.method, url: c.url, token: admin, payload: c.payload });
      t.equal(res.statusCode, c.status, `${c.method} ${c.url} ${JSON.stringify(c.payload)}`);
    }
    t.same(await members(), before);
  });

  await t.test('who may do what', async (t) => {
    const dep = await makeDepartment(ctx.db, 'Sales');
    const otherDep = await makeDepartment(ctx.db, 'Marketing');
    const { token: managerToken } = await agentWithToken(ctx, {
      departments: [[dep, 'manager']],
    });
    const { token: supervisor } = await agentWithToken(ctx, { departments: [[dep, 'supervisor']] });
    const { token: plain } = await agentWithToken(ctx);
    const newcomer = await makeAgent(ctx.db);

    // everyone reads
    for (const token of [managerToken, supervisor, plain]) {
      t.equal((await ctx.request({ method: 'GET', url: '/v1/departments', token })).statusCode, 200);
      t.equal(
        (await ctx.request({ method: 'GET', url: `/v1/departments/${dep}/members`, token })).statusCode,
        200,
      );
    }
    // only admins create and delete
    for (const token of [managerToken, supervisor, plain]) {
      const create = await ctx.request({
        method: 'POST',
        url: '/v1/departments',
        token,
        payload: { name: 'Nope' },
      });
      t.equal(create.statusCode, 403);
      t.equal(create.json().code, 'admin_required');
      t.equal(
        (await ctx.request({ method: 'DELETE', url: `/v1/departments/${dep}`, token })).statusCode,
        403,
      );
    }
    // a manager manages their department's settings and members, not another's
    const settings = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${dep}`,
      token: managerToken,
      payload: { description: 'managed' },
    });
    t.equal(settings.statusCode, 200);
    const join = await ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/members/${newcomer.id}`,
      token: managerToken,
      payload: { role: 'reader' },
    });
    t.equal(join.statusCode, 201);
    const elsewhere = await ctx.request({
      method: 'PATCH',
      url: `/v1/departments/${otherDep}`,
      token: managerToken,
      payload: { description: 'not mine' },
    });
    t.equal(elsewhere.statusCode, 403);
    t.equal(elsewhere.json().code, 'department_manager_required');
    for (const token of [supervisor, plain]) {
      const res = await ctx.request({
        method: 'PUT',
        url: `/v1/departments/${dep}/members/${newcomer.id}`,
        token,
        payload: { role: 'manager' },
      });
      t.equal(res.statusCode, 403);
      const all = await ctx.request({
        method: 'POST',
        url: `/v1/departments/${dep}/members/add-all`,
        token,
        payload: {},
      });
      t.equal(all.statusCode, 403);
    }
    const role = await ctx.db
      .selectFrom('department_members')
      .select('role')
      .where('department_id', '=', dep)
      .where('agent_id', '=', newcomer.id)
      .executeTakeFirstOrThrow();
    t.equal(role.role, 'reader', 'refused requests changed nothing');

    // no credentials
    const anonymous = await ctx.request({ method: 'GET', url: '/v1/departments' });
    t.equal(anonymous.statusCode, 401);
    t.equal(anonymous.json().code, 'missing_credentials');
    t.match(anonymous.headers['www-authenticate'], /^Bearer/);
  });

  await t.test('delete: 204, then 404; memberships go with it; stale If-Match refused', async (t) => {
    const dep = await makeDepartment(ctx.db);
    const a = await makeAgent(ctx.db, { departments: [[dep, 'solver']] });
    const stale = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${dep}`,
      token: admin,
      headers: { 'if-match': '"nope"' },
    });
    t.equal(stale.statusCode, 412);
    const res = await ctx.request({ method: 'DELETE', url: `/v1/departments/${dep}`, token: admin });
    t.equal(res.statusCode, 204);
    t.equal(res.body, '');
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/departments/${dep}`, token: admin })).statusCode,
      404,
    );
    const memberships = await ctx.db
      .selectFrom('department_members')
      .selectAll()
      .where('agent_id', '=', a.id)
      .execute();
    t.same(memberships, []);
    const self = await ctx.request({
      method: 'DELETE',
      url: `/v1/departments/${dep}?move_to_department_id=${dep}`,
      token: admin,
    });
    t.equal(self.statusCode, 400);
  });

  await t.test('delete is blocked by dependents, or hands them to a substitute', async (t) => {
    // Tickets and rules plug in through the same Dependents interface; a stand-in proves the mechanism.
    const dep = await makeDepartment(ctx.db);
    const substitute = await makeDepartment(ctx.db);
    const owned = new Map<string, number>([[dep, 3]]);
    const dependents = [
      {
        kind: 'widgets',
        count: async (_trx: unknown, id: string) => owned.get(id) ?? 0,
        moveTo: async (_trx: unknown, from: string, to: string) => {
          owned.set(to, (owned.get(to) ?? 0) + (owned.get(from) ?? 0));
          owned.delete(from);
        },
        describe: (n: number) => `${n} widgets belong to the department`,
      },
    ];
    const { agent } = await agentWithToken(ctx, { role: 'admin' });
    const principal = sessionPrincipal(agent);
    const request = { headers: {} } as Parameters<typeof deleteDepartment>[2];
    const error = await deleteDepartment(ctx.db, principal, request, dep, { dependents }).catch((e) => e);
    t.equal(error.code, 'department_in_use');
    t.same(error.blockers, [{ kind: 'widgets', count: 3, detail: '3 widgets belong to the department' }]);
    t.ok(
      await ctx.db.selectFrom('departments').select('id').where('id', '=', dep).executeTakeFirst(),
      'still there',
    );
    const missing = await deleteDepartment(ctx.db, principal, request, dep, {
      dependents,
      moveTo: '00000000-0000-4000-8000-000000000002',
    }).catch((e) => e);
    t.equal(missing.code, 'substitute_not_found');
    await deleteDepartment(ctx.db, principal, request, dep, { dependents, moveTo: substitute });
    t.equal(owned.get(substitute), 3);
    t.notOk(
      await ctx.db.selectFrom('departments').select('id').where('id', '=', dep).executeTakeFirst(),
      'deleted',
    );
  });
});
