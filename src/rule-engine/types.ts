// The rule engine's public data shapes. Plain TypeScript types rather than TypeBox schemas:
// the engine's own validator (validate.ts) is the source of truth for what a rule may contain,
// because it checks things a JSON schema cannot (operator fits the field, safe patterns,
// catalog existence) and reports them with JSON pointers. The HTTP layer may describe the same
// shape with TypeBox for OpenAPI and run validateRule() after it.

export const TRIGGERS = [
  'ticket.created',
  'ticket.updated',
  'ticket.customer_replied',
  'ticket.agent_replied',
  'ticket.transferred',
  'ticket.status_changed',
  'sla.warning',
  'sla.breached',
  'ticket.idle',
] as const;
export type Trigger = (typeof TRIGGERS)[number];

/** The triggers raised by time rather than by a change: the SLA clock and the idle sweeper. */
export const SLA_TRIGGERS = ['sla.warning', 'sla.breached'] as const;
export type SlaTrigger = (typeof SLA_TRIGGERS)[number];

/** A copy of the SLA clock's target kinds (src/sla/types.ts); a test keeps the two equal. */
export const SLA_KINDS = ['first_answer', 'next_answer', 'first_assignment', 'resolution'] as const;

/**
 * How long a ticket must go without activity before a `ticket.idle` rule runs on it: whole
 * minutes of calendar time, or of business time in the ticket's department's calendar.
 */
export interface IdleAfter {
  minutes: number;
  business: boolean;
}

// Copies of the ticket vocabulary (src/domains/tickets/schemas.ts): the engine imports nothing
// from the rest of src. A test checks that both lists stay equal.
export const CHANNELS = [
  'email',
  'contact_form',
  'chat',
  'call',
  'facebook',
  'twitter',
  'instagram',
  'viber',
  'whatsapp',
  'api',
] as const;
export const STATUSES = ['new', 'open', 'answered', 'postponed', 'resolved', 'spam', 'deleted'] as const;
/** Lowest first: greater_than / less_than on priority compare these ranks. */
export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
export type Channel = (typeof CHANNELS)[number];
export type TicketStatus = (typeof STATUSES)[number];
export type Priority = (typeof PRIORITIES)[number];

export const OPERATORS = [
  'is',
  'is_not',
  'is_one_of',
  'is_none_of',
  'contains',
  'does_not_contain',
  'starts_with',
  'ends_with',
  'matches',
  'is_empty',
  'is_not_empty',
  'greater_than',
  'less_than',
  'has_changed',
  'changed_from',
  'changed_to',
  'contains_any',
  'contains_all',
  'contains_none',
] as const;
export type Operator = (typeof OPERATORS)[number];

export type Scalar = string | number | boolean;

/** A leaf compares one field of the ticket snapshot (or of the event) with a constant. */
export interface ConditionLeaf {
  field: string;
  operator: Operator;
  /** Absent for is_empty, is_not_empty and has_changed. */
  value?: Scalar | null | Scalar[];
}
export interface AllCondition {
  all: Condition[];
}
export interface AnyCondition {
  any: Condition[];
}
export interface NotCondition {
  not: Condition;
}
/** A boolean tree of any depth (bounded by LIMITS.maxDepth). `{ all: [] }` is always true. */
export type Condition = AllCondition | AnyCondition | NotCondition | ConditionLeaf;

export type AssignStrategy = 'round_robin' | 'least_busy';

/** Who an automatic assignment may pick, beyond being an active solver or more of the department. */
export interface AssignFilter {
  /** Only agents online now and under their capacity (default false: presence and capacity ignored). */
  available_only?: boolean;
  /** Only members of this level of the department (default: every level). */
  level?: 1 | 2 | 3;
}

export type Action =
  | { type: 'transfer'; department_id: string }
  | { type: 'assign'; to: 'agent'; agent_id: string }
  | { type: 'assign'; to: 'nobody' }
  | ({ type: 'assign'; to: AssignStrategy } & AssignFilter)
  | { type: 'add_tags'; tags: string[] }
  | { type: 'remove_tags'; tags: string[] }
  | { type: 'replace_tags'; tags: string[] }
  | { type: 'set_priority'; priority: Priority }
  | { type: 'set_status'; status: 'open' | 'answered' | 'resolved' }
  | { type: 'set_status'; status: 'postponed'; postpone_seconds: number }
  | { type: 'mark_spam' }
  | { type: 'add_note'; body: string };
export type ActionType = Action['type'];

export interface Rule {
  id: string;
  name: string;
  note?: string | null;
  active: boolean;
  /** Rules run in ascending position; ties are broken by id so the order is always defined. */
  position: number;
  /** When this rule matches, the rules after it are not considered for this event. */
  stop_processing: boolean;
  /** An owning department: the rule only matches, and only changes, tickets of that department. */
  department_id?: string | null;
  triggers: Trigger[];
  /** Required with the ticket.idle trigger, and only then. */
  idle?: IdleAfter | null;
  conditions: Condition;
  actions: Action[];
}

/** What the caller resolves under row locks: the engine cannot know who is available. */
export interface PendingAssignment {
  strategy: AssignStrategy | 'keep_if_member';
  department_id: string | null;
  /** The assignment's filter, when an action gave one (round_robin, least_busy). */
  available_only?: boolean;
  level?: 1 | 2 | 3;
}

/** The ticket as rules see it. Text fields are compared folded (see text.ts). */
export interface TicketSnapshot {
  id: string;
  channel: Channel;
  subject: string;
  status: TicketStatus;
  priority: Priority;
  department_id: string | null;
  assignee_id: string | null;
  tags: string[];
  support_address: string | null;
  postponed_until: string | null;
  contact: {
    name: string;
    email: string | null;
    /** Values keyed by contact field key: text/choice strings, numbers, YYYY-MM-DD dates, booleans. */
    custom: Record<string, unknown>;
  };
  /** Computed by the caller from the department's calendar; the engine only reads it. */
  created_in_working_hours: boolean | null;
  /**
   * Computed by the caller: the ticket's department (its schedule, else the default) is closed
   * at the event's occurred_at. Null when the caller did not compute it.
   */
  outside_working_hours: boolean | null;
  /**
   * Set by the engine when an action leaves the assignee to be decided by the caller
   * (round_robin, least_busy, or a transfer that keeps the assignee only if they may work in
   * the new department). While set, every condition on assignee_id is false.
   */
  pending_assignment?: PendingAssignment | null;
}

/** The values fields had before the event, for the fields it changed (ticket.updated and the like). */
export interface PreviousValues {
  channel?: string;
  subject?: string;
  status?: string;
  priority?: string;
  department_id?: string | null;
  assignee_id?: string | null;
  tags?: string[];
  support_address?: string | null;
  contact?: { name?: string; email?: string | null; custom?: Record<string, unknown> };
}

export interface RuleEvent {
  type: Trigger;
  /** ISO 8601; the engine reads no clock: postpone durations count from this instant. */
  occurred_at: string;
  /** The triggering message (the first message on ticket.created); absent when none. */
  message?: { body: string; sender_email: string | null } | null;
  previous?: PreviousValues;
  /** The SLA event behind sla.warning and sla.breached: which target, under which policy. */
  sla?: SlaFacts | null;
}

export interface SlaFacts {
  kind: string;
  policy_id: string | null;
}

interface EffectBase {
  rule_id: string;
  /** Index of the action in the rule's actions. */
  action_index: number;
}
/**
 * What the caller must do, in order. Effects are changes, not requests: an action that
 * changes nothing (priority already high) produces none.
 */
export type Effect = EffectBase &
  (
    | { type: 'transfer'; department_id: string; from_department_id: string | null }
    | { type: 'assign'; agent_id: string | null }
    | ({ type: 'assign_intent'; strategy: AssignStrategy; department_id: string } & AssignFilter)
    | { type: 'set_tags'; tags: string[]; added: string[]; removed: string[] }
    | { type: 'set_priority'; priority: Priority; from: Priority }
    | { type: 'set_status'; status: TicketStatus; from: TicketStatus; postponed_until: string | null }
    | { type: 'mark_spam'; from: TicketStatus }
    | { type: 'add_note'; body: string }
  );

export interface ConditionTrace {
  /** JSON pointer into the rule, as validation errors use: /conditions/any/0/all/2. */
  pointer: string;
  result: boolean;
  /** Leaves only: the value the leaf read (long text cut to 500 characters). */
  value?: unknown;
}

export interface ActionTrace {
  pointer: string;
  type: ActionType;
  outcome: 'applied' | 'unchanged' | 'skipped';
  reason: string | null;
}

export type SkipReason = 'inactive' | 'trigger' | 'department' | 'stopped';

export interface RuleTrace {
  rule_id: string;
  position: number;
  /** False when the rule never looked at the ticket; `skipped` says why. */
  considered: boolean;
  skipped: SkipReason | null;
  matched: boolean;
  /**
   * Evaluated nodes in evaluation order (short-circuited nodes are absent). Null when the rule
   * was not considered or the trace level is 'rules'.
   */
  conditions: ConditionTrace[] | null;
  /** What each action did; null unless the rule matched. */
  actions: ActionTrace[] | null;
}

export interface Trace {
  version: number;
  event: Trigger;
  rules: RuleTrace[];
  /** The rule whose stop_processing ended the pass, if any. */
  stopped_by: string | null;
}

export interface EvaluationResult {
  effects: Effect[];
  /** The final snapshot; the input ticket is never mutated. */
  ticket: TicketSnapshot;
  trace: Trace;
}

export type CustomFieldType = 'text' | 'number' | 'date' | 'boolean' | 'choice';

/** What exists, for write-time validation. */
export interface Catalog {
  departmentIds: ReadonlySet<string>;
  agentIds: ReadonlySet<string>;
  /** Contact fields by key; a choice field may list its options to have values checked. */
  customFields: ReadonlyMap<string, CustomFieldType | { type: CustomFieldType; options?: readonly string[] }>;
  /** When given, tags in conditions and actions must be in it; when omitted, any tag is fine. */
  tags?: ReadonlySet<string>;
}

export interface ValidationError {
  pointer: string;
  message: string;
}
