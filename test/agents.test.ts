import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import t, { type Test } from 'tap';
import {
  agentWithToken,
  buildTestApp,
  makeAgent,
  makeDepartment,
  PASSWORD,
  signIn,
  type TestContext,
} from './helpers/app.ts';

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

function isProblem(t: Test, res: LightMyRequestResponse, status: number, code: string) {
  t.equal(res.statusCode, status, res.body);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/);
  t.equal(res.json().code, code);
}

const agentRow = (ctx: TestContext, id: string) =>
  ctx.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();

const countAgents = async (ctx: TestContext) =>
  Number(
    (
      await ctx.db
        .selectFrom('agents')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

function api(ctx: TestContext, token: string) {
  return {
    create: (payload: unknown) =>
      ctx.request({ method: 'POST', url: '/v1/agents', token, payload: payload as object }),
    get: (id: string) => ctx.request({ method: 'GET', url: `/v1/agents/${id}`, token }),
    update: (id: string, payload: unknown, headers: Record<string, string> = {}) =>
      ctx.request({ method: 'PATCH', url: `/v1/agents/${id}`, token, headers, payload: payload as object }),
    remove: (id: string, headers: Record<string, string> = {}) =>
      ctx.request({ method: 'DELETE', url: `/v1/agents/${id}`, token, headers }),
    list: (query: string) => ctx.request({ method: 'GET', url: `/v1/agents?${query}`, token }),
  };
}

t.test('who may manage whom', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const plain = await agentWithToken(ctx, { role: 'agent' });
  const asOwner = api(ctx, owner.token);
  const asAdmin = api(ctx, admin.token);
  const asAgent = api(ctx, plain.token);

  await t.test('an agent reads agents and departments but changes no agent', async (t) => {
    const other = await makeAgent(ctx.db, { name: 'Other Agent' });
    t.equal((await asAgent.list('limit=10')).statusCode, 200);
    t.equal((await asAgent.get(other.id)).statusCode, 200);
    t.equal(
      (await ctx.request({ method: 'GET', url: '/v1/departments', token: plain.token })).statusCode,
      200,
    );

    const before = await countAgents(ctx);
    isProblem(
      t,
      await asAgent.create({ name: 'New', email: 'new-by-agent@example.com' }),
      403,
      'admin_required',
    );
    t.equal(await countAgents(ctx), before, 'nobody created');

    const otherBefore = await agentRow(ctx, other.id);
    isProblem(t, await asAgent.update(other.id, { name: 'Renamed' }), 403, 'admin_required');
    isProblem(t, await asAgent.update(other.id, { status: 'disabled' }), 403, 'admin_required');
    isProblem(t, await asAgent.remove(other.id), 403, 'admin_required');
    t.same(await agentRow(ctx, other.id), otherBefore, 'the other agent is untouched');

    const selfBefore = await agentRow(ctx, plain.agent.id);
    isProblem(t, await asAgent.update(plain.agent.id, { role: 'admin' }), 403, 'admin_required');
    isProblem(t, await asAgent.update(plain.agent.id, { role: 'owner' }), 403, 'owner_required');
    isProblem(t, await asAgent.update(owner.agent.id, { status: 'disabled' }), 403, 'owner_required');
    t.same(await agentRow(ctx, plain.agent.id), selfBefore, 'no self-promotion');
    t.equal((await agentRow(ctx, owner.agent.id))?.status, 'active');
  });

  await t.test('an admin manages agents and admins', async (t) => {
    const department = await makeDepartment(ctx.db, 'Returns');
    const created = await asAdmin.create({
      name: '  Dana Reyes ',
      email: 'dana@example.com',
      password: 'a long passphrase',
      departments: [{ department_id: department, role: 'supervisor' }],
    });
    t.equal(created.statusCode, 201, created.body);
    const dana = created.json();
    t.equal(dana.name, 'Dana Reyes', 'trimmed');
    t.equal(dana.role, 'agent', 'agent by default');
    t.equal(dana.status, 'active');
    t.equal(dana.has_password, true);
    t.same(dana.departments, [
      { department_id: department, department_name: 'Returns', role: 'supervisor', level: 1 },
    ]);
    t.equal(created.headers.location, `/v1/agents/${dana.id}`);
    const read = await asAdmin.get(dana.id);
    t.same(read.json(), dana);
    t.equal(read.headers.etag, created.headers.etag, 'same representation, same ETag');
    t.ok(await signIn(ctx, 'dana@example.com', 'a long passphrase'), 'the new agent can sign in');

    const newAdmin = await asAdmin.create({
      name: 'Second Admin',
      email: 'admin2@example.com',
      role: 'admin',
    });
    t.equal(newAdmin.statusCode, 201, newAdmin.body);
    t.equal(newAdmin.json().has_password, false);

    const promoted = await asAdmin.update(dana.id, { role: 'admin', name: 'Dana Reyes-Kim' });
    t.equal(promoted.statusCode, 200, promoted.body);
    t.equal(promoted.json().role, 'admin');
    t.equal(promoted.json().name, 'Dana Reyes-Kim');

    const demoted = await asAdmin.update(newAdmin.json().id, { role: 'agent', status: 'disabled' });
    t.equal(demoted.statusCode, 200, demoted.body);
    t.match(demoted.json(), { role: 'agent', status: 'disabled' });

    t.equal((await asAdmin.remove(newAdmin.json().id)).statusCode, 204);
    t.equal(await agentRow(ctx, newAdmin.json().id), undefined, 'deleted');
    isProblem(t, await asAdmin.get(newAdmin.json().id), 404, 'agent_not_found');
  });

  await t.test('an admin cannot touch owners or hand out the owner role', async (t) => {
    const before = await countAgents(ctx);
    isProblem(
      t,
      await asAdmin.create({ name: 'Wannabe', email: 'wannabe@example.com', role: 'owner' }),
      403,
      'owner_required',
    );
    t.equal(await countAgents(ctx), before, 'nobody created');

    const ownerBefore = await agentRow(ctx, owner.agent.id);
    for (const patch of [
      { name: 'Renamed Owner' },
      { role: 'agent' },
      { status: 'disabled' },
      { email: 'owner-stolen@example.com' },
      { password: 'a password the admin picked' },
    ]) {
      isProblem(t, await asAdmin.update(owner.agent.id, patch), 403, 'owner_required');
    }
    isProblem(t, await asAdmin.remove(owner.agent.id), 403, 'owner_required');
    t.same(await agentRow(ctx, owner.agent.id), ownerBefore, 'the owner is untouched');

    const target = await makeAgent(ctx.db);
    isProblem(t, await asAdmin.update(target.id, { role: 'owner' }), 403, 'owner_required');
    isProblem(t, await asAdmin.update(admin.agent.id, { role: 'owner' }), 403, 'owner_required');
    t.equal((await agentRow(ctx, target.id))?.role, 'agent');
    t.equal((await agentRow(ctx, admin.agent.id))?.role, 'admin', 'no self-promotion to owner');
  });

  await t.test('nobody disables or deletes themselves', async (t) => {
    for (const who of [admin, owner]) {
      const before = await agentRow(ctx, who.agent.id);
      // The same id in upper case names the same agent (it got past these checks once).
      for (const id of [who.agent.id, who.agent.id.toUpperCase()]) {
        isProblem(
          t,
          await api(ctx, who.token).update(id, { status: 'disabled' }),
          409,
          'cannot_disable_self',
        );
        isProblem(t, await api(ctx, who.token).remove(id), 409, 'cannot_delete_self');
      }
      t.same(await agentRow(ctx, who.agent.id), before, `${who.agent.role} unchanged`);
    }
  });

  await t.test('an owner manages owners', async (t) => {
    const created = await asOwner.create({ name: 'Co Owner', email: 'co-owner@example.com', role: 'owner' });
    t.equal(created.statusCode, 201, created.body);
    const id = created.json().id;
    const demoted = await asOwner.update(id, { role: 'admin' });
    t.equal(demoted.statusCode, 200, demoted.body);
    t.equal(demoted.json().role, 'admin');
    t.equal((await asOwner.update(id, { role: 'owner' })).statusCode, 200);
    t.equal((await asOwner.update(id, { status: 'disabled' })).statusCode, 200);
    t.equal((await asOwner.remove(id)).statusCode, 204);
    t.equal(await agentRow(ctx, id), undefined);
  });
});

t.test('the last active owner stays', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const asOwner = api(ctx, owner.token);

  await t.test('the only owner cannot demote, disable or delete themselves', async (t) => {
    const before = await agentRow(ctx, owner.agent.id);
    isProblem(t, await asOwner.update(owner.agent.id, { role: 'admin' }), 409, 'last_owner');
    isProblem(
      t,
      await asOwner.update(owner.agent.id, { role: 'agent', name: 'Still Me' }),
      409,
      'last_owner',
    );
    isProblem(t, await asOwner.update(owner.agent.id, { status: 'disabled' }), 409, 'cannot_disable_self');
    isProblem(t, await asOwner.remove(owner.agent.id), 409, 'cannot_delete_self');
    t.same(await agentRow(ctx, owner.agent.id), before, 'unchanged');
  });

  await t.test('a disabled owner does not count', async (t) => {
    const dormant = await makeAgent(ctx.db, { role: 'owner' });
    const disabled = await asOwner.update(dormant.id, { status: 'disabled' });
    t.equal(disabled.statusCode, 200, disabled.body);
    isProblem(t, await asOwner.update(owner.agent.id, { role: 'admin' }), 409, 'last_owner');
    t.equal((await agentRow(ctx, owner.agent.id))?.role, 'owner');

    t.equal((await asOwner.update(dormant.id, { status: 'active' })).statusCode, 200);
    const stepDown = await asOwner.update(owner.agent.id, { role: 'admin' });
    t.equal(stepDown.statusCode, 200, 'with another active owner, an owner may step down');
    t.equal((await agentRow(ctx, owner.agent.id))?.role, 'admin');
  });

  await t.test('two owners demoting each other at once leave one owner', async (t) => {
    const a = await agentWithToken(ctx, { role: 'owner' });
    const b = await agentWithToken(ctx, { role: 'owner' });
    // Leave exactly these two active owners.
    await ctx.db
      .updateTable('agents')
      .set({ status: 'disabled' })
      .where('role', '=', 'owner')
      .where('id', 'not in', [a.agent.id, b.agent.id])
      .execute();
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all([
        api(ctx, a.token).update(b.agent.id, { role: 'admin' }),
        api(ctx, b.token).update(a.agent.id, { role: 'admin' }),
      ]);
      const owners = await ctx.db
        .selectFrom('agents')
        .select('id')
        .where('role', '=', 'owner')
        .where('status', '=', 'active')
        .execute();
      t.equal(owners.length, 1, `round ${round}: one active owner remains`);
      const [won, lost] = [...results].sort((x, y) => x.statusCode - y.statusCode);
      t.equal(won?.statusCode, 200, `round ${round}: one change wins`);
      // The loser was either refused by the owner check (409) or, when the winner committed
      // before the loser's credentials were read, is no longer an owner at all (403).
      t.match(
        `${lost?.statusCode} ${lost?.json().code}`,
        /^(409 (last_owner|concurrent_update)|403 owner_required)$/,
        `round ${round}: the other is refused`,
      );
      // Both owners again for the next round.
      await ctx.db
        .updateTable('agents')
        .set({ role: 'owner' })
        .where('id', 'in', [a.agent.id, b.agent.id])
        .execute();
    }
  });
});

t.test('creating and updating agents: validation, conflicts, versions', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const asOwner = api(ctx, owner.token);

  await t.test('an email taken in any case answers 409 email_taken', async (t) => {
    await makeAgent(ctx.db, { email: 'Sam.Taken@Example.com' });
    const before = await countAgents(ctx);
    for (const email of ['sam.taken@example.com', 'SAM.TAKEN@EXAMPLE.COM', 'Sam.Taken@Example.com']) {
      isProblem(t, await asOwner.create({ name: 'Sam Again', email }), 409, 'email_taken');
    }
    t.equal(await countAgents(ctx), before, 'nobody created');

    const other = await makeAgent(ctx.db);
    const otherBefore = await agentRow(ctx, other.id);
    isProblem(t, await asOwner.update(other.id, { email: 'SAM.taken@example.com' }), 409, 'email_taken');
    t.same(await agentRow(ctx, other.id), otherBefore, 'unchanged');
  });

  await t.test('two creates with the same email in different case at once: one wins', async (t) => {
    const before = await countAgents(ctx);
    const results = await Promise.all([
      asOwner.create({ name: 'Twin One', email: 'twin@example.com' }),
      asOwner.create({ name: 'Twin Two', email: 'TWIN@example.com' }),
    ]);
    t.same(results.map((r) => r.statusCode).sort(), [201, 409]);
    const loser = results.find((r) => r.statusCode === 409);
    t.equal(loser?.json().code, 'email_taken');
    t.equal(await countAgents(ctx), before + 1);
  });

  await t.test('bad bodies answer 400 naming the field, and create nothing', async (t) => {
    const department = await makeDepartment(ctx.db);
    const ok = { name: 'Valid Name', email: 'valid@example.com' };
    const cases: [unknown, string][] = [
      [{}, 'body/name'],
      [{ email: 'valid@example.com' }, 'body/name'],
      [{ name: 'Valid Name' }, 'body/email'],
      [{ ...ok, name: 123 }, 'body/name'],
      [{ ...ok, name: '' }, 'body/name'],
      [{ ...ok, name: '   ' }, 'body/name'],
      [{ ...ok, name: 'n'.repeat(101) }, 'body/name'],
      [{ ...ok, name: 'n'.repeat(100_000) }, 'body/name'],
      [{ ...ok, name: null }, 'body/name'],
      [{ ...ok, email: 'not-an-email' }, 'body/email'],
      [{ ...ok, email: 12345 }, 'body/email'],
      [{ ...ok, email: `${'e'.repeat(250)}@example.com` }, 'body/email'],
      [{ ...ok, role: 5 }, 'body/role'],
      [{ ...ok, role: 'superuser' }, 'body/role'],
      [{ ...ok, role: 'Owner' }, 'body/role'],
      [{ ...ok, status: 'disabled' }, 'body/status'],
      [{ ...ok, password: 'too short' }, 'body/password'],
      [{ ...ok, password: 123456789012345 }, 'body/password'],
      [{ ...ok, password: 'p'.repeat(201) }, 'body/password'],
      [{ ...ok, departments: 'Returns' }, 'body/departments'],
      [{ ...ok, departments: [{ department_id: 'not-a-uuid' }] }, 'body/departments/0/department_id'],
      [{ ...ok, departments: [{ department_id: department, role: 'boss' }] }, 'body/departments/0/role'],
      [{ ...ok, departments: [{ department_id: department, extra: 1 }] }, 'body/departments/0/extra'],
      [{ ...ok, is_admin: true }, 'body/is_admin'],
      [[ok], 'body'],
    ];
    const before = await countAgents(ctx);
    for (const [payload, field] of cases) {
      const res = await asOwner.create(payload);
      isProblem(t, res, 400, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.equal(await countAgents(ctx), before, 'nobody created');
  });

  await t.test('bodies that are too large, not JSON or broken JSON are refused', async (t) => {
    const before = await countAgents(ctx);
    const huge = await asOwner.create({
      name: 'Huge',
      email: 'huge@example.com',
      note: 'x'.repeat(1_100_000),
    });
    isProblem(t, huge, 413, 'payload_too_large');
    const text = await ctx.request({
      method: 'POST',
      url: '/v1/agents',
      token: owner.token,
      headers: { 'content-type': 'text/plain' },
      payload: 'name=Plain',
    });
    isProblem(t, text, 415, 'unsupported_media_type');
    const broken = await ctx.request({
      method: 'POST',
      url: '/v1/agents',
      token: owner.token,
      headers: { 'content-type': 'application/json' },
      payload: '{"name": "Broken",',
    });
    isProblem(t, broken, 400, 'malformed_json');
    t.equal(await countAgents(ctx), before);
  });

  await t.test('departments must exist and appear once', async (t) => {
    const department = await makeDepartment(ctx.db);
    const before = await countAgents(ctx);
    const missing = await asOwner.create({
      name: 'Lost',
      email: 'lost@example.com',
      departments: [{ department_id: department }, { department_id: UNKNOWN_ID }],
    });
    isProblem(t, missing, 422, 'department_not_found');
    t.same(missing.json().errors, [
      { field: 'body/departments/1/department_id', message: 'no such department' },
    ]);
    const twice = await asOwner.create({
      name: 'Twice',
      email: 'twice@example.com',
      departments: [{ department_id: department }, { department_id: department, role: 'manager' }],
    });
    isProblem(t, twice, 400, 'duplicate_department');
    t.equal(await countAgents(ctx), before, 'nobody created');
    const memberships = await ctx.db
      .selectFrom('department_members')
      .select('agent_id')
      .where('department_id', '=', department)
      .execute();
    t.same(memberships, [], 'no membership left behind');
  });

  await t.test('bad updates answer 400 and change nothing', async (t) => {
    const target = await makeAgent(ctx.db);
    const before = await agentRow(ctx, target.id);
    const cases: [unknown, string][] = [
      [{}, 'body'],
      [{ name: 123 }, 'body/name'],
      [{ role: 5 }, 'body/role'],
      [{ role: 'root' }, 'body/role'],
      [{ status: 'gone' }, 'body/status'],
      [{ status: true }, 'body/status'],
      [{ email: 'nope' }, 'body/email'],
      [{ password: 'short' }, 'body/password'],
      [{ nickname: 'Sam' }, 'body/nickname'],
      [{ status: 'disabled', departments: [] }, 'body/departments'],
      [{ name: 'x'.repeat(5000) }, 'body/name'],
    ];
    for (const [payload, field] of cases) {
      const res = await asOwner.update(target.id, payload);
      isProblem(t, res, 400, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.same(await agentRow(ctx, target.id), before, 'unchanged');
  });

  await t.test('malformed ids answer 400 and unknown ids 404', async (t) => {
    for (const id of ['not-a-uuid', '123', `${UNKNOWN_ID}0`, "1' or '1'='1"]) {
      const url = `/v1/agents/${encodeURIComponent(id)}`;
      for (const res of [
        await ctx.request({ method: 'GET', url, token: owner.token }),
        await ctx.request({ method: 'PATCH', url, token: owner.token, payload: { name: 'X' } }),
        await ctx.request({ method: 'DELETE', url, token: owner.token }),
      ]) {
        isProblem(t, res, 400, 'validation_failed');
        t.equal(res.json().errors[0].field, 'params/id');
      }
    }
    isProblem(t, await asOwner.get(UNKNOWN_ID), 404, 'agent_not_found');
    isProblem(t, await asOwner.update(UNKNOWN_ID, { name: 'Nobody' }), 404, 'agent_not_found');
    isProblem(t, await asOwner.remove(UNKNOWN_ID), 404, 'agent_not_found');
  });

  await t.test(
    'PATCH and DELETE honour If-Match; a stale version answers 412 and changes nothing',
    async (t) => {
      const target = await makeAgent(ctx.db, { name: 'Versioned' });
      const etag = String((await asOwner.get(target.id)).headers.etag);
      t.match(etag, /^".+"$/);
      const ok = await asOwner.update(target.id, { name: 'Versioned Twice' }, { 'if-match': etag });
      t.equal(ok.statusCode, 200, ok.body);
      t.not(ok.headers.etag, etag, 'a new version, a new ETag');
      t.equal((await asOwner.get(target.id)).headers.etag, ok.headers.etag);

      const before = await agentRow(ctx, target.id);
      isProblem(
        t,
        await asOwner.update(target.id, { role: 'admin' }, { 'if-match': etag }),
        412,
        'stale_version',
      );
      isProblem(
        t,
        await asOwner.update(target.id, { name: 'X' }, { 'if-match': '"made-up"' }),
        412,
        'stale_version',
      );
      isProblem(t, await asOwner.remove(target.id, { 'if-match': etag }), 412, 'stale_version');
      t.same(await agentRow(ctx, target.id), before, 'neither changed nor deleted');

      const both = await asOwner.update(
        target.id,
        { name: 'Listed' },
        { 'if-match': `"nope", ${ok.headers.etag}` },
      );
      t.equal(both.statusCode, 200, 'any of several listed ETags may match');
      t.equal((await asOwner.remove(target.id, { 'if-match': String(both.headers.etag) })).statusCode, 204);
      t.equal(await agentRow(ctx, target.id), undefined);
    },
  );

  await t.test('nobody sets their own password without the current one', async (t) => {
    const admin = await agentWithToken(ctx, { role: 'admin' });
    for (const [who, token, id] of [
      ['the owner', owner.token, owner.agent.id],
      ['an admin', admin.token, admin.agent.id],
      ['an admin naming themselves in upper case', admin.token, admin.agent.id.toUpperCase()],
    ] as const) {
      const before = await agentRow(ctx, id.toLowerCase());
      const res = await ctx.request({
        method: 'PATCH',
        url: `/v1/agents/${id}`,
        token,
        payload: { password: 'set without the old one' },
      });
      isProblem(t, res, 403, 'current_password_required');
      t.same(await agentRow(ctx, id.toLowerCase()), before, `${who}: unchanged`);
    }
  });

  await t.test("an admin's password reset ends the agent's sessions", async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    const res = await asOwner.update(agent.id, { password: 'reset by the owner' });
    t.equal(res.statusCode, 200, res.body);
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/me', token }), 401, 'invalid_token');
    const old = await ctx.request({
      method: 'POST',
      url: '/v1/auth/token',
      payload: { email: agent.email, password: PASSWORD },
    });
    isProblem(t, old, 401, 'invalid_credentials');
    t.ok(await signIn(ctx, agent.email, 'reset by the owner'));
  });

  await t.test('disabling ends sessions; enabling lets the agent sign in again', async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    t.equal((await asOwner.update(agent.id, { status: 'disabled' })).statusCode, 200);
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/me', token }), 401, 'agent_disabled');
    t.equal((await asOwner.update(agent.id, { status: 'active' })).statusCode, 200);
    t.ok(await signIn(ctx, agent.email));
  });

  await t.test('deleting an agent ends their sessions and takes their API tokens along', async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/api-tokens',
      token,
      payload: { name: 'cli', scopes: ['read'] },
    });
    const secret: string = created.json().secret;
    t.equal((await asOwner.remove(agent.id)).statusCode, 204);
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/me', token }), 401, 'invalid_token');
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/me', token: secret }), 401, 'invalid_token');
    const tokens = await ctx.db
      .selectFrom('api_tokens')
      .select('id')
      .where('agent_id', '=', agent.id)
      .execute();
    t.same(tokens, []);
  });
});

t.test('listing agents', async (t) => {
  const ctx = await buildTestApp(t);
  const viewer = await agentWithToken(ctx, { role: 'agent', name: 'Viewer' });
  const asViewer = api(ctx, viewer.token);
  const support = await makeDepartment(ctx.db, 'Support');
  const billing = await makeDepartment(ctx.db, 'Billing');
  // Same names differing only in case and exact duplicates, so ties on the sort key cross page edges.
  const names = [
    'alice',
    'Alice',
    'ALICE',
    'bob',
    'Bob',
    'Bob',
    'Bob',
    'Carol',
    'dave',
    'Eve',
    'Eve',
    'Frank',
    'grace',
    'Heidi',
    'Ivan',
    'Judy',
    'Mallory',
    'Niaj',
    'Olivia',
    'Peggy_1',
    'Rupert',
    'Sybil',
    'Trent',
    'Victor',
    'Walter',
  ];
  for (const [i, name] of names.entries()) {
    const agent = await makeAgent(ctx.db, {
      name,
      email: `person${i}@example.com`,
      role: i % 5 === 0 ? 'admin' : 'agent',
      departments: i % 3 === 0 ? [[support, 'solver']] : i % 4 === 0 ? [[billing, 'reader']] : [],
    });
    if (i % 6 === 1) {
      await ctx.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', agent.id).execute();
    }
  }

  /** The ids the database itself sorts as the list should be, with optional SQL conditions. */
  const expected = async (where?: (qb: any) => any) => {
    let query = ctx.db.selectFrom('agents').select('agents.id');
    if (where) query = where(query);
    const rows = await query.orderBy(sql`lower(agents.name)`).orderBy('agents.id').execute();
    return rows.map((r: { id: string }) => r.id);
  };

  /** Follows next_cursor to the end; returns every id in order and the number of pages. */
  const walk = async (t: Test, query: string, limit: number) => {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await asViewer.list(
        `${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      t.equal(res.statusCode, 200, res.body);
      const body = res.json();
      t.ok(body.data.length <= limit);
      ids.push(...body.data.map((a: { id: string }) => a.id));
      cursor = body.next_cursor;
      pages++;
      if (pages > 50) throw new Error('the cursor never ends');
    } while (cursor);
    return { ids, pages };
  };

  await t.test('cursor pages cover every agent once, sorted by name', async (t) => {
    const all = await expected();
    t.equal(all.length, names.length + 1);
    for (const limit of [1, 4, 7, 26, 200]) {
      const result = await walk(t, '', limit);
      t.same(result.ids, all, `limit ${limit}: no gaps, no repeats, in order`);
      t.equal(new Set(result.ids).size, result.ids.length);
      t.equal(result.pages, Math.max(1, Math.ceil(all.length / limit)));
    }
  });

  await t.test('a page boundary does not move when agents are added or removed before it', async (t) => {
    const first = await asViewer.list('limit=5');
    const firstIds = first.json().data.map((a: { id: string }) => a.id);
    const early = await makeAgent(ctx.db, { name: 'Aaron' });
    await ctx.db.deleteFrom('agents').where('id', '=', firstIds[1]).execute();
    const second = await asViewer.list(`limit=5&cursor=${encodeURIComponent(first.json().next_cursor)}`);
    const all = await expected();
    const after = all.slice(all.indexOf(firstIds[4]) + 1, all.indexOf(firstIds[4]) + 6);
    t.same(
      second.json().data.map((a: { id: string }) => a.id),
      after,
      'the next page starts right after the last row seen',
    );
    await ctx.db.deleteFrom('agents').where('id', '=', early.id).execute();
  });

  await t.test('filters: q, role, status, department_id, and combinations', async (t) => {
    const cases: [string, (qb: any) => any][] = [
      ['q=bob', (qb) => qb.where('name', 'ilike', '%bob%')],
      ['q=ALI', (qb) => qb.where('name', 'ilike', '%ali%')],
      ['q=person1', (qb) => qb.where('email', 'like', 'person1%')],
      ['q=_', (qb) => qb.where('name', 'like', '%\\_%')],
      ['q=%25', (qb) => qb.where('name', 'like', '%\\%%')],
      ['role=admin', (qb) => qb.where('role', '=', 'admin')],
      ['role=owner', (qb) => qb.where('role', '=', 'owner')],
      ['status=disabled', (qb) => qb.where('status', '=', 'disabled')],
      ['status=active&role=agent', (qb) => qb.where('status', '=', 'active').where('role', '=', 'agent')],
      [
        `department_id=${support}`,
        (qb) =>
          qb.where('id', 'in', (eb: any) =>
            eb.selectFrom('department_members').select('agent_id').where('department_id', '=', support),
          ),
      ],
      [
        `department_id=${billing}&status=active&q=e`,
        (qb) =>
          qb
            .where('id', 'in', (eb: any) =>
              eb.selectFrom('department_members').select('agent_id').where('department_id', '=', billing),
            )
            .where('status', '=', 'active')
            .where((eb: any) => eb.or([eb('name', 'ilike', '%e%'), eb('email', 'ilike', '%e%')])),
      ],
      [`department_id=${UNKNOWN_ID}`, (qb) => qb.where('id', 'is', null)],
    ];
    for (const [query, where] of cases) {
      const want = await expected(where);
      const { ids } = await walk(t, query, 2);
      t.same(ids, want, `${query}: ${want.length} agents`);
    }
    const q = await asViewer.list('q=person9@');
    t.equal(q.json().data.length, 1, 'q matches email');
    t.same(q.json().data[0].departments, [
      { department_id: support, department_name: 'Support', role: 'solver', level: 1 },
    ]);
  });

  await t.test('a cursor only works for the list and filters it came from', async (t) => {
    const byRole = await asViewer.list('role=agent&limit=2');
    const cursor = encodeURIComponent(byRole.json().next_cursor);
    t.equal((await asViewer.list(`role=agent&limit=2&cursor=${cursor}`)).statusCode, 200);
    t.equal(
      (await asViewer.list(`role=agent&limit=9&cursor=${cursor}`)).statusCode,
      200,
      'the limit may change',
    );
    for (const query of [
      `cursor=${cursor}`,
      `role=admin&cursor=${cursor}`,
      `role=agent&q=a&cursor=${cursor}`,
    ]) {
      const res = await asViewer.list(query);
      isProblem(t, res, 400, 'invalid_cursor');
      t.equal(res.json().errors[0].field, 'querystring/cursor');
    }
    const departments = await ctx.request({
      method: 'GET',
      url: '/v1/departments?limit=1',
      token: viewer.token,
    });
    const foreign = departments.json().next_cursor;
    t.ok(foreign);
    isProblem(t, await asViewer.list(`cursor=${encodeURIComponent(foreign)}`), 400, 'invalid_cursor');
    for (const garbage of ['abc', 'W10', Buffer.from('[1,2,3]').toString('base64url'), '%%%']) {
      const res = await asViewer.list(`cursor=${garbage}`);
      t.equal(res.statusCode, 400, garbage);
    }
  });

  await t.test('bad query parameters answer 400', async (t) => {
    for (const query of [
      'limit=0',
      'limit=201',
      'limit=abc',
      'limit=1.5',
      'role=superuser',
      'status=gone',
      'department_id=not-a-uuid',
      `q=${'q'.repeat(201)}`,
      'q=',
      'sort=name',
    ]) {
      isProblem(t, await asViewer.list(query), 400, 'validation_failed');
    }
  });

  await t.test('listing needs credentials', async (t) => {
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/agents' }), 401, 'missing_credentials');
  });
});
