// The SLA core's data shapes. Instants are epoch milliseconds (what BusinessCalendar speaks);
// the write path persists SlaState as one jsonb value per ticket and converts to ISO strings only
// where the API shows them. See docs/sla.md, "The SLA clock".

import type { BusinessCalendar } from '../business-time/index.ts';
import type { Condition, Priority, TicketSnapshot } from '../rule-engine/index.ts';

export const SLA_KINDS = ['first_answer', 'next_answer', 'first_assignment', 'resolution'] as const;
export type SlaKind = (typeof SLA_KINDS)[number];

export const TRANSFER_MODES = ['restart', 'continue', 'keep'] as const;
/** What a transfer to another department does to a ticket under this policy. */
export type TransferMode = (typeof TRANSFER_MODES)[number];

export const ESCALATION_MOMENTS = ['warning', 'breach'] as const;
/** When an escalation acts: a target's warning, or its breach. */
export type EscalationMoment = (typeof ESCALATION_MOMENTS)[number];

export const ESCALATION_ACTIONS = ['next_level', 'supervisors'] as const;
/** next_level: to an available member of the tier above the assignee's; supervisors: to an available supervisor. */
export type EscalationAction = (typeof ESCALATION_ACTIONS)[number];

/** One of a policy's escalations; the first whose moment and kinds match a fired event applies. */
export interface SlaEscalation {
  on: EscalationMoment;
  /** The target kinds it answers; empty: every kind. */
  kinds: SlaKind[];
  action: EscalationAction;
  /** Also tell the department's supervisors (and managers) when the ticket was handed on. */
  notify_supervisors: boolean;
}

/** The ticket event an applied escalation records (not a clock event: the write path acts on it). */
export const SLA_ESCALATED = 'sla.escalated';

export interface SlaTarget {
  /** Whole minutes, at least 1. */
  minutes: number;
  /** true: minutes count only while the department's calendar is open. */
  business: boolean;
}

export type SlaTargets = Partial<Record<SlaKind, SlaTarget>>;

export interface SlaPolicy {
  id: string;
  /** Bumped on every edit; tickets record which version set their targets. */
  version: number;
  name: string;
  position: number;
  active: boolean;
  /** The rule engine's condition language, matched against the ticket as it stands. */
  conditions: Condition;
  /** Per ticket priority; a kind missing for a priority means no target of that kind. */
  targets: Partial<Record<Priority, SlaTargets>>;
  /** Postponed always pauses; answered ("waiting on the customer") pauses when this is true. */
  pause_when_answered: boolean;
  on_transfer: TransferMode;
  /** Warn this many minutes (of the target's own kind of time) before the due; null: never. */
  warn_before_minutes: number | null;
  /** What a warning or breach under this policy does besides being recorded; [] for nothing. */
  escalations: SlaEscalation[];
}

export type SlaTargetStatus = 'active' | 'paused' | 'fulfilled' | 'breached';

/** One target of one cycle (next_answer and resolution run again; first_* at most once per policy application). */
export interface SlaTargetState {
  kind: SlaKind;
  /** 1, 2, ... per kind and ticket; breach and fulfilment happen at most once per cycle. */
  cycle: number;
  minutes: number;
  business: boolean;
  warn_before_minutes: number | null;
  /**
   * active: the clock runs. paused: it does not (due_at null). fulfilled: met in time (final).
   * breached: due passed before fulfilment (final; fulfilled_at is set when it is met late).
   */
  status: SlaTargetStatus;
  started_at: number;
  /** Start of the current running stretch; null unless active. */
  running_since: number | null;
  /** Running time before running_since, in calendar ms and in business minutes of the calendars in force then. */
  elapsed_ms: number;
  elapsed_business: number;
  /** The instant the target breaches; null when not running or when the calendar never opens enough. */
  due_at: number | null;
  /** The instant the warning is due; null when none is pending. */
  warn_at: number | null;
  warned_at: number | null;
  paused_at: number | null;
  breached_at: number | null;
  fulfilled_at: number | null;
}

/** Persisted per ticket (jsonb); initialSlaState() before the first plan. */
export interface SlaState {
  policy_id: string | null;
  policy_version: number | null;
  /** Copied from the applied version so pausing and transfers work if the policy is edited or deleted. */
  pause_when_answered: boolean;
  on_transfer: TransferMode | null;
  /** Set by a transfer under on_transfer = keep: the policy is no longer re-selected. */
  kept: boolean;
  /** The department whose calendar measures business time (the ticket's, unless kept). */
  calendar_department_id: string | null;
  /**
   * The version of that calendar the running targets' dues were computed in (SlaContext's
   * calendarKeyOf; null: always open). A plan that finds another one (the schedule was edited, or
   * the department follows another one) computes them again before anything fires. Absent in
   * states planned before it was kept: their next plan computes them again too (same calendar,
   * same dues).
   */
  calendar_key?: string | null;
  /** The current or last cycle of each kind that has one. */
  targets: SlaTargetState[];
  cycles: Record<SlaKind, number>;
  /** Facts the clock needs that the ticket row may not hold. */
  first_answered_at: number | null;
  first_assigned_at: number | null;
  /** The customer wrote after the last agent answer, since then; null when nobody waits. */
  waiting_since: number | null;
  /** Some target of this ticket breached, ever (a breach is history, later cycles do not undo it). */
  breached: boolean;
}

/** What the write path knows about one write: the ticket before (null on creation) and after, and the message direction. */
export interface SlaChange {
  before: TicketSnapshot | null;
  after: TicketSnapshot;
  /** An agent's public reply is part of this write. */
  agent_replied?: boolean;
  /** A customer's message is part of this write (not the ticket's first message). */
  customer_replied?: boolean;
}

export interface SlaContext {
  /** The policy list as it stands (any order); a CompiledPolicies from compilePolicies() saves recompiling. */
  policies: readonly SlaPolicy[] | CompiledPolicies;
  /** The calendar of a department (its schedule, else the help desk default; ALWAYS_OPEN when none). */
  calendarOf: (department_id: string | null) => BusinessCalendar;
  /**
   * The version of calendarOf's calendar (a schedule's id and version; null: always open). Given,
   * a plan notices that a department's calendar changed since the last plan and moves the dues of
   * its running business-time targets.
   */
  calendarKeyOf?: (department_id: string | null) => string | null;
  now: number;
}

export interface CompiledPolicies {
  readonly byId: ReadonlyMap<string, SlaPolicy>;
  readonly select: (ticket: TicketSnapshot) => SlaPolicy | null;
}

export const SLA_EVENT_TYPES = [
  'sla.applied',
  'sla.removed',
  'sla.started',
  'sla.target_changed',
  'sla.paused',
  'sla.resumed',
  'sla.warning',
  'sla.breached',
  'sla.fulfilled',
] as const;
export type SlaEventType = (typeof SLA_EVENT_TYPES)[number];

export type SlaReason =
  | 'created'
  | 'transferred'
  | 'changed'
  | 'edited'
  | 'no_policy'
  | 'priority'
  | 'schedule'
  | 'resolved'
  | 'closed'
  | 'reopened'
  | 'customer_replied'
  | 'agent_replied'
  | 'assigned';

/** One ticket event to record. kind and cycle are null for policy-level events (applied, removed of the policy). */
export interface SlaEvent {
  type: SlaEventType;
  at: number;
  policy_id: string | null;
  policy_version: number | null;
  kind: SlaKind | null;
  cycle: number | null;
  due_at: number | null;
  reason: SlaReason | null;
  /** sla.fulfilled only: met after the breach. */
  late: boolean | null;
}

/** The ticket's columns for listing, filtering and the to-solve queue. */
export interface SlaSummary {
  sla_policy_id: string | null;
  /** Earliest due of the active targets. */
  sla_due_at: number | null;
  sla_breached: boolean;
}

export interface SlaPlan {
  state: SlaState;
  events: SlaEvent[];
  /** When the timer job must next run fireDue (earliest pending warning or due); null: no job. */
  next_at: number | null;
  summary: SlaSummary;
}
