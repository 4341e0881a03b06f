// The SLA clock, scenario by scenario: each case drives one ticket through writes (planSla) and
// timer runs (fireDue) and checks dues in the department's wall-clock time, the events and the
// ticket's summary columns.

import t from 'tap';
import { ALWAYS_OPEN, compileCalendar, WEEKDAYS } from '../../src/business-time/index.ts';
import { compilePolicies, fireDue, initialSlaState, selectPolicy } from '../../src/sla/index.ts';
import {
  ANN,
  inPrague,
  Life,
  MINUTE,
  officeHours,
  policy,
  prague,
  SALES,
  SUPPORT,
  ticket,
} from './fixtures.ts';

const FRIDAY_1755 = prague('2026-12-04T17:55');

t.test(
  'issue 14 "Done when": Friday 17:55, 1 business hour of first answer, due Monday 08:55; a holiday moves it',
  async (t) => {
    const cases = [
      { name: 'no holiday', holidays: [], due: '2026-12-07T08:55' },
      { name: 'Monday is a holiday', holidays: ['2026-12-07'], due: '2026-12-08T08:55' },
      {
        name: 'Monday and Tuesday are holidays',
        holidays: ['2026-12-07', '2026-12-08'],
        due: '2026-12-09T08:55',
      },
    ];
    for (const c of cases) {
      const life = new Life([policy()], { [SUPPORT]: officeHours(c.holidays) });
      const plan = life.change({ now: FRIDAY_1755 });
      const target = life.target('first_answer')!;
      t.equal(inPrague(target.due_at), c.due, c.name);
      t.equal(target.status, 'active', c.name);
      t.equal(plan.summary.sla_policy_id, 'p-support', c.name);
      t.equal(inPrague(plan.summary.sla_due_at), c.due, `${c.name}: the summary shows the earliest due`);
      t.equal(plan.next_at, target.due_at, `${c.name}: the timer is set for the due`);
      t.same(
        life.lastEvents(),
        ['sla.applied', 'sla.started first_answer#1', 'sla.started resolution#1'],
        c.name,
      );
      t.same(
        plan.events.map((e) => [e.policy_id, e.policy_version]),
        plan.events.map(() => ['p-support', 1]),
        `${c.name}: every event names the policy and its version`,
      );
    }
  },
);

t.test('a schedule edited while a target runs: the next plan moves its due', async (t) => {
  const life = new Life([policy()], { [SUPPORT]: officeHours([]) });
  // Planned before calendar versions were kept: the first plan with them recomputes in the same
  // calendar, which moves nothing.
  life.change({ now: FRIDAY_1755 });
  t.equal(life.state.calendar_key, undefined, 'no version without calendarKeyOf');
  life.calendarKeys = { [SUPPORT]: 'support@1' };
  life.change({ now: FRIDAY_1755 + MINUTE });
  t.equal(life.state.calendar_key, 'support@1');
  t.same(life.lastEvents(), [], 'same calendar, same dues: no event');
  t.equal(inPrague(life.target('first_answer')!.due_at), '2026-12-07T08:55');

  // The same version again: nothing moves.
  life.change({ now: FRIDAY_1755 + 2 * MINUTE });
  t.same(life.lastEvents(), []);

  // Monday declared a holiday (version 2) at 17:58: 3 minutes used, 57 left: 2 on Friday, 55 on
  // Tuesday from 08:00.
  life.calendars[SUPPORT] = officeHours(['2026-12-07']);
  life.calendarKeys = { [SUPPORT]: 'support@2' };
  life.change({ now: FRIDAY_1755 + 3 * MINUTE });
  t.equal(inPrague(life.target('first_answer')!.due_at), '2026-12-08T08:55');
  const moved = life.last.events.filter((e) => e.type === 'sla.target_changed');
  t.same(
    moved.map((e) => [e.kind, e.reason]),
    life.state.targets.filter((x) => x.business).map((x) => [x.kind, 'schedule']),
    'each running business target, reason schedule',
  );
  t.ok(moved.length > 0);
  t.equal(life.state.calendar_key, 'support@2');
  t.equal(life.last.next_at, life.target('first_answer')!.due_at, 'the timer follows the new due');

  // Tuesday declared a holiday too, found only when the timer comes for the old due (Tuesday
  // 08:55): the due moves to Wednesday 08:55 and nothing breaches.
  life.calendars[SUPPORT] = officeHours(['2026-12-07', '2026-12-08']);
  life.calendarKeys = { [SUPPORT]: 'support@3' };
  life.change({ now: prague('2026-12-08T08:55') });
  t.same(
    life.lastEvents(),
    ['sla.target_changed first_answer#1', 'sla.target_changed resolution#1'],
    'moved, not breached',
  );
  t.equal(life.target('first_answer')!.status, 'active');
  t.equal(inPrague(life.target('first_answer')!.due_at), '2026-12-09T08:55');
});

t.test('a recomputed due already past fires at that due, not at the plan', async (t) => {
  // Planned before versions were kept, planned again only after the due (the timer was down).
  const life = new Life([policy()], { [SUPPORT]: officeHours([]) });
  life.change({ now: FRIDAY_1755 });
  life.calendarKeys = { [SUPPORT]: 'support@1' };
  life.change({ now: prague('2026-12-07T10:00') });
  const breach = life.last.events.find((e) => e.type === 'sla.breached' && e.kind === 'first_answer');
  t.equal(inPrague(breach?.at ?? null), '2026-12-07T08:55', 'breached at its due');
  t.notOk(
    life.last.events.some((e) => e.type === 'sla.target_changed'),
    'same calendar: no due moved',
  );
});

t.test('selectPolicy: ascending position, ties by id, inactive skipped, none gives null', async (t) => {
  const urgentOnly = { field: 'priority', operator: 'is', value: 'urgent' } as const;
  const policies = [
    policy({ id: 'p-b', position: 2 }),
    policy({ id: 'p-a', position: 2 }),
    policy({ id: 'p-urgent', position: 1, conditions: urgentOnly }),
    policy({ id: 'p-off', position: 0, active: false }),
    policy({
      id: 'p-vip',
      position: 3,
      conditions: { field: 'contact.custom.vip', operator: 'is', value: true },
    }),
  ];
  const compiled = compilePolicies(policies);
  const cases = [
    { name: 'tie on position: the smaller id', ticket: ticket(), id: 'p-a' },
    { name: 'a lower position wins', ticket: ticket({ priority: 'urgent' }), id: 'p-urgent' },
    { name: 'nothing matches', ticket: ticket({ department_id: SALES }), id: null },
    {
      name: 'contact fields',
      ticket: ticket({ department_id: SALES, contact: { name: 'V', email: null, custom: { vip: true } } }),
      id: 'p-vip',
    },
  ];
  for (const c of cases) {
    t.equal(selectPolicy(policies, c.ticket)?.id ?? null, c.id, c.name);
    t.equal(selectPolicy(compiled, c.ticket)?.id ?? null, c.id, `${c.name} (compiled)`);
  }
  t.equal(selectPolicy([], ticket()), null, 'no policies');
});

t.test(
  'postponed pauses across a weekend; business targets keep their remaining business minutes',
  async (t) => {
    const life = new Life(
      [
        policy({
          targets: {
            normal: {
              resolution: { minutes: 240, business: true },
              first_answer: { minutes: 120, business: false },
            },
          },
        }),
      ],
      { [SUPPORT]: officeHours() },
    );
    life.change({ now: prague('2026-12-04T16:00') });
    t.equal(
      inPrague(life.target('resolution')!.due_at),
      '2026-12-07T10:00',
      '4 business hours from Friday 16:00',
    );
    t.equal(inPrague(life.target('first_answer')!.due_at), '2026-12-04T18:00', '2 calendar hours');

    life.change({ now: prague('2026-12-04T17:00'), patch: { status: 'postponed' } });
    t.same(life.lastEvents(), ['sla.paused first_answer#1', 'sla.paused resolution#1']);
    t.equal(life.target('resolution')!.status, 'paused');
    t.equal(life.last.summary.sla_due_at, null, 'nothing runs, nothing is due');
    t.equal(life.last.next_at, null, 'no timer while paused');
    t.same(life.fire(prague('2026-12-05T12:00')).events, [], 'a paused target does not breach');

    life.change({ now: prague('2026-12-07T09:00'), patch: { status: 'open' } });
    t.same(life.lastEvents(), ['sla.resumed first_answer#1', 'sla.resumed resolution#1']);
    t.equal(inPrague(life.target('resolution')!.due_at), '2026-12-07T12:00', '3 business hours were left');
    t.equal(inPrague(life.target('first_answer')!.due_at), '2026-12-07T10:00', '1 calendar hour was left');
    t.equal(inPrague(life.last.summary.sla_due_at), '2026-12-07T10:00');

    life.change({ now: prague('2026-12-07T09:30'), patch: { status: 'answered' } });
    t.same(life.lastEvents(), [], 'answered does not pause unless the policy says so');
  },
);

t.test('answered pauses when the policy treats it as waiting on the customer', async (t) => {
  const life = new Life([policy({ pause_when_answered: true })], { [SUPPORT]: officeHours() });
  life.change({ now: prague('2026-12-07T09:00') });
  life.change({ now: prague('2026-12-07T09:50'), patch: { status: 'answered' }, agent_replied: true });
  t.same(life.lastEvents(), ['sla.fulfilled first_answer#1', 'sla.paused resolution#1']);
  life.change({ now: prague('2026-12-08T10:00'), patch: { status: 'open' }, customer_replied: true });
  t.same(life.lastEvents(), ['sla.resumed resolution#1'], 'the policy has no next-answer target');
  t.equal(inPrague(life.target('resolution')!.due_at), '2026-12-08T13:10', '3 h 10 of 4 hours were left');
});

t.test('transfer: the applied policy decides (restart, continue, keep)', async (t) => {
  const sales = policy({
    id: 'p-sales',
    conditions: { field: 'department_id', operator: 'is', value: SALES },
    targets: { normal: { first_answer: { minutes: 120, business: true } } },
  });
  const calendars = { [SUPPORT]: officeHours(), [SALES]: ALWAYS_OPEN };
  const created = prague('2026-12-07T09:00');
  const moved = prague('2026-12-07T09:30');

  t.test('restart: the new policy starts new timers at the transfer', async (t) => {
    const life = new Life([policy({ on_transfer: 'restart' }), sales], calendars);
    life.change({ now: created });
    life.change({ now: moved, patch: { department_id: SALES } });
    t.same(life.lastEvents(), [
      'sla.removed first_answer#1',
      'sla.removed resolution#1',
      'sla.applied',
      'sla.started first_answer#2',
    ]);
    t.equal(life.last.events[0]!.policy_id, 'p-support', 'removals are recorded under the old policy');
    t.equal(life.last.events[2]!.policy_id, 'p-sales');
    t.equal(life.target('first_answer')!.due_at, moved + 120 * MINUTE, 'a full target from the transfer');
    t.equal(life.target('resolution'), undefined, 'the new policy has no resolution target');
    t.equal(life.state.calendar_department_id, SALES);
  });

  t.test('continue: elapsed time is kept, the new targets and calendar count the rest', async (t) => {
    const life = new Life([policy({ on_transfer: 'continue' }), sales], calendars);
    life.change({ now: created });
    life.change({ now: moved, patch: { department_id: SALES } });
    t.same(life.lastEvents(), [
      'sla.applied',
      'sla.target_changed first_answer#1',
      'sla.removed resolution#1',
    ]);
    const target = life.target('first_answer')!;
    t.equal(target.started_at, created, 'the same target, started at creation');
    t.equal(target.due_at, moved + 90 * MINUTE, '30 of 120 minutes were used in support');
  });

  t.test("continue measures the time before the transfer in the old department's calendar", async (t) => {
    const life = new Life([policy({ on_transfer: 'continue' }), sales], calendars);
    life.change({ now: FRIDAY_1755 });
    const monday = prague('2026-12-07T08:30');
    life.change({ now: monday, patch: { department_id: SALES } });
    t.equal(
      life.target('first_answer')!.due_at,
      monday + 85 * MINUTE,
      '5 + 30 business minutes used in support',
    );
  });

  t.test('keep: the original policy and timers stay, later changes too', async (t) => {
    const kept = policy({
      on_transfer: 'keep',
      targets: { ...policy().targets, urgent: { first_answer: { minutes: 15, business: true } } },
    });
    const life = new Life([kept, sales], calendars);
    life.change({ now: created });
    const due = life.target('first_answer')!.due_at;
    life.change({ now: moved, patch: { department_id: SALES } });
    t.same(life.lastEvents(), [], 'nothing happens');
    t.equal(life.state.policy_id, 'p-support');
    t.ok(life.state.kept);
    t.equal(life.target('first_answer')!.due_at, due);
    t.equal(life.state.calendar_department_id, SUPPORT, 'business time still runs on the original calendar');
    life.change({ now: moved + MINUTE, patch: { tags: ['x'] } });
    t.equal(life.state.policy_id, 'p-support', 'no re-selection after keep');
    life.change({ now: prague('2026-12-07T09:50'), patch: { priority: 'urgent' } });
    t.same(life.lastEvents(), [
      'sla.target_changed first_answer#1',
      'sla.removed resolution#1',
      'sla.breached first_answer#1',
    ]);
    t.equal(life.target('first_answer')!.status, 'breached', '50 minutes used of the new 15');
  });

  t.test('a transfer to a department without a policy removes the targets', async (t) => {
    const life = new Life([policy({ on_transfer: 'continue' })], calendars);
    life.change({ now: created });
    life.change({ now: moved, patch: { department_id: SALES } });
    t.same(life.lastEvents(), ['sla.removed first_answer#1', 'sla.removed resolution#1', 'sla.removed']);
    t.same(life.last.summary, { sla_policy_id: null, sla_due_at: null, sla_breached: false });
    t.equal(life.last.next_at, null);
  });
});

t.test('priority change: dues recomputed from the start with the new target', async (t) => {
  const p = policy({
    targets: {
      normal: { first_answer: { minutes: 60, business: true } },
      high: {
        first_answer: { minutes: 120, business: true },
        first_assignment: { minutes: 10, business: false },
      },
      urgent: { first_answer: { minutes: 15, business: true } },
    },
  });
  const start = prague('2026-12-07T09:00');

  const raised = new Life([p], { [SUPPORT]: officeHours() });
  raised.change({ now: start, patch: { assignee_id: ANN } });
  raised.change({ now: prague('2026-12-07T09:10'), patch: { priority: 'high' } });
  t.same(
    raised.lastEvents(),
    ['sla.target_changed first_answer#1'],
    'assigned already: no first_assignment target',
  );
  t.equal(inPrague(raised.target('first_answer')!.due_at), '2026-12-07T11:00');

  const late = new Life([p], { [SUPPORT]: officeHours() });
  late.change({ now: start });
  const changed = prague('2026-12-07T09:30');
  late.change({ now: changed, patch: { priority: 'urgent' } });
  t.same(late.lastEvents(), ['sla.target_changed first_answer#1', 'sla.breached first_answer#1']);
  t.equal(late.target('first_answer')!.breached_at, changed, 'no time left: breached at the change');
  t.ok(late.last.summary.sla_breached);

  const lowered = new Life([p], { [SUPPORT]: officeHours() });
  lowered.change({ now: start });
  lowered.change({ now: changed, patch: { priority: 'low' } });
  t.same(lowered.lastEvents(), ['sla.removed first_answer#1'], 'no target for low');
});

t.test('first assignment: started when unassigned, fulfilled by the first assignee, once', async (t) => {
  const p = policy({ targets: { normal: { first_assignment: { minutes: 30, business: false } } } });
  const life = new Life([p]);
  const start = prague('2026-12-07T09:00');
  life.change({ now: start });
  t.equal(life.target('first_assignment')!.due_at, start + 30 * MINUTE);
  life.change({ now: start + 10 * MINUTE, patch: { assignee_id: ANN } });
  t.same(life.lastEvents(), ['sla.fulfilled first_assignment#1']);
  t.equal(life.last.events[0]!.late, false);
  life.change({ now: start + 20 * MINUTE, patch: { assignee_id: null } });
  t.same(life.lastEvents(), [], 'unassigning later starts nothing');
});

t.test(
  'next answer: each customer message after an answer starts a cycle, the next agent reply fulfils it',
  async (t) => {
    const p = policy({
      targets: {
        normal: {
          first_answer: { minutes: 60, business: false },
          next_answer: { minutes: 30, business: false },
        },
      },
    });
    const life = new Life([p]);
    const t0 = prague('2026-12-07T09:00');
    life.change({ now: t0 });
    life.change({ now: t0 + 5 * MINUTE, customer_replied: true });
    t.same(life.lastEvents(), [], 'before the first answer a customer message starts no next answer');
    life.change({ now: t0 + 10 * MINUTE, patch: { status: 'answered' }, agent_replied: true });
    t.same(life.lastEvents(), ['sla.fulfilled first_answer#1']);
    life.change({ now: t0 + 20 * MINUTE, patch: { status: 'open' }, customer_replied: true });
    t.same(life.lastEvents(), ['sla.started next_answer#1']);
    t.equal(life.last.events[0]!.reason, 'customer_replied');
    life.change({ now: t0 + 25 * MINUTE, customer_replied: true });
    t.same(life.lastEvents(), [], 'the customer still waits since the first message');
    t.equal(life.target('next_answer')!.due_at, t0 + 50 * MINUTE);
    life.change({ now: t0 + 40 * MINUTE, patch: { status: 'answered' }, agent_replied: true });
    t.same(life.lastEvents(), ['sla.fulfilled next_answer#1']);
    life.change({ now: t0 + 60 * MINUTE, patch: { status: 'open' }, customer_replied: true });
    t.same(life.lastEvents(), ['sla.started next_answer#2']);
    t.equal(life.target('next_answer')!.due_at, t0 + 90 * MINUTE);
  },
);

t.test(
  'resolve and reopen: resolution fulfilled, other clocks stop; reopening starts a new resolution cycle',
  async (t) => {
    const p = policy({
      targets: {
        normal: {
          first_answer: { minutes: 60, business: false },
          resolution: { minutes: 600, business: false },
        },
      },
    });
    const life = new Life([p]);
    const t0 = prague('2026-12-07T09:00');
    life.change({ now: t0 });
    life.change({ now: t0 + 30 * MINUTE, patch: { status: 'resolved' } });
    t.same(life.lastEvents(), ['sla.fulfilled resolution#1', 'sla.removed first_answer#1']);
    t.equal(life.last.next_at, null);
    const reopen = t0 + 120 * MINUTE;
    life.change({ now: reopen, patch: { status: 'open' }, customer_replied: true });
    t.same(life.lastEvents(), ['sla.started first_answer#2', 'sla.started resolution#2']);
    t.equal(life.target('resolution')!.due_at, reopen + 600 * MINUTE, 'a full target from the reopening');
    t.equal(life.last.events[1]!.reason, 'reopened');
    life.change({ now: reopen + MINUTE, patch: { status: 'spam' } });
    t.same(life.lastEvents(), ['sla.removed first_answer#2', 'sla.removed resolution#2']);
    t.same(life.last.summary, { sla_policy_id: 'p-support', sla_due_at: null, sla_breached: false });
  },
);

t.test('breach, then a late fulfilment: the breach stays recorded', async (t) => {
  const p = policy({
    targets: {
      normal: {
        first_answer: { minutes: 60, business: false },
        next_answer: { minutes: 30, business: false },
      },
    },
  });
  const life = new Life([p]);
  const t0 = prague('2026-12-07T09:00');
  life.change({ now: t0 });
  life.fire(t0 + 61 * MINUTE);
  t.same(life.lastEvents(), ['sla.breached first_answer#1']);
  t.equal(life.last.events[0]!.at, t0 + 60 * MINUTE, 'breached at the due, not when the job ran');
  t.ok(life.last.summary.sla_breached);
  life.change({ now: t0 + 70 * MINUTE, agent_replied: true });
  t.same(life.lastEvents(), ['sla.fulfilled first_answer#1']);
  t.equal(life.last.events[0]!.late, true);
  const target = life.target('first_answer')!;
  t.equal(target.status, 'breached');
  t.equal(target.fulfilled_at, t0 + 70 * MINUTE);
  life.change({ now: t0 + 80 * MINUTE, customer_replied: true });
  life.change({ now: t0 + 85 * MINUTE, agent_replied: true });
  t.ok(life.last.summary.sla_breached, 'later cycles met in time do not clear it');
});

t.test('an agent reply exactly at the due is late; a millisecond before is in time', async (t) => {
  for (const [offset, late] of [
    [0, true],
    [-1, false],
  ] as const) {
    const life = new Life([
      policy({ targets: { normal: { first_answer: { minutes: 60, business: false } } } }),
    ]);
    const t0 = prague('2026-12-07T09:00');
    life.change({ now: t0 });
    life.change({ now: t0 + 60 * MINUTE + offset, agent_replied: true });
    t.equal(life.last.events.at(-1)!.late, late, `offset ${offset}`);
  }
});

t.test('fireDue: warnings then breaches, each once; paused and fulfilled targets never fire', async (t) => {
  const p = policy({
    warn_before_minutes: 15,
    targets: { normal: { first_answer: { minutes: 60, business: true } } },
  });
  const t0 = prague('2026-12-07T09:00');

  const life = new Life([p], { [SUPPORT]: officeHours() });
  life.change({ now: t0 });
  t.equal(inPrague(life.last.next_at), '2026-12-07T09:45', 'the timer is set for the warning first');
  t.same(life.fire(t0 + 44 * MINUTE).events, [], 'nothing yet');
  t.same(
    life.fire(t0 + 45 * MINUTE).events.map((e) => e.type),
    ['sla.warning'],
  );
  t.same(life.fire(t0 + 45 * MINUTE).events, [], 'firing twice fires once');
  t.equal(inPrague(life.last.next_at), '2026-12-07T10:00', 'then for the due');
  t.same(
    life.fire(t0 + 60 * MINUTE).events.map((e) => e.type),
    ['sla.breached'],
  );
  t.same(life.fire(t0 + 90 * MINUTE).events, []);
  t.equal(life.last.next_at, null);

  const down = new Life([p], { [SUPPORT]: officeHours() });
  down.change({ now: t0 });
  t.same(
    down.fire(t0 + 600 * MINUTE).events.map((e) => e.type),
    ['sla.breached'],
    'after downtime past the due: the breach alone',
  );

  const stale = new Life([p], { [SUPPORT]: officeHours() });
  stale.change({ now: t0 });
  const stateAtCreation = stale.state;
  stale.change({ now: t0 + 10 * MINUTE, agent_replied: true });
  t.same(stale.fire(t0 + 600 * MINUTE).events, [], 'fulfilled meanwhile: a stale timer fires nothing');
  t.same(fireDue(stateAtCreation, t0 + 600 * MINUTE).events.length, 1, 'the old state would have breached');

  const paused = new Life([p], { [SUPPORT]: officeHours() });
  paused.change({ now: t0 });
  paused.change({ now: t0 + 10 * MINUTE, patch: { status: 'postponed' } });
  t.same(paused.fire(t0 + 600 * MINUTE).events, [], 'paused meanwhile');

  const short = new Life(
    [
      policy({
        warn_before_minutes: 60,
        targets: { normal: { first_answer: { minutes: 60, business: true } } },
      }),
    ],
    {
      [SUPPORT]: officeHours(),
    },
  );
  short.change({ now: t0 });
  t.equal(short.target('first_answer')!.warn_at, null, 'no warning for a target not longer than the warning');
  t.same(fireDue(initialSlaState(), t0).events, [], 'an empty state fires nothing');
});

t.test(
  'a policy edited mid-flight: running tickets keep their version until a change re-evaluates them',
  async (t) => {
    const v1 = policy({ targets: { normal: { first_answer: { minutes: 60, business: false } } } });
    const v2 = policy({
      version: 2,
      targets: { normal: { first_answer: { minutes: 30, business: false } } },
    });
    const life = new Life([v1]);
    const t0 = prague('2026-12-07T09:00');
    life.change({ now: t0 });
    life.policies = [v2];
    t.same(life.fire(t0 + 40 * MINUTE).events, [], 'the timer job keeps version 1');
    t.equal(life.state.policy_version, 1);
    life.change({ now: t0 + 45 * MINUTE, patch: { tags: ['vip'] } });
    t.same(life.lastEvents(), [
      'sla.applied',
      'sla.target_changed first_answer#1',
      'sla.breached first_answer#1',
    ]);
    t.equal(life.last.events[0]!.reason, 'edited');
    t.same(
      life.last.events.map((e) => e.policy_version),
      [2, 2, 2],
    );
    t.equal(
      life.target('first_answer')!.breached_at,
      t0 + 45 * MINUTE,
      'version 2 is already over: breached at the change',
    );
  },
);

t.test('a change that makes another policy match switches to it, keeping elapsed time', async (t) => {
  const vip = policy({
    id: 'p-vip',
    position: 0,
    conditions: { field: 'tags', operator: 'contains_any', value: ['vip'] },
    targets: { normal: { first_answer: { minutes: 20, business: false } } },
  });
  const life = new Life([
    policy({ targets: { normal: { first_answer: { minutes: 60, business: false } } } }),
    vip,
  ]);
  const t0 = prague('2026-12-07T09:00');
  life.change({ now: t0 });
  life.change({ now: t0 + 5 * MINUTE, patch: { tags: ['vip'] } });
  t.same(life.lastEvents(), ['sla.applied', 'sla.target_changed first_answer#1']);
  t.equal(life.state.policy_id, 'p-vip');
  t.equal(life.target('first_answer')!.due_at, t0 + 20 * MINUTE);
});

t.test('a business target in a calendar that never opens has no due and sets no timer', async (t) => {
  const closed = compileCalendar({ time_zone: 'UTC', intervals: [], holidays: [] });
  const life = new Life([policy()], { [SUPPORT]: closed });
  life.change({ now: prague('2026-12-07T09:00') });
  t.equal(life.target('first_answer')!.due_at, null);
  t.equal(life.last.next_at, null);
  t.equal(WEEKDAYS.length, 7);
});
