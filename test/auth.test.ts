import { createHmac } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import {
  agentWithToken,
  buildTestApp,
  makeAgent,
  PASSWORD,
  signIn,
  type TestContext,
} from './helpers/app.ts';

const NEW_PASSWORD = 'a brand new passphrase';

function isProblem(t: Test, res: LightMyRequestResponse, status: number, code: string) {
  t.equal(res.statusCode, status, res.body);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/);
  t.equal(res.json().code, code);
}

const signInRequest = (ctx: TestContext, payload: unknown) =>
  ctx.request({ method: 'POST', url: '/v1/auth/token', payload: payload as object });

const me = (ctx: TestContext, token: string) => ctx.request({ method: 'GET', url: '/v1/me', token });

const agentRow = (ctx: TestContext, id: string) =>
  ctx.db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

/** The problem body without the parts that differ per request. */
function withoutRequestId(res: LightMyRequestResponse) {
  const { request_id: _ignored, ...rest } = res.json();
  return rest;
}

/** An HS256 JWT built by hand, to forge what our signer never would. */
function forgeJwt(payload: object, secret: string, header: object = { alg: 'HS256', typ: 'JWT' }) {
  const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${encode(header)}.${encode(payload)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

t.test('sign-in', async (t) => {
  const ctx = await buildTestApp(t);

  await t.test('email and password give a working session token', async (t) => {
    const agent = await makeAgent(ctx.db, { email: 'Dana.Reyes@Example.com' });
    const res = await signInRequest(ctx, { email: 'dana.reyes@example.COM', password: PASSWORD });
    t.equal(res.statusCode, 200, res.body);
    const body = res.json();
    t.equal(body.token_type, 'Bearer');
    t.equal(body.expires_in, 900, 'the default lifetime');
    t.equal(body.agent.id, agent.id);
    t.equal(body.agent.email, 'Dana.Reyes@Example.com', 'the email keeps the case it was given');
    t.notOk('password_hash' in body.agent, 'no hash leaves the server');
    t.ok(body.agent.last_sign_in_at, 'the sign-in is recorded in the response');
    t.ok((await agentRow(ctx, agent.id)).last_sign_in_at, 'and in the database');
    const who = await me(ctx, body.access_token);
    t.equal(who.statusCode, 200, who.body);
    t.equal(who.json().id, agent.id);
    const lowerScheme = await ctx.request({
      method: 'GET',
      url: '/v1/me',
      headers: { authorization: `bearer ${body.access_token}` },
    });
    t.equal(lowerScheme.statusCode, 200, 'the scheme name is case-insensitive');
  });

  await t.test(
    'wrong password, unknown email, disabled agent and agent without password all get the same 401',
    async (t) => {
      const active = await makeAgent(ctx.db);
      const disabled = await makeAgent(ctx.db);
      await ctx.db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', disabled.id).execute();
      const passwordless = await makeAgent(ctx.db, { password: null });

      const attempts = {
        'wrong password': { email: active.email, password: 'not the password at all' },
        'unknown email': { email: 'nobody-here@example.com', password: PASSWORD },
        'disabled agent, right password': { email: disabled.email, password: PASSWORD },
        'agent without a password': { email: passwordless.email, password: PASSWORD },
      };
      const bodies = [];
      for (const [what, payload] of Object.entries(attempts)) {
        const res = await signInRequest(ctx, payload);
        t.equal(res.statusCode, 401, what);
        t.equal(res.json().code, 'invalid_credentials', what);
        t.notOk(res.headers['retry-after'], `${what}: not throttled yet`);
        bodies.push(withoutRequestId(res));
      }
      for (const body of bodies.slice(1)) t.same(body, bodies[0], 'indistinguishable bodies');
      for (const id of [active.id, disabled.id, passwordless.id]) {
        t.equal((await agentRow(ctx, id)).last_sign_in_at, null, 'no sign-in recorded');
      }
    },
  );

  await t.test('bad bodies are refused before any password check and do not count as failures', async (t) => {
    const agent = await makeAgent(ctx.db);
    const cases: [unknown, string][] = [
      [{}, 'body/email'],
      [{ email: agent.email }, 'body/password'],
      [{ email: agent.email, password: '' }, 'body/password'],
      [{ email: agent.email, password: 12345678901234 }, 'body/password'],
      [{ email: 42, password: PASSWORD }, 'body/email'],
      [{ email: agent.email, password: PASSWORD, remember_me: true }, 'body/remember_me'],
      [{ email: agent.email, password: 'p'.repeat(201) }, 'body/password'],
    ];
    for (const [payload, field] of cases) {
      const res = await signInRequest(ctx, payload);
      isProblem(t, res, 400, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    const malformed = await ctx.request({
      method: 'POST',
      url: '/v1/auth/token',
      headers: { 'content-type': 'application/json' },
      payload: '{"email": ',
    });
    isProblem(t, malformed, 400, 'malformed_json');
    const form = await ctx.request({
      method: 'POST',
      url: '/v1/auth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: `email=${agent.email}&password=${PASSWORD}`,
    });
    isProblem(t, form, 415, 'unsupported_media_type');
    const throttled = await ctx.db.selectFrom('sign_in_throttle').selectAll().execute();
    t.notOk(
      throttled.some((r) => r.key === `sign-in:${agent.email.toLowerCase()}`),
      'no failure counted for a request that never reached the password check',
    );
    t.equal((await signInRequest(ctx, { email: agent.email, password: PASSWORD })).statusCode, 200);
  });
});

t.test('repeated sign-in failures are throttled per email', async (t) => {
  const ctx = await buildTestApp(t, { SIGN_IN_MAX_FAILURES: '3', SIGN_IN_LOCK_SECONDS: '60' });

  await t.test('after 3 failures even the right password gets 429 with Retry-After', async (t) => {
    const agent = await makeAgent(ctx.db, { email: 'locked@example.com' });
    for (let i = 1; i <= 3; i++) {
      const res = await signInRequest(ctx, { email: agent.email, password: `wrong password ${i}` });
      isProblem(t, res, 401, 'invalid_credentials');
    }
    for (const email of ['locked@example.com', 'LOCKED@example.com', '  locked@example.com ']) {
      const res = await signInRequest(ctx, { email, password: PASSWORD });
      isProblem(t, res, 429, 'too_many_sign_in_attempts');
      const retryAfter = Number(res.headers['retry-after']);
      t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    }
    t.equal((await agentRow(ctx, agent.id)).last_sign_in_at, null, 'the locked agent did not sign in');
  });

  await t.test('the lock is per email: another agent signs in meanwhile', async (t) => {
    const other = await makeAgent(ctx.db);
    t.equal((await signInRequest(ctx, { email: other.email, password: PASSWORD })).statusCode, 200);
  });

  await t.test('unknown emails are throttled the same way (no enumeration)', async (t) => {
    const email = 'ghost@example.com';
    for (let i = 0; i < 3; i++) {
      isProblem(t, await signInRequest(ctx, { email, password: PASSWORD }), 401, 'invalid_credentials');
    }
    const res = await signInRequest(ctx, { email, password: PASSWORD });
    isProblem(t, res, 429, 'too_many_sign_in_attempts');
    t.ok(res.headers['retry-after']);
  });

  await t.test("a made-up email cannot lock another counter (an agent's password change)", async (t) => {
    const agent = await agentWithToken(ctx);
    for (let i = 0; i < 4; i++) {
      const res = await signInRequest(ctx, { email: `password-change:${agent.agent.id}`, password: 'nope' });
      t.ok([401, 429].includes(res.statusCode), `attempt ${i + 1}: ${res.statusCode}`);
    }
    const change = await ctx.request({
      method: 'POST',
      url: '/v1/me/password',
      token: agent.token,
      payload: { current_password: PASSWORD, new_password: NEW_PASSWORD },
    });
    t.equal(change.statusCode, 200, `the agent still changes their password: ${change.body}`);
  });

  await t.test('a successful sign-in forgets earlier failures', async (t) => {
    const agent = await makeAgent(ctx.db);
    for (let i = 0; i < 2; i++) {
      isProblem(
        t,
        await signInRequest(ctx, { email: agent.email, password: 'nope nope nope' }),
        401,
        'invalid_credentials',
      );
    }
    t.equal((await signInRequest(ctx, { email: agent.email, password: PASSWORD })).statusCode, 200);
    for (let i = 0; i < 2; i++) {
      isProblem(
        t,
        await signInRequest(ctx, { email: agent.email, password: 'nope nope nope' }),
        401,
        'invalid_credentials',
      );
    }
    t.equal(
      (await signInRequest(ctx, { email: agent.email, password: PASSWORD })).statusCode,
      200,
      'not locked',
    );
  });
});

t.test('guesses sent at once are throttled like guesses one after another', async (t) => {
  // Each attempt read the lock before its password check and counted its failure after it, so
  // guesses sent together were all checked (up to the address's 30 a minute, and without limit
  // from many addresses): the limit held only for guesses sent in turn.
  const ctx = await buildTestApp(t, { SIGN_IN_MAX_FAILURES: '3', SIGN_IN_LOCK_SECONDS: '60' });
  const guesses = Array.from({ length: 12 }, (_, i) => `wrong guess ${i}`);

  await t.test('sign-in', async (t) => {
    const agent = await makeAgent(ctx.db, { email: 'burst@example.com' });
    const answers = await Promise.all(
      guesses.map((password) => signInRequest(ctx, { email: agent.email, password })),
    );
    const checked = answers.filter((res) => res.statusCode !== 429);
    t.ok(checked.length <= 3, `${checked.length} of 12 passwords were checked (at most 3 may be)`);
    t.ok(
      answers.every((res) => res.statusCode !== 429 || res.json().code === 'too_many_sign_in_attempts'),
      'refused by the per-email lock',
    );
    const right = await signInRequest(ctx, { email: agent.email, password: PASSWORD });
    isProblem(t, right, 429, 'too_many_sign_in_attempts');
  });

  await t.test('the current password of a password change', async (t) => {
    const { token } = await agentWithToken(ctx);
    const answers = await Promise.all(
      guesses.map((current_password) =>
        ctx.request({
          method: 'POST',
          url: '/v1/me/password',
          token,
          payload: { current_password, new_password: NEW_PASSWORD },
        }),
      ),
    );
    const checked = answers.filter((res) => res.statusCode !== 429);
    t.ok(checked.length <= 3, `${checked.length} of 12 passwords were checked (at most 3 may be)`);
    const right = await ctx.request({
      method: 'POST',
      url: '/v1/me/password',
      token,
      payload: { current_password: PASSWORD, new_password: NEW_PASSWORD },
    });
    isProblem(t, right, 429, 'too_many_attempts');
  });
});

t.test('each client address may try to sign in 30 times a minute', async (t) => {
  const ctx = await buildTestApp(t);
  // Bodies that fail validation still count, and cost no scrypt.
  for (let i = 0; i < 30; i++) {
    t.equal((await signInRequest(ctx, { email: 'flood@example.com' })).statusCode, 400);
  }
  const limited = await signInRequest(ctx, { email: 'flood@example.com', password: PASSWORD });
  isProblem(t, limited, 429, 'rate_limited');
  t.ok(Number(limited.headers['retry-after']) > 0, `Retry-After ${limited.headers['retry-after']}`);
  const rows = await ctx.db.selectFrom('sign_in_throttle').selectAll().execute();
  t.same(rows, [], 'refused before any password check');
});

t.test('the sign-in lock ends after SIGN_IN_LOCK_SECONDS', async (t) => {
  const ctx = await buildTestApp(t, { SIGN_IN_MAX_FAILURES: '1', SIGN_IN_LOCK_SECONDS: '1' });
  const agent = await makeAgent(ctx.db);
  isProblem(
    t,
    await signInRequest(ctx, { email: agent.email, password: 'wrong wrong wrong' }),
    401,
    'invalid_credentials',
  );
  const locked = await signInRequest(ctx, { email: agent.email, password: PASSWORD });
  isProblem(t, locked, 429, 'too_many_sign_in_attempts');
  t.equal(locked.headers['retry-after'], '1');
  await new Promise((resolve) => setTimeout(resolve, 1300));
  t.equal((await signInRequest(ctx, { email: agent.email, password: PASSWORD })).statusCode, 200);
});

t.test('session tokens', async (t) => {
  const ctx = await buildTestApp(t, { JWT_TTL_SECONDS: '60' });
  const agent = await makeAgent(ctx.db);
  const claims = { sub: agent.id, pwd: agent.password_changed_at!.getTime() };

  await t.test('the lifetime comes from JWT_TTL_SECONDS', async (t) => {
    const res = await signInRequest(ctx, { email: agent.email, password: PASSWORD });
    t.equal(res.json().expires_in, 60);
  });

  await t.test('missing, malformed and garbage credentials answer 401', async (t) => {
    isProblem(t, await ctx.request({ method: 'GET', url: '/v1/me' }), 401, 'missing_credentials');
    const cases: [string, string][] = [
      ['Basic ZGFuYTpzZWNyZXQ=', 'invalid_credentials'],
      ['Bearer', 'invalid_credentials'],
      ['Bearer one two', 'invalid_credentials'],
      ['Token abc', 'invalid_credentials'],
      ['Bearer not-a-jwt', 'invalid_token'],
      ['Bearer a.b.c', 'invalid_token'],
      ['Bearer drt_not-a-real-token', 'invalid_token'],
    ];
    for (const [authorization, code] of cases) {
      const res = await ctx.request({ method: 'GET', url: '/v1/me', headers: { authorization } });
      isProblem(t, res, 401, code);
    }
  });

  await t.test('tokens we did not sign are refused', async (t) => {
    const now = Math.floor(Date.now() / 1000);
    const payload = { ...claims, iat: now, exp: now + 60 };
    t.equal((await me(ctx, ctx.app.jwt.sign(claims))).statusCode, 200, 'a genuine token works');
    isProblem(
      t,
      await me(ctx, forgeJwt(payload, 'some-other-secret-of-sufficient-length')),
      401,
      'invalid_token',
    );
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.`;
    isProblem(t, await me(ctx, none), 401, 'invalid_token');
    const [head, , signature] = ctx.app.jwt.sign(claims).split('.');
    const other = await makeAgent(ctx.db, { role: 'owner' });
    const swapped = Buffer.from(JSON.stringify({ ...payload, sub: other.id })).toString('base64url');
    isProblem(t, await me(ctx, `${head}.${swapped}.${signature}`), 401, 'invalid_token');
  });

  await t.test('an expired session token answers 401 token_expired', async (t) => {
    const iat = Math.floor(Date.now() / 1000) - 120;
    const expired = ctx.app.jwt.sign({ ...claims, iat } as typeof claims);
    const res = await me(ctx, expired);
    isProblem(t, res, 401, 'token_expired');
  });

  await t.test('a correctly signed token without exp is refused; one with exp works', async (t) => {
    const secret = 'test-secret-that-is-long-enough-0123456789';
    const iat = Math.floor(Date.now() / 1000);
    const forever = await me(ctx, forgeJwt({ ...claims, iat }, secret));
    isProblem(t, forever, 401, 'token_without_expiry');
    t.match(String(forever.headers['www-authenticate']), /^Bearer /);
    isProblem(t, await me(ctx, forgeJwt({ ...claims, iat, exp: null }, secret)), 401, 'invalid_token');
    const bounded = await me(ctx, forgeJwt({ ...claims, iat, exp: iat + 60 }, secret));
    t.equal(bounded.statusCode, 200, bounded.body);
  });

  await t.test('a token without the password stamp, or for a deleted agent, is refused', async (t) => {
    isProblem(t, await me(ctx, ctx.app.jwt.sign({ sub: agent.id } as typeof claims)), 401, 'invalid_token');
    const doomed = await agentWithToken(ctx);
    await ctx.db.deleteFrom('agents').where('id', '=', doomed.agent.id).execute();
    isProblem(t, await me(ctx, doomed.token), 401, 'invalid_token');
  });

  await t.test("a disabled agent's unexpired session token and API token both stop working", async (t) => {
    const owner = await agentWithToken(ctx, { role: 'owner' });
    const victim = await agentWithToken(ctx);
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/api-tokens',
      token: victim.token,
      payload: { name: 'integration', scopes: ['read', 'write'] },
    });
    t.equal(created.statusCode, 201, created.body);
    const apiToken: string = created.json().secret;
    t.equal((await me(ctx, apiToken)).statusCode, 200);

    const disable = await ctx.request({
      method: 'PATCH',
      url: `/v1/agents/${victim.agent.id}`,
      token: owner.token,
      payload: { status: 'disabled' },
    });
    t.equal(disable.statusCode, 200, disable.body);
    isProblem(t, await me(ctx, victim.token), 401, 'agent_disabled');
    isProblem(t, await me(ctx, apiToken), 401, 'token_revoked');
    const write = await ctx.request({
      method: 'PATCH',
      url: '/v1/me',
      token: apiToken,
      payload: { name: 'Sneaky' },
    });
    isProblem(t, write, 401, 'token_revoked');
    t.not((await agentRow(ctx, victim.agent.id)).name, 'Sneaky', 'nothing changed');
    isProblem(
      t,
      await signInRequest(ctx, { email: victim.agent.email, password: PASSWORD }),
      401,
      'invalid_credentials',
    );

    // Enabling the agent again brings neither the old session nor the old API token back.
    const enable = await ctx.request({
      method: 'PATCH',
      url: `/v1/agents/${victim.agent.id}`,
      token: owner.token,
      payload: { status: 'active' },
    });
    t.equal(enable.statusCode, 200, enable.body);
    isProblem(t, await me(ctx, victim.token), 401, 'invalid_token');
    isProblem(t, await me(ctx, apiToken), 401, 'token_revoked');
    t.ok(await signIn(ctx, victim.agent.email), 'a fresh sign-in works');
  });
});

t.test('changing the password', async (t) => {
  const ctx = await buildTestApp(t);
  const changePassword = (token: string, payload: unknown) =>
    ctx.request({ method: 'POST', url: '/v1/me/password', token, payload: payload as object });

  await t.test('ends earlier sessions and answers with a working one; API tokens keep working', async (t) => {
    const agent = await makeAgent(ctx.db);
    const first = await signIn(ctx, agent.email);
    const second = await signIn(ctx, agent.email);
    const created = await ctx.request({
      method: 'POST',
      url: '/v1/api-tokens',
      token: first,
      payload: { name: 'cli', scopes: ['read'] },
    });
    const apiToken: string = created.json().secret;

    const res = await changePassword(first, { current_password: PASSWORD, new_password: NEW_PASSWORD });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.json().token_type, 'Bearer');
    t.equal(res.json().agent.id, agent.id);
    const fresh: string = res.json().access_token;

    isProblem(t, await me(ctx, first), 401, 'invalid_token');
    isProblem(t, await me(ctx, second), 401, 'invalid_token');
    t.equal((await me(ctx, fresh)).statusCode, 200, 'the token in the response works');
    t.equal((await me(ctx, apiToken)).statusCode, 200, 'API tokens are revoked separately');

    isProblem(
      t,
      await signInRequest(ctx, { email: agent.email, password: PASSWORD }),
      401,
      'invalid_credentials',
    );
    t.equal((await signInRequest(ctx, { email: agent.email, password: NEW_PASSWORD })).statusCode, 200);
  });

  await t.test('a wrong current password or a bad new one changes nothing', async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    const wrong = await changePassword(token, {
      current_password: 'not my password',
      new_password: NEW_PASSWORD,
    });
    isProblem(t, wrong, 403, 'wrong_password');
    t.same(wrong.json().errors, [{ field: 'body/current_password', message: 'is wrong' }]);
    for (const payload of [
      { current_password: PASSWORD, new_password: 'short' },
      { current_password: PASSWORD, new_password: 'x'.repeat(201) },
      { current_password: PASSWORD, new_password: 123456789012345 },
      { current_password: PASSWORD },
      { current_password: PASSWORD, new_password: NEW_PASSWORD, confirm: NEW_PASSWORD },
    ]) {
      isProblem(t, await changePassword(token, payload), 400, 'validation_failed');
    }
    const row = await agentRow(ctx, agent.id);
    t.equal(row.password_hash, agent.password_hash, 'the hash did not change');
    t.same(row.password_changed_at, agent.password_changed_at);
    t.equal((await me(ctx, token)).statusCode, 200, 'the session survives');
  });

  await t.test('an API token cannot change the password', async (t) => {
    const { agent, token } = await agentWithToken(ctx);
    const mint = async (scopes: string[]) =>
      (
        await ctx.request({
          method: 'POST',
          url: '/v1/api-tokens',
          token,
          payload: { name: scopes.join('+'), scopes },
        })
      ).json().secret as string;
    const readWrite = await mint(['read', 'write']);
    const readOnly = await mint(['read']);
    const payload = { current_password: PASSWORD, new_password: NEW_PASSWORD };
    isProblem(t, await changePassword(readWrite, payload), 403, 'session_required');
    isProblem(t, await changePassword(readOnly, payload), 403, 'insufficient_scope');
    t.equal((await agentRow(ctx, agent.id)).password_hash, agent.password_hash, 'the hash did not change');
  });
});

t.test('/v1/me', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent, token } = await agentWithToken(ctx, { name: 'Dana Reyes' });
  const patchMe = (payload: unknown, headers: Record<string, string> = {}) =>
    ctx.request({ method: 'PATCH', url: '/v1/me', token, headers, payload: payload as object });

  await t.test('GET returns the signed-in agent with the same ETag as /v1/agents/:id', async (t) => {
    const res = await me(ctx, token);
    t.equal(res.statusCode, 200);
    t.equal(res.json().id, agent.id);
    t.equal(res.json().name, 'Dana Reyes');
    t.match(res.headers.etag, /^".+"$/);
    const same = await ctx.request({ method: 'GET', url: `/v1/agents/${agent.id}`, token });
    t.same(same.json(), res.json());
    t.equal(same.headers.etag, res.headers.etag);
  });

  await t.test('PATCH honours If-Match and answers 412 on a stale version', async (t) => {
    const etag = String((await me(ctx, token)).headers.etag);
    const ok = await patchMe({ name: '  Dana Reyes-Kim  ' }, { 'if-match': etag });
    t.equal(ok.statusCode, 200, ok.body);
    t.equal(ok.json().name, 'Dana Reyes-Kim', 'trimmed');
    t.not(ok.headers.etag, etag, 'a new version, a new ETag');
    t.equal((await me(ctx, token)).headers.etag, ok.headers.etag, 'the ETag of the new version');

    const stale = await patchMe({ name: 'Overwritten' }, { 'if-match': etag });
    isProblem(t, stale, 412, 'stale_version');
    t.equal((await agentRow(ctx, agent.id)).name, 'Dana Reyes-Kim', 'the stale write changed nothing');

    const weak = await patchMe({ name: 'Dana R.' }, { 'if-match': `W/${ok.headers.etag}` });
    t.equal(weak.statusCode, 200, 'a weak form of the current ETag matches');
    t.equal((await patchMe({ name: 'Dana' }, { 'if-match': '*' })).statusCode, 200);
    t.equal((await patchMe({ name: 'Dana' })).statusCode, 200, 'If-Match is optional');
  });

  await t.test('an agent cannot grant themselves a role or change their status here', async (t) => {
    const before = await agentRow(ctx, agent.id);
    for (const payload of [{ role: 'owner' }, { status: 'disabled' }, { name: 'Dana', role: 'admin' }]) {
      const res = await patchMe(payload);
      isProblem(t, res, 400, 'validation_failed');
      t.match(res.json().errors[0], { message: 'is not a known field' });
    }
    t.same(await agentRow(ctx, agent.id), before, 'nothing changed');
  });

  await t.test('bad values are refused and change nothing', async (t) => {
    const before = await agentRow(ctx, agent.id);
    const cases: [unknown, string][] = [
      [{}, 'body'],
      [{ name: 123 }, 'body/name'],
      [{ name: '' }, 'body/name'],
      [{ name: '   ' }, 'body/name'],
      [{ name: 'n'.repeat(101) }, 'body/name'],
      [{ email: 'not-an-email' }, 'body/email'],
      [{ email: `${'e'.repeat(250)}@example.com` }, 'body/email'],
      [{ email: ['a@example.com'] }, 'body/email'],
      [{ name: null }, 'body/name'],
    ];
    for (const [payload, field] of cases) {
      const res = await patchMe(payload);
      isProblem(t, res, 400, 'validation_failed');
      t.ok(
        res.json().errors.some((e: { field: string }) => e.field === field),
        `${field} in ${JSON.stringify(res.json().errors)}`,
      );
    }
    t.same(await agentRow(ctx, agent.id), before, 'nothing changed');
  });

  await t.test("another agent's email, in any case, answers 409 email_taken", async (t) => {
    const other = await makeAgent(ctx.db, { email: 'Taken@Example.com' });
    const before = await agentRow(ctx, agent.id);
    for (const email of ['taken@example.com', 'TAKEN@EXAMPLE.COM', other.email]) {
      isProblem(t, await patchMe({ email }), 409, 'email_taken');
    }
    t.same(await agentRow(ctx, agent.id), before, 'nothing changed');
  });

  await t.test('a new email is the one to sign in with', async (t) => {
    const res = await patchMe({ email: 'dana.new@example.com' });
    t.equal(res.statusCode, 200, res.body);
    t.equal(res.json().email, 'dana.new@example.com');
    t.equal(
      (await signInRequest(ctx, { email: 'dana.new@example.com', password: PASSWORD })).statusCode,
      200,
    );
    isProblem(
      t,
      await signInRequest(ctx, { email: agent.email, password: PASSWORD }),
      401,
      'invalid_credentials',
    );
  });
});

t.test('credentials cannot be minted with an API token, and password guesses are throttled', async (t) => {
  const ctx = await buildTestApp(t, { SIGN_IN_MAX_FAILURES: '3', SIGN_IN_LOCK_SECONDS: '60' });
  const admin = await agentWithToken(ctx, { role: 'admin' });
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/api-tokens',
    token: admin.token,
    payload: { name: 'ops', scopes: ['read', 'write'] },
  });
  const apiToken: string = created.json().secret;
  const before = (await agentRow(ctx, admin.agent.id)).password_hash;
  const reset = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${admin.agent.id}`,
    token: apiToken,
    payload: { password: 'chosen by whoever holds the token' },
  });
  isProblem(t, reset, 403, 'session_required');
  t.equal((await agentRow(ctx, admin.agent.id)).password_hash, before, 'password unchanged');
  const other = await makeAgent(ctx.db);
  isProblem(
    t,
    await ctx.request({
      method: 'PATCH',
      url: `/v1/agents/${other.id}`,
      token: apiToken,
      payload: { password: 'chosen by whoever holds the token' },
    }),
    403,
    'session_required',
  );
  // Nor by creating an agent with a password and signing in as them (a session mints tokens).
  const agentsBefore = await ctx.db.selectFrom('agents').select('id').execute();
  const withPassword = await ctx.request({
    method: 'POST',
    url: '/v1/agents',
    token: apiToken,
    payload: {
      name: 'Mallory',
      email: 'mallory@example.com',
      role: 'admin',
      password: 'chosen by whoever holds the token',
    },
  });
  isProblem(t, withPassword, 403, 'session_required');
  t.same(await ctx.db.selectFrom('agents').select('id').execute(), agentsBefore, 'no agent created');
  isProblem(
    t,
    await signInRequest(ctx, { email: 'mallory@example.com', password: 'chosen by whoever holds the token' }),
    401,
    'invalid_credentials',
  );
  const withoutPassword = await ctx.request({
    method: 'POST',
    url: '/v1/agents',
    token: apiToken,
    payload: { name: 'Provisioned', email: 'provisioned@example.com' },
  });
  t.equal(withoutPassword.statusCode, 201, 'an integration may still provision agents, with no password');

  const guesses: number[] = [];
  for (let i = 0; i < 4; i++) {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/me/password',
      token: admin.token,
      payload: { current_password: `guess number ${i}`, new_password: NEW_PASSWORD },
    });
    guesses.push(res.statusCode);
    if (res.statusCode === 429) t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After');
  }
  t.same(guesses, [403, 403, 403, 429]);
  const right = await ctx.request({
    method: 'POST',
    url: '/v1/me/password',
    token: admin.token,
    payload: { current_password: PASSWORD, new_password: NEW_PASSWORD },
  });
  isProblem(t, right, 429, 'too_many_attempts');
  t.equal((await agentRow(ctx, admin.agent.id)).password_hash, before, 'still unchanged while locked');
});
