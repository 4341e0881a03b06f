import { type Kysely, sql } from 'kysely';
import { ALWAYS_OPEN, type BusinessCalendar } from '../../business-time/index.ts';
import { dbNowMs } from '../../db/clock.ts';
import type { Database } from '../../db/types.ts';
import type { TicketSnapshot } from '../../rule-engine/index.ts';
import {
  type CompiledPolicies,
  initialSlaState,
  planSla,
  type SlaChange,
  type SlaEvent,
  type SlaPlan,
  type SlaState,
} from '../../sla/index.ts';
import { readRulesKeyAndContact } from '../automation-rules/repository.ts';
import { snapshotOf, type TicketFields } from '../automation-rules/runner.ts';
import { calendarVersion, departmentCalendar } from '../schedules/calendar.ts';
import { scheduleKeySql } from '../schedules/repository.ts';
import { activePolicies, NO_POLICIES_KEY, policiesKeySql } from '../sla-policies/repository.ts';
import type { Actor, ActorEvent, TicketPatch } from './repository.ts';

// The write path's side of the SLA clock (docs/sla.md): it reads what src/sla needs (the policy
// list, the calendars of the departments in play, the transaction's time) with as few round
// trips as it can, calls planSla, and turns the plan into the ticket's columns and events.
// A help desk without active policies pays nothing: the policies key (null then) travels in a
// statement the write path runs anyway, and tickets that never had a policy are left alone.

type Executor = Kysely<Database>;

export const SYSTEM: Actor = { type: 'system', agentId: null, contactId: null };
const NOBODY = { name: '', email: null, custom: {} };

/** What the SLA needs of the transaction: the policies key and its time, and known calendars. */
export interface SlaSetting {
  key: string | null;
  /** The transaction's time: the instant of the change's events (ticket_events.occurred_at). */
  now: Date;
  calendars: Map<string | null, BusinessCalendar>;
  /** The contact as policy conditions see it, when already read. */
  contact?: TicketSnapshot['contact'] | undefined;
}

/**
 * One statement: the policies key, the transaction's time and the schedule keys of these
 * departments (compiled calendars come from the process's cache, compiled on a miss).
 */
export async function readSlaSetting(
  db: Executor,
  departmentIds: readonly (string | null)[],
): Promise<SlaSetting> {
  const ids = [...new Set(departmentIds)];
  const { rows } = await sql<Record<string, unknown> & { key: string | null; now: Date }>`select
    ${policiesKeySql} as key, ${dbNowMs} as now${sql.join(
      ids.map((id, i) => sql`, ${scheduleKeySql(id)} as ${sql.ref(`k${i}`)}`),
      sql``,
    )}`.execute(db);
  const row = rows[0]!;
  const calendars = new Map<string | null, BusinessCalendar>();
  for (const [i, id] of ids.entries()) {
    calendars.set(id, (await departmentCalendar(db, id, (row[`k${i}`] as string | null) ?? null)).calendar);
  }
  return { key: row.key, now: row.now, calendars };
}

/** Adds the calendars of departments not yet known (a rule's transfer): one query each, rare. */
async function withCalendars(db: Executor, setting: SlaSetting, ids: readonly (string | null)[]) {
  for (const id of ids) {
    if (!setting.calendars.has(id)) setting.calendars.set(id, (await departmentCalendar(db, id)).calendar);
  }
}

/** Whether any policy reads the contact: only then is the contact worth a query. */
const readsContact = (policies: CompiledPolicies) =>
  [...policies.byId.values()].some((p) => JSON.stringify(p.conditions).includes('"contact.'));

/** What one SLA plan changes: the ticket's columns (a patch) and its events. */
export interface SlaWrite {
  patch: TicketPatch;
  events: ActorEvent[];
  /** The warnings and breaches among them, as the clock gave them: what escalations answer. */
  fired: SlaEvent[];
}

/**
 * Plans the SLA of one write: the ticket before (null: created) and after, and whether an agent's
 * reply or a customer's message is part of it. Null when there is nothing to plan (no policy
 * active and none ever applied). Events are stamped with the ticket after the write, but for
 * breaches and warnings that fell due before it, which belong to the ticket as it was until the
 * write (reports credit them to its department and assignee then); the actor is the change's,
 * but for breaches and warnings, which time makes.
 */
export async function planTicketSla(
  db: Executor,
  setting: SlaSetting,
  state: SlaState | null,
  before: (TicketFields & { sla_state?: SlaState | null }) | null,
  after: TicketFields,
  replies: { agent: boolean; customer: boolean },
  actor: Actor,
): Promise<SlaWrite | null> {
  if (setting.key === null && state === null) return null;
  const policies = await activePolicies(db, setting.key);
  if (setting.contact === undefined) {
    setting.contact = readsContact(policies)
      ? (await readRulesKeyAndContact(db, after.contact_id)).contact
      : NOBODY;
  }
  await withCalendars(db, setting, [
    ...(before ? [before.department_id] : []),
    after.department_id,
    ...(state ? [state.calendar_department_id] : []),
  ]);
  const contact = setting.contact;
  const change: SlaChange = {
    before: before && snapshotOf(before, contact),
    after: snapshotOf(after, contact),
    agent_replied: replies.agent,
    customer_replied: replies.customer,
  };
  const plan = planSla(state ?? initialSlaState(), change, {
    policies,
    calendarOf: (id) => setting.calendars.get(id) ?? ALWAYS_OPEN,
    calendarKeyOf: (id) => calendarVersion(setting.calendars.get(id) ?? ALWAYS_OPEN),
    now: setting.now.getTime(),
  });
  return slaWrite(plan, setting.key, before ?? after, after, actor, setting.now.getTime());
}

function slaWrite(
  plan: SlaPlan,
  key: string | null,
  before: TicketFields,
  after: TicketFields,
  actor: Actor,
  now: number,
): SlaWrite {
  const { summary } = plan;
  return {
    patch: {
      sla_state: plan.state,
      sla_policy_id: summary.sla_policy_id,
      sla_due_at: summary.sla_due_at === null ? null : new Date(summary.sla_due_at),
      sla_breached: summary.sla_breached,
      // The timer's instant: the earliest pending warning or due (docs/sla.md "Timers").
      sla_next_at: plan.next_at === null ? null : new Date(plan.next_at),
      // The policy list it was planned under: the timer plans it again under a newer one.
      sla_planned_key: key ?? NO_POLICIES_KEY,
    },
    events: plan.events.map((e) => slaEvent(e, timed(e) && e.at < now ? before : after, actor)),
    fired: plan.events.filter((e) => e.type === 'sla.warning' || e.type === 'sla.breached'),
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** Breaches and warnings: what time makes, not the write. */
const timed = (e: SlaEvent) => e.type === 'sla.breached' || e.type === 'sla.warning';

function slaEvent(e: SlaEvent, ticket: TicketFields, actor: Actor): ActorEvent {
  return {
    type: e.type,
    actor: timed(e) ? SYSTEM : actor,
    ticket: {
      id: ticket.id,
      department_id: ticket.department_id,
      assignee_id: ticket.assignee_id,
      channel: ticket.channel,
    },
    data: {
      at: iso(e.at),
      policy_id: e.policy_id,
      policy_version: e.policy_version,
      kind: e.kind,
      cycle: e.cycle,
      due_at: iso(e.due_at),
      reason: e.reason,
      late: e.late,
    },
  };
}
