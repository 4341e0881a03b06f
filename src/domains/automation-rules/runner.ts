import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { statementDeadline } from '../../db/deadline.ts';
import type { Database } from '../../db/types.ts';
import { DomainError, type FieldError } from '../../errors.ts';
import {
  type CompiledRules,
  type Condition,
  compileRules,
  type Effect,
  type EvaluateOptions,
  type EvaluationResult,
  evaluate,
  type PreviousValues,
  type Rule,
  type RuleEvent,
  type RuleTrace,
  type SlaFacts,
  type TicketSnapshot,
  type Trigger,
} from '../../rule-engine/index.ts';
import type { SeenByRules } from '../contacts/repository.ts';
import { departmentCalendar } from '../schedules/calendar.ts';
import { changeEvents, fitTags, normaliseTags, statusPatch } from '../tickets/changes.ts';
import type { Actor, ActorEvent, NewMessage, TicketPatch, TicketRecord } from '../tickets/repository.ts';
import * as repo from './repository.ts';

// Runs the automation rules on a change to a ticket, inside the change's transaction, and plans
// what they do; the tickets' write path (tickets/write.ts) writes the plan. The flow of
// docs/rules.md: the rule set is compiled once per rules version and cached; each change is one
// pass over the rules (a change that raises several events, say a transfer that is also an
// update, runs every rule listening to any of them once); effects are planned in order with each
// rule as the actor; a failing effect throws and the whole request rolls back. Effects raise no
// events of their own, so rules never re-trigger.

type Trx = Transaction<Database>;

/** A rule set ready to evaluate: the stored rules, compiled lazily per combination of events. */
export interface RuleSet {
  version: number;
  rules: repo.StoredRule[];
  byId: Map<string, repo.StoredRule>;
  /** The triggers some active rule listens to: a change raising none of them costs nothing more. */
  activeTriggers: ReadonlySet<Trigger>;
  readsCustomFields: boolean;
  /** Some rule reads outside_working_hours: only then does a change look up the calendar. */
  readsOutsideHours: boolean;
  compiled: Map<string, CompiledRules>;
}

function reads(node: Condition, test: (field: string) => boolean): boolean {
  if ('all' in node) return node.all.some((child) => reads(child, test));
  if ('any' in node) return node.any.some((child) => reads(child, test));
  if ('not' in node) return reads(node.not, test);
  return typeof node.field === 'string' && test(node.field);
}

export function ruleSetOf(version: number, rules: repo.StoredRule[]): RuleSet {
  const active = rules.filter((r) => r.rule.active);
  return {
    version,
    rules,
    byId: new Map(rules.map((r) => [r.rule.id, r])),
    activeTriggers: new Set(active.flatMap((r) => r.rule.triggers)),
    readsCustomFields: rules.some((r) => reads(r.rule.conditions, (f) => f.includes('contact.custom.'))),
    readsOutsideHours: rules.some((r) => reads(r.rule.conditions, (f) => f === 'outside_working_hours')),
    compiled: new Map(),
  };
}

/** Compiled variants kept per rule set: one per combination of events, and of due idle rules. */
const COMPILED_PER_SET = 32;

/**
 * The compiled rules for a change raising `events` (the first is the main one). One event: the
 * rules as they are. Several: every rule listening to any of them is compiled as listening to
 * the first, so a single pass runs each such rule once, in position order. `idleRules` (a
 * ticket.idle pass) leaves out the ticket.idle rules whose idle time has not come: each waits
 * for its own, so the pass runs only those named.
 */
function compiledFor(set: RuleSet, events: readonly Trigger[], idleRules?: readonly string[]): CompiledRules {
  const due = idleRules && new Set(idleRules);
  const key = due ? `${events.join(' ')}|${[...due].sort().join(',')}` : events.join(' ');
  let compiled = set.compiled.get(key);
  if (!compiled) {
    const main = events[0]!;
    const rules: Rule[] = set.rules
      .filter(({ rule }) => !due || !rule.triggers.includes('ticket.idle') || due.has(rule.id))
      .map(({ rule }) =>
        events.length > 1 && rule.triggers.some((t) => events.includes(t))
          ? { ...rule, triggers: [main] }
          : rule,
      );
    compiled = compileRules(rules, { version: set.version });
    if (set.compiled.size >= COMPILED_PER_SET) set.compiled.delete(set.compiled.keys().next().value!);
    set.compiled.set(key, compiled);
  }
  return compiled;
}

// Each process keeps the rule sets it compiled, by rules_key (renewed with every change).
const cache = new Map<string, RuleSet>();
const CACHE_SIZE = 4;
// The loads under way, by the key that missed: right after a rule change every request in
// flight misses at once, and one load (and compilation) serves them all. A load is shared only
// under the same statement bound (db/deadline.ts): a request does not wait unbounded on a load
// background work started.
const loading = new Map<string, { load: Promise<RuleSet>; bound: number | undefined }>();

async function ruleSetFor(db: Kysely<Database>, key: string): Promise<RuleSet> {
  const hit = cache.get(key);
  if (hit) return hit;
  const bound = statementDeadline();
  const pending = loading.get(key);
  if (pending && pending.bound === bound) {
    try {
      return await pending.load;
    } catch {
      // The load ran in another request's transaction, which failed: load in ours.
    }
  }
  const load = loadRuleSet(db);
  if (!pending) {
    loading.set(key, { load, bound });
    load.then(
      () => loading.delete(key),
      () => loading.delete(key),
    );
  }
  return load;
}

async function loadRuleSet(db: Kysely<Database>): Promise<RuleSet> {
  const stored = await repo.loadRuleSet(db);
  const set = ruleSetOf(stored.version, stored.rules);
  cache.set(stored.key, set);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return set;
}

/** The rule set of this key when this process has it compiled, without a query. */
export function cachedRuleSet(key: string): RuleSet | undefined {
  return cache.get(key);
}

/** The current rule set: one small query when cached, else one more to load it. */
export async function currentRuleSet(db: Kysely<Database>): Promise<RuleSet> {
  return ruleSetFor(db, (await repo.readRulesKey(db)).key);
}

/** What an evaluation saw, stored with each run so GET rule-trace can replay it exactly. */
export interface RunInput {
  ticket: TicketSnapshot;
  occurred_at: string;
  message: { id: string | null; sender_email: string | null } | null;
  previous: PreviousValues;
  /** sla.warning and sla.breached: the target and policy, as the sla.* fields read them. */
  sla?: SlaFacts | null;
  /** ticket.idle: the rules whose idle time had come, the only idle rules the run considers. */
  idle_rules?: string[];
  /** A time-triggered run whose actions could not apply: undone alone, recorded with why. */
  failure?: { code: string; message: string };
}

/** Runs the rule set on one input (the message body is passed apart: it is not stored). */
export function evaluateRun(
  set: RuleSet,
  events: readonly Trigger[],
  input: RunInput,
  body: string | null,
  trace: EvaluateOptions['trace'],
): EvaluationResult {
  const event: RuleEvent = {
    type: events[0]!,
    occurred_at: input.occurred_at,
    message: input.message ? { body: body ?? '', sender_email: input.message.sender_email } : null,
    previous: input.previous,
    sla: input.sla ?? null,
  };
  return evaluate(event, input.ticket, compiledFor(set, events, input.idle_rules), { trace });
}

/** A trace entry with the rule's name and version, as the API shows it. */
export function describeTrace(entry: RuleTrace, set: RuleSet, drafts?: ReadonlySet<string>) {
  const stored = set.byId.get(entry.rule_id);
  return {
    rule_id: entry.rule_id,
    name: stored?.rule.name ?? '',
    version: drafts?.has(entry.rule_id) ? null : (stored?.version ?? null),
    position: entry.position,
    considered: entry.considered,
    skipped: entry.skipped,
    matched: entry.matched,
    conditions: entry.conditions,
    actions: entry.actions,
  };
}

const isoOrNull = (d: Date | null) => (d ? d.toISOString() : null);

/** What rules read of a ticket: a saved one, or one about to be created. */
export type TicketFields = Pick<
  TicketRecord,
  | 'id'
  | 'channel'
  | 'subject'
  | 'status'
  | 'priority'
  | 'department_id'
  | 'assignee_id'
  | 'tags'
  | 'support_address'
  | 'postponed_until'
  | 'contact_id'
  | 'created_at'
  | 'first_resolved_at'
  | 'created_in_working_hours'
>;

export function snapshotOf(
  ticket: TicketFields,
  contact: { name: string; email: string | null; custom: Record<string, unknown> },
  outsideWorkingHours: boolean | null = null,
): TicketSnapshot {
  return {
    id: ticket.id,
    channel: ticket.channel,
    subject: ticket.subject,
    status: ticket.status,
    priority: ticket.priority,
    department_id: ticket.department_id,
    assignee_id: ticket.assignee_id,
    tags: ticket.tags,
    support_address: ticket.support_address,
    postponed_until: isoOrNull(ticket.postponed_until),
    contact,
    created_in_working_hours: ticket.created_in_working_hours,
    outside_working_hours: outsideWorkingHours,
  };
}

const sameTags = (a: string[], b: string[]) => a.length === b.length && a.every((t) => b.includes(t));

/** The values of the fields a change touched, as they were before it. */
function previousValues(before: TicketRecord, after: TicketFields): PreviousValues {
  const previous: PreviousValues = {};
  if (before.subject !== after.subject) previous.subject = before.subject;
  if (before.status !== after.status) previous.status = before.status;
  if (before.priority !== after.priority) previous.priority = before.priority;
  if (before.department_id !== after.department_id) previous.department_id = before.department_id;
  if (before.assignee_id !== after.assignee_id) previous.assignee_id = before.assignee_id;
  if (!sameTags(before.tags, after.tags)) previous.tags = before.tags;
  return previous;
}

/** Whether a change raised the event: an update must change a field, and so on. */
function raised(event: Trigger, before: TicketRecord | null, after: TicketFields): boolean {
  if (before === null) return true;
  switch (event) {
    case 'ticket.updated':
      return (
        Object.keys(previousValues(before, after)).length > 0 ||
        isoOrNull(before.postponed_until) !== isoOrNull(after.postponed_until)
      );
    case 'ticket.status_changed':
      return before.status !== after.status;
    case 'ticket.transferred':
      return before.department_id !== after.department_id;
    default:
      return true;
  }
}

export interface RuleRunContext {
  /** The ticket before the change: previous values, and which events really happened. */
  before?: TicketRecord | null;
  /** The rules' cache key and the contact, when the caller has read them already (a new ticket's contact statement does). */
  seen?: SeenByRules | null;
  /** The message that caused the change; the sender is the contact unless said otherwise. */
  message?: { id: string; body: string; senderEmail?: string | null; senderAgentId?: string | null } | null;
  /** When the change happens (default: now), and whether the department is closed then, if known. */
  at?: Date;
  outsideWorkingHours?: boolean;
  /** The SLA event behind an sla.warning or sla.breached pass. */
  sla?: SlaFacts | null;
  /** A ticket.idle pass: the idle rules whose time has come (the others wait for theirs). */
  idleRules?: readonly string[] | undefined;
}

/**
 * Whether the ticket's department (its schedule, else the default) is closed at `at`: what
 * outside_working_hours means, for every trigger.
 */
export async function outsideWorkingHours(
  db: Kysely<Database>,
  departmentId: string | null,
  at: Date,
): Promise<boolean> {
  const { calendar } = await departmentCalendar(db, departmentId);
  return !calendar.isOpen(at.getTime());
}

/** What the rules made of a change, to apply to the ticket. */
export interface Evaluation {
  set: RuleSet;
  events: Trigger[];
  input: RunInput;
  result: EvaluationResult;
}

/**
 * Runs the active rules listening to `events` on a ticket as it stands after a change (or as it
 * is about to be created): null when no active rule listens to them, at the cost of one small
 * query. Pure evaluation otherwise; nothing is written.
 */
export async function evaluateRules(
  trx: Trx,
  ticket: TicketFields,
  events: readonly Trigger[],
  context: RuleRunContext = {},
): Promise<Evaluation | null> {
  const before = context.before ?? null;
  const raisedEvents = events.filter((e) => raised(e, before, ticket));
  if (raisedEvents.length === 0) return null;
  const { rulesKey, contact } = context.seen ?? (await repo.readRulesKeyAndContact(trx, ticket.contact_id));
  const set = await ruleSetFor(trx, rulesKey);
  if (!raisedEvents.some((e) => set.activeTriggers.has(e))) return null;
  const message = context.message ?? null;
  let senderEmail: string | null = null;
  if (message) {
    senderEmail =
      message.senderEmail !== undefined
        ? message.senderEmail
        : message.senderAgentId
          ? await repo.agentEmail(trx, message.senderAgentId)
          : contact.email;
  }
  const at = context.at ?? new Date();
  // Computed only when a rule reads it: a help desk without such rules pays nothing for it.
  const outside =
    context.outsideWorkingHours ??
    (set.readsOutsideHours ? await outsideWorkingHours(trx, ticket.department_id, at) : null);
  const input: RunInput = {
    ticket: snapshotOf(ticket, { ...contact, custom: set.readsCustomFields ? contact.custom : {} }, outside),
    occurred_at: at.toISOString(),
    message: message ? { id: message.id, sender_email: senderEmail } : null,
    previous: before ? previousValues(before, ticket) : {},
    ...(context.sla && { sla: context.sla }),
    ...(context.idleRules && { idle_rules: [...context.idleRules] }),
  };
  const result = evaluateRun(set, raisedEvents, input, message?.body ?? null, 'matches');
  return { set, events: raisedEvents, input, result };
}

/** The record of a run, as rule_runs keeps it: compact, enough to replay (see ruleTrace). */
export function runRecord(ticketId: string, evaluation: Evaluation, effects: unknown[]): repo.RuleRunRow {
  const { set, result } = evaluation;
  return {
    ticket_id: ticketId,
    event_types: evaluation.events,
    rules_version: set.version,
    input: evaluation.input,
    trace: result.trace.rules.map((r) => ({
      rule_id: r.rule_id,
      version: set.byId.get(r.rule_id)?.version ?? null,
      actions: r.actions,
    })),
    effects,
  };
}

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

function ruleActor(stored: repo.StoredRule): Actor {
  return {
    type: 'rule',
    agentId: null,
    contactId: null,
    ruleId: stored.rule.id,
    ruleVersion: stored.version,
  };
}

const NOT_ASSIGNABLE = {
  missing: 'the agent no longer exists',
  disabled: 'the agent is disabled',
  not_member: 'the agent is not a solver, supervisor or manager of the ticket’s department',
} as const;

function actionFailed(stored: repo.StoredRule, effect: Effect, why: string) {
  return new DomainError(
    'conflict',
    'rule_action_failed',
    `Automation rule "${stored.rule.name}" (version ${stored.version}) could not apply action ${effect.action_index + 1} (${effect.type}): ${why}. Nothing was changed; fix or deactivate the rule.`,
  );
}

/**
 * The agent an automatic assignment picks (round robin or least busy, narrowed by the action's
 * level and availability), or null and why nobody qualified. With `lock` the pick is taken for
 * real (the round robin moves); without, it is what the pick would be now (simulation).
 */
export async function pickAgent(
  db: Kysely<Database>,
  effect: Extract<Effect, { type: 'assign_intent' }>,
  lock: boolean,
): Promise<{ agentId: string | null; reason: string | null }> {
  const filter = { level: effect.level, availableOnly: effect.available_only };
  const agentId =
    effect.strategy === 'round_robin'
      ? await repo.nextRoundRobinAgent(db, effect.department_id, lock, filter)
      : await repo.leastBusyAgent(db, effect.department_id, lock, filter);
  if (agentId !== null) return { agentId, reason: null };
  return { agentId, reason: await repo.whyNobodyQualifies(db, effect.department_id, filter) };
}

/** One effect as a change to the ticket, checked against the database under the ticket lock. */
async function changeOf(
  trx: Trx,
  working: TicketFields,
  effect: Exclude<Effect, { type: 'add_note' }>,
  stored: repo.StoredRule,
  at: Date,
): Promise<{ change: TicketPatch; agentId?: string | null; reason?: string }> {
  switch (effect.type) {
    case 'transfer': {
      const change: TicketPatch = { department_id: effect.department_id };
      // As with a transfer by hand, the assignee stays only when they may work tickets there.
      if (
        working.assignee_id !== null &&
        (await repo.assignability(trx, working.assignee_id, effect.department_id)) !== 'ok'
      ) {
        change.assignee_id = null;
      }
      return { change };
    }
    case 'assign': {
      if (effect.agent_id !== null) {
        const state = await repo.assignability(trx, effect.agent_id, working.department_id);
        if (state !== 'ok') throw actionFailed(stored, effect, NOT_ASSIGNABLE[state]);
      }
      return { change: { assignee_id: effect.agent_id } };
    }
    case 'assign_intent': {
      // Nobody qualifying leaves the ticket unassigned: the rule asked for someone who qualifies,
      // and whoever held it does not (or they would have been picked).
      const { agentId, reason } = await pickAgent(trx, effect, true);
      return { change: { assignee_id: agentId }, agentId, ...(reason !== null && { reason }) };
    }
    case 'set_tags':
      return { change: { tags: fitTags(normaliseTags(effect.tags)) } };
    case 'set_priority':
      return { change: { priority: effect.priority } };
    case 'set_status':
    case 'mark_spam': {
      const status = effect.type === 'mark_spam' ? 'spam' : effect.status;
      const until =
        effect.type === 'set_status' && effect.postponed_until ? new Date(effect.postponed_until) : undefined;
      const change = statusPatch(working, status, at, until);
      if (working.status === 'deleted') change.status_before_delete = null;
      return { change };
    }
  }
}

/**
 * What the rules do to a ticket, as data: the patch, every rule's events (each stamped with the
 * ticket as it stood after it), their notes and the record of the run. The write path writes it.
 */
export interface RulePlan {
  patch: TicketPatch;
  events: ActorEvent[];
  notes: NewMessage[];
  /** What rule_runs keeps of this evaluation (automation-rules/repository.ts writes it). */
  run: repo.RuleRunRow;
  applied: Record<string, unknown>[];
  transfers: { stored: repo.StoredRule; effect: Effect }[];
}

/**
 * Works out an evaluation's effects in order: what they change, the events of every rule (each
 * stamped with the ticket as it stood after it) and notes. Consecutive effects of one rule are
 * one change with that rule as the actor. The look-ups an effect needs (membership, round robin,
 * least busy) happen here, under locks; nothing about the ticket is written.
 */
export async function planRules(trx: Trx, ticket: TicketFields, evaluation: Evaluation): Promise<RulePlan> {
  const effects = evaluation.result.effects;
  const plan: RulePlan = {
    patch: {},
    events: [],
    notes: [],
    run: runRecord(ticket.id, evaluation, []),
    applied: [],
    transfers: [],
  };
  let working = ticket;
  // An assignment that a later one replaces is not resolved: it would lock a department and move
  // its round robin for nothing, and taking one such lock per evaluation keeps concurrent
  // evaluations from deadlocking on each other's departments.
  const decisive = effects.findLastIndex((e) => e.type === 'assign' || e.type === 'assign_intent');
  let i = 0;
  while (i < effects.length) {
    const stored = evaluation.set.byId.get(effects[i]!.rule_id)!;
    const actor = ruleActor(stored);
    let since = working;
    const flush = () => {
      for (const event of changeEvents(since, working))
        plan.events.push({ ...event, actor, ticket: working });
      since = working;
    };
    for (; i < effects.length && effects[i]!.rule_id === stored.rule.id; i++) {
      const effect = effects[i]!;
      const record = { ...effect, rule_version: stored.version };
      if (effect.type === 'add_note') {
        flush();
        const id = randomUUID();
        plan.notes.push({
          id,
          kind: 'note',
          channel: ticket.channel,
          author_agent_id: null,
          author_contact_id: null,
          body: effect.body,
          department_id: working.department_id,
          // Just after the change's own message (written at the transaction's time), so the
          // conversation lists notes after what caused them, and in order.
          after_ms: plan.notes.length + 1,
        });
        plan.events.push({
          type: 'message_added',
          data: { message_id: id, kind: 'note' },
          actor,
          ticket: working,
        });
        plan.applied.push({ ...record, message_id: id });
        continue;
      }
      if (effect.type === 'assign_intent' && i < decisive) {
        plan.applied.push({ ...record, agent_id: null, superseded: true });
        continue;
      }
      if (effect.type === 'transfer') plan.transfers.push({ stored, effect });
      const { change, agentId, reason } = await changeOf(
        trx,
        working,
        effect,
        stored,
        new Date(evaluation.input.occurred_at),
      );
      Object.assign(plan.patch, change);
      working = { ...working, ...change };
      plan.applied.push(
        agentId === undefined
          ? record
          : { ...record, agent_id: agentId, ...(reason !== undefined && { reason }) },
      );
    }
    flush();
  }
  plan.run = runRecord(ticket.id, evaluation, plan.applied);
  return plan;
}

/**
 * The rule's own failure behind a failed write of its plan, or null. Transfers rely on the
 * foreign key, not on a look-up of their own: a department deleted since the rule was written
 * fails the write, and it is the rule that failed, not the request.
 */
export function ruleFailure(plan: RulePlan, error: unknown): DomainError | null {
  const last = plan.transfers.at(-1);
  if (last && (error as { constraint?: string }).constraint === 'tickets_department_id_fkey') {
    return actionFailed(last.stored, last.effect, 'the department no longer exists');
  }
  return null;
}

/**
 * The plan of the rules for a ticket about to be created, checked as the opening statement needs:
 * that statement sees only the final department, so both ends of a transfer are checked here.
 */
export async function planOpening(trx: Trx, ticket: TicketFields, evaluation: Evaluation): Promise<RulePlan> {
  const plan = await planRules(trx, ticket, evaluation);
  if (plan.transfers.length > 0) {
    const wanted = [ticket.department_id, plan.patch.department_id].filter(
      (d): d is string => typeof d === 'string',
    );
    const held = await repo.holdDepartments(trx, wanted);
    if (ticket.department_id !== null && !held.has(ticket.department_id)) {
      throw unprocessable('department_not_found', 'The department does not exist.', [
        { field: 'body/department_id', message: 'no such department' },
      ]);
    }
    const last = plan.transfers.at(-1)!;
    if (plan.patch.department_id && !held.has(plan.patch.department_id)) {
      throw actionFailed(last.stored, last.effect, 'the department no longer exists');
    }
  }
  return plan;
}
