import { Kysely, PostgresDialect } from 'kysely';
import t from 'tap';
import { WEEKDAYS } from '../src/business-time/index.ts';
import { createPool } from '../src/db/client.ts';
import type { Database } from '../src/db/types.ts';
import { sweepIdleTickets } from '../src/domains/automation-rules/idle.ts';
import { fireSlaTimers, type JobFailure, wakePostponedTickets } from '../src/domains/tickets/service.ts';
import { agentWithToken, buildTestApp, makeDepartment } from './helpers/app.ts';
import { installClock, setClock } from './helpers/clock.ts';
import { testDatabaseKind } from './helpers/database.ts';

// The time-based rule triggers through HTTP (docs/rules.md): rules on sla.warning and
// sla.breached run when a write's SLA plan warns or breaches (the SLA timer's, or any other), and
// ticket.idle rules run once per quiet spell when the sweeper finds a ticket quiet for long
// enough. Time is the database's controllable clock (test/helpers/clock.ts): nothing sleeps.
// The sweeper and the timer are called as every server process calls them (src/scheduler.ts).

const MINUTE = 60_000;
const DAY = 24 * 60;

interface HistoryEvent {
  type: string;
  data: Record<string, unknown>;
  actor: { type: string; rule_id?: string | null };
}

t.test('time-based rule triggers', async (t) => {
  const ctx = await buildTestApp(t);
  const { db } = ctx;
  // Wednesday 2 December 2026, 10:00 UTC, and on from there.
  let now = Date.parse('2026-12-02T10:00:00Z');
  await installClock(db, new Date(now));
  /** Time passes, for every transaction of every connection to this database. */
  const advance = async (minutes: number) => {
    now += minutes * MINUTE;
    await setClock(db, new Date(now));
  };
  const { token } = await agentWithToken(ctx, { role: 'admin' });
  const api = (method: string, url: string, payload?: object) =>
    ctx.request({ method: method as 'GET', url, token, ...(payload && { payload }) });
  const ok = async (method: string, url: string, payload?: object) => {
    const res = await api(method, url, payload);
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.statusCode === 204 ? null : res.json();
  };
  const rule = (payload: object) =>
    ok('POST', '/v1/automation-rules', { conditions: { all: [] }, ...payload });
  const ticket = (payload: object = {}) =>
    ok('POST', '/v1/tickets', {
      subject: 'Where is my parcel?',
      contact: { email: `c-${Math.random()}@example.com` },
      message: { body: 'I ordered last week.' },
      ...payload,
    });
  const get = (id: string) => ok('GET', `/v1/tickets/${id}`);
  const history = async (id: string): Promise<HistoryEvent[]> =>
    (await ok('GET', `/v1/tickets/${id}/history?limit=200`)).data;
  const runs = async (id: string) =>
    (await ok('GET', `/v1/tickets/${id}/rule-trace?limit=100`)).data as {
      events: string[];
      sla?: { kind: string; policy_id: string | null };
      idle_rules?: string[];
      rules: { rule_id: string; matched: boolean }[];
    }[];
  const notes = async (id: string) =>
    (await ok('GET', `/v1/tickets/${id}/messages?limit=100`)).data.filter(
      (m: { kind: string }) => m.kind === 'note',
    ).length;
  const countRules = async () =>
    Number(
      (
        await db
          .selectFrom('automation_rules')
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  const lastActivity = async (id: string) =>
    (await db.selectFrom('tickets').select('last_activity_at').where('id', '=', id).executeTakeFirstOrThrow())
      .last_activity_at;

  await t.test('rules name the new triggers; the idle parameter is checked with pointers', async (t) => {
    const before = await countRules();
    const refused = async (payload: object, field: string, message: RegExp) => {
      const res = await api('POST', '/v1/automation-rules', {
        name: 'Refused',
        conditions: { all: [] },
        actions: [{ type: 'add_tags', tags: ['x'] }],
        ...payload,
      });
      t.equal(res.statusCode, 422, res.body);
      t.equal(res.json().code, 'invalid_rule');
      const error = res.json().errors.find((e: { field: string }) => e.field === field);
      t.ok(error, `${field} in ${res.body}`);
      t.match(error?.message, message);
    };
    await refused({ triggers: ['ticket.idle'] }, 'body/idle', /is required with the ticket.idle trigger/);
    await refused(
      { triggers: ['ticket.idle'], idle: { minutes: 0, business: false } },
      'body/idle/minutes',
      /from 1 to 525600/,
    );
    await refused(
      { triggers: ['ticket.idle'], idle: { minutes: 525_601, business: true } },
      'body/idle/minutes',
      /from 1 to 525600/,
    );
    await refused(
      { triggers: ['ticket.created'], idle: { minutes: 60, business: false } },
      'body/idle',
      /only allowed with the ticket.idle trigger/,
    );
    await refused(
      {
        triggers: ['sla.breached'],
        conditions: { all: [{ field: 'sla.kind', operator: 'is', value: 'first_reply' }] },
      },
      'body/conditions/all/0/value',
      /first_answer, next_answer, first_assignment, resolution/,
    );
    const shape = await api('POST', '/v1/automation-rules', {
      name: 'Bad shape',
      triggers: ['ticket.idle'],
      idle: { minutes: 'sixty', business: false },
      conditions: { all: [] },
      actions: [{ type: 'add_tags', tags: ['x'] }],
    });
    t.equal(shape.statusCode, 400, 'a wrong type is a bad request, like any body');
    t.equal(await countRules(), before, 'nothing refused was stored');

    const idle = await rule({
      name: 'Quiet for a day',
      active: false,
      triggers: ['ticket.idle'],
      idle: { minutes: 1440, business: true },
      actions: [{ type: 'add_tags', tags: ['quiet'] }],
    });
    t.same(idle.idle, { minutes: 1440, business: true });
    t.same((await ok('GET', `/v1/automation-rules/${idle.id}`)).idle, idle.idle);
    const dropTrigger = await api('PATCH', `/v1/automation-rules/${idle.id}`, {
      triggers: ['ticket.updated'],
    });
    t.equal(dropTrigger.statusCode, 422, 'leaving ticket.idle needs idle: null too');
    t.equal(dropTrigger.json().errors[0].field, 'body/idle');
    const dropped = await ok('PATCH', `/v1/automation-rules/${idle.id}`, {
      triggers: ['ticket.updated'],
      idle: null,
    });
    t.equal(dropped.idle, null);
    const versions = (await ok('GET', `/v1/automation-rules/${idle.id}/versions`)).data;
    t.same(
      versions.map((v: { definition: { idle: unknown } }) => v.definition.idle),
      [{ minutes: 1440, business: true }, null],
      'versions keep the parameter',
    );
    const sla = await rule({
      name: 'Breaches of the first answer',
      active: false,
      triggers: ['sla.warning', 'sla.breached'],
      conditions: { all: [{ field: 'sla.kind', operator: 'is_one_of', value: ['first_answer'] }] },
      actions: [{ type: 'add_tags', tags: ['late'] }],
    });
    t.same(sla.triggers, ['sla.warning', 'sla.breached']);
    t.equal(sla.idle, null);
    await ok('DELETE', `/v1/automation-rules/${idle.id}`);
    await ok('DELETE', `/v1/automation-rules/${sla.id}`);
  });

  await t.test('simulation: SLA facts and idle rules', async (t) => {
    const policyId = '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11';
    const simulate = (event: object, rules: object[]) =>
      api('POST', '/v1/automation-rules/simulate', {
        event,
        ticket: { subject: 'Late', priority: 'normal' },
        rules,
      });
    const escalate = {
      name: 'Escalate late resolutions',
      triggers: ['sla.breached'],
      conditions: {
        all: [
          { field: 'sla.kind', operator: 'is', value: 'resolution' },
          { field: 'sla.policy_id', operator: 'is', value: policyId },
        ],
      },
      actions: [{ type: 'set_priority', priority: 'urgent' }],
    };
    const hit = await simulate({ type: 'sla.breached', sla: { kind: 'resolution', policy_id: policyId } }, [
      escalate,
    ]);
    t.equal(hit.statusCode, 200, hit.body);
    t.equal(hit.json().rules[0].matched, true);
    t.same(hit.json().changes, [{ field: 'priority', from: 'normal', to: 'urgent' }]);
    t.same(
      hit
        .json()
        .rules[0].conditions.map((c: { value?: unknown }) => c.value)
        .slice(1),
      ['resolution', policyId],
      'the trace shows the facts read',
    );
    const miss = await simulate(
      { type: 'sla.breached', sla: { kind: 'first_answer', policy_id: policyId } },
      [escalate],
    );
    t.equal(miss.json().rules[0].matched, false);
    const warning = await simulate({ type: 'sla.warning', sla: { kind: 'resolution' } }, [escalate]);
    t.equal(warning.json().rules[0].skipped, 'trigger', 'a breach rule does not listen to warnings');

    const idle = await simulate({ type: 'ticket.idle' }, [
      {
        name: 'Nudge',
        triggers: ['ticket.idle'],
        idle: { minutes: 240, business: false },
        conditions: { all: [] },
        actions: [{ type: 'add_note', body: 'Anyone?' }],
      },
    ]);
    t.equal(idle.statusCode, 200, idle.body);
    t.same(
      idle.json().notes,
      ['Anyone?'],
      'an idle simulation runs the idle rules as if their time had come',
    );
    const bad = await simulate({ type: 'ticket.idle' }, [
      {
        name: 'No time',
        triggers: ['ticket.idle'],
        conditions: { all: [] },
        actions: [{ type: 'mark_spam' }],
      },
    ]);
    t.equal(bad.statusCode, 422);
    t.equal(bad.json().errors[0].field, 'body/rules/0/idle');
  });

  await t.test('sla.breached and sla.warning rules run once, with the write that records them', async (t) => {
    const support = await makeDepartment(db, 'SLA support');
    const policy = await ok('POST', '/v1/sla-policies', {
      name: 'An hour to answer',
      conditions: { all: [{ field: 'department_id', operator: 'is', value: support }] },
      targets: { normal: { first_answer: { minutes: 60, business: false } } },
      warn_before_minutes: 10,
    });
    const breachRule = await rule({
      name: 'First answer breached: urgent',
      triggers: ['sla.breached'],
      conditions: { all: [{ field: 'sla.kind', operator: 'is', value: 'first_answer' }] },
      actions: [
        { type: 'set_priority', priority: 'urgent' },
        { type: 'add_tags', tags: ['sla-breached'] },
      ],
    });
    const warnRule = await rule({
      name: 'First answer soon due',
      triggers: ['sla.warning'],
      conditions: { all: [{ field: 'sla.policy_id', operator: 'is', value: policy.id }] },
      actions: [{ type: 'add_tags', tags: ['sla-warning'] }],
    });

    // A breach recorded by the next write of the ticket: its rules run with that write.
    const late = await ticket({ department_id: support });
    t.ok(late.sla.due_at, 'the policy applies');
    await advance(61);
    const tagged = await ok('POST', `/v1/tickets/${late.id}/tags`, { add: ['parcel'] });
    t.equal(tagged.priority, 'urgent', 'the write answers with what the breach rule did');
    t.same([...tagged.tags].sort(), ['parcel', 'sla-breached']);
    let events = await history(late.id);
    t.equal(events.filter((e) => e.type === 'sla.breached').length, 1);
    t.equal(events.filter((e) => e.type === 'sla.warning').length, 0, 'a warning past its due is dropped');
    t.same(
      events.filter((e) => e.actor.type === 'rule').map((e) => [e.type, e.actor.rule_id]),
      [
        ['priority_changed', breachRule.id],
        ['tags_changed', breachRule.id],
      ],
    );
    let trace = await runs(late.id);
    const breachRuns = trace.filter((r) => r.events.includes('sla.breached'));
    t.equal(breachRuns.length, 1);
    t.same(breachRuns[0]!.sla, { kind: 'first_answer', policy_id: policy.id });
    t.equal(breachRuns[0]!.rules.find((r) => r.rule_id === breachRule.id)?.matched, true);

    await advance(5);
    await fireSlaTimers(db);
    await ok('POST', `/v1/tickets/${late.id}/messages`, { kind: 'note', body: 'Looking into it.' });
    await ok('PATCH', `/v1/tickets/${late.id}`, { subject: 'Where is my parcel, really?' });
    events = await history(late.id);
    t.equal(events.filter((e) => e.type === 'sla.breached').length, 1, 'one breach');
    t.equal(events.filter((e) => e.actor.type === 'rule').length, 2, 'the rule ran once');
    trace = await runs(late.id);
    t.equal(trace.filter((r) => r.events.includes('sla.breached')).length, 1);

    // The SLA timer records the warning, then the breach, each at its instant, with no other
    // write of the ticket; each runs its rule once. A clock is no activity: idle rules keep counting.
    const timed = await ticket({ department_id: support });
    const quietSince = await lastActivity(timed.id);
    await advance(49);
    await fireSlaTimers(db);
    t.same((await get(timed.id)).tags, [], 'not yet');
    await advance(1);
    await fireSlaTimers(db);
    let fired = await get(timed.id);
    t.same(fired.tags, ['sla-warning'], 'the warning rule ran at the warning');
    t.equal(fired.priority, 'normal', 'the breach rule did not');
    await fireSlaTimers(db);
    await advance(10);
    await fireSlaTimers(db);
    await fireSlaTimers(db);
    fired = await get(timed.id);
    t.equal(fired.priority, 'urgent');
    t.same([...fired.tags].sort(), ['sla-breached', 'sla-warning']);
    t.equal(fired.sla.breached, true);
    events = await history(timed.id);
    t.same(
      events.filter((e) => e.type === 'sla.warning' || e.type === 'sla.breached').map((e) => e.type),
      ['sla.warning', 'sla.breached'],
    );
    t.same(
      events.filter((e) => e.actor.type === 'rule').map((e) => e.actor.rule_id),
      [warnRule.id, breachRule.id, breachRule.id],
      'each rule once (the breach rule sets priority and tags)',
    );
    t.same(
      (await runs(timed.id)).map((r) => [r.events, r.sla?.kind]),
      [
        [['sla.warning'], 'first_answer'],
        [['sla.breached'], 'first_answer'],
      ],
      'one run each, in order',
    );
    t.same(await lastActivity(timed.id), quietSince, 'the clock and its rules are not activity');

    await ok('DELETE', `/v1/automation-rules/${breachRule.id}`);
    await ok('DELETE', `/v1/automation-rules/${warnRule.id}`);
    await ok('DELETE', `/v1/sla-policies/${policy.id}`);
  });

  await t.test(
    'a breach rule that cannot apply is recorded as failed; the breach and the write stand',
    async (t) => {
      const desk = await makeDepartment(db, 'SLA desk');
      const { agent } = await agentWithToken(ctx, { departments: [[desk, 'solver']] });
      const policy = await ok('POST', '/v1/sla-policies', {
        name: 'Desk: an hour',
        conditions: { all: [{ field: 'department_id', operator: 'is', value: desk }] },
        targets: { normal: { first_answer: { minutes: 60, business: false } } },
      });
      const handOver = await rule({
        name: 'Breached: hand to the senior',
        department_id: desk,
        triggers: ['sla.breached'],
        actions: [{ type: 'assign', to: 'agent', agent_id: agent.id }],
      });
      const [x, y, z] = [
        await ticket({ department_id: desk }),
        await ticket({ department_id: desk }),
        await ticket({ department_id: desk }),
      ];
      await db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', agent.id).execute();
      await fireSlaTimers(db); // what earlier tests left (their policies were deleted)
      await advance(61);
      // The agent's write finds z's breach due: it goes through, with the breach, without the rule.
      const tagged = await api('POST', `/v1/tickets/${z.id}/tags`, { add: ['parcel'] });
      t.equal(tagged.statusCode, 200, tagged.body);
      t.same(tagged.json().tags, ['parcel']);
      // The timer takes x and y in one batch: both breaches are written.
      t.equal(await fireSlaTimers(db), 2);
      for (const { id } of [x, y, z]) {
        const now = await get(id);
        t.equal(now.sla.breached, true);
        t.equal(now.assignee_id, null);
        const failed = (await runs(id)).filter((r) => r.events.includes('sla.breached'));
        t.equal(failed.length, 1);
        t.equal((failed[0] as { failure?: { code: string } }).failure?.code, 'rule_action_failed');
        t.same(
          failed[0]!.rules.find((r) => r.rule_id === handOver.id)?.matched,
          true,
          'the trace replays it',
        );
      }
      t.equal(await fireSlaTimers(db), 0, 'nothing left to fire');
      await ok('DELETE', `/v1/automation-rules/${handOver.id}`);
      await ok('DELETE', `/v1/sla-policies/${policy.id}`);
    },
  );

  await t.test(
    'ticket.idle: once per quiet spell, again after activity, never on closed tickets',
    async (t) => {
      const quietDept = await makeDepartment(db, 'Quiet');
      const other = await makeDepartment(db, 'Elsewhere');
      const nudge = await rule({
        name: 'Quiet for an hour',
        department_id: quietDept,
        triggers: ['ticket.idle'],
        idle: { minutes: 60, business: false },
        actions: [
          { type: 'add_note', body: 'Quiet for an hour: anyone?' },
          { type: 'add_tags', tags: ['quiet'] },
        ],
      });
      // Another idle rule whose time does not come yet: the runs name only the one that was due.
      const later = await rule({
        name: 'Quiet for a week',
        department_id: quietDept,
        triggers: ['ticket.idle'],
        idle: { minutes: 7 * DAY, business: false },
        actions: [{ type: 'add_tags', tags: ['forgotten'] }],
      });

      const open = await ticket({ department_id: quietDept });
      const answered = await ticket({ department_id: quietDept });
      await ok('POST', `/v1/tickets/${answered.id}/messages`, { kind: 'reply', body: 'On its way.' });
      const resolved = await ticket({ department_id: quietDept });
      await ok('PATCH', `/v1/tickets/${resolved.id}`, { status: 'resolved' });
      const postponed = await ticket({ department_id: quietDept });
      await ok('PATCH', `/v1/tickets/${postponed.id}`, {
        status: 'postponed',
        postponed_until: new Date(now + 30 * DAY * MINUTE).toISOString(),
      });
      const spam = await ticket({ department_id: quietDept });
      await ok('PATCH', `/v1/tickets/${spam.id}`, { status: 'spam' });
      const elsewhere = await ticket({ department_id: other });
      const quietSince = await lastActivity(open.id);

      await advance(59);
      t.equal((await sweepIdleTickets(db)).runs, 0, 'nothing has been quiet for an hour');
      await advance(1);
      const sweep = await sweepIdleTickets(db);
      t.same(sweep, { runs: 2, failures: [] }, 'the open and the answered ticket, at the hour');
      t.same((await get(open.id)).tags, ['quiet']);
      t.same((await get(answered.id)).tags, ['quiet']);
      for (const { id } of [resolved, postponed, spam, elsewhere]) {
        t.same((await get(id)).tags, [], 'resolved, postponed, spam and other departments are left alone');
        t.equal(await notes(id), 0);
      }
      t.equal(await notes(open.id), 1);
      t.same(await lastActivity(open.id), quietSince, 'what the rule did is no activity');
      const [run] = (await runs(open.id)).filter((r) => r.events.includes('ticket.idle'));
      t.same(run?.idle_rules, [nudge.id]);
      t.same(
        run?.rules.filter((r) => r.rule_id === nudge.id || r.rule_id === later.id).map((r) => r.rule_id),
        [nudge.id],
        'the week rule was not considered',
      );

      t.same(await sweepIdleTickets(db), { runs: 0, failures: [] }, 'once per quiet spell');
      await advance(30);
      t.equal((await sweepIdleTickets(db)).runs, 0, 'still the same spell, only longer');
      t.equal(await notes(open.id), 1);

      // The customer writes: a new spell starts, and the rule waits a full hour again.
      await ok('POST', `/v1/tickets/${open.id}/messages`, { kind: 'customer', body: 'Any news?' });
      t.same(await lastActivity(open.id), new Date(now), 'a message is activity');
      await advance(59);
      t.equal((await sweepIdleTickets(db)).runs, 0, 'not quite an hour');
      await advance(1);
      t.equal((await sweepIdleTickets(db)).runs, 1);
      t.equal(await notes(open.id), 2, 'the rule ran again');

      // A resolved ticket the customer reopens is live again.
      await ok('POST', `/v1/tickets/${resolved.id}/messages`, { kind: 'customer', body: 'It broke again.' });
      await advance(60);
      t.equal((await sweepIdleTickets(db)).runs, 1);
      t.same((await get(resolved.id)).tags, ['quiet']);

      // An agent's change is activity too.
      await ok('PATCH', `/v1/tickets/${open.id}`, { priority: 'high' });
      t.same(await lastActivity(open.id), new Date(now));

      // The week rule's time comes for each live ticket a week after its own last activity.
      await advance(7 * DAY - 200);
      t.same(
        await sweepIdleTickets(db),
        { runs: 2, failures: [] },
        'the week rule on the answered ticket, quiet longest; the hour rule after the agent’s change',
      );
      t.same([...(await get(answered.id)).tags].sort(), ['forgotten', 'quiet']);
      t.equal(await notes(open.id), 3);
      await advance(200);
      t.same(await sweepIdleTickets(db), { runs: 2, failures: [] }, 'then the reopened one and the open one');

      await ok('DELETE', `/v1/automation-rules/${nudge.id}`);
      await ok('DELETE', `/v1/automation-rules/${later.id}`);
    },
  );

  await t.test('business idle counts the department’s working hours, calendar idle does not', async (t) => {
    // Open all day, one day of the week: the day after tomorrow (UTC). The next three hours hold
    // none of it; the next week holds all of it.
    const day = WEEKDAYS[(new Date(now).getUTCDay() + 6 + 2) % 7]!;
    const schedule = await ok('POST', '/v1/schedules', {
      name: 'One day a week',
      time_zone: 'UTC',
      intervals: [{ day, start: '00:00', end: '24:00' }],
      holidays: [],
    });
    const office = await makeDepartment(db, 'Office');
    await ok('PATCH', `/v1/departments/${office}`, { schedule_id: schedule.id });
    const business = await rule({
      name: 'Quiet for an hour of working time',
      department_id: office,
      triggers: ['ticket.idle'],
      idle: { minutes: 60, business: true },
      actions: [{ type: 'add_tags', tags: ['business-idle'] }],
    });
    const calendar = await rule({
      name: 'Quiet for an hour of any time',
      department_id: office,
      triggers: ['ticket.idle'],
      idle: { minutes: 60, business: false },
      actions: [{ type: 'add_tags', tags: ['calendar-idle'] }],
    });
    const waiting = await ticket({ department_id: office });
    await advance(180);
    t.equal((await sweepIdleTickets(db)).runs, 1);
    t.same((await get(waiting.id)).tags, ['calendar-idle'], 'three hours, none of them working hours');
    // Midnight of the open day, plus an hour less a minute: 59 business minutes.
    const opens = Date.parse(`${new Date(now).toISOString().slice(0, 10)}T00:00:00Z`) + 2 * DAY * MINUTE;
    await advance((opens - now) / MINUTE + 59);
    t.equal((await sweepIdleTickets(db)).runs, 0, '59 minutes of working time');
    await advance(1);
    t.equal((await sweepIdleTickets(db)).runs, 1, 'the hour of working time');
    t.same([...(await get(waiting.id)).tags].sort(), ['business-idle', 'calendar-idle']);
    await ok('DELETE', `/v1/automation-rules/${business.id}`);
    await ok('DELETE', `/v1/automation-rules/${calendar.id}`);
  });

  await t.test('an idle rule that cannot apply fails alone, once per spell', async (t) => {
    const desk = await makeDepartment(db, 'Desk');
    const { agent } = await agentWithToken(ctx, { departments: [[desk, 'solver']] });
    const handOver = await rule({
      name: 'Quiet: hand to Ann',
      department_id: desk,
      triggers: ['ticket.idle'],
      idle: { minutes: 60, business: false },
      actions: [{ type: 'assign', to: 'agent', agent_id: agent.id }],
    });
    const first = await ticket({ department_id: desk });
    await advance(1);
    const second = await ticket({ department_id: desk });
    await db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', agent.id).execute();
    await advance(60);
    const sweep = await sweepIdleTickets(db);
    t.equal(sweep.runs, 2);
    t.same(
      sweep.failures.map((f) => [f.ticket_id, f.rule_ids, f.code]),
      [
        [first.id, [handOver.id], 'rule_action_failed'],
        [second.id, [handOver.id], 'rule_action_failed'],
      ],
      'the quietest first',
    );
    t.equal((await get(first.id)).assignee_id, null);
    await advance(60);
    t.same(await sweepIdleTickets(db), { runs: 0, failures: [] }, 'not retried until new activity');
    await ok('DELETE', `/v1/automation-rules/${handOver.id}`);
  });

  await t.test('a postponed ticket wakes even when a rule on its waking cannot apply', async (t) => {
    // Before, the rule's failure undid the whole turn: the broken ticket came first again in
    // every turn and no postponed ticket ever woke.
    const desk = await makeDepartment(db, 'Wake desk');
    const other = await makeDepartment(db, 'Wake elsewhere');
    const { agent } = await agentWithToken(ctx, { departments: [[desk, 'solver']] });
    const onWake = await rule({
      name: 'Woken: hand to Ann',
      department_id: desk,
      triggers: ['ticket.status_changed'],
      conditions: { all: [{ field: 'status', operator: 'is', value: 'open' }] },
      actions: [{ type: 'assign', to: 'agent', agent_id: agent.id }],
    });
    const until = new Date(now + 30 * MINUTE).toISOString();
    const broken = await ticket({ department_id: desk });
    const fine = await ticket({ department_id: other });
    for (const { id } of [broken, fine]) {
      await ok('PATCH', `/v1/tickets/${id}`, { status: 'postponed', postponed_until: until });
    }
    await db.updateTable('agents').set({ status: 'disabled' }).where('id', '=', agent.id).execute();
    await advance(31);
    const failures: JobFailure[] = [];
    t.equal(await wakePostponedTickets(db, 500, (f) => failures.push(f)), 2, 'both woke');
    t.same(
      failures.map((f) => [f.ticket_id, f.outcome, f.code]),
      [[broken.id, 'woken_without_rules', 'rule_action_failed']],
      'the rule’s failure is reported',
    );
    for (const { id } of [broken, fine]) t.equal((await get(id)).status, 'open');
    t.equal((await get(broken.id)).assignee_id, null, 'the rule did nothing');
    t.equal(await wakePostponedTickets(db), 0, 'nothing left to wake');
    await ok('DELETE', `/v1/automation-rules/${onWake.id}`);
  });

  await t.test('a turn after downtime catches up in batches', async (t) => {
    const backlog = await makeDepartment(db, 'Backlog');
    const catchUp = await rule({
      name: 'Quiet for two hours',
      department_id: backlog,
      triggers: ['ticket.idle'],
      idle: { minutes: 120, business: false },
      actions: [{ type: 'add_tags', tags: ['stale'] }],
    });
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await ticket({ department_id: backlog })).id);
    await advance(DAY);
    t.same(await sweepIdleTickets(db, { batch: 3 }), { runs: 7, failures: [] });
    for (const id of ids) t.same((await get(id)).tags, ['stale']);
    t.equal((await sweepIdleTickets(db, { batch: 3 })).runs, 0);
    await ok('DELETE', `/v1/automation-rules/${catchUp.id}`);
  });

  const kind = await testDatabaseKind();
  await t.test(
    'two sweepers at once run each rule once per ticket',
    { skip: kind === 'pglite' ? 'needs two connections to one PostgreSQL server (PGlite has one)' : false },
    async (t) => {
      const second = new Kysely<Database>({
        dialect: new PostgresDialect({ pool: createPool(ctx.database.url as string) }),
      });
      t.teardown(() => second.destroy());
      const race = await makeDepartment(db, 'Race');
      const once = await rule({
        name: 'Quiet: note once',
        department_id: race,
        triggers: ['ticket.idle'],
        idle: { minutes: 30, business: false },
        actions: [{ type: 'add_note', body: 'Once.' }],
      });
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push((await ticket({ department_id: race })).id);
      await advance(45);
      const turns = await Promise.all(
        [db, second, db, second].map((handle) => sweepIdleTickets(handle, { batch: 4 })),
      );
      t.equal(
        turns.reduce((sum, turn) => sum + turn.runs, 0),
        40,
        `runs per sweeper: ${turns.map((turn) => turn.runs).join(', ')}`,
      );
      const counts = await db
        .selectFrom('ticket_messages')
        .select(['ticket_id', (eb) => eb.fn.countAll<string>().as('n')])
        .where('ticket_id', 'in', ids)
        .where('kind', '=', 'note')
        .groupBy('ticket_id')
        .execute();
      const byTicket = new Map(counts.map((r) => [r.ticket_id, Number(r.n)]));
      t.same(
        ids.map((id) => byTicket.get(id) ?? 0),
        ids.map(() => 1),
        'one note per ticket',
      );
      await ok('DELETE', `/v1/automation-rules/${once.id}`);
    },
  );
});
