import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import t, { type Test } from 'tap';
import * as migration0047 from '../migrations/0047_api_token_scopes.ts';
import { agentWithToken, buildTestApp, makeAgent, PASSWORD, type TestContext } from './helpers/app.ts';

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

function isProblem(t: Test, res: LightMyRequestResponse, status: number, code: string) {
  t.equal(res.statusCode, status, res.body);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/);
  t.equal(res.json().code, code);
}

const tokenRow = (ctx: TestContext, id: string) =>
  ctx.db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

const agentRow = (ctx: TestContext, id: string) =>
  ctx.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();

const countTokens = async (ctx: TestContext) =>
  Number(
    (
      await ctx.db
        .selectFrom('api_tokens')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

const countAgents = async (ctx: TestContext) =>
  Number(
    (
      await ctx.db
        .selectFrom('agents')
        .select((eb) => eb.fn.countAll().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

function createToken(ctx: TestContext, session: string, payload: unknown) {
  return ctx.request({ method: 'POST', url: '/v1/api-tokens', token: session, payload: payload as object });
}

/** Creates a token through the API and returns its id and secret. */
async function mint(ctx: TestContext, session: string, scopes: string[], extra: object = {}) {
  const res = await createToken(ctx, session, { name: `token ${scopes.join('+')}`, scopes, ...extra });
  if (res.statusCode !== 201) throw new Error(`token creation failed: ${res.statusCode} ${res.body}`);
  return { id: res.json().token.id as string, secret: res.json().secret as string };
}

t.test('API tokens', async (t) => {
  const ctx = await buildTestApp(t);
  const owner = await agentWithToken(ctx, { role: 'owner' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const alice = await agentWithToken(ctx, { name: 'Alice' });
  const bob = await agentWithToken(ctx, { name: 'Bob' });
  const me = (token: string) => ctx.request({ method: 'GET', url: '/v1/me', token });

  await t.test('created once: the secret starts with drt_ and works as a Bearer token', async (t) => {
    const res = await createToken(ctx, alice.token, { name: '  nightly export  ', scopes: ['read'] });
    t.equal(res.statusCode, 201, res.body);
    const { token, secret } = res.json();
    t.match(secret, /^drt_[A-Za-z0-9_-]{40,}$/);
    t.equal(res.headers.location, `/v1/api-tokens/${token.id}`);
    t.match(token, {
      agent_id: alice.agent.id,
      name: 'nightly export',
      scopes: ['read'],
      status: 'active',
      expires_at: null,
      revoked_at: null,
      last_used_at: null,
    });
    t.ok(secret.startsWith(token.token_prefix), 'the prefix helps recognise the secret');
    t.ok(token.token_prefix.length < secret.length / 2, 'but gives little of it away');

    const who = await me(secret);
    t.equal(who.statusCode, 200, who.body);
    t.equal(who.json().id, alice.agent.id, 'the token acts as its agent');
    const read = await ctx.request({ method: 'GET', url: `/v1/api-tokens/${token.id}`, token: alice.token });
    t.ok(read.json().last_used_at, 'use is recorded');
    t.notOk('secret' in read.json(), 'the secret is not shown again');
    t.notOk(read.body.includes(secret.slice(4)));
    const list = await ctx.request({ method: 'GET', url: '/v1/api-tokens', token: alice.token });
    t.notOk(list.body.includes(secret.slice(4)), 'nor in the list');
  });

  await t.test('only a hash of the secret is stored', async (t) => {
    const { id, secret } = await mint(ctx, alice.token, ['read', 'write']);
    const random = secret.slice('drt_'.length);
    const rows = await ctx.db.selectFrom('api_tokens').selectAll().execute();
    const stored = JSON.stringify(rows);
    t.notOk(stored.includes(random), 'the secret is nowhere in api_tokens');
    const row = await tokenRow(ctx, id);
    t.not(row.token_hash, secret);
    t.notOk(row.token_hash.includes(random.slice(8)));
  });

  await t.test('a scope of write without read is refused, and no token is made', async (t) => {
    const before = await countTokens(ctx);
    const res = await createToken(ctx, alice.token, { name: 'writer', scopes: ['write'] });
    isProblem(t, res, 400, 'write_scope_without_read');
    t.same(res.json().errors, [{ field: 'body/scopes', message: 'write needs read' }]);
    t.equal(await countTokens(ctx), before, 'no token was stored');
    const both = await createToken(ctx, alice.token, { name: 'writer', scopes: ['write', 'read'] });
    t.equal(both.statusCode, 201, both.body);
    t.same(both.json().token.scopes, ['read', 'write'], 'stored in one order');
  });

  await t.test('the database keeps only read or read + write (migration 0047)', async (t) => {
    const { id } = await mint(ctx, alice.token, ['read']);
    const written = ctx.db
      .updateTable('api_tokens')
      .set({ scopes: sql`'{write}'::text[]` as never })
      .where('id', '=', id)
      .execute();
    await t.rejects(written, /api_tokens_scopes_check/);
    t.same((await tokenRow(ctx, id)).scopes, ['read']);
  });

  await t.test('migration 0047 stores write-only tokens as read + write', async (t) => {
    const { id: writeOnly } = await mint(ctx, alice.token, ['read', 'write']);
    const { id: readOnly } = await mint(ctx, alice.token, ['read']);
    const { id: empty } = await mint(ctx, alice.token, ['read']);
    await migration0047.down(ctx.db);
    try {
      await sql`update api_tokens set scopes = '{write}' where id = ${writeOnly}`.execute(ctx.db);
      await sql`update api_tokens set scopes = '{}' where id = ${empty}`.execute(ctx.db);
    } finally {
      await migration0047.up(ctx.db);
    }
    t.same((await tokenRow(ctx, writeOnly)).scopes, ['read', 'write'], 'what it could already do');
    t.same((await tokenRow(ctx, readOnly)).scopes, ['read'], 'untouched');
    t.same((await tokenRow(ctx, empty)).scopes, ['read']);
  });

  await t.test('a read-only token reads but never writes, and changes nothing', async (t) => {
    const { id, secret } = await mint(ctx, owner.token, ['read']);
    const target = await makeAgent(ctx.db, { name: 'Target' });
    t.equal((await ctx.request({ method: 'GET', url: '/v1/agents', token: secret })).statusCode, 200);
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/agents/${target.id}`, token: secret })).statusCode,
      200,
    );
    t.equal((await ctx.request({ method: 'GET', url: '/v1/departments', token: secret })).statusCode, 200);
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/api-tokens/${id}`, token: secret })).statusCode,
      200,
    );

    const agentsBefore = await countAgents(ctx);
    const tokensBefore = await countTokens(ctx);
    const ownerBefore = await agentRow(ctx, owner.agent.id);
    const targetBefore = await agentRow(ctx, target.id);
    const writes = [
      { method: 'POST', url: '/v1/agents', payload: { name: 'Nope', email: 'nope@example.com' } },
      { method: 'PATCH', url: `/v1/agents/${target.id}`, payload: { status: 'disabled' } },
      { method: 'DELETE', url: `/v1/agents/${target.id}` },
      { method: 'PATCH', url: '/v1/me', payload: { name: 'Renamed' } },
      {
        method: 'POST',
        url: '/v1/me/password',
        payload: { current_password: PASSWORD, new_password: 'x'.repeat(20) },
      },
      { method: 'POST', url: '/v1/api-tokens', payload: { name: 'child', scopes: ['read'] } },
      { method: 'DELETE', url: `/v1/api-tokens/${id}` },
      { method: 'POST', url: '/v1/departments', payload: { name: 'Read-only attempt' } },
    ] as const;
    for (const write of writes) {
      const res = await ctx.request({ ...write, token: secret });
      isProblem(t, res, 403, 'insufficient_scope');
    }
    t.equal(await countAgents(ctx), agentsBefore, 'no agent created or deleted');
    t.equal(await countTokens(ctx), tokensBefore, 'no token created');
    t.same(await agentRow(ctx, owner.agent.id), ownerBefore, 'the owner is unchanged');
    t.same(await agentRow(ctx, target.id), targetBefore, 'the target is unchanged');
    t.equal((await tokenRow(ctx, id)).revoked_at, null, 'the token did not revoke itself');
    const departments = await ctx.db
      .selectFrom('departments')
      .select('id')
      .where('name', '=', 'Read-only attempt')
      .execute();
    t.same(departments, []);
  });

  await t.test("a read-write token writes with its agent's rights", async (t) => {
    const { secret } = await mint(ctx, owner.token, ['read', 'write']);
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/agents',
      token: secret,
      payload: { name: 'Made By Token', email: 'made-by-token@example.com' },
    });
    t.equal(created.statusCode, 201, created.body);
    const renamed = await ctx.request({
      method: 'PATCH',
      url: '/v1/me',
      token: secret,
      payload: { name: 'Owner Prime' },
    });
    t.equal(renamed.statusCode, 200, renamed.body);
    t.equal((await agentRow(ctx, owner.agent.id))?.name, 'Owner Prime');

    const agentToken = await mint(ctx, alice.token, ['read', 'write']);
    const before = await countAgents(ctx);
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/agents',
      token: agentToken.secret,
      payload: { name: 'Escalation', email: 'escalation@example.com' },
    });
    isProblem(t, res, 403, 'admin_required');
    t.equal(await countAgents(ctx), before, 'a token never has more rights than its agent');
  });

  await t.test('a token cannot create tokens or change the password', async (t) => {
    const { secret } = await mint(ctx, alice.token, ['read', 'write']);
    const tokensBefore = await countTokens(ctx);
    isProblem(
      t,
      await createToken(ctx, secret, { name: 'child', scopes: ['read'] }),
      403,
      'session_required',
    );
    t.equal(await countTokens(ctx), tokensBefore, 'no token created');
    const hashBefore = (await agentRow(ctx, alice.agent.id))?.password_hash;
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/me/password',
      token: secret,
      payload: { current_password: PASSWORD, new_password: 'taken over by a token' },
    });
    isProblem(t, res, 403, 'session_required');
    t.equal((await agentRow(ctx, alice.agent.id))?.password_hash, hashBefore, 'the password is unchanged');
  });

  await t.test('an expired token answers 401 token_expired', async (t) => {
    const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
    const { id, secret } = await mint(ctx, alice.token, ['read'], { expires_at: inAnHour });
    const created = await ctx.request({ method: 'GET', url: `/v1/api-tokens/${id}`, token: alice.token });
    t.equal(created.json().expires_at, inAnHour);
    t.equal((await me(secret)).statusCode, 200, 'works until it expires');
    await ctx.db
      .updateTable('api_tokens')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', id)
      .execute();
    isProblem(t, await me(secret), 401, 'token_expired');
    const read = await ctx.request({ method: 'GET', url: `/v1/api-tokens/${id}`, token: alice.token });
    t.equal(read.json().status, 'expired');
  });

  await t.test('a revoked token answers 401 token_revoked; revoking again is harmless', async (t) => {
    const { id, secret } = await mint(ctx, alice.token, ['read', 'write']);
    t.equal((await me(secret)).statusCode, 200);
    const revoke = await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${id}`, token: alice.token });
    t.equal(revoke.statusCode, 204);
    t.equal(revoke.body, '');
    isProblem(t, await me(secret), 401, 'token_revoked');
    isProblem(
      t,
      await ctx.request({
        method: 'PATCH',
        url: '/v1/me',
        token: secret,
        payload: { name: 'Revoked Write' },
      }),
      401,
      'token_revoked',
    );
    t.not((await agentRow(ctx, alice.agent.id))?.name, 'Revoked Write');
    const row = await tokenRow(ctx, id);
    t.ok(row.revoked_at);
    const read = await ctx.request({ method: 'GET', url: `/v1/api-tokens/${id}`, token: alice.token });
    t.match(read.json(), { status: 'revoked', revoked_at: row.revoked_at?.toISOString() });
    const again = await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${id}`, token: alice.token });
    t.equal(again.statusCode, 204);
    t.same((await tokenRow(ctx, id)).revoked_at, row.revoked_at, 'the first revocation time stays');
  });

  await t.test('a token can revoke itself and then stops working', async (t) => {
    const { id, secret } = await mint(ctx, alice.token, ['read', 'write']);
    t.equal(
      (await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${id}`, token: secret })).statusCode,
      204,
    );
    isProblem(t, await me(secret), 401, 'token_revoked');
  });

  await t.test("a disabled agent's token answers 401", async (t) => {
    const carol = await agentWithToken(ctx, { name: 'Carol' });
    const { secret } = await mint(ctx, carol.token, ['read', 'write']);
    const disable = await ctx.request({
      method: 'PATCH',
      url: `/v1/agents/${carol.agent.id}`,
      token: owner.token,
      payload: { status: 'disabled' },
    });
    t.equal(disable.statusCode, 200, disable.body);
    isProblem(t, await me(secret), 401, 'token_revoked');
    isProblem(t, await me(carol.token), 401, 'agent_disabled');
    const revoked = await ctx.db
      .selectFrom('api_tokens')
      .select('revoked_at')
      .where('agent_id', '=', carol.agent.id)
      .execute();
    // Carol's one token (her session is no API token): an empty list would pass an every().
    t.same(
      revoked.map((r) => r.revoked_at !== null),
      [true],
      'disabling revoked every token of the agent',
    );

    // Even a token that escaped revocation stops working while its agent is disabled.
    const dave = await agentWithToken(ctx, { name: 'Dave' });
    const kept = await mint(ctx, dave.token, ['read']);
    await ctx.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', dave.agent.id).execute();
    isProblem(t, await me(kept.secret), 401, 'agent_disabled');
  });

  await t.test('bad bodies answer 400 and create nothing', async (t) => {
    const before = await countTokens(ctx);
    const past = new Date(Date.now() - 60_000).toISOString();
    const pastRes = await createToken(ctx, alice.token, {
      name: 'too late',
      scopes: ['read'],
      expires_at: past,
    });
    isProblem(t, pastRes, 400, 'expiry_in_past');
    t.same(pastRes.json().errors, [{ field: 'body/expires_at', message: 'must be in the future' }]);
    const cases: [unknown, string][] = [
      [{ scopes: ['read'] }, 'body/name'],
      [{ name: 'no scopes' }, 'body/scopes'],
      [{ name: '', scopes: ['read'] }, 'body/name'],
      [{ name: '   ', scopes: ['read'] }, 'body/name'],
      [{ name: 'n'.repeat(101), scopes: ['read'] }, 'body/name'],
      [{ name: 42, scopes: ['read'] }, 'body/name'],
      [{ name: 'empty', scopes: [] }, 'body/scopes'],
      [{ name: 'admin', scopes: ['admin'] }, 'body/scopes/0'],
      [{ name: 'twice', scopes: ['read', 'read'] }, 'body/scopes'],
      [{ name: 'three', scopes: ['read', 'write', 'write'] }, 'body/scopes'],
      [{ name: 'string', scopes: 'read' }, 'body/scopes'],
      [{ name: 'date', scopes: ['read'], expires_at: 'tomorrow' }, 'body/expires_at'],
      [{ name: 'date', scopes: ['read'], expires_at: 1893456000 }, 'body/expires_at'],
      [{ name: 'unknown', scopes: ['read'], agent_id: owner.agent.id }, 'body/agent_id'],
      [{ name: 'unknown', scopes: ['read'], secret: 'drt_my-own-choice' }, 'body/secret'],
    ];
    for (const [payload, field] of cases) {
      const res = await createToken(ctx, alice.token, payload);
      isProblem(t, res, 400, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.equal(await countTokens(ctx), before, 'no token created');
  });

  await t.test("agents cannot see or revoke other agents' tokens", async (t) => {
    const alices = await mint(ctx, alice.token, ['read']);
    isProblem(
      t,
      await ctx.request({ method: 'GET', url: `/v1/api-tokens/${alices.id}`, token: bob.token }),
      404,
      'api_token_not_found',
    );
    isProblem(
      t,
      await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${alices.id}`, token: bob.token }),
      404,
      'api_token_not_found',
    );
    t.equal((await tokenRow(ctx, alices.id)).revoked_at, null, 'not revoked');
    t.equal((await me(alices.secret)).statusCode, 200, 'still works');

    const listed = await ctx.request({
      method: 'GET',
      url: `/v1/api-tokens?agent_id=${alice.agent.id}`,
      token: bob.token,
    });
    isProblem(t, listed, 400, 'not_your_tokens');
    const own = await ctx.request({ method: 'GET', url: '/v1/api-tokens', token: bob.token });
    t.equal(own.statusCode, 200);
    t.same(own.json().data, [], "Bob's list holds none of Alice's tokens");
    const ownById = await ctx.request({
      method: 'GET',
      url: `/v1/api-tokens?agent_id=${bob.agent.id}`,
      token: bob.token,
    });
    t.equal(ownById.statusCode, 200, 'naming yourself is fine');
  });

  await t.test("owners and admins list, read and revoke another agent's tokens", async (t) => {
    const alices = await mint(ctx, alice.token, ['read']);
    for (const who of [admin, owner]) {
      const list = await ctx.request({
        method: 'GET',
        url: `/v1/api-tokens?agent_id=${alice.agent.id}&limit=200`,
        token: who.token,
      });
      t.equal(list.statusCode, 200, list.body);
      const ids = list.json().data.map((x: { id: string; agent_id: string }) => x.id);
      t.ok(ids.includes(alices.id), `${who.agent.role} sees Alice's token`);
      t.ok(
        list.json().data.every((x: { agent_id: string }) => x.agent_id === alice.agent.id),
        'only hers',
      );
      const read = await ctx.request({ method: 'GET', url: `/v1/api-tokens/${alices.id}`, token: who.token });
      t.equal(read.statusCode, 200);
    }
    const adminOwn = await ctx.request({ method: 'GET', url: '/v1/api-tokens', token: admin.token });
    t.same(adminOwn.json().data, [], 'without agent_id, an admin lists their own tokens');
    const revoke = await ctx.request({
      method: 'DELETE',
      url: `/v1/api-tokens/${alices.id}`,
      token: admin.token,
    });
    t.equal(revoke.statusCode, 204);
    isProblem(t, await me(alices.secret), 401, 'token_revoked');
  });

  await t.test('unknown and malformed ids', async (t) => {
    for (const method of ['GET', 'DELETE'] as const) {
      isProblem(
        t,
        await ctx.request({ method, url: `/v1/api-tokens/${UNKNOWN_ID}`, token: alice.token }),
        404,
        'api_token_not_found',
      );
      const malformed = await ctx.request({ method, url: '/v1/api-tokens/not-a-uuid', token: alice.token });
      isProblem(t, malformed, 400, 'validation_failed');
      t.equal(malformed.json().errors[0].field, 'params/id');
    }
    isProblem(
      t,
      await ctx.request({ method: 'GET', url: '/v1/api-tokens?agent_id=not-a-uuid', token: admin.token }),
      400,
      'validation_failed',
    );
  });

  await t.test('a forged or unknown secret answers 401 invalid_token', async (t) => {
    const { secret } = await mint(ctx, alice.token, ['read']);
    const tampered = `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    isProblem(t, await me(tampered), 401, 'invalid_token');
    isProblem(t, await me('drt_'), 401, 'invalid_token');
  });
});

t.test('listing API tokens pages newest first', async (t) => {
  const ctx = await buildTestApp(t);
  const dana = await agentWithToken(ctx);
  const erin = await agentWithToken(ctx, { role: 'admin' });
  const ids: string[] = [];
  for (let i = 0; i < 7; i++) ids.push((await mint(ctx, dana.token, ['read'], { name: `token ${i}` })).id);
  for (let i = 0; i < 3; i++) await mint(ctx, erin.token, ['read']);
  // Equal creation times, so the tie-break on id is exercised too.
  await ctx.db
    .updateTable('api_tokens')
    .set({ created_at: new Date('2026-01-01T00:00:00.000Z') } as never)
    .where('id', 'in', ids.slice(2, 5))
    .execute();
  const expected = (
    await ctx.db
      .selectFrom('api_tokens')
      .select('id')
      .where('agent_id', '=', dana.agent.id)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute()
  ).map((r) => r.id);

  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const url: string = `/v1/api-tokens?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await ctx.request({ method: 'GET', url, token: dana.token });
    t.equal(res.statusCode, 200, res.body);
    seen.push(...res.json().data.map((x: { id: string }) => x.id));
    cursor = res.json().next_cursor;
    pages++;
  } while (cursor && pages < 20);
  t.equal(pages, 4);
  t.same(seen, expected, 'every token once, newest first');

  const first = await ctx.request({ method: 'GET', url: '/v1/api-tokens?limit=2', token: dana.token });
  const danaCursor = encodeURIComponent(first.json().next_cursor);
  const foreign = await ctx.request({
    method: 'GET',
    url: `/v1/api-tokens?cursor=${danaCursor}`,
    token: erin.token,
  });
  isProblem(t, foreign, 400, 'invalid_cursor');
  const viaAgentId = await ctx.request({
    method: 'GET',
    url: `/v1/api-tokens?agent_id=${dana.agent.id}&limit=2&cursor=${danaCursor}`,
    token: erin.token,
  });
  t.equal(viaAgentId.statusCode, 200, "the same list, read by an admin, accepts Dana's cursor");
  for (const query of ['limit=0', 'limit=201', 'cursor=garbage', 'scope=read']) {
    t.equal(
      (await ctx.request({ method: 'GET', url: `/v1/api-tokens?${query}`, token: dana.token })).statusCode,
      400,
      query,
    );
  }
});
