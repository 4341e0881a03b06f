import t from 'tap';
import { compileCalendar, WEEKDAYS } from '../src/business-time/index.ts';
import { agentWithToken, buildTestApp, makeDepartment, type TestContext } from './helpers/app.ts';

// SLA policies through HTTP: the CRUD and order routes, and the clock the ticket write path runs
// (docs/sla.md). Business-time dues are recomputed here with src/business-time from the stored
// created_at, so nothing sleeps and no clock is faked.

const MINUTE = 60_000;
const todayUtc = () => WEEKDAYS[(new Date().getUTCDay() + 6) % 7]!;
/** Open all of today (UTC) and nothing else: business minutes run now, and stop at midnight. */
const todayOnly = () => ({
  time_zone: 'UTC',
  intervals: [{ day: todayUtc(), start: '00:00', end: '24:00' }],
  holidays: [],
});

interface HistoryEvent {
  type: string;
  data: Record<string, unknown>;
  occurred_at: string;
  actor: { type: string; agent_id: string | null };
}

async function countPolicies(ctx: TestContext) {
  const row = await ctx.db
    .selectFrom('sla_policies')
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

t.test('SLA policies', async (t) => {
  const ctx = await buildTestApp(t);
  const { token: adminToken } = await agentWithToken(ctx, { role: 'admin' });
  const { token: agentToken } = await agentWithToken(ctx, { role: 'agent' });
  const api = (method: string, url: string, payload?: object, token = adminToken, headers = {}) =>
    ctx.request({ method: method as 'GET', url, token, headers, ...(payload && { payload }) });
  const policy = async (payload: object) => {
    const res = await api('POST', '/v1/sla-policies', payload);
    if (res.statusCode !== 201) throw new Error(`policy: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const support = await makeDepartment(ctx.db, 'Support');
  const billing = await makeDepartment(ctx.db, 'Billing');
  const { agent: solver, token: solverToken } = await agentWithToken(ctx, {
    departments: [
      [support, 'solver'],
      [billing, 'solver'],
    ],
  });
  const ticket = async (payload: object = {}) => {
    const res = await api('POST', '/v1/tickets', {
      subject: 'Where is my parcel?',
      contact: { email: `c-${Math.random()}@example.com` },
      message: { body: 'I ordered last week.' },
      ...payload,
    });
    if (res.statusCode !== 201) throw new Error(`ticket: ${res.statusCode} ${res.body}`);
    return res.json();
  };
  const get = async (id: string) => (await api('GET', `/v1/tickets/${id}`)).json();
  const history = async (id: string): Promise<HistoryEvent[]> =>
    (await api('GET', `/v1/tickets/${id}/history?limit=200`)).json().data;
  const slaEvents = async (id: string) => (await history(id)).filter((e) => e.type.startsWith('sla.'));
  const patch = async (id: string, payload: object, token = adminToken) => {
    const res = await api('PATCH', `/v1/tickets/${id}`, payload, token);
    if (res.statusCode !== 200) throw new Error(`patch: ${res.statusCode} ${res.body}`);
    return res.json();
  };

  await t.test('create, read, list, update with If-Match, delete; settings events', async (t) => {
    const res = await api('POST', '/v1/sla-policies', {
      name: '  Standard ',
      conditions: { all: [] },
      targets: { normal: { first_answer: { minutes: 60, business: true } } },
    });
    t.equal(res.statusCode, 201, res.body);
    const created = res.json();
    t.equal(created.name, 'Standard');
    t.equal(created.version, 1);
    t.equal(created.active, true);
    t.equal(created.on_transfer, 'continue');
    t.equal(created.warn_before_minutes, null);
    t.equal(res.headers.location, `/v1/sla-policies/${created.id}`);
    t.ok(res.headers.etag);

    const read = await api('GET', `/v1/sla-policies/${created.id}`, undefined, agentToken);
    t.equal(read.statusCode, 200, 'every agent reads');
    t.same(read.json(), created);
    t.equal((await api('GET', '/v1/sla-policies', undefined, agentToken)).json().data.length, 1);

    const stale = await api('PATCH', `/v1/sla-policies/${created.id}`, { name: 'X' }, adminToken, {
      'if-match': '"stale"',
    });
    t.equal(stale.statusCode, 412);
    const updated = await api(
      'PATCH',
      `/v1/sla-policies/${created.id}`,
      { warn_before_minutes: 10 },
      adminToken,
      {
        'if-match': read.headers.etag as string,
      },
    );
    t.equal(updated.statusCode, 200, updated.body);
    t.equal(updated.json().version, 2);
    t.equal(updated.json().warn_before_minutes, 10);
    t.equal(
      (await api('GET', `/v1/sla-policies/${created.id}`)).json().name,
      'Standard',
      '412 changed nothing',
    );

    const audit = (await api('GET', '/v1/audit-log?limit=50')).json().data;
    const types = audit.map((e: { type: string }) => e.type);
    t.ok(types.includes('sla_policy.created'));
    const change = audit.find((e: { type: string }) => e.type === 'sla_policy.updated');
    t.same(change.payload.changes, { warn_before_minutes: { from: null, to: 10 } });

    const gone = await api('DELETE', `/v1/sla-policies/${created.id}`);
    t.equal(gone.statusCode, 204);
    t.equal((await api('GET', `/v1/sla-policies/${created.id}`)).statusCode, 404);
    t.equal(await countPolicies(ctx), 0);
    const after = (await api('GET', '/v1/audit-log?limit=50')).json().data;
    t.ok(after.some((e: { type: string }) => e.type === 'sla_policy.deleted'));
  });

  await t.test('refusals: 400 shape, 422 with pointers, 403 for agents; nothing written', async (t) => {
    const base = {
      name: 'P',
      conditions: { all: [] },
      targets: { high: { first_answer: { minutes: 5, business: false } } },
    };
    const unknown = await api('POST', '/v1/sla-policies', { ...base, colour: 'red' });
    t.equal(unknown.statusCode, 400, unknown.body);
    const wrongType = await api('POST', '/v1/sla-policies', { ...base, pause_when_answered: 'yes' });
    t.equal(wrongType.statusCode, 400);
    const bad = await api('POST', '/v1/sla-policies', {
      ...base,
      targets: {
        high: { first_answer: { minutes: 0, business: false }, coffee: { minutes: 5, business: true } },
        soon: {},
      },
      conditions: { all: [{ field: 'message.body', operator: 'contains', value: 'x' }] },
      warn_before_minutes: -1,
    });
    t.equal(bad.statusCode, 422, bad.body);
    t.equal(bad.json().code, 'invalid_sla_policy');
    const fields = bad.json().errors.map((e: { field: string }) => e.field);
    for (const field of [
      'body/targets/high/first_answer/minutes',
      'body/targets/high/coffee',
      'body/targets/soon',
      'body/warn_before_minutes',
    ]) {
      t.ok(fields.includes(field), `points at ${field}`);
    }
    t.ok(
      fields.some((f: string) => f.startsWith('body/conditions')),
      'points into the conditions',
    );
    const unknownDepartment = await api('POST', '/v1/sla-policies', {
      ...base,
      conditions: {
        all: [{ field: 'department_id', operator: 'is', value: '00000000-0000-4000-8000-000000000000' }],
      },
    });
    t.equal(unknownDepartment.statusCode, 422, unknownDepartment.body);
    const forbidden = await api('POST', '/v1/sla-policies', base, agentToken);
    t.equal(forbidden.statusCode, 403);
    t.equal(await countPolicies(ctx), 0, 'nothing was written');

    const p = await policy(base);
    const patchForbidden = await api('PATCH', `/v1/sla-policies/${p.id}`, { name: 'Q' }, agentToken);
    t.equal(patchForbidden.statusCode, 403);
    const patchBad = await api('PATCH', `/v1/sla-policies/${p.id}`, { targets: {} });
    t.equal(patchBad.statusCode, 422, patchBad.body);
    t.equal((await api('GET', `/v1/sla-policies/${p.id}`)).json().version, 1, 'unchanged');
    t.equal((await api('DELETE', `/v1/sla-policies/${p.id}`, undefined, agentToken)).statusCode, 403);
    t.equal((await api('DELETE', `/v1/sla-policies/${p.id}`)).statusCode, 204);
  });

  await t.test('order', async (t) => {
    const a = await policy({
      name: 'A',
      conditions: { all: [] },
      targets: { low: { resolution: { minutes: 600, business: false } } },
    });
    const b = await policy({
      name: 'B',
      conditions: { all: [] },
      targets: { low: { resolution: { minutes: 600, business: false } } },
    });
    t.ok(b.position > a.position, 'a new policy comes last');
    const incomplete = await api('PUT', '/v1/sla-policies/order', { policy_ids: [b.id] });
    t.equal(incomplete.statusCode, 422, incomplete.body);
    const twice = await api('PUT', '/v1/sla-policies/order', { policy_ids: [b.id, b.id, a.id] });
    t.equal(twice.statusCode, 422);
    t.equal(
      (await api('PUT', '/v1/sla-policies/order', { policy_ids: [b.id, a.id] }, agentToken)).statusCode,
      403,
    );
    const ordered = await api('PUT', '/v1/sla-policies/order', { policy_ids: [b.id, a.id] });
    t.equal(ordered.statusCode, 200, ordered.body);
    t.same(
      ordered.json().data.map((p: { id: string; position: number }) => [p.id, p.position]),
      [
        [b.id, 1],
        [a.id, 2],
      ],
    );
    t.same(
      (await api('GET', '/v1/sla-policies')).json().data.map((p: { id: string }) => p.id),
      [b.id, a.id],
    );
    for (const p of [a, b]) await api('DELETE', `/v1/sla-policies/${p.id}`);
  });

  await t.test('the clock on tickets', async (t) => {
    const schedule = await api('POST', '/v1/schedules', { name: 'Today only', ...todayOnly() });
    t.equal(schedule.statusCode, 201, schedule.body);
    const linked = await api('PATCH', `/v1/departments/${support}`, { schedule_id: schedule.json().id });
    t.equal(linked.statusCode, 200, linked.body);
    const calendar = compileCalendar(todayOnly());

    const outside = await ticket({ department_id: support, priority: 'high' });
    t.equal(outside.sla, null, 'no policy: sla null');

    const supportHigh = await policy({
      name: 'Support high',
      conditions: {
        all: [
          { field: 'department_id', operator: 'is', value: support },
          { field: 'priority', operator: 'is_one_of', value: ['high', 'urgent'] },
        ],
      },
      targets: {
        high: { first_answer: { minutes: 60, business: true } },
        urgent: { first_answer: { minutes: 15, business: false } },
      },
      on_transfer: 'restart',
    });
    const everything = await policy({
      name: 'Everything else',
      conditions: { all: [] },
      targets: {
        normal: { resolution: { minutes: 120, business: false } },
        high: { resolution: { minutes: 240, business: false } },
      },
      on_transfer: 'continue',
    });

    await t.test('first matching policy, business due, fulfilled by a reply', async (t) => {
      const created = await ticket({ department_id: support, priority: 'high' });
      const expected = calendar.addBusinessMinutes(Date.parse(created.created_at), 60);
      t.equal(created.sla.policy_id, supportHigh.id, 'the first policy by position whose conditions hold');
      t.equal(created.sla.due_at, expected === null ? null : new Date(expected).toISOString());
      t.equal(created.sla.breached, false);
      t.match(created.sla.targets, [
        { kind: 'first_answer', cycle: 1, status: 'active', minutes: 60, business: true },
      ]);
      const events = await slaEvents(created.id);
      t.same(
        events.map((e) => e.type),
        ['sla.applied', 'sla.started'],
      );
      t.equal(events[0]!.data.policy_id, supportHigh.id);
      t.equal(events[0]!.data.reason, 'created');
      t.equal(events[0]!.data.at, created.created_at, 'at the transaction time of the creation');

      const replied = await api(
        'POST',
        `/v1/tickets/${created.id}/messages`,
        { kind: 'reply', body: 'On its way.' },
        solverToken,
      );
      t.equal(replied.statusCode, 201, replied.body);
      const after = await get(created.id);
      t.equal(after.sla.due_at, null, 'no running target');
      t.match(after.sla.targets, [{ kind: 'first_answer', status: 'fulfilled' }]);
      const fulfilled = (await slaEvents(created.id)).find((e) => e.type === 'sla.fulfilled')!;
      t.ok(fulfilled, 'sla.fulfilled');
      t.equal(fulfilled.actor.agent_id, solver.id, 'the replying agent is the actor');
      t.equal(fulfilled.data.late, false);
    });

    await t.test('a ticket outside the first policy gets the next one', async (t) => {
      const created = await ticket({ department_id: billing });
      t.equal(created.sla.policy_id, everything.id);
      // A contact given by id (its own statement reads what the clock needs) and by phone.
      for (const contact of [{ id: created.contact.id }, { phone: '+4930123456' }]) {
        const again = await ticket({ department_id: billing, contact });
        t.equal(again.sla.policy_id, everything.id);
        t.equal(again.sla.due_at, new Date(Date.parse(again.created_at) + 120 * MINUTE).toISOString());
      }
      t.equal(created.sla.due_at, new Date(Date.parse(created.created_at) + 120 * MINUTE).toISOString());
    });

    await t.test('postponing pauses, reopening resumes with the time left', async (t) => {
      const created = await ticket({ department_id: billing });
      const until = new Date(Date.now() + 86_400_000).toISOString();
      const postponed = await patch(created.id, { status: 'postponed', postponed_until: until });
      t.equal(postponed.sla.due_at, null);
      t.match(postponed.sla.targets, [{ kind: 'resolution', status: 'paused' }]);
      const reopened = await patch(created.id, { status: 'open' });
      const events = await slaEvents(created.id);
      const paused = events.find((e) => e.type === 'sla.paused')!;
      const resumed = events.find((e) => e.type === 'sla.resumed')!;
      t.ok(paused && resumed, 'sla.paused and sla.resumed');
      const used = Date.parse(paused.data.at as string) - Date.parse(created.created_at);
      const expected = Date.parse(resumed.data.at as string) + 120 * MINUTE - used;
      t.equal(reopened.sla.due_at, new Date(expected).toISOString(), 'the remaining time from the resume');
      t.equal(resumed.data.due_at, reopened.sla.due_at);
    });

    await t.test('a priority change recomputes the due, keeping the time used', async (t) => {
      const created = await ticket({ department_id: billing });
      const changed = await patch(created.id, { priority: 'high' });
      t.equal(changed.sla.due_at, new Date(Date.parse(created.created_at) + 240 * MINUTE).toISOString());
      t.ok((await slaEvents(created.id)).some((e) => e.type === 'sla.target_changed'));
    });

    await t.test("a rule's change moves the clock in the rules' own statement", async (t) => {
      const rule = await api('POST', '/v1/automation-rules', {
        name: 'Escalate',
        triggers: ['ticket.updated'],
        conditions: { all: [{ field: 'tags', operator: 'contains_any', value: ['escalate'] }] },
        actions: [{ type: 'set_priority', priority: 'high' }],
      });
      t.equal(rule.statusCode, 201, rule.body);
      const created = await ticket({ department_id: billing });
      const tagged = await patch(created.id, { tags: ['escalate'] });
      t.equal(tagged.priority, 'high', 'the rule ran once');
      t.equal(tagged.sla.due_at, new Date(Date.parse(created.created_at) + 240 * MINUTE).toISOString());
      const changed = (await slaEvents(created.id)).find((e) => e.type === 'sla.target_changed')!;
      t.equal(changed.actor.type, 'rule', "the rule is the actor of the clock's change");
      await api('DELETE', `/v1/automation-rules/${rule.json().id}`);
    });

    await t.test('transfers follow on_transfer', async (t) => {
      // restart: out of Support (restart) into Billing: new targets from the transfer.
      const restarted = await ticket({ department_id: support, priority: 'high' });
      const moved = await api('POST', `/v1/tickets/${restarted.id}/transfer`, { department_id: billing });
      t.equal(moved.statusCode, 200, moved.body);
      const afterRestart = await get(restarted.id);
      t.equal(afterRestart.sla.policy_id, everything.id);
      const events = await slaEvents(restarted.id);
      const applied = events.filter((e) => e.type === 'sla.applied').at(-1)!;
      t.equal(applied.data.reason, 'transferred');
      t.ok(
        events.some((e) => e.type === 'sla.removed'),
        'the old targets are removed',
      );
      t.equal(
        afterRestart.sla.due_at,
        new Date(Date.parse(applied.data.at as string) + 240 * MINUTE).toISOString(),
        'the new cycle starts at the transfer',
      );

      // continue: Billing (Everything else, continue) into Support with normal priority: the
      // same policy still matches, the time used is kept.
      const continued = await ticket({ department_id: billing });
      const back = await api('POST', `/v1/tickets/${continued.id}/transfer`, { department_id: support });
      t.equal(back.statusCode, 200, back.body);
      const afterContinue = await get(continued.id);
      t.equal(afterContinue.sla.policy_id, everything.id);
      t.equal(
        afterContinue.sla.due_at,
        new Date(Date.parse(continued.created_at) + 120 * MINUTE).toISOString(),
        'time used before the transfer kept',
      );

      // keep: the policy and its timers stay with the ticket.
      const keeper = await policy({
        name: 'Keeper',
        position: -1,
        conditions: { all: [{ field: 'tags', operator: 'contains_any', value: ['vip'] }] },
        targets: { normal: { resolution: { minutes: 30, business: false } } },
        on_transfer: 'keep',
      });
      const kept = await ticket({ department_id: billing, tags: ['vip'] });
      t.equal(kept.sla.policy_id, keeper.id);
      const away = await api('POST', `/v1/tickets/${kept.id}/transfer`, { department_id: support });
      t.equal(away.statusCode, 200, away.body);
      const afterKeep = await get(kept.id);
      t.equal(afterKeep.sla.policy_id, keeper.id);
      t.equal(afterKeep.sla.due_at, kept.sla.due_at, 'the due did not move');
      await api('DELETE', `/v1/sla-policies/${keeper.id}`);
    });

    await t.test('list filters and sort, queue order', async (t) => {
      const late = await ticket({ department_id: billing, priority: 'high' }); // 240 min
      const soon = await ticket({ department_id: billing }); // 120 min
      // No target for low: two tickets without a due, so pages also run within those.
      const undue = await ticket({ department_id: billing, priority: 'low' });
      const undueToo = await ticket({ department_id: billing, priority: 'low' });
      t.equal(undue.sla?.due_at ?? null, null);
      const list = await api(
        'GET',
        `/v1/tickets?department_id=${billing}&status=new&sort=sla_due_at&limit=200`,
      );
      t.equal(list.statusCode, 200, list.body);
      const ids = list.json().data.map((x: { id: string }) => x.id);
      t.ok(ids.indexOf(soon.id) < ids.indexOf(late.id), 'earliest due first');
      const dues = list
        .json()
        .data.map((x: { sla: { due_at: string | null } | null }) => x.sla?.due_at ?? null);
      const firstNull = dues.indexOf(null);
      t.ok(firstNull > 0 && dues.slice(firstNull).every((d: string | null) => d === null), 'no due last');
      t.ok(ids.indexOf(undue.id) >= firstNull && ids.indexOf(undueToo.id) >= firstNull);
      const before = await api(
        'GET',
        `/v1/tickets?department_id=${billing}&sla_due_before=${encodeURIComponent(late.sla.due_at)}&limit=200`,
      );
      const beforeIds = before.json().data.map((x: { id: string }) => x.id);
      t.ok(beforeIds.includes(soon.id));
      t.notOk(beforeIds.includes(late.id), 'exclusive bound');
      const breached = await api('GET', `/v1/tickets?sla_breached=true`);
      t.equal(breached.statusCode, 200);
      t.same(breached.json().data, [], 'nothing breached');
      const notBreached = await api(
        'GET',
        `/v1/tickets?sla_breached=false&department_id=${billing}&limit=200`,
      );
      t.ok(notBreached.json().data.some((x: { id: string }) => x.id === soon.id));

      // Smaller pages keep the order: the cursor crosses into tickets without a due, and a page
      // may hold both (the list reads those with a due first, then the others).
      for (const limit of [1, 2, 3]) {
        const paged: string[] = [];
        let cursor: string | null = null;
        do {
          const page = await api(
            'GET',
            `/v1/tickets?department_id=${billing}&status=new&sort=sla_due_at&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
          );
          t.equal(page.statusCode, 200, page.body);
          paged.push(...page.json().data.map((x: { id: string }) => x.id));
          cursor = page.json().next_cursor;
        } while (cursor && paged.length < 50);
        t.same(paged, ids, `pages of ${limit}`);
      }
      const dueSoon: { id: string; sla: { due_at: string | null } | null }[] = [];
      let cursor: string | null = null;
      do {
        const page = await api(
          'GET',
          `/v1/tickets?department_id=${billing}&status=new&sort=sla_due_at&sla_due_before=${encodeURIComponent(late.sla.due_at)}&limit=1${cursor ? `&cursor=${cursor}` : ''}`,
        );
        t.equal(page.statusCode, 200, page.body);
        dueSoon.push(...page.json().data);
        cursor = page.json().next_cursor;
      } while (cursor && dueSoon.length < 50);
      t.ok(dueSoon.length > 0 && dueSoon.every((x) => x.sla?.due_at), 'sla_due_before over pages: dues only');
      t.same(
        dueSoon.map((x) => x.id),
        ids.filter((id: string) => dueSoon.some((x) => x.id === id)),
        'in the order of the whole list',
      );
    });

    await t.test('sla events in the feed, with their payloads', async (t) => {
      const created = await ticket({ department_id: billing });
      const feed = await api('GET', '/v1/events?types=sla.applied,sla.started&limit=200');
      t.equal(feed.statusCode, 200, feed.body);
      const mine = feed
        .json()
        .data.filter((e: { payload: { ticket: { id: string } } }) => e.payload.ticket.id === created.id);
      t.same(
        mine.map((e: { type: string }) => e.type),
        ['sla.applied', 'sla.started'],
      );
      t.match(mine[1].payload, {
        policy_id: everything.id,
        kind: 'resolution',
        cycle: 1,
        due_at: created.sla.due_at,
        at: created.created_at,
      });
    });

    await t.test('the to-solve queue serves the most urgent due first', async (t) => {
      const queue = await makeDepartment(ctx.db, 'Queue');
      const { token } = await agentWithToken(ctx, { departments: [[queue, 'solver']] });
      const urgent = await ticket({ department_id: queue, priority: 'urgent' }); // no target for urgent
      const high = await ticket({ department_id: queue, priority: 'high' }); // due in 240 min
      const normal = await ticket({ department_id: queue }); // due in 120 min
      t.equal(urgent.sla.due_at, null);
      const order: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await ctx.request({ method: 'POST', url: '/v1/queue/next', token });
        t.equal(res.statusCode, 200, res.body);
        order.push(res.json().id);
        await patch(res.json().id, { status: 'resolved' });
      }
      t.same(
        order,
        [normal.id, high.id, urgent.id],
        'earliest due, then later, then none (despite its priority)',
      );
    });

    await t.test(
      'a ticket outside every policy has sla null; deactivating removes running targets',
      async (t) => {
        const off = await api('PATCH', `/v1/sla-policies/${everything.id}`, { active: false });
        t.equal(off.statusCode, 200, off.body);
        const outsideAll = await ticket({ department_id: billing });
        t.equal(outsideAll.sla, null, 'no policy matches: sla null');
        t.same(await slaEvents(outsideAll.id), [], 'and no sla events');
        const running = await ticket({ department_id: support, priority: 'high' });
        t.equal(running.sla.policy_id, supportHigh.id);
        const gone = await api('DELETE', `/v1/sla-policies/${supportHigh.id}`);
        t.equal(gone.statusCode, 204);
        const touched = await patch(running.id, { subject: 'Parcel lost' });
        t.equal(touched.sla, null, 'no active policy left: the next write drops the targets');
        t.ok((await slaEvents(running.id)).some((e) => e.type === 'sla.removed'));
      },
    );
  });
});
