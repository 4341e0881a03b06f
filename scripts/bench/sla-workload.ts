// The help desk of npm run bench:sla: working-hours schedules (split shifts, a night shift past
// midnight, holidays whole and partial, one-off and yearly, in five zones), 20 departments on
// them, 20 SLA policies over department, priority and channel with targets per priority in
// business and calendar time, and the open tickets of part (c) with the clock state the write
// path would have given them. Seeded, so every run builds the same help desk.
import { Temporal } from 'temporal-polyfill';
import type { BusinessCalendar, CalendarDefinition, Holiday } from '../../src/business-time/index.ts';
import type { Channel, Condition, Priority, TicketSnapshot } from '../../src/rule-engine/index.ts';
import {
  type CompiledPolicies,
  fireDue,
  initialSlaState,
  planSla,
  type SlaKind,
  type SlaState,
  type SlaTarget,
} from '../../src/sla/index.ts';
import { Random } from '../seed-demo/random.ts';
import { CHANNELS } from './rules-workload.ts';

const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday'] as const;
const whole = (name: string, date: string, yearly = false): Holiday => ({
  name,
  date,
  yearly,
  start: null,
  end: null,
});
const partial = (name: string, date: string, start: string, end: string, yearly = false): Holiday => ({
  name,
  date,
  yearly,
  start,
  end,
});

/**
 * The Prague office: split shifts (Mon-Fri 08:00-12:00 and 13:00-18:00, Sat 09:00-13:00) and 52
 * holidays: the Czech public holidays (yearly, Easter as one-off dates of 2026 and 2027) and
 * company days off over two years, a third of them afternoons only.
 */
export function pragueOffice(random: Random): CalendarDefinition {
  const yearly = ['01-01', '05-01', '05-08', '07-05', '07-06', '09-28', '10-28', '11-17', '12-24', '12-25'];
  const holidays: Holiday[] = [
    ...[...yearly, '12-26'].map((md) => whole(`Public holiday ${md}`, `2026-${md}`, true)),
    ...['2026-04-03', '2026-04-06', '2027-03-26', '2027-03-29'].map((date) => whole('Easter', date)),
  ];
  const used = new Set(holidays.map((h) => h.date));
  while (holidays.length < 52) {
    const date = Temporal.PlainDate.from('2026-01-01')
      .add({ days: random.int(0, 729) })
      .toString();
    if (used.has(date) || used.has(`2026-${date.slice(5)}`)) continue;
    used.add(date);
    holidays.push(
      random.chance(0.3)
        ? partial('Company afternoon off', date, '12:00', '18:00')
        : whole('Company day off', date),
    );
  }
  return {
    time_zone: 'Europe/Prague',
    intervals: [
      ...WEEKDAYS.map((day) => ({ day, start: '08:00', end: '12:00' })),
      ...WEEKDAYS.map((day) => ({ day, start: '13:00', end: '18:00' })),
      { day: 'saturday', start: '09:00', end: '13:00' },
    ],
    holidays,
  };
}

export interface ScheduleSpec {
  name: string;
  definition: CalendarDefinition;
  is_default: boolean;
}

/** The help desk's schedules; the first is its default. */
export function schedules(seed: number): ScheduleSpec[] {
  return [
    { name: 'Prague office', definition: pragueOffice(new Random(seed)), is_default: true },
    {
      name: 'New York office',
      is_default: false,
      definition: {
        time_zone: 'America/New_York',
        intervals: [
          ...WEEKDAYS.map((day) => ({ day, start: '09:00', end: '12:30' })),
          ...WEEKDAYS.map((day) => ({ day, start: '13:30', end: '18:00' })),
        ],
        holidays: [
          whole("New Year's Day", '2026-01-01', true),
          whole('Juneteenth', '2026-06-19', true),
          whole('Independence Day', '2026-07-04', true),
          whole('Christmas', '2026-12-25', true),
          partial('Christmas Eve', '2026-12-24', '13:00', '18:00', true),
          partial("New Year's Eve", '2026-12-31', '14:00', '18:00', true),
          ...[
            ['Martin Luther King Jr. Day', '2026-01-19', '2027-01-18'],
            ['Presidents Day', '2026-02-16', '2027-02-15'],
            ['Memorial Day', '2026-05-25', '2027-05-31'],
            ['Labor Day', '2026-09-07', '2027-09-06'],
            ['Thanksgiving', '2026-11-26', '2027-11-25'],
          ].flatMap(([name, a, b]) => [whole(name!, a!), whole(name!, b!)]),
          partial('Day after Thanksgiving', '2026-11-27', '12:00', '18:00'),
          partial('Day after Thanksgiving', '2027-11-26', '12:00', '18:00'),
        ],
      },
    },
    {
      // Nights past midnight (Sunday to Thursday 22:00 to 06:00 the next morning) and a Saturday shift.
      name: 'London night desk',
      is_default: false,
      definition: {
        time_zone: 'Europe/London',
        intervals: [
          ...(['sunday', 'monday', 'tuesday', 'wednesday', 'thursday'] as const).map((day) => ({
            day,
            start: '22:00',
            end: '06:00',
          })),
          { day: 'saturday', start: '10:00', end: '16:00' },
        ],
        holidays: [
          whole("New Year's Day", '2026-01-01', true),
          whole('Christmas Day', '2026-12-25', true),
          whole('Boxing Day', '2026-12-26', true),
          ...[
            '2026-04-03',
            '2026-04-06',
            '2026-05-04',
            '2026-05-25',
            '2026-08-31',
            '2026-12-28',
            '2027-03-26',
            '2027-03-29',
            '2027-05-03',
            '2027-05-31',
            '2027-08-30',
            '2027-12-27',
            '2027-12-28',
          ].map((date) => whole('Bank holiday', date)),
        ],
      },
    },
    {
      name: 'Kathmandu office',
      is_default: false,
      definition: {
        time_zone: 'Asia/Kathmandu',
        intervals: (['sunday', ...WEEKDAYS] as const).flatMap((day) => [
          { day, start: '10:00', end: '13:00' },
          { day, start: '14:00', end: '18:00' },
        ]),
        holidays: [
          whole('Prithvi Jayanti', '2026-01-11', true),
          whole('Republic Day', '2026-05-28', true),
          whole('Constitution Day', '2026-09-19', true),
          ...['2026-10-19', '2026-10-20', '2026-10-21', '2026-10-22', '2026-11-08', '2026-11-09'].map(
            (date) => whole('Dashain and Tihar', date),
          ),
          partial('Office party', '2026-12-18', '14:00', '18:00'),
        ],
      },
    },
    {
      name: 'Sydney office',
      is_default: false,
      definition: {
        time_zone: 'Australia/Sydney',
        intervals: WEEKDAYS.map((day) => ({ day, start: '08:30', end: '17:00' })),
        holidays: [
          whole("New Year's Day", '2026-01-01', true),
          whole('Australia Day', '2026-01-26', true),
          whole('Anzac Day', '2026-04-25', true),
          whole('Christmas Day', '2026-12-25', true),
          whole('Boxing Day', '2026-12-26', true),
          partial('Christmas Eve', '2026-12-24', '12:00', '17:00', true),
          ...['2026-04-03', '2026-04-06', '2026-06-08', '2026-10-05'].map((date) => whole('Holiday', date)),
          ...['2027-03-26', '2027-03-29', '2027-06-14', '2027-10-04'].map((date) => whole('Holiday', date)),
        ],
      },
    },
  ];
}

/** Department names and their schedule (null: the help desk's default), biggest first. */
export const DEPARTMENTS: readonly { name: string; schedule: string | null }[] = [
  { name: 'Support', schedule: null },
  { name: 'Billing', schedule: null },
  { name: 'Support US', schedule: 'New York office' },
  { name: 'Returns', schedule: null },
  { name: 'Technical support', schedule: null },
  { name: 'Sales', schedule: null },
  { name: 'Night support', schedule: 'London night desk' },
  { name: 'Support APAC', schedule: 'Sydney office' },
  { name: 'Billing US', schedule: 'New York office' },
  { name: 'Returns US', schedule: 'New York office' },
  { name: 'Support Nepal', schedule: 'Kathmandu office' },
  { name: 'Sales US', schedule: 'New York office' },
  { name: 'Wholesale', schedule: null },
  { name: 'Billing APAC', schedule: 'Sydney office' },
  { name: 'Incidents', schedule: 'London night desk' },
  { name: 'Sales APAC', schedule: 'Sydney office' },
  { name: 'Localisation', schedule: 'Kathmandu office' },
  { name: 'Partners', schedule: null },
  { name: 'Press', schedule: null },
  { name: 'Marketing', schedule: null },
];

type Targets = Partial<Record<Priority, Partial<Record<SlaKind, SlaTarget>>>>;
const b = (minutes: number): SlaTarget => ({ minutes, business: true });
const c = (minutes: number): SlaTarget => ({ minutes, business: false });
const HOUR = 60;
const DAY = 24 * HOUR;
const BUSINESS_DAY = 9 * HOUR;

/** The body of POST /v1/sla-policies, without a position: they are created in this order. */
export interface PolicyBody {
  name: string;
  active: boolean;
  conditions: Condition;
  targets: Targets;
  pause_when_answered: boolean;
  on_transfer: 'restart' | 'continue' | 'keep';
  warn_before_minutes: number | null;
}

/**
 * 20 policies in selection order, most specific first: an urgent and an incident policy,
 * channel policies, one or two per department group (conditions on department, priority and
 * channel together), then no department, low priority and a catch-all, so every ticket gets
 * one and a typical ticket is checked against ten or more before its own matches.
 * `departments` holds the ids in the order of DEPARTMENTS.
 */
export function slaPolicies(departments: readonly string[], active: boolean): PolicyBody[] {
  const id = (name: string) => {
    const i = DEPARTMENTS.findIndex((d) => d.name === name);
    if (i < 0) throw new Error(`no department ${name}`);
    return departments[i]!;
  };
  const inDepartments = (...names: string[]): Condition => ({
    field: 'department_id',
    operator: 'is_one_of',
    value: names.map(id),
  });
  const policy = (
    name: string,
    conditions: Condition[],
    targets: Targets,
    extra: Partial<Omit<PolicyBody, 'name' | 'conditions' | 'targets'>> = {},
  ): PolicyBody => ({
    name,
    active,
    conditions: { all: conditions },
    targets,
    pause_when_answered: false,
    on_transfer: 'continue',
    warn_before_minutes: null,
    ...extra,
  });
  const business = (firstAnswer: number, nextAnswer: number, resolution: number) => ({
    first_answer: b(firstAnswer),
    next_answer: b(nextAnswer),
    resolution: b(resolution),
  });
  return [
    policy(
      'Urgent, any department',
      [{ field: 'priority', operator: 'is', value: 'urgent' }],
      {
        urgent: { first_assignment: c(10), first_answer: c(15), next_answer: c(30), resolution: c(4 * HOUR) },
      },
      { warn_before_minutes: 5 },
    ),
    policy(
      'Incidents',
      [inDepartments('Incidents')],
      Object.fromEntries(
        (['low', 'normal', 'high', 'urgent'] as const).map((p) => [
          p,
          { first_answer: c(30), next_answer: c(HOUR), resolution: c(8 * HOUR) },
        ]),
      ),
      { on_transfer: 'keep', warn_before_minutes: 10 },
    ),
    policy(
      'Live chat and messaging, high priority',
      [
        { field: 'channel', operator: 'is_one_of', value: ['chat', 'whatsapp', 'viber'] },
        { field: 'priority', operator: 'is', value: 'high' },
      ],
      { high: { first_answer: c(10), next_answer: c(15), resolution: b(BUSINESS_DAY) } },
      { warn_before_minutes: 3 },
    ),
    policy('Phone', [{ field: 'channel', operator: 'is', value: 'call' }], {
      low: { first_answer: b(4 * HOUR), resolution: b(3 * BUSINESS_DAY) },
      normal: { first_answer: b(2 * HOUR), resolution: b(2 * BUSINESS_DAY) },
      high: { first_answer: b(HOUR), resolution: b(BUSINESS_DAY) },
    }),
    policy(
      'Social media',
      [{ field: 'channel', operator: 'is_one_of', value: ['facebook', 'instagram', 'twitter'] }],
      {
        low: { first_answer: c(8 * HOUR), resolution: c(3 * DAY) },
        normal: { first_answer: c(4 * HOUR), next_answer: c(4 * HOUR), resolution: c(2 * DAY) },
        high: { first_answer: c(HOUR), next_answer: c(2 * HOUR), resolution: c(DAY) },
      },
      { pause_when_answered: true },
    ),
    policy(
      'Billing EU',
      [inDepartments('Billing'), { field: 'priority', operator: 'is_one_of', value: ['normal', 'high'] }],
      {
        normal: business(4 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY),
        high: business(HOUR, 2 * HOUR, BUSINESS_DAY),
      },
      { pause_when_answered: true, warn_before_minutes: 30 },
    ),
    policy(
      'Billing US and APAC',
      [inDepartments('Billing US', 'Billing APAC')],
      {
        low: business(BUSINESS_DAY, BUSINESS_DAY, 5 * BUSINESS_DAY),
        normal: business(4 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY),
        high: business(HOUR, 2 * HOUR, BUSINESS_DAY),
      },
      { pause_when_answered: true },
    ),
    policy(
      'Support EU, high priority',
      [
        inDepartments('Support', 'Technical support'),
        { field: 'priority', operator: 'greater_than', value: 'normal' },
      ],
      { high: { first_assignment: c(30), ...business(HOUR, 2 * HOUR, 2 * BUSINESS_DAY) } },
      { warn_before_minutes: 15, on_transfer: 'restart' },
    ),
    policy(
      'Support EU',
      [
        inDepartments('Support', 'Technical support'),
        { field: 'channel', operator: 'is_none_of', value: ['api'] },
      ],
      {
        low: business(BUSINESS_DAY, BUSINESS_DAY, 5 * BUSINESS_DAY),
        normal: { first_assignment: c(2 * HOUR), ...business(4 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY) },
      },
      { warn_before_minutes: 30, on_transfer: 'restart' },
    ),
    policy(
      'Support US',
      [inDepartments('Support US'), { field: 'channel', operator: 'is_none_of', value: ['api'] }],
      {
        low: business(BUSINESS_DAY, BUSINESS_DAY, 5 * BUSINESS_DAY),
        normal: business(3 * HOUR, 3 * HOUR, 3 * BUSINESS_DAY),
        high: { first_assignment: c(30), ...business(HOUR, HOUR, BUSINESS_DAY) },
      },
      { warn_before_minutes: 20 },
    ),
    policy('Sales', [inDepartments('Sales', 'Sales US', 'Sales APAC', 'Wholesale')], {
      low: { first_answer: b(BUSINESS_DAY), resolution: b(10 * BUSINESS_DAY) },
      normal: { first_answer: b(4 * HOUR), next_answer: b(BUSINESS_DAY), resolution: b(5 * BUSINESS_DAY) },
      high: { first_answer: b(HOUR), next_answer: b(4 * HOUR), resolution: b(2 * BUSINESS_DAY) },
    }),
    policy(
      'Returns',
      [inDepartments('Returns', 'Returns US')],
      {
        low: { first_assignment: c(DAY), ...business(BUSINESS_DAY, BUSINESS_DAY, 10 * BUSINESS_DAY) },
        normal: { first_assignment: c(8 * HOUR), ...business(6 * HOUR, BUSINESS_DAY, 7 * BUSINESS_DAY) },
        high: { first_assignment: c(2 * HOUR), ...business(2 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY) },
      },
      { pause_when_answered: true, on_transfer: 'restart' },
    ),
    policy('Night support', [inDepartments('Night support')], {
      low: business(4 * HOUR, 4 * HOUR, 5 * BUSINESS_DAY),
      normal: business(2 * HOUR, 2 * HOUR, 3 * BUSINESS_DAY),
      high: business(30, HOUR, BUSINESS_DAY),
    }),
    policy(
      'Nepal',
      [inDepartments('Support Nepal', 'Localisation')],
      {
        low: business(BUSINESS_DAY, BUSINESS_DAY, 5 * BUSINESS_DAY),
        normal: business(4 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY),
        high: business(HOUR, 2 * HOUR, BUSINESS_DAY),
      },
      { on_transfer: 'keep' },
    ),
    policy(
      'Support APAC',
      [inDepartments('Support APAC'), { field: 'channel', operator: 'is_none_of', value: ['api', 'call'] }],
      {
        low: business(BUSINESS_DAY, BUSINESS_DAY, 5 * BUSINESS_DAY),
        normal: business(4 * HOUR, 4 * HOUR, 3 * BUSINESS_DAY),
        high: business(HOUR, 2 * HOUR, BUSINESS_DAY),
      },
      { warn_before_minutes: 30 },
    ),
    policy('Partners, press and marketing', [inDepartments('Partners', 'Press', 'Marketing')], {
      low: { first_answer: b(2 * BUSINESS_DAY), resolution: b(10 * BUSINESS_DAY) },
      normal: { first_answer: b(BUSINESS_DAY), resolution: b(5 * BUSINESS_DAY) },
      high: { first_answer: b(4 * HOUR), resolution: b(2 * BUSINESS_DAY) },
    }),
    policy('API integrations', [{ field: 'channel', operator: 'is', value: 'api' }], {
      low: { first_answer: c(2 * DAY), resolution: c(14 * DAY) },
      normal: { first_answer: c(DAY), resolution: c(7 * DAY) },
      high: { first_answer: c(4 * HOUR), resolution: c(2 * DAY) },
    }),
    policy(
      'No department (triage)',
      [{ field: 'department_id', operator: 'is_empty' }],
      Object.fromEntries(
        (['low', 'normal', 'high'] as const).map((p) => [
          p,
          { first_assignment: b(30), first_answer: b(4 * HOUR), resolution: b(3 * BUSINESS_DAY) },
        ]),
      ),
      { warn_before_minutes: 10 },
    ),
    policy('Low priority', [{ field: 'priority', operator: 'is', value: 'low' }], {
      low: { first_answer: b(2 * BUSINESS_DAY), resolution: b(10 * BUSINESS_DAY) },
    }),
    policy(
      'Everything else',
      [],
      {
        normal: { first_answer: b(8 * HOUR), next_answer: b(BUSINESS_DAY), resolution: b(3 * BUSINESS_DAY) },
        high: { first_answer: b(2 * HOUR), next_answer: b(4 * HOUR), resolution: b(2 * BUSINESS_DAY) },
      },
      { pause_when_answered: true },
    ),
  ];
}

// ---- the open tickets of part (c) --------------------------------------------------------

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

export interface OpenTicketSetting {
  policies: CompiledPolicies;
  calendarOf: (departmentId: string | null) => BusinessCalendar;
  /** Ids in the order of DEPARTMENTS (biggest first). */
  departments: readonly string[];
  agentsOf: (departmentId: string) => readonly string[];
  contacts: readonly string[];
  /** The instant the tickets are loaded at: the clock state is as of then. */
  now: number;
}

/** A row for the tickets table, instants as ISO strings (jsonb_to_recordset reads them). */
export interface OpenTicketRow {
  id: string;
  subject: string;
  channel: Channel;
  status: 'new' | 'open';
  priority: Priority;
  department_id: string | null;
  assignee_id: string | null;
  contact_id: string;
  tags: string[];
  created_at: string;
  updated_at: string;
  first_answered_at: string | null;
  last_customer_message_at: string;
  last_agent_message_at: string | null;
  waiting_since: string;
  sla_state: SlaState;
  sla_policy_id: string | null;
  sla_due_at: string | null;
  sla_breached: boolean;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Open tickets as the write path leaves them: each lived its life through planSla (created; for
 * 'new' ones perhaps assigned; for 'open' ones an agent's answer with an assignment, then the
 * customer's reply) at instants over the last days, then fireDue at `now`, as the timer would
 * have. Departments are skewed (the first biggest), 5 % in none; 45 % new, 55 % open.
 */
export function openTickets(setting: OpenTicketSetting, random: Random): () => OpenTicketRow {
  const { departments, now } = setting;
  const ctx = { policies: setting.policies, calendarOf: setting.calendarOf, now: 0 };
  let n = 0;
  return () => {
    const d = random.chance(0.05)
      ? null
      : departments[Math.min(departments.length - 1, Math.floor(random.next() ** 1.7 * departments.length))]!;
    const status = random.chance(0.45) ? 'new' : 'open';
    const priority = random.weighted<Priority>([
      ['low', 1],
      ['normal', 6],
      ['high', 2],
      ['urgent', 0.3],
    ]);
    const channel = random.weighted(CHANNELS);
    const agents = d === null ? [] : setting.agentsOf(d);
    // Ages: new tickets are mostly hours old, open ones days; every instant lies before now.
    const age =
      status === 'new' ? random.logNormal(6 * HOUR_MS, 1.2) : random.logNormal(2 * 24 * HOUR_MS, 0.7);
    const created = Math.round(now - Math.min(age, 12 * 24 * HOUR_MS) - MINUTE_MS);
    const i = n++;
    const snapshot: TicketSnapshot = {
      id: random.uuid(),
      channel,
      subject: `Order #${100_000 + i} ${random.pick(['delivery', 'refund', 'invoice', 'exchange', 'question'])}`,
      status: 'new',
      priority,
      department_id: d,
      assignee_id: null,
      tags: random.chance(0.3) ? ['order'] : [],
      support_address: null,
      postponed_until: null,
      contact: { name: '', email: null, custom: {} },
      created_in_working_hours: null,
      outside_working_hours: null,
    };
    let plan = planSla(initialSlaState(), { before: null, after: snapshot }, { ...ctx, now: created });
    let before = snapshot;
    const later = (from: number, median: number) =>
      Math.min(now - MINUTE_MS, Math.round(from + random.logNormal(median, 1)));
    let updated = created;
    let answered: number | null = null;
    let customer = created;
    const assignee =
      agents.length > 0 && (status === 'open' || random.chance(0.3)) ? random.pick(agents) : null;
    if (status === 'new' && assignee) {
      updated = later(created, 30 * MINUTE_MS);
      const after = { ...before, assignee_id: assignee };
      plan = planSla(plan.state, { before, after }, { ...ctx, now: updated });
      before = after;
    }
    if (status === 'open') {
      answered = later(created, 3 * HOUR_MS);
      const reply = { ...before, status: 'answered' as const, assignee_id: assignee };
      plan = planSla(plan.state, { before, after: reply, agent_replied: true }, { ...ctx, now: answered });
      customer = Math.max(answered + 1, later(answered, 8 * HOUR_MS));
      const open = { ...reply, status: 'open' as const };
      plan = planSla(
        plan.state,
        { before: reply, after: open, customer_replied: true },
        { ...ctx, now: customer },
      );
      updated = customer;
    }
    plan = fireDue(plan.state, now);
    return {
      id: snapshot.id,
      subject: snapshot.subject,
      channel,
      status,
      priority,
      department_id: d,
      assignee_id: assignee,
      contact_id: random.pick(setting.contacts),
      tags: snapshot.tags,
      created_at: iso(created),
      updated_at: iso(updated),
      first_answered_at: answered === null ? null : iso(answered),
      last_customer_message_at: iso(customer),
      last_agent_message_at: answered === null ? null : iso(answered),
      waiting_since: iso(customer),
      sla_state: plan.state,
      sla_policy_id: plan.summary.sla_policy_id,
      sla_due_at: plan.summary.sla_due_at === null ? null : iso(plan.summary.sla_due_at),
      sla_breached: plan.summary.sla_breached,
    };
  };
}
