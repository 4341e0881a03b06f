import tap from 'tap';
import {
  agentWithToken,
  buildTestApp,
  makeAgent,
  makeDepartment,
  mintApiToken,
  signIn,
  type TestContext,
} from './helpers/app.ts';

interface AuditEvent {
  id: string;
  type: string;
  occurred_at: string;
  actor: { type: string; agent_id: string | null; token_id: string | null };
  department_id: string | null;
  ticket_id: string | null;
  payload: Record<string, any>;
}

tap.test('settings changes land in the audit log, with their payloads and no secrets', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const call = async (method: string, url: string, payload?: object, headers?: Record<string, string>) => {
    const res = await ctx.request({
      method: method as 'GET',
      url,
      token,
      ...(payload && { payload }),
      ...(headers && { headers }),
    });
    t.ok(
      res.statusCode < 300,
      `${method} ${url}: ${res.statusCode} ${res.statusCode >= 300 ? res.body : ''}`,
    );
    return res;
  };

  const dep = (await call('POST', '/v1/departments', { name: 'Returns' })).json();
  await call('PATCH', `/v1/departments/${dep.id}`, { description: 'Refunds' });
  const agentPassword = 'a fresh password for them';
  const agent = (
    await call('POST', '/v1/agents', {
      name: 'Ann',
      email: 'ann@example.com',
      password: agentPassword,
      departments: [{ department_id: dep.id, role: 'reader' }],
    })
  ).json();
  await call('PUT', `/v1/departments/${dep.id}/members/${agent.id}`, { role: 'solver' });
  await call('PATCH', `/v1/agents/${agent.id}`, { name: 'Ann B', password: 'another new password' });
  await call('DELETE', `/v1/departments/${dep.id}/members/${agent.id}`);
  const rule = (
    await call('POST', '/v1/automation-rules', {
      name: 'Tag orders',
      triggers: ['ticket.created'],
      conditions: { all: [{ field: 'subject', operator: 'contains', value: 'order' }] },
      actions: [{ type: 'add_tags', tags: ['orders'] }],
    })
  ).json();
  await call('PATCH', `/v1/automation-rules/${rule.id}`, { name: 'Tag order mails' });
  await call('DELETE', `/v1/automation-rules/${rule.id}`);
  const minted = (await call('POST', '/v1/api-tokens', { name: 'sync', scopes: ['read'] })).json();
  await call('DELETE', `/v1/api-tokens/${minted.token.id}`);
  await call('DELETE', `/v1/api-tokens/${minted.token.id}`); // twice: one event
  await call('DELETE', `/v1/agents/${agent.id}`);
  await call('DELETE', `/v1/departments/${dep.id}`);

  const res = await call('GET', '/v1/audit-log?limit=200');
  const events: AuditEvent[] = res.json().data;
  t.same(
    events.map((e) => e.type).reverse(),
    [
      'department.created',
      'department.updated',
      'agent.created',
      'member.added',
      'member.updated',
      'agent.updated',
      'member.removed',
      'rule.created',
      'rule.updated',
      'rule.deleted',
      'token.created',
      'token.deleted',
      'agent.deleted',
      'department.deleted',
    ],
    'every change once, newest first',
  );
  const byType = (type: string) => events.find((e) => e.type === type)!;
  t.ok(
    events.every((e) => e.actor.type === 'agent' && e.actor.agent_id === admin.id && e.ticket_id === null),
    'the admin’s session made them all',
  );
  t.same(byType('department.updated').payload.changes, { description: { from: '', to: 'Refunds' } });
  t.equal(byType('department.updated').department_id, dep.id);
  t.same(byType('member.updated').payload.changes, { role: { from: 'reader', to: 'solver' } });
  t.equal(byType('member.updated').payload.member.agent_id, agent.id);
  t.same(byType('agent.updated').payload.changes, {
    name: { from: 'Ann', to: 'Ann B' },
    password: { from: null, to: null },
  });
  t.equal(byType('rule.updated').payload.rule.name, 'Tag order mails');
  t.same(byType('rule.updated').payload.changes.name, { from: 'Tag orders', to: 'Tag order mails' });
  t.equal(byType('token.deleted').payload.token.status, 'revoked');
  t.equal(byType('department.deleted').payload.department.name, 'Returns');
  const text = res.body;
  t.notOk(text.includes(minted.secret), 'no token secret');
  t.notOk(/password_hash|scrypt|\$s0\$/.test(text), 'no password hash');
  t.notOk(text.includes(agentPassword), 'no password');
});

tap.test('the audit log: admins only, filters, pages, bad input', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const { agent: other, token: otherToken } = await agentWithToken(ctx, { role: 'admin' });
  const depId = await makeDepartment(ctx.db);
  const { token: manager } = await agentWithToken(ctx, { departments: [[depId, 'manager']] });
  for (let i = 0; i < 5; i++) {
    await ctx.request({ method: 'POST', url: '/v1/departments', token, payload: { name: `D${i}` } });
  }
  // Event times are rounded to the millisecond (timestamptz(3)), up to half of one later than
  // the instant; Date truncates. Without a gap on both sides, D4, answered less than a
  // millisecond before, could carry a time after `middle` (it did, once, in CI).
  await new Promise((resolve) => setTimeout(resolve, 20));
  const middle = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 20));
  await ctx.request({
    method: 'POST',
    url: '/v1/departments',
    token: otherToken,
    payload: { name: 'Other' },
  });
  // A department manager changes their department: an audited change, but not theirs to read.
  const patched = await ctx.request({
    method: 'PATCH',
    url: `/v1/departments/${depId}`,
    token: manager,
    payload: { description: 'managed' },
  });
  t.equal(patched.statusCode, 200);

  const refused = await ctx.request({ method: 'GET', url: '/v1/audit-log', token: manager });
  t.equal(refused.statusCode, 403, 'a manager may not read the audit log');
  t.equal(refused.json().code, 'admin_required');

  const byOther = await ctx.request({
    method: 'GET',
    url: `/v1/audit-log?actor_agent_id=${other.id}`,
    token,
  });
  t.same(
    byOther.json().data.map((e: AuditEvent) => e.payload.department.name),
    ['Other'],
    'actor filter',
  );
  const since = await ctx.request({
    method: 'GET',
    url: `/v1/audit-log?from=${encodeURIComponent(middle)}&types=department.created`,
    token,
  });
  t.same(
    since.json().data.map((e: AuditEvent) => e.payload.department.name),
    ['Other'],
    'time and type filters',
  );
  const until = await ctx.request({
    method: 'GET',
    url: `/v1/audit-log?to=${encodeURIComponent(middle)}&actor_agent_id=${admin.id}`,
    token,
  });
  t.equal(until.json().data.length, 5);

  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await ctx.request({
      method: 'GET',
      url: `/v1/audit-log?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      token,
    });
    t.equal(page.statusCode, 200);
    seen.push(...page.json().data.map((e: AuditEvent) => e.id));
    cursor = page.json().next_cursor;
  } while (cursor);
  t.equal(seen.length, 7, 'pages cover every event');
  t.equal(new Set(seen).size, 7, 'each once');
  const numbers = seen.map((id) => Number(id.slice(3)));
  t.same(
    numbers,
    [...numbers].sort((a, b) => b - a),
    'newest first',
  );

  for (const query of [
    'types=ticket.created',
    'types=department.exploded',
    'cursor=abc',
    'actor_agent_id=42',
    'from=yesterday',
    `from=${encodeURIComponent('2026-02-01T00:00:00Z')}&to=${encodeURIComponent('2026-01-01T00:00:00Z')}`,
    'limit=0',
    'unknown=1',
  ]) {
    const res = await ctx.request({ method: 'GET', url: `/v1/audit-log?${query}`, token });
    t.equal(res.statusCode, 400, `${query}: 400`);
  }
});

tap.test('rotating a webhook secret is an audited event, and no secret is in it', async (t) => {
  const ctx = await buildTestApp(t, { WEBHOOKS_ALLOW_PRIVATE: 'true' });
  const dep = await makeDepartment(ctx.db);
  const { agent: manager, token: managerToken } = await agentWithToken(ctx, {
    departments: [[dep, 'manager']],
  });
  const { token: solverToken } = await agentWithToken(ctx, { departments: [[dep, 'solver']] });
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/webhooks',
    token: managerToken,
    payload: { url: 'http://127.0.0.1:9/hook', department_id: dep },
  });
  t.equal(created.statusCode, 201);
  const hook = created.json();
  const rotate = (token: string, id = hook.id) =>
    ctx.request({ method: 'POST', url: `/v1/webhooks/${id}/rotate-secret`, token });

  t.equal((await rotate(solverToken)).statusCode, 403, 'a solver may not rotate');
  t.equal((await rotate(admin, '00000000-0000-4000-8000-000000000000')).statusCode, 404);
  const rotated = await rotate(managerToken);
  t.equal(rotated.statusCode, 200);
  const again = await rotate(admin);
  t.equal(again.statusCode, 200);

  const audit = await ctx.request({
    method: 'GET',
    url: '/v1/audit-log?types=webhook.secret_rotated',
    token: admin,
  });
  t.equal(audit.statusCode, 200);
  const events: AuditEvent[] = audit.json().data;
  t.equal(events.length, 2, 'one event per rotation; refused rotations record nothing');
  const [second, first] = events as [AuditEvent, AuditEvent];
  t.match(first, {
    type: 'webhook.secret_rotated',
    actor: { type: 'agent', agent_id: manager.id },
    department_id: dep,
    ticket_id: null,
    payload: {
      webhook: { id: hook.id, url: 'http://127.0.0.1:9/hook', department_id: dep, active: true },
      previous_secret_expires_at: rotated.json().previous_secret_expires_at,
    },
  });
  t.equal(second.payload.previous_secret_expires_at, again.json().previous_secret_expires_at);
  for (const secret of [hook.secret, rotated.json().secret, again.json().secret]) {
    t.notOk(audit.body.includes(secret), 'no secret, old or new, in the audit log');
  }
  t.notOk(/whsec_/.test(audit.body));

  const feed = await ctx.request({
    method: 'GET',
    url: '/v1/events?types=webhook.secret_rotated',
    token: admin,
  });
  t.equal(feed.statusCode, 200);
  t.same(
    feed.json().data.map((e: AuditEvent) => e.id),
    [first.id, second.id],
    'the same events in the feed, oldest first',
  );
  t.notOk(/whsec_/.test(feed.body), 'no secret in the feed');
  const managerFeed = await ctx.request({
    method: 'GET',
    url: '/v1/events?types=webhook.secret_rotated',
    token: managerToken,
  });
  t.same(managerFeed.json().data, [], 'settings events are for owners and admins only');
});

/** Audit events recorded after `since` (an earlier read), oldest first. */
async function auditSince(ctx: TestContext, token: string, since: Set<string>): Promise<AuditEvent[]> {
  const res = await ctx.request({ method: 'GET', url: '/v1/audit-log?limit=200', token });
  if (res.statusCode !== 200) throw new Error(`audit log: ${res.statusCode} ${res.body}`);
  return (res.json().data as AuditEvent[]).filter((e) => !since.has(e.id)).reverse();
}

async function auditIds(ctx: TestContext, token: string): Promise<Set<string>> {
  return new Set((await auditSince(ctx, token, new Set())).map((e) => e.id));
}

tap.test('deleting a department audits what it did to rules, memberships and webhooks', async (t) => {
  const ctx = await buildTestApp(t, { WEBHOOKS_ALLOW_PRIVATE: 'true' });
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const doomed = await makeDepartment(ctx.db, 'Doomed');
  const support = await makeDepartment(ctx.db, 'Support');
  const rule = async (payload: object) => {
    const res = await ctx.request({ method: 'POST', url: '/v1/automation-rules', token, payload });
    if (res.statusCode !== 201) throw new Error(`rule: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const base = {
    triggers: ['ticket.created'],
    conditions: { all: [{ field: 'channel', operator: 'is', value: 'email' }] },
    actions: [{ type: 'add_tags', tags: ['x'] }],
  };
  const routing = await rule({
    ...base,
    name: 'Routing',
    actions: [{ type: 'transfer', department_id: doomed }],
  });
  const owned = await rule({ ...base, name: 'Owned', department_id: doomed });
  const unrelated = await rule({ ...base, name: 'Unrelated' });
  const members = [
    await makeAgent(ctx.db, { departments: [[doomed, 'manager']] }),
    await makeAgent(ctx.db, {
      departments: [
        [doomed, 'reader'],
        [support, 'solver'],
      ],
    }),
  ];
  const hook = async (departmentId: string) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/webhooks',
      token,
      payload: { url: 'http://127.0.0.1:9/hook', department_id: departmentId },
    });
    if (res.statusCode !== 201) throw new Error(`webhook: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const doomedHook = await hook(doomed);
  await hook(support);

  const blocked = await ctx.request({ method: 'DELETE', url: `/v1/departments/${doomed}`, token });
  t.equal(blocked.statusCode, 409, 'rules block a deletion without a substitute');
  const before = await auditIds(ctx, token);
  t.same(await auditSince(ctx, token, before), []);

  const deleted = await ctx.request({
    method: 'DELETE',
    url: `/v1/departments/${doomed}?move_to_department_id=${support}`,
    token,
  });
  t.equal(deleted.statusCode, 204, deleted.body);
  const events = await auditSince(ctx, token, before);
  t.ok(
    events.every((e) => e.actor.type === 'agent' && e.actor.agent_id === admin.id),
    'the admin who deleted the department is the actor of every change it made',
  );
  const ruleEvents = events.filter((e) => e.type === 'rule.updated');
  t.same(
    ruleEvents.map((e) => e.payload.rule.id).sort(),
    [routing.id, owned.id].sort(),
    'one rule.updated per rewritten rule; the unrelated rule is untouched',
  );
  t.notOk(ruleEvents.some((e) => e.payload.rule.id === unrelated.id));
  const routed = ruleEvents.find((e) => e.payload.rule.id === routing.id)!;
  t.match(routed.payload, {
    reason: 'department_deleted',
    rule: { version: 2, actions: [{ type: 'transfer', department_id: support }] },
    changes: {
      actions: {
        from: [{ type: 'transfer', department_id: doomed }],
        to: [{ type: 'transfer', department_id: support }],
      },
    },
  });
  const moved = ruleEvents.find((e) => e.payload.rule.id === owned.id)!;
  t.same(moved.payload.changes, { department_id: { from: doomed, to: support } });
  t.equal(moved.payload.rule.updated_by, admin.id, 'the rule says who changed it last');
  t.equal(moved.payload.reason, 'department_deleted');
  t.equal(moved.department_id, support, 'the event belongs to the department that owns the rule now');

  const removed = events.filter((e) => e.type === 'member.removed');
  t.same(
    removed.map((e) => e.payload.agent_id).sort(),
    members.map((m) => m.id).sort(),
    'one member.removed per membership that went with the department',
  );
  for (const e of removed) {
    t.same(e.payload, { department_id: doomed, agent_id: e.payload.agent_id, reason: 'department_deleted' });
    t.equal(e.department_id, doomed);
  }
  const hooks = events.filter((e) => e.type === 'webhook.deleted');
  t.equal(hooks.length, 1, "only the department's own webhook went");
  t.match(hooks[0]?.payload, {
    webhook: { id: doomedHook.id, department_id: doomed },
    reason: 'department_deleted',
  });
  t.notOk(JSON.stringify(hooks).includes(doomedHook.secret), 'no secret');
  t.equal(
    (await ctx.request({ method: 'GET', url: `/v1/webhooks/${doomedHook.id}`, token })).statusCode,
    404,
    'the webhook is gone indeed',
  );
  t.same(
    events.map((e) => e.type),
    [
      'rule.updated',
      'rule.updated',
      'member.removed',
      'member.removed',
      'webhook.deleted',
      'department.deleted',
    ],
    'nothing else; the department itself last',
  );
  t.match(events.at(-1)?.payload, { department: { id: doomed, name: 'Doomed' } });
});

tap.test('deleting an agent audits what it did to rules, memberships and tokens', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const a = await makeDepartment(ctx.db);
  const b = await makeDepartment(ctx.db);
  const leaving = await makeAgent(ctx.db, {
    name: 'Lea Leaving',
    departments: [
      [a, 'solver'],
      [b, 'manager'],
    ],
  });
  const staying = await makeAgent(ctx.db, { name: 'Stan Staying' });
  const session = await signIn(ctx, leaving.email);
  const working = await mintApiToken(ctx, session, ['read'], 'working');
  await mintApiToken(ctx, session, ['read'], 'revoked earlier');
  const tokens = (
    await ctx.request({ method: 'GET', url: `/v1/api-tokens?agent_id=${leaving.id}`, token })
  ).json().data as { id: string; name: string }[];
  const workingId = tokens.find((x) => x.name === 'working')!.id;
  const revokedId = tokens.find((x) => x.name === 'revoked earlier')!.id;
  t.equal(
    (await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${revokedId}`, token })).statusCode,
    204,
  );
  const created = await ctx.request({
    method: 'POST',
    url: '/v1/automation-rules',
    token,
    payload: {
      name: 'To Lea',
      triggers: ['ticket.created'],
      conditions: { all: [{ field: 'channel', operator: 'is', value: 'email' }] },
      actions: [{ type: 'assign', to: 'agent', agent_id: leaving.id }],
    },
  });
  t.equal(created.statusCode, 201, created.body);
  const toLea = created.json();

  const before = await auditIds(ctx, token);
  const blocked = await ctx.request({ method: 'DELETE', url: `/v1/agents/${leaving.id}`, token });
  t.equal(blocked.statusCode, 409, 'the rule blocks a deletion without a substitute');
  t.same(await auditSince(ctx, token, before), [], 'a refused deletion records nothing');

  const deleted = await ctx.request({
    method: 'DELETE',
    url: `/v1/agents/${leaving.id}?substitute_agent_id=${staying.id}`,
    token,
  });
  t.equal(deleted.statusCode, 204, deleted.body);
  const events = await auditSince(ctx, token, before);
  t.ok(
    events.every((e) => e.actor.type === 'agent' && e.actor.agent_id === admin.id),
    'the admin who deleted the agent is the actor of every change it made',
  );
  const ruleEvents = events.filter((e) => e.type === 'rule.updated');
  t.equal(ruleEvents.length, 1);
  t.match(ruleEvents[0]?.payload, {
    reason: 'agent_deleted',
    rule: { id: toLea.id, version: 2 },
    changes: {
      actions: {
        from: [{ type: 'assign', to: 'agent', agent_id: leaving.id }],
        to: [{ type: 'assign', to: 'agent', agent_id: staying.id }],
      },
    },
  });
  const removed = events.filter((e) => e.type === 'member.removed');
  t.same(
    removed.map((e) => [e.department_id, e.payload]).sort(),
    [
      [a, { department_id: a, agent_id: leaving.id, reason: 'agent_deleted' }],
      [b, { department_id: b, agent_id: leaving.id, reason: 'agent_deleted' }],
    ].sort(),
    'one member.removed per membership that went with the agent',
  );
  const gone = events.filter((e) => e.type === 'token.deleted');
  t.equal(gone.length, 1, 'the token revoked earlier had its event then; not a second one');
  t.match(gone[0]?.payload, {
    token: { id: workingId, agent_id: leaving.id, name: 'working', status: 'active' },
    reason: 'agent_deleted',
  });
  t.notOk(JSON.stringify(events).includes(working), 'no token secret');
  t.equal(
    (await ctx.request({ method: 'GET', url: '/v1/me', token: working })).statusCode,
    401,
    'the token is gone indeed',
  );
  t.same(
    events.map((e) => e.type),
    ['rule.updated', 'member.removed', 'member.removed', 'token.deleted', 'agent.deleted'],
    'nothing else; the agent itself last',
  );
});

tap.test('disabling an agent audits the revocation of each of their tokens', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const { agent, token: session } = await agentWithToken(ctx);
  const first = await mintApiToken(ctx, session, ['read'], 'first');
  const second = await mintApiToken(ctx, session, ['read', 'write'], 'second');
  const listed = (
    await ctx.request({ method: 'GET', url: `/v1/api-tokens?agent_id=${agent.id}`, token })
  ).json().data as { id: string; name: string }[];
  const early = await mintApiToken(ctx, session, ['read'], 'revoked earlier');
  const earlyId = (await ctx.request({ method: 'GET', url: `/v1/api-tokens?agent_id=${agent.id}`, token }))
    .json()
    .data.find((x: { name: string }) => x.name === 'revoked earlier').id;
  await ctx.request({ method: 'DELETE', url: `/v1/api-tokens/${earlyId}`, token });

  const before = await auditIds(ctx, token);
  const disabled = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${agent.id}`,
    token,
    payload: { status: 'disabled' },
  });
  t.equal(disabled.statusCode, 200, disabled.body);
  const events = await auditSince(ctx, token, before);
  t.same(
    events.map((e) => e.type),
    ['token.deleted', 'token.deleted', 'agent.updated'],
    'one token.deleted per token the disabling revoked, then the agent’s own change',
  );
  const revoked = events.filter((e) => e.type === 'token.deleted');
  t.same(
    revoked.map((e) => e.payload.token.id).sort(),
    listed.map((x) => x.id).sort(),
    'the working tokens; not the one revoked earlier',
  );
  for (const e of revoked) {
    t.match(e, {
      actor: { type: 'agent', agent_id: admin.id },
      payload: { reason: 'agent_disabled', token: { agent_id: agent.id, status: 'revoked' } },
    });
  }
  t.same(events.at(-1)?.payload.changes, { status: { from: 'active', to: 'disabled' } });
  for (const secret of [first, second, early]) {
    t.notOk(JSON.stringify(events).includes(secret), 'no token secret');
  }

  const enabled = await ctx.request({
    method: 'PATCH',
    url: `/v1/agents/${agent.id}`,
    token,
    payload: { status: 'active' },
  });
  t.equal(enabled.statusCode, 200);
  t.equal(
    (await ctx.request({ method: 'GET', url: '/v1/me', token: first })).statusCode,
    401,
    'enabling the agent again does not bring the tokens back',
  );
  const later = await auditSince(ctx, token, new Set([...before, ...events.map((e) => e.id)]));
  t.same(
    later.map((e) => e.type),
    ['agent.updated'],
    'enabling revokes nothing, so records no token event',
  );
});

tap.test('a department’s notification defaults: each change audited, a change to nothing not', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: admin } = await agentWithToken(ctx, { role: 'admin' });
  const dep = await makeDepartment(ctx.db);
  const { agent: manager, token } = await agentWithToken(ctx, { departments: [[dep, 'manager']] });
  const { token: solver } = await agentWithToken(ctx, { departments: [[dep, 'solver']] });
  const put = (defaults: { kind: string; enabled: boolean }[], as = token) =>
    ctx.request({
      method: 'PUT',
      url: `/v1/departments/${dep}/notification-defaults`,
      token: as,
      payload: { defaults },
    });
  const before = await auditIds(ctx, admin);

  t.equal((await put([{ kind: 'customer_replied', enabled: false }], solver)).statusCode, 403);
  const first = await put([{ kind: 'customer_replied', enabled: false }]);
  t.equal(first.statusCode, 200, first.body);
  t.equal((await put([{ kind: 'customer_replied', enabled: false }])).statusCode, 200);
  const second = await put([
    { kind: 'customer_replied', enabled: true },
    { kind: 'ticket_created', enabled: true },
  ]);
  t.equal(second.statusCode, 200);

  const events = await auditSince(ctx, admin, before);
  t.same(
    events.map((e) => e.type),
    ['notification_defaults.updated', 'notification_defaults.updated'],
    'the refused change and the change to nothing record nothing',
  );
  t.match(events[0], {
    actor: { type: 'agent', agent_id: manager.id },
    department_id: dep,
    payload: {
      department_id: dep,
      changes: { customer_replied: { from: null, to: false } },
      defaults: first.json().data,
    },
  });
  t.same(Object.keys(events[0]?.payload.changes ?? {}), ['customer_replied']);
  t.same(events[1]?.payload.changes, {
    customer_replied: { from: false, to: true },
    ticket_created: { from: null, to: true },
  });
  t.same(events[1]?.payload.defaults, second.json().data, 'the defaults as members now get them');
});

tap.test('contact fields and the rules’ running order are audited', async (t) => {
  const ctx = await buildTestApp(t);
  const { agent: admin, token } = await agentWithToken(ctx, { role: 'admin' });
  const { token: agentToken } = await agentWithToken(ctx);
  const before = await auditIds(ctx, token);

  const created = await ctx.request({
    method: 'POST',
    url: '/v1/contact-fields',
    token,
    payload: { key: 'plan', label: 'Plan', type: 'choice', options: ['Free', 'Pro'] },
  });
  t.equal(created.statusCode, 201, created.body);
  const field = created.json();
  const patch = (payload: object, as = token) =>
    ctx.request({ method: 'PATCH', url: `/v1/contact-fields/${field.id}`, token: as, payload });
  t.equal((await patch({ label: 'Nope' }, agentToken)).statusCode, 403);
  t.equal((await patch({ label: 'Plan name', options: ['Free', 'Pro', 'Team'] })).statusCode, 200);
  t.equal((await patch({ label: 'Plan name' })).statusCode, 200, 'a change to nothing');
  t.equal(
    (await ctx.request({ method: 'DELETE', url: `/v1/contact-fields/${field.id}`, token })).statusCode,
    204,
  );

  const rule = async (name: string) => {
    const res = await ctx.request({
      method: 'POST',
      url: '/v1/automation-rules',
      token,
      payload: {
        name,
        triggers: ['ticket.created'],
        conditions: { all: [{ field: 'channel', operator: 'is', value: 'email' }] },
        actions: [{ type: 'add_tags', tags: ['x'] }],
      },
    });
    if (res.statusCode !== 201) throw new Error(`rule: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const one = await rule('One');
  const two = await rule('Two');
  const three = await rule('Three');
  const order = await ctx.request({
    method: 'PUT',
    url: '/v1/automation-rules/order',
    token,
    payload: { rule_ids: [two.id, one.id, three.id] },
  });
  t.equal(order.statusCode, 200, order.body);

  const events = await auditSince(ctx, token, before);
  t.same(
    events.map((e) => e.type),
    [
      'contact_field.created',
      'contact_field.updated',
      'contact_field.deleted',
      'rule.created',
      'rule.created',
      'rule.created',
      'rule.updated',
      'rule.updated',
    ],
    'the refused change and the change to nothing record nothing; only the rules that moved',
  );
  t.ok(events.every((e) => e.actor.agent_id === admin.id && e.department_id === null));
  t.match(events[0]?.payload, { contact_field: { id: field.id, key: 'plan', label: 'Plan' } });
  t.same(events[1]?.payload.changes, {
    label: { from: 'Plan', to: 'Plan name' },
    options: { from: ['Free', 'Pro'], to: ['Free', 'Pro', 'Team'] },
  });
  t.match(events[2]?.payload, { contact_field: { id: field.id, label: 'Plan name' } });
  const moves = events.slice(6).map((e) => [e.payload.rule.id, e.payload.changes]);
  t.same(
    moves.sort(),
    [
      [one.id, { position: { from: 1, to: 2 } }],
      [two.id, { position: { from: 2, to: 1 } }],
    ].sort(),
    'each moved rule records its new position',
  );
});
