import t from 'tap';
import type { DepartmentRole, MemberLevel } from '../src/db/types.ts';
import { upsertMember } from '../src/domains/departments/repository.ts';
import { drainNotifications } from '../src/domains/notifications/service.ts';
import { fireSlaTimers } from '../src/domains/tickets/service.ts';
import type { SlaKind, SlaState } from '../src/sla/index.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';
import { settleNotifications } from './helpers/notifications.ts';

// SLA escalations through HTTP (docs/sla.md, "Escalation"): a warning or breach fired by a
// ticket's write hands the ticket on as its policy says, in that write. Nothing sleeps: most
// tests move one target's due (or warning) into the past in the stored clock state, and the
// ticket's next write fires it first, as the write path always does; the last one moves the
// database's clock (test/helpers/clock.ts) and runs the SLA timer every server runs.

interface HistoryEvent {
  type: string;
  data: Record<string, unknown>;
  actor: { type: string; agent_id: string | null };
}

t.test('SLA escalations', async (t) => {
  // Presence must not time out while the file runs on a busy machine.
  const ctx = await buildTestApp(t, { PRESENCE_TIMEOUT_SECONDS: '86400' });
  await installClock(ctx.db); // the real time, until the timer's test moves it
  await drainNotifications(ctx.db); // the consumer starts at the feed's head: start it before anything
  const admin = await agentWithToken(ctx, { role: 'admin' });
  type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  const api = (method: Method, url: string, payload?: object, token = admin.token) =>
    ctx.request({ method, url, token, ...(payload && { payload }) });
  const ok = async (method: Method, url: string, payload?: object, token = admin.token) => {
    const res = await api(method, url, payload, token);
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.statusCode === 204 ? null : res.json();
  };

  /** A member of the department at a level, with a presence (online, away, or never said: offline). */
  const member = async (
    name: string,
    departmentId: string,
    role: DepartmentRole,
    level: MemberLevel,
    presence: 'online' | 'away' | null,
  ) => {
    const { agent, token } = await agentWithToken(ctx, { name });
    await upsertMember(ctx.db, departmentId, agent.id, role, level);
    if (presence) await ok('PUT', '/v1/me/presence', { status: presence }, token);
    return { id: agent.id, token, name };
  };

  let n = 0;
  const get = (id: string) => ok('GET', `/v1/tickets/${id}`);
  const ticket = async (departmentId: string, extra: object = {}) =>
    ok('POST', '/v1/tickets', {
      subject: `Escalate me ${++n}`,
      department_id: departmentId,
      contact: { email: `escalation-${n}@example.com` },
      message: { body: 'Still waiting.' },
      ...extra,
    });
  const history = async (id: string): Promise<HistoryEvent[]> =>
    (await ok('GET', `/v1/tickets/${id}/history?limit=200`)).data;
  const escalations = async (id: string) => (await history(id)).filter((e) => e.type === 'sla.escalated');
  /** Any write: the one that finds the moved due and fires it. */
  const touch = (id: string) => ok('PATCH', `/v1/tickets/${id}`, { tags: [`touch-${++n}`] });

  /** Moves a running target's due (or only its warning) to just after it started: the next write fires it. */
  const fallDue = async (id: string, kind: SlaKind, what: 'breach' | 'warning') => {
    const row = await ctx.db
      .selectFrom('tickets')
      .select('sla_state')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    const state = row.sla_state as SlaState;
    const target = state.targets.find((x) => x.kind === kind && x.status === 'active');
    if (!target) throw new Error(`no running ${kind} target`);
    if (what === 'breach') {
      target.due_at = target.started_at + 1;
      target.warn_at = null;
    } else target.warn_at = target.started_at + 1;
    await ctx.db
      .updateTable('tickets')
      .set({ sla_state: JSON.stringify(state) })
      .where('id', '=', id)
      .execute();
  };

  /** The kinds of notification each agent got about a ticket (but ticket_created, which every member gets). */
  const told = async (ticketId: string, agents: { token: string; name: string }[]) => {
    await settleNotifications(ctx.db);
    const out: Record<string, string[]> = {};
    for (const a of agents) {
      const inbox = await ok('GET', '/v1/me/notifications?limit=200', undefined, a.token);
      out[a.name] = inbox.data
        .filter(
          (x: { ticket_id: string; kind: string }) => x.ticket_id === ticketId && x.kind !== 'ticket_created',
        )
        .map((x: { kind: string }) => x.kind);
    }
    return out;
  };

  // Support: tiers 1 to 3. At tier 2 only Tess is available: Ava is away, Otto never came online,
  // Fay is online but full (capacity 1, holding a ticket).
  const support = await makeDepartment(ctx.db, 'Support');
  const tier1 = await member('Tom', support, 'solver', 1, 'online');
  const away = await member('Ava', support, 'solver', 2, 'away');
  const offline = await member('Otto', support, 'solver', 2, null);
  const full = await member('Fay', support, 'solver', 2, 'online');
  const tier2 = await member('Tess', support, 'solver', 2, 'online');
  const tier3 = await member('Theo', support, 'solver', 3, 'online');
  const supervisor = await member('Sue', support, 'supervisor', 1, 'online');
  const manager = await member('Max', support, 'manager', 1, null);
  const reader = await member('Rita', support, 'reader', 3, 'online');
  await ok('PATCH', `/v1/agents/${full.id}`, { capacity: 1 });
  // Least busy alone would pick Ava or Otto (no tickets), then Fay (one) before Tess (two).
  await ticket(support, { assignee_id: full.id });
  for (let i = 0; i < 2; i++) await ticket(support, { assignee_id: tier2.id });
  const everyone = [tier1, away, offline, full, tier2, tier3, supervisor, manager, reader];

  const supportPolicy = await ok('POST', '/v1/sla-policies', {
    name: 'Support',
    conditions: { all: [{ field: 'department_id', operator: 'is', value: support }] },
    targets: {
      normal: {
        first_answer: { minutes: 60, business: false },
        first_assignment: { minutes: 30, business: false },
        resolution: { minutes: 600, business: false },
      },
    },
    warn_before_minutes: 10,
    escalations: [
      { on: 'warning', kinds: ['resolution'], action: 'next_level' },
      { on: 'breach', action: 'next_level', notify_supervisors: true },
    ],
  });

  await t.test('a breach hands the ticket to the available tier 2, the next one to tier 3', async (t) => {
    const created = await ticket(support, { assignee_id: tier1.id });
    await fallDue(created.id, 'first_answer', 'breach');
    const first = await touch(created.id);
    t.equal(first.assignee_id, tier2.id, 'tier 2, not the away, offline or full one');
    const [escalated] = await escalations(created.id);
    t.match(escalated, {
      actor: { type: 'system', agent_id: null },
      data: {
        policy_id: supportPolicy.id,
        policy_version: supportPolicy.version,
        on: 'breach',
        kind: 'first_answer',
        cycle: 1,
        action: 'next_level',
        from: tier1.id,
        to: tier2.id,
        level: 2,
      },
    });
    t.same(
      [...(escalated!.data.recipients as string[])].sort(),
      [tier2.id, supervisor.id, manager.id].sort(),
      'the new assignee, and the supervisors as the escalation asks',
    );
    const assigned = (await history(created.id)).filter((e) => e.type === 'assigned').at(-1)!;
    t.match(assigned, {
      actor: { type: 'system' },
      data: { from: tier1.id, to: tier2.id, reason: 'sla_escalated' },
    });

    t.same(await told(created.id, everyone), {
      Tom: ['ticket_assigned'],
      Ava: [],
      Otto: [],
      Fay: [],
      Tess: ['sla_escalated'],
      Theo: [],
      Sue: ['sla_escalated'],
      Max: ['sla_escalated'],
      Rita: [],
    });

    await fallDue(created.id, 'resolution', 'breach');
    const second = await touch(created.id);
    t.equal(second.assignee_id, tier3.id, 'from tier 2 to tier 3');
    const all = await escalations(created.id);
    t.equal(all.length, 2);
    t.match(all[1]!.data, { kind: 'resolution', from: tier2.id, to: tier3.id, level: 3 });

    const replied = await api('POST', `/v1/tickets/${created.id}/messages`, {
      kind: 'reply',
      body: 'Looking into it.',
    });
    t.equal(replied.statusCode, 201, replied.body);
    await touch(created.id);
    t.equal((await escalations(created.id)).length, 2, 'writes that fire nothing escalate nothing');
  });

  await t.test('the top tier: nobody higher, so the ticket stays and the supervisors are told', async (t) => {
    const created = await ticket(support, { assignee_id: tier3.id });
    await fallDue(created.id, 'first_answer', 'breach');
    const after = await touch(created.id);
    t.equal(after.assignee_id, tier3.id, 'not reassigned');
    const [escalated] = await escalations(created.id);
    t.match(escalated!.data, { from: tier3.id, to: null, level: null });
    t.same([...(escalated!.data.recipients as string[])].sort(), [supervisor.id, manager.id].sort());
    t.notOk(
      (await history(created.id)).some((e) => e.type === 'assigned' && e.data.reason === 'sla_escalated'),
      'no assignment',
    );
    const inboxes = await told(created.id, [tier3, supervisor, manager, tier2]);
    t.same(inboxes, { Theo: ['ticket_assigned'], Sue: ['sla_escalated'], Max: ['sla_escalated'], Tess: [] });
  });

  await t.test(
    'a warning escalates an unassigned ticket to tier 2; the clock sees the assignment',
    async (t) => {
      const created = await ticket(support);
      await fallDue(created.id, 'resolution', 'warning');
      const warned = await touch(created.id);
      t.equal(warned.assignee_id, tier2.id, 'unassigned: tier 2');
      const events = await history(created.id);
      t.match((await escalations(created.id))[0]!.data, {
        on: 'warning',
        kind: 'resolution',
        from: null,
        level: 2,
      });
      t.same(
        (await escalations(created.id))[0]!.data.recipients,
        [tier2.id],
        'only the new assignee: this escalation does not ask for the supervisors',
      );
      const fulfilled = events.find((e) => e.type === 'sla.fulfilled' && e.data.kind === 'first_assignment');
      t.ok(fulfilled, 'the assignment met the first-assignment target');
      t.same(await told(created.id, [tier2, supervisor, tier1]), {
        Tess: ['sla_escalated'],
        Sue: [],
        Tom: [],
      });
      t.same(
        await told(created.id, [tier2]),
        { Tess: ['sla_escalated'] },
        'once, not also as ticket_assigned',
      );
    },
  );

  await t.test('a first assignment breached: escalated, and met late by it', async (t) => {
    const created = await ticket(support);
    await fallDue(created.id, 'first_assignment', 'breach');
    const after = await touch(created.id);
    t.equal(after.assignee_id, tier2.id);
    t.match(
      after.sla.targets.find((x: { kind: string }) => x.kind === 'first_assignment'),
      {
        status: 'breached',
      },
    );
    const events = await history(created.id);
    const types = events.map((e) => e.type);
    t.ok(types.indexOf('sla.breached') < types.indexOf('sla.escalated'), 'the breach, then the escalation');
    const late = events.find((e) => e.type === 'sla.fulfilled' && e.data.kind === 'first_assignment');
    t.equal(late?.data.late, true, 'met late by the escalation’s assignment');
  });

  await t.test('a write that fires a breach and resolves the ticket escalates nothing', async (t) => {
    const created = await ticket(support, { assignee_id: tier1.id });
    await fallDue(created.id, 'first_answer', 'breach');
    const resolved = await ok('PATCH', `/v1/tickets/${created.id}`, { status: 'resolved' });
    t.equal(resolved.assignee_id, tier1.id);
    t.ok((await history(created.id)).some((e) => e.type === 'sla.breached'));
    t.same(await escalations(created.id), []);
  });

  // Billing: escalations to the supervisors, and a policy without escalations elsewhere.
  const billing = await makeDepartment(ctx.db, 'Billing');
  const clerk = await member('Cleo', billing, 'solver', 1, 'online');
  const boss = await member('Bea', billing, 'supervisor', 1, 'online');
  const awayBoss = await member('Abe', billing, 'supervisor', 2, 'away');
  const chief = await member('Carl', billing, 'manager', 1, null);
  const outsider = await member('Olga', support, 'solver', 1, 'online');
  await ok('POST', '/v1/sla-policies', {
    name: 'Billing',
    conditions: { all: [{ field: 'department_id', operator: 'is', value: billing }] },
    targets: {
      normal: {
        first_answer: { minutes: 60, business: false },
        resolution: { minutes: 600, business: false },
      },
    },
    escalations: [
      { on: 'breach', kinds: ['first_answer'], action: 'supervisors' },
      { on: 'breach', kinds: ['resolution'], action: 'next_level' },
    ],
  });

  await t.test('supervisors: to the available supervisor; none available: they are told', async (t) => {
    const created = await ticket(billing, { assignee_id: clerk.id });
    await fallDue(created.id, 'first_answer', 'breach');
    const after = await touch(created.id);
    t.equal(after.assignee_id, boss.id, 'the online supervisor, not the away one or the offline manager');
    const [escalated] = await escalations(created.id);
    t.match(escalated!.data, { action: 'supervisors', from: clerk.id, to: boss.id, level: null });
    t.same(escalated!.data.recipients, [boss.id]);
    t.same(await told(created.id, [clerk, boss, awayBoss, chief, outsider]), {
      Cleo: ['ticket_assigned'],
      Bea: ['sla_escalated'],
      Abe: [],
      Carl: [],
      Olga: [],
    });

    // Nobody above Cleo at a higher tier either: resolution's next_level falls back to the supervisors.
    const other = await ticket(billing, { assignee_id: clerk.id });
    await fallDue(other.id, 'resolution', 'breach');
    t.equal((await touch(other.id)).assignee_id, clerk.id, 'no tier 2 or 3 member available: it stays');
    const [fallback] = await escalations(other.id);
    t.match(fallback!.data, { action: 'next_level', to: null });
    t.same([...(fallback!.data.recipients as string[])].sort(), [boss.id, awayBoss.id, chief.id].sort());

    // Already with a supervisor: it stays, and the supervisors are told.
    const withBoss = await ticket(billing, { assignee_id: boss.id });
    await fallDue(withBoss.id, 'first_answer', 'breach');
    t.equal((await touch(withBoss.id)).assignee_id, boss.id);
    t.match((await escalations(withBoss.id))[0]!.data, { from: boss.id, to: null });
  });

  await t.test('no escalation when the policy has none', async (t) => {
    const quiet = await makeDepartment(ctx.db, 'Quiet');
    const solo = await member('Sol', quiet, 'solver', 1, 'online');
    await member('Hal', quiet, 'solver', 2, 'online');
    const policy = await ok('POST', '/v1/sla-policies', {
      name: 'Quiet',
      conditions: { all: [{ field: 'department_id', operator: 'is', value: quiet }] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
    });
    t.same(policy.escalations, [], 'empty by default');
    const created = await ticket(quiet, { assignee_id: solo.id });
    await fallDue(created.id, 'first_answer', 'breach');
    const after = await touch(created.id);
    t.equal(after.assignee_id, solo.id);
    t.ok(
      (await history(created.id)).some((e) => e.type === 'sla.breached'),
      'the breach is recorded',
    );
    t.same(await escalations(created.id), []);
  });

  await t.test('sla.escalated in the feed, with its payload', async (t) => {
    const feed = await ok('GET', '/v1/events?types=sla.escalated&limit=200');
    t.ok(feed.data.length >= 5);
    t.match(feed.data[0], {
      type: 'sla.escalated',
      actor: { type: 'system' },
      payload: { policy_id: supportPolicy.id, on: 'breach', kind: 'first_answer', to: tier2.id, level: 2 },
    });
  });

  await t.test('escalations on policies: defaults, versions, refusals with pointers', async (t) => {
    const base = {
      name: 'Checked',
      conditions: { all: [] },
      targets: { high: { first_answer: { minutes: 30, business: false } } },
    };
    const created = await ok('POST', '/v1/sla-policies', {
      ...base,
      active: false,
      escalations: [{ on: 'breach', action: 'supervisors' }],
    });
    t.same(created.escalations, [
      { on: 'breach', kinds: [], action: 'supervisors', notify_supervisors: false },
    ]);
    const changed = await ok('PATCH', `/v1/sla-policies/${created.id}`, {
      escalations: [
        { on: 'breach', kinds: ['first_answer'], action: 'next_level', notify_supervisors: true },
      ],
    });
    t.equal(changed.version, created.version + 1, 'a new version');
    const audit = (await ok('GET', '/v1/audit-log?limit=50')).data;
    const updated = audit.find(
      (e: { type: string; payload: { sla_policy: { id: string } } }) =>
        e.type === 'sla_policy.updated' && e.payload.sla_policy.id === created.id,
    );
    t.ok(updated.payload.changes.escalations, 'the settings event names the change');

    const before = await ok('GET', `/v1/sla-policies/${created.id}`);
    const bad = await api('PATCH', `/v1/sla-policies/${created.id}`, {
      escalations: [
        { on: 'sometimes', action: 'promote' },
        { on: 'warning', action: 'next_level' },
        { on: 'breach', kinds: ['coffee', 'resolution'], action: 'next_level' },
        { on: 'breach', action: 'supervisors' },
        { on: 'breach', kinds: ['first_answer'], action: 'supervisors' },
      ],
    });
    t.equal(bad.statusCode, 422, bad.body);
    t.equal(bad.json().code, 'invalid_sla_policy');
    t.same(
      bad.json().errors.map((e: { field: string }) => e.field),
      [
        'body/escalations/0/on',
        'body/escalations/0/action',
        'body/escalations/1/on',
        'body/escalations/2/kinds/0',
        'body/escalations/2/kinds/1',
        'body/escalations/4',
      ],
    );
    t.same(await ok('GET', `/v1/sla-policies/${created.id}`), before, 'nothing changed');
    const unknownField = await api('POST', '/v1/sla-policies', {
      ...base,
      escalations: [{ on: 'breach', action: 'supervisors', to: 'boss' }],
    });
    t.equal(unknownField.statusCode, 400, 'an unknown field is a shape error');
    const tooMany = await api('POST', '/v1/sla-policies', {
      ...base,
      escalations: Array.from({ length: 9 }, () => ({ on: 'breach', action: 'supervisors' })),
    });
    t.equal(tooMany.statusCode, 400);
  });

  // Last: moving the clock makes every running target of this database due.
  await t.test('the SLA timer’s write escalates: warning to tier 2, breach to a supervisor', async (t) => {
    const night = await makeDepartment(ctx.db, 'Night');
    const first = await member('Nina', night, 'solver', 1, 'online');
    const second = await member('Ned', night, 'solver', 2, 'online');
    const head = await member('Hugo', night, 'supervisor', 1, 'online');
    const policy = await ok('POST', '/v1/sla-policies', {
      name: 'Night',
      conditions: { all: [{ field: 'department_id', operator: 'is', value: night }] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
      warn_before_minutes: 10,
      escalations: [
        { on: 'warning', action: 'next_level' },
        { on: 'breach', action: 'supervisors', notify_supervisors: true },
      ],
    });
    const created = await ticket(night, { assignee_id: first.id });
    const start = Date.parse(created.created_at);
    const fire = async (minutes: number) => {
      await setClock(ctx.db, new Date(start + minutes * 60_000));
      await fireSlaTimers(ctx.db);
    };

    await fire(49);
    t.equal((await get(created.id)).assignee_id, first.id, 'nothing due yet');
    await fire(55);
    t.equal((await get(created.id)).assignee_id, second.id, 'the warning: tier 2');
    await fire(61);
    t.equal((await get(created.id)).assignee_id, head.id, 'the breach: the supervisor');
    await fire(62);
    const all = await escalations(created.id);
    t.match(
      all.map((e) => [e.actor.type, e.data.on, e.data.action, e.data.from, e.data.to, e.data.policy_id]),
      [
        ['system', 'warning', 'next_level', first.id, second.id, policy.id],
        ['system', 'breach', 'supervisors', second.id, head.id, policy.id],
      ],
      'each once, by the timer',
    );
    t.same(await told(created.id, [first, second, head]), {
      Nina: ['ticket_assigned'],
      Ned: ['sla_escalated'],
      Hugo: ['sla_escalated'],
    });
    await setClock(ctx.db, null);
  });
});
