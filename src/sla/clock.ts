// The SLA clock: which policy applies to a ticket, its targets' dues, pauses, warnings and
// breaches. Pure: the caller passes the ticket before/after a write, the policies, the calendars
// and `now`, and persists what comes back. See docs/sla.md, "The SLA clock".

import type { BusinessCalendar } from '../business-time/index.ts';
import { compileSelection, firstMatch, type TicketSnapshot } from '../rule-engine/index.ts';
import {
  type CompiledPolicies,
  SLA_KINDS,
  type SlaChange,
  type SlaContext,
  type SlaEvent,
  type SlaEventType,
  type SlaKind,
  type SlaPlan,
  type SlaPolicy,
  type SlaReason,
  type SlaState,
  type SlaSummary,
  type SlaTarget,
  type SlaTargetState,
} from './types.ts';

const MINUTE = 60_000;

/** The state of a ticket no plan has seen yet. */
export function initialSlaState(): SlaState {
  return {
    policy_id: null,
    policy_version: null,
    pause_when_answered: false,
    on_transfer: null,
    kept: false,
    calendar_department_id: null,
    targets: [],
    cycles: { first_answer: 0, next_answer: 0, first_assignment: 0, resolution: 0 },
    first_answered_at: null,
    first_assigned_at: null,
    waiting_since: null,
    breached: false,
  };
}

/** Compiles a policy list once for selectPolicy and planSla; cache it per list version. */
export function compilePolicies(policies: readonly SlaPolicy[]): CompiledPolicies {
  const byId = new Map(policies.map((policy) => [policy.id, policy]));
  const selection = compileSelection(policies);
  return Object.freeze({
    byId,
    select: (ticket: TicketSnapshot) => {
      const id = firstMatch(selection, ticket);
      return id === null ? null : (byId.get(id) ?? null);
    },
  });
}

const compiledLists = new WeakMap<readonly SlaPolicy[], CompiledPolicies>();

function compiledOf(policies: readonly SlaPolicy[] | CompiledPolicies): CompiledPolicies {
  if (!Array.isArray(policies)) return policies as CompiledPolicies;
  const list = policies as readonly SlaPolicy[];
  let compiled = compiledLists.get(list);
  if (compiled === undefined) {
    compiled = compilePolicies(list);
    compiledLists.set(list, compiled);
  }
  return compiled;
}

/** The first active policy, by position then id, whose conditions hold for the ticket; null when none. */
export function selectPolicy(
  policies: readonly SlaPolicy[] | CompiledPolicies,
  ticket: TicketSnapshot,
): SlaPolicy | null {
  return compiledOf(policies).select(ticket);
}

const isLive = (status: TicketSnapshot['status']) =>
  status !== 'resolved' && status !== 'spam' && status !== 'deleted';
const isRunning = (target: SlaTargetState) => target.status === 'active' || target.status === 'paused';
/** Still waiting for its fulfilment: running, or breached and not yet met. */
const isOpen = (target: SlaTargetState) =>
  isRunning(target) || (target.status === 'breached' && target.fulfilled_at === null);

class Clock {
  readonly state: SlaState;
  readonly events: SlaEvent[] = [];
  readonly now: number;
  readonly calendarOf: (department_id: string | null) => BusinessCalendar;

  constructor(state: SlaState, now: number, calendarOf: (department_id: string | null) => BusinessCalendar) {
    this.state = structuredClone(state);
    this.now = now;
    this.calendarOf = calendarOf;
  }

  calendar(): BusinessCalendar {
    return this.calendarOf(this.state.calendar_department_id);
  }

  emit(
    type: SlaEventType,
    target: SlaTargetState | null,
    reason: SlaReason | null,
    at = this.now,
    late: boolean | null = null,
  ): void {
    this.events.push({
      type,
      at,
      policy_id: this.state.policy_id,
      policy_version: this.state.policy_version,
      kind: target?.kind ?? null,
      cycle: target?.cycle ?? null,
      due_at: target?.due_at ?? null,
      reason,
      late,
    });
  }

  /** Moves the running stretch so far into the elapsed totals, measured in the calendar in force. */
  checkpoint(target: SlaTargetState, calendar: BusinessCalendar): void {
    const since = target.running_since;
    if (since === null || this.now <= since) return;
    target.elapsed_ms += this.now - since;
    target.elapsed_business += calendar.businessMinutesBetween(since, this.now);
    target.running_since = this.now;
  }

  /** Due and warning of an active target from what is left of it; a target with nothing left is due now. */
  schedule(target: SlaTargetState): void {
    const since = target.running_since;
    if (since === null) return;
    const calendar = this.calendar();
    const consumed = target.business ? target.elapsed_business : target.elapsed_ms / MINUTE;
    const reach = (minutes: number): number | null => {
      if (minutes <= 0) return since;
      if (!target.business) return since + Math.ceil(minutes * MINUTE);
      const reached = calendar.addBusinessMinutes(since, minutes);
      return reached === null ? null : Math.ceil(reached);
    };
    const left = target.minutes - consumed;
    target.due_at = reach(left);
    const warn = target.warn_before_minutes;
    target.warn_at =
      target.warned_at !== null || warn === null || target.minutes <= warn || target.due_at === null
        ? null
        : reach(left - warn);
  }

  /** Warnings and breaches due at `now`; a warning whose due has also passed is not sent (see docs). */
  fire(): void {
    const fired: { at: number; run: () => void }[] = [];
    for (const target of this.state.targets) {
      if (target.status !== 'active' || target.due_at === null) continue;
      const due = target.due_at;
      if (this.now >= due) {
        fired.push({
          at: due,
          run: () => {
            target.status = 'breached';
            target.breached_at = due;
            target.running_since = null;
            target.warn_at = null;
            this.state.breached = true;
            this.emit('sla.breached', target, null, due);
          },
        });
      } else if (target.warn_at !== null && this.now >= target.warn_at) {
        const warnAt = target.warn_at;
        fired.push({
          at: warnAt,
          run: () => {
            target.warned_at = warnAt;
            target.warn_at = null;
            this.emit('sla.warning', target, null, warnAt);
          },
        });
      }
    }
    fired.sort((a, b) => a.at - b.at);
    for (const f of fired) f.run();
  }

  fulfil(kind: SlaKind, reason: SlaReason): void {
    for (const target of this.state.targets) {
      if (target.kind !== kind || !isOpen(target)) continue;
      this.checkpoint(target, this.calendar());
      const late = target.status === 'breached';
      if (!late) target.status = 'fulfilled';
      target.fulfilled_at = this.now;
      target.running_since = null;
      target.warn_at = null;
      target.paused_at = null;
      this.emit('sla.fulfilled', target, reason, this.now, late);
    }
  }

  /** Drops targets from the state: running ones always, breached-and-unmet ones too when `alsoBreached`. */
  remove(reason: SlaReason, alsoBreached: boolean, kind: SlaKind | null = null): void {
    this.state.targets = this.state.targets.filter((target) => {
      if (kind !== null && target.kind !== kind) return true;
      if (!(isRunning(target) || (alsoBreached && isOpen(target)))) return true;
      this.emit('sla.removed', target, reason);
      return false;
    });
  }

  shouldPause(ticket: TicketSnapshot): boolean {
    return ticket.status === 'postponed' || (ticket.status === 'answered' && this.state.pause_when_answered);
  }

  adopt(policy: SlaPolicy): void {
    this.state.policy_id = policy.id;
    this.state.policy_version = policy.version;
    this.state.pause_when_answered = policy.pause_when_answered;
    this.state.on_transfer = policy.on_transfer;
  }

  /** Gives running targets the policy's definitions for the priority, keeping their elapsed time. */
  retarget(policy: SlaPolicy, ticket: TicketSnapshot, calendarMoved: boolean, reason: SlaReason): void {
    const defs = policy.targets[ticket.priority] ?? {};
    for (const target of [...this.state.targets]) {
      if (!isRunning(target)) continue;
      const def: SlaTarget | undefined = defs[target.kind];
      if (def === undefined) {
        this.remove(reason, false, target.kind);
        continue;
      }
      const changed =
        def.minutes !== target.minutes ||
        def.business !== target.business ||
        policy.warn_before_minutes !== target.warn_before_minutes;
      if (!changed && !(calendarMoved && target.business)) continue;
      const due = target.due_at;
      target.minutes = def.minutes;
      target.business = def.business;
      target.warn_before_minutes = policy.warn_before_minutes;
      if (target.status === 'active') this.schedule(target);
      if (changed || target.due_at !== due) this.emit('sla.target_changed', target, reason);
    }
  }

  wanted(kind: SlaKind, ticket: TicketSnapshot): boolean {
    if (!isLive(ticket.status)) return false;
    const s = this.state;
    switch (kind) {
      case 'first_answer':
        return s.first_answered_at === null;
      case 'first_assignment':
        return s.first_assigned_at === null && ticket.assignee_id === null;
      case 'next_answer':
        return s.first_answered_at !== null && s.waiting_since !== null;
      case 'resolution':
        return true;
    }
  }

  /** Starts a new cycle of every kind the ticket now waits for and the policy has a target for. */
  start(policy: SlaPolicy, ticket: TicketSnapshot, reasonOf: (kind: SlaKind) => SlaReason): void {
    const defs = policy.targets[ticket.priority] ?? {};
    const paused = this.shouldPause(ticket);
    for (const kind of SLA_KINDS) {
      const def = defs[kind];
      if (def === undefined || !this.wanted(kind, ticket)) continue;
      if (this.state.targets.some((target) => target.kind === kind && isOpen(target))) continue;
      this.state.targets = this.state.targets.filter((target) => target.kind !== kind);
      const cycle = ++this.state.cycles[kind];
      const target: SlaTargetState = {
        kind,
        cycle,
        minutes: def.minutes,
        business: def.business,
        warn_before_minutes: policy.warn_before_minutes,
        status: paused ? 'paused' : 'active',
        started_at: this.now,
        running_since: paused ? null : this.now,
        elapsed_ms: 0,
        elapsed_business: 0,
        due_at: null,
        warn_at: null,
        warned_at: null,
        paused_at: paused ? this.now : null,
        breached_at: null,
        fulfilled_at: null,
      };
      this.schedule(target);
      this.state.targets.push(target);
      this.emit('sla.started', target, reasonOf(kind));
    }
  }

  /**
   * Computes the dues of the running business-time targets again in the calendar in force, from
   * the start of their running stretch with what was left then (the stretch measured in that
   * calendar too). Nothing is checkpointed: a due the new calendar puts before `now` stays where
   * it falls, and fires there; with the same calendar every due comes out as it was.
   */
  recalendar(reason: SlaReason): void {
    for (const target of this.state.targets) {
      if (target.status !== 'active' || !target.business) continue;
      const due = target.due_at;
      this.schedule(target);
      if (target.due_at !== due) this.emit('sla.target_changed', target, reason);
    }
  }

  pauseOrResume(ticket: TicketSnapshot): void {
    const pause = this.shouldPause(ticket);
    for (const target of this.state.targets) {
      if (pause && target.status === 'active') {
        this.checkpoint(target, this.calendar());
        target.status = 'paused';
        target.running_since = null;
        target.paused_at = this.now;
        target.due_at = null;
        target.warn_at = null;
        this.emit('sla.paused', target, null);
      } else if (!pause && target.status === 'paused') {
        target.status = 'active';
        target.running_since = this.now;
        target.paused_at = null;
        this.schedule(target);
        this.emit('sla.resumed', target, null);
      }
    }
  }

  plan(): SlaPlan {
    return {
      state: this.state,
      events: this.events,
      next_at: nextAt(this.state),
      summary: summaryOf(this.state),
    };
  }
}

function nextAt(state: SlaState): number | null {
  let next: number | null = null;
  for (const target of state.targets) {
    if (target.status !== 'active') continue;
    for (const at of [target.warn_at, target.due_at]) {
      if (at !== null && (next === null || at < next)) next = at;
    }
  }
  return next;
}

/** The ticket's SLA columns for a state. */
export function summaryOf(state: SlaState): SlaSummary {
  let due: number | null = null;
  for (const target of state.targets) {
    if (target.status === 'active' && target.due_at !== null && (due === null || target.due_at < due)) {
      due = target.due_at;
    }
  }
  return { sla_policy_id: state.policy_id, sla_due_at: due, sla_breached: state.breached };
}

/**
 * The warnings and breaches due at `now`. Idempotent: a second call at the same or an earlier
 * instant fires nothing. Paused, fulfilled and breached targets never fire; a warning whose due
 * has passed too is dropped for the breach alone. Dues are computed when targets are planned,
 * so no calendar is needed here.
 */
export function fireDue(state: SlaState, now: number): SlaPlan {
  const clock = new Clock(state, now, () => {
    throw new Error('fireDue reads no calendar');
  });
  clock.fire();
  return clock.plan();
}

/**
 * Applies one write to a ticket's SLA state: first the warnings and breaches already due (a reply
 * at the due instant is late), then replies, assignment and status (fulfilments), then policy
 * selection (transfers follow the applied policy's on_transfer), new cycles, pauses and resumes,
 * and finally whatever the change made due at once. Returns the state to persist, the events to
 * record in order, when the timer job must run next, and the ticket's summary columns.
 */
export function planSla(state: SlaState, change: SlaChange, ctx: SlaContext): SlaPlan {
  const { before, after } = change;
  const now = ctx.now;
  const compiled = compiledOf(ctx.policies);
  const clock = new Clock(state, now, ctx.calendarOf);
  const s = clock.state;
  const created = before === null;
  if (created) s.calendar_department_id = after.department_id;

  // The calendar in force was edited since the last plan (a holiday declared, hours moved, the
  // department given another schedule): running business targets get their dues from the
  // calendar as it now stands before anything fires, so a due the edit moved away does not
  // breach. A state planned before versions were kept is recomputed too (same calendar, same due).
  const keyOf = ctx.calendarKeyOf;
  if (keyOf !== undefined && !created) {
    const key = keyOf(s.calendar_department_id);
    if (key !== s.calendar_key) clock.recalendar('schedule');
    s.calendar_key = key;
  }

  clock.fire();

  // Facts and fulfilments, under the policy that was in force when they happened.
  if (change.agent_replied) {
    clock.fulfil('first_answer', 'agent_replied');
    clock.fulfil('next_answer', 'agent_replied');
    s.first_answered_at ??= now;
    s.waiting_since = null;
  }
  if (change.customer_replied && !created && s.first_answered_at !== null && s.waiting_since === null) {
    s.waiting_since = now;
  }
  if (after.assignee_id !== null && (before?.assignee_id ?? null) !== after.assignee_id) {
    clock.fulfil('first_assignment', 'assigned');
    s.first_assigned_at ??= now;
  }
  const wasLive = before === null || isLive(before.status);
  if (after.status === 'resolved' && (before === null || before.status !== 'resolved')) {
    clock.fulfil('resolution', 'resolved');
    clock.remove('resolved', false);
    s.waiting_since = null;
  } else if (!isLive(after.status) && wasLive) {
    clock.remove('closed', false);
    s.waiting_since = null;
  }
  const reopened = !wasLive && isLive(after.status);

  // Which policy, and what happens to the running targets.
  const transferred = !created && before.department_id !== after.department_id;
  const current = s.policy_id === null ? null : (compiled.byId.get(s.policy_id) ?? null);
  let policy: SlaPolicy | null;
  let mode: 'restart' | 'continue';
  let appliedReason: SlaReason = created ? 'created' : transferred ? 'transferred' : 'changed';
  if (s.policy_id !== null && (s.kept || (transferred && s.on_transfer === 'keep'))) {
    s.kept = true;
    policy = current;
    mode = 'continue';
    if (policy !== null && policy.version !== s.policy_version) appliedReason = 'edited';
  } else {
    policy = compiled.select(after);
    mode = transferred && s.policy_id !== null && s.on_transfer === 'restart' ? 'restart' : 'continue';
    if (policy !== null && policy.id === s.policy_id && policy.version !== s.policy_version) {
      appliedReason = 'edited';
    }
  }
  const calendarTo = s.kept ? s.calendar_department_id : after.department_id;

  if (s.kept && policy === null) {
    // The kept policy was deleted: its targets run on as they were set.
  } else if (policy === null) {
    if (s.policy_id !== null) {
      clock.remove('no_policy', true);
      clock.emit('sla.removed', null, transferred ? 'transferred' : 'no_policy');
      s.policy_id = null;
      s.policy_version = null;
      s.on_transfer = null;
      s.pause_when_answered = false;
    }
    s.calendar_department_id = calendarTo;
  } else if (mode === 'restart') {
    clock.remove('transferred', true);
    s.calendar_department_id = calendarTo;
    clock.adopt(policy);
    clock.emit('sla.applied', null, 'transferred');
  } else {
    const calendarMoved = calendarTo !== s.calendar_department_id;
    const previousCalendar = clock.calendar();
    for (const target of s.targets) clock.checkpoint(target, previousCalendar);
    s.calendar_department_id = calendarTo;
    const fresh = policy.id !== s.policy_id || policy.version !== s.policy_version;
    if (fresh) {
      clock.adopt(policy);
      clock.emit('sla.applied', null, appliedReason);
    }
    const priorityChanged = before !== null && before.priority !== after.priority;
    if (fresh || priorityChanged || calendarMoved) {
      clock.retarget(
        policy,
        after,
        calendarMoved,
        fresh ? appliedReason : priorityChanged ? 'priority' : 'transferred',
      );
    }
  }

  if (policy !== null) {
    clock.start(policy, after, (kind) =>
      created
        ? 'created'
        : kind === 'next_answer' && change.customer_replied
          ? 'customer_replied'
          : reopened
            ? 'reopened'
            : transferred
              ? 'transferred'
              : 'changed',
    );
  }
  clock.pauseOrResume(after);
  if (keyOf !== undefined) s.calendar_key = keyOf(s.calendar_department_id);
  clock.fire();
  return clock.plan();
}
