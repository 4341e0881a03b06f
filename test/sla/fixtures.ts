// A ticket driven through planSla and fireDue the way the write path and the timer job will.

import { Temporal } from 'temporal-polyfill';
import {
  ALWAYS_OPEN,
  type BusinessCalendar,
  compileCalendar,
  WEEKDAYS,
} from '../../src/business-time/index.ts';
import type { TicketSnapshot } from '../../src/rule-engine/index.ts';
import {
  fireDue,
  initialSlaState,
  planSla,
  type SlaEvent,
  type SlaKind,
  type SlaPlan,
  type SlaPolicy,
  type SlaState,
  type SlaTargetState,
} from '../../src/sla/index.ts';

export const SUPPORT = 'd-support';
export const SALES = 'd-sales';
export const ANN = 'a-ann';
export const PRAGUE = 'Europe/Prague';
export const MINUTE = 60_000;

/** Epoch ms of a Prague wall-clock time, '2026-12-04T17:55'. */
export const prague = (local: string) => Temporal.ZonedDateTime.from(`${local}[${PRAGUE}]`).epochMilliseconds;
/** The Prague wall-clock time of an instant, to the minute. */
export const inPrague = (ms: number | null) =>
  ms === null
    ? null
    : Temporal.Instant.fromEpochMilliseconds(ms)
        .toZonedDateTimeISO(PRAGUE)
        .toPlainDateTime()
        .toString({ smallestUnit: 'minute' });

export function officeHours(holidays: string[] = []): BusinessCalendar {
  return compileCalendar({
    time_zone: PRAGUE,
    intervals: WEEKDAYS.slice(0, 5).map((day) => ({ day, start: '08:00', end: '18:00' })),
    holidays: holidays.map((date) => ({ name: 'Holiday', date, yearly: false, start: null, end: null })),
  });
}

export function ticket(patch: Partial<TicketSnapshot> = {}): TicketSnapshot {
  return {
    id: 't-1',
    channel: 'email',
    subject: 'The parcel arrived broken',
    status: 'new',
    priority: 'normal',
    department_id: SUPPORT,
    assignee_id: null,
    tags: [],
    support_address: null,
    postponed_until: null,
    contact: { name: 'Jane Doe', email: 'jane@example.com', custom: {} },
    created_in_working_hours: null,
    outside_working_hours: null,
    ...patch,
  };
}

export function policy(patch: Partial<SlaPolicy> = {}): SlaPolicy {
  return {
    id: 'p-support',
    version: 1,
    name: 'Support',
    position: 1,
    active: true,
    conditions: { field: 'department_id', operator: 'is', value: SUPPORT },
    targets: {
      normal: {
        first_answer: { minutes: 60, business: true },
        resolution: { minutes: 240, business: true },
      },
    },
    pause_when_answered: false,
    on_transfer: 'continue',
    warn_before_minutes: null,
    escalations: [],
    ...patch,
  };
}

export interface Step {
  now: number;
  patch?: Partial<TicketSnapshot>;
  agent_replied?: boolean;
  customer_replied?: boolean;
}

/** One ticket's life: each change() is one write, fire() one run of the timer job. */
export class Life {
  state: SlaState = initialSlaState();
  ticket: TicketSnapshot | null = null;
  events: SlaEvent[] = [];
  last!: SlaPlan;
  policies: readonly SlaPolicy[];
  readonly calendars: Record<string, BusinessCalendar>;
  /** The calendars' versions (SlaContext.calendarKeyOf), when the case follows them. */
  calendarKeys: Record<string, string> | null = null;

  constructor(policies: readonly SlaPolicy[], calendars: Record<string, BusinessCalendar> = {}) {
    this.policies = policies;
    this.calendars = calendars;
  }

  change(step: Step): SlaPlan {
    const before = this.ticket;
    const after = { ...(before ?? ticket()), ...step.patch };
    const plan = planSla(
      this.state,
      {
        before,
        after,
        ...(step.agent_replied ? { agent_replied: true } : {}),
        ...(step.customer_replied ? { customer_replied: true } : {}),
      },
      {
        policies: this.policies,
        calendarOf: (id) => (id !== null && this.calendars[id]) || ALWAYS_OPEN,
        ...(this.calendarKeys && {
          calendarKeyOf: (id: string | null) => (id !== null && this.calendarKeys![id]) || null,
        }),
        now: step.now,
      },
    );
    return this.take(plan, after);
  }

  fire(now: number): SlaPlan {
    return this.take(fireDue(this.state, now), this.ticket);
  }

  take(plan: SlaPlan, after: TicketSnapshot | null): SlaPlan {
    this.state = plan.state;
    this.ticket = after;
    this.events.push(...plan.events);
    this.last = plan;
    return plan;
  }

  target(kind: SlaKind): SlaTargetState | undefined {
    return this.state.targets.find((t) => t.kind === kind);
  }

  /** Event types of the last plan, as 'type kind#cycle'. */
  lastEvents(): string[] {
    return this.last.events.map(brief);
  }
}

export const brief = (e: SlaEvent) => (e.kind === null ? e.type : `${e.type} ${e.kind}#${e.cycle}`);
