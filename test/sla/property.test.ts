// Random lives of a ticket (replies, assignments, status, priority, transfers between
// departments with different calendars and transfer modes, policy edits, timer runs at random
// moments, across the spring DST change): after every step the clock's invariants must hold.

import fc from 'fast-check';
import t from 'tap';
import { compileCalendar, WEEKDAYS } from '../../src/business-time/index.ts';
import type { Priority, TicketSnapshot } from '../../src/rule-engine/index.ts';
import { PRIORITIES, STATUSES } from '../../src/rule-engine/index.ts';
import type { SlaEvent, SlaPlan, SlaPolicy, SlaState } from '../../src/sla/index.ts';
import { checkProperty } from '../helpers/property.ts';
import { ANN, Life, MINUTE, officeHours, policy, prague, SALES, SUPPORT } from './fixtures.ts';

const ELSEWHERE = 'd-elsewhere';

const newYork = compileCalendar({
  time_zone: 'America/New_York',
  intervals: WEEKDAYS.slice(0, 5).flatMap((day) => [
    { day, start: '09:00', end: '12:00' },
    { day, start: '13:00', end: '17:00' },
  ]),
  holidays: [{ name: 'Independence Day', date: '2026-07-04', yearly: true, start: null, end: null }],
});
const CALENDARS = { [SUPPORT]: officeHours(['2026-03-30', '2026-04-06']), [SALES]: newYork };

function policies(version: number): SlaPolicy[] {
  const m = (base: number) => base + (version - 1) * 17;
  return [
    policy({
      version,
      on_transfer: 'continue',
      pause_when_answered: version % 2 === 0,
      warn_before_minutes: 10,
      targets: {
        low: { resolution: { minutes: m(2000), business: true } },
        normal: {
          first_answer: { minutes: m(60), business: true },
          next_answer: { minutes: m(45), business: false },
          first_assignment: { minutes: m(20), business: false },
          resolution: { minutes: m(480), business: true },
        },
        urgent: {
          first_answer: { minutes: m(15), business: false },
          next_answer: { minutes: m(15), business: false },
          resolution: { minutes: m(120), business: false },
        },
      },
    }),
    policy({
      id: 'p-sales',
      version,
      on_transfer: 'restart',
      pause_when_answered: true,
      warn_before_minutes: version === 1 ? null : 30,
      conditions: { field: 'department_id', operator: 'is', value: SALES },
      targets: {
        normal: {
          first_answer: { minutes: m(90), business: true },
          next_answer: { minutes: m(60), business: true },
        },
        high: {
          first_answer: { minutes: m(30), business: true },
          resolution: { minutes: m(300), business: true },
        },
      },
    }),
    policy({
      id: 'p-vip',
      version,
      position: 0,
      on_transfer: 'keep',
      warn_before_minutes: 5,
      conditions: { field: 'tags', operator: 'contains_any', value: ['vip'] },
      targets: {
        normal: {
          first_answer: { minutes: m(10), business: false },
          resolution: { minutes: m(240), business: true },
        },
        high: { first_assignment: { minutes: m(5), business: true } },
      },
    }),
  ];
}

type Op =
  | { op: 'wait'; minutes: number }
  | { op: 'fire' }
  | { op: 'agent' }
  | { op: 'customer' }
  | { op: 'status'; status: TicketSnapshot['status'] }
  | { op: 'priority'; priority: Priority }
  | { op: 'transfer'; to: string }
  | { op: 'assign'; to: string | null }
  | { op: 'vip'; on: boolean }
  | { op: 'edit' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant('wait' as const), minutes: fc.integer({ min: 1, max: 3000 }) }),
  },
  { weight: 2, arbitrary: fc.constant({ op: 'fire' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'agent' as const }) },
  { weight: 2, arbitrary: fc.constant({ op: 'customer' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('status' as const), status: fc.constantFrom(...STATUSES) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('priority' as const), priority: fc.constantFrom(...PRIORITIES) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('transfer' as const),
      to: fc.constantFrom(SUPPORT, SALES, ELSEWHERE),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('assign' as const), to: fc.constantFrom(ANN, null) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('vip' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'edit' as const }) },
);

function fail(message: string): never {
  throw new Error(message);
}

function minOf(values: (number | null)[]): number | null {
  let min: number | null = null;
  for (const v of values) if (v !== null && (min === null || v < min)) min = v;
  return min;
}

/** The invariants of one step from `before` to the plan at `now`, and over the whole run in `seen`. */
function check(
  before: SlaState,
  plan: SlaPlan,
  now: number,
  seen: Map<string, number>,
  breachedSoFar: boolean,
) {
  const { state, summary } = plan;
  const keyOf = (e: SlaEvent) => `${e.type} ${e.kind}#${e.cycle}`;
  for (const target of state.targets) {
    const name = `${target.kind}#${target.cycle}`;
    if (target.due_at !== null && target.due_at < target.started_at) fail(`${name}: due before start`);
    if (target.warn_at !== null && (target.due_at === null || target.warn_at > target.due_at)) {
      fail(`${name}: warning after the due`);
    }
    if (target.status === 'active' && target.running_since === null)
      fail(`${name}: active without a running stretch`);
    if (target.status === 'paused' && (target.due_at !== null || target.running_since !== null)) {
      fail(`${name}: paused with a due`);
    }
    if (target.status === 'active' && target.due_at !== null && target.due_at <= now)
      fail(`${name}: overdue yet active`);
    if (target.status === 'active' && target.warn_at !== null && target.warn_at <= now)
      fail(`${name}: warning left unsent`);
    const old = before.targets.find((o) => o.kind === target.kind && o.cycle === target.cycle);
    if (old && (old.status === 'fulfilled' || old.status === 'breached')) {
      if (target.status !== old.status || target.breached_at !== old.breached_at)
        fail(`${name}: a final target changed`);
      if (old.fulfilled_at !== null && target.fulfilled_at !== old.fulfilled_at)
        fail(`${name}: fulfilled twice`);
    }
  }
  const active = state.targets.filter((x) => x.status === 'active');
  if (summary.sla_due_at !== minOf(active.map((x) => x.due_at)))
    fail('summary due is not the earliest active due');
  if (plan.next_at !== minOf(active.flatMap((x) => [x.warn_at, x.due_at])))
    fail('next_at is not the earliest timer');
  if (summary.sla_policy_id !== state.policy_id) fail('summary policy');
  for (const e of plan.events) {
    if (e.at > now) fail(`${keyOf(e)} recorded in the future`);
    if (e.type === 'sla.breached' || e.type === 'sla.fulfilled' || e.type === 'sla.warning') {
      const k = keyOf(e);
      seen.set(k, (seen.get(k) ?? 0) + 1);
      if (seen.get(k)! > 1) fail(`${k} happened twice`);
    }
  }
  const breached = breachedSoFar || plan.events.some((e) => e.type === 'sla.breached');
  if (summary.sla_breached !== breached) fail('sla_breached is not "some breach happened"');
  if (JSON.stringify(JSON.parse(JSON.stringify(state))) !== JSON.stringify(state))
    fail('state does not round-trip');
  return breached;
}

t.test('random ticket lives keep the clock invariants', async (t) => {
  // What the lives exercised, so a generator that stopped reaching a case shows up as a failure.
  const exercised = new Set<string>();
  const property = fc.property(
    fc.integer({ min: 0, max: 20 * 24 * 60 }),
    fc.array(opArb, { minLength: 1, maxLength: 40 }),
    (startMinutes, ops) => {
      let version = 1;
      const life = new Life(policies(version), CALENDARS);
      let now = prague('2026-03-20T00:00') + startMinutes * MINUTE;
      const seen = new Map<string, number>();
      let before = life.state;
      let breached = check(before, life.change({ now }), now, seen, false);
      for (const op of ops) {
        before = life.state;
        const frozen = JSON.stringify(before);
        let plan: SlaPlan;
        const status = life.ticket!.status;
        switch (op.op) {
          case 'wait':
            now += op.minutes * MINUTE;
            continue;
          case 'fire':
            plan = life.fire(now);
            break;
          case 'agent':
            plan = life.change({ now, agent_replied: true, patch: { status: 'answered' } });
            break;
          case 'customer':
            plan = life.change({
              now,
              customer_replied: true,
              patch: { status: status === 'new' ? 'new' : 'open' },
            });
            break;
          case 'status':
            plan = life.change({ now, patch: { status: op.status } });
            break;
          case 'priority':
            plan = life.change({ now, patch: { priority: op.priority } });
            break;
          case 'transfer':
            plan = life.change({ now, patch: { department_id: op.to, assignee_id: null } });
            break;
          case 'assign':
            plan = life.change({ now, patch: { assignee_id: op.to } });
            break;
          case 'vip':
            plan = life.change({ now, patch: { tags: op.on ? ['vip'] : [] } });
            break;
          case 'edit':
            version += 1;
            life.policies = policies(version);
            plan = life.change({ now, patch: {} });
            break;
        }
        if (JSON.stringify(before) !== frozen) fail('the input state was mutated');
        breached = check(before, plan, now, seen, breached);
        for (const e of plan.events)
          exercised.add(e.type === 'sla.fulfilled' && e.late ? 'late' : `${e.type} ${e.reason}`);
        // Idempotence: the timer job running again at the same instant changes nothing.
        const again = life.fire(now);
        if (again.events.length > 0) fail('fireDue fired again at the same instant');
      }
    },
  );
  // 1,200 lives: with 400, about one seed in many reached no sla.warning at all (CI saw seed 738665217).
  checkProperty(t, 'random ticket lives', property, { numRuns: 1200 });
  for (const wanted of [
    'sla.breached null',
    'sla.warning null',
    'late',
    'sla.paused null',
    'sla.resumed null',
    'sla.applied edited',
    'sla.applied transferred',
    'sla.removed transferred',
    'sla.target_changed priority',
    'sla.started reopened',
    'sla.started customer_replied',
    'sla.fulfilled assigned',
  ]) {
    t.ok(exercised.has(wanted), `the lives exercised ${wanted}`);
  }
});
