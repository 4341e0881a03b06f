import { STATUS } from './codegen.ts';
import {
  type CompiledCondition,
  type CompiledRule,
  type CompiledRules,
  candidatesOf,
  type EvalContext,
  triggerBit,
} from './compile.ts';
import { canonicalTag, LIMITS } from './text.ts';
import type {
  Action,
  ActionTrace,
  ConditionTrace,
  Effect,
  EvaluationResult,
  RuleEvent,
  RuleTrace,
  SkipReason,
  TicketSnapshot,
} from './types.ts';
import { EMPTY } from './values.ts';

export interface EvaluateOptions {
  /**
   * How much the trace says. 'conditions' (default): every rule, and for each considered rule
   * its evaluated condition nodes with the values they saw (what a rule simulation shows).
   * 'rules': every rule with considered / skipped / matched and its actions, no condition nodes.
   * 'matches': only the rules that matched, with their actions (the hot path, which stores which
   * rules acted). Effects and the final snapshot are the same at every level.
   */
  trace?: 'conditions' | 'rules' | 'matches';
}

const SKIPPED_BY_STATUS: readonly (SkipReason | null)[] = [
  'stopped',
  'inactive',
  'trigger',
  'department',
  null,
  null,
];

function traceCondition(node: CompiledCondition, ctx: EvalContext, out: ConditionTrace[]): boolean {
  const entry: ConditionTrace = { pointer: node.pointer, result: false };
  out.push(entry);
  switch (node.kind) {
    case 'leaf':
      entry.result = node.test(ctx);
      entry.value = node.observe(ctx);
      break;
    case 'not':
      entry.result = !traceCondition(node.child, ctx, out);
      break;
    case 'all':
      entry.result = true;
      for (const child of node.children) {
        if (!traceCondition(child, ctx, out)) {
          entry.result = false;
          break;
        }
      }
      break;
    case 'any':
      for (const child of node.children) {
        if (traceCondition(child, ctx, out)) {
          entry.result = true;
          break;
        }
      }
      break;
  }
  return entry.result;
}

/** The snapshot's tags (strings only) with their canonical forms, computed once per tag list. */
function tagState(ctx: EvalContext): { list: string[]; known: string[] } {
  const raw = ctx.t.tags;
  if (ctx.tagState === null || ctx.tagState.raw !== raw) {
    const list = Array.isArray(raw) ? raw.filter((tag): tag is string => typeof tag === 'string') : [];
    ctx.tagState = { raw, list, known: list.map(canonicalTag) };
  }
  return ctx.tagState;
}

type Outcome = { outcome: 'applied' | 'unchanged' | 'skipped'; reason: string | null };
const APPLIED: Outcome = { outcome: 'applied', reason: null };
const UNCHANGED: Outcome = { outcome: 'unchanged', reason: null };
const LEFT_DEPARTMENT: Outcome = { outcome: 'skipped', reason: "the ticket left the rule's department" };
const skipped = (reason: string): Outcome => ({ outcome: 'skipped', reason });

function setTags(ctx: EvalContext, list: string[], known: string[]): void {
  ctx.t = { ...ctx.t, tags: list };
  ctx.tagState = { raw: list, list, known };
}

/** Applies one action to the context's snapshot, appending the effects it has. */
function applyAction(
  ctx: EvalContext,
  action: Action,
  rule: CompiledRule,
  index: number,
  effects: Effect[],
): Outcome {
  const t = ctx.t;
  const rule_id = rule.id;
  const action_index = index;
  switch (action.type) {
    case 'transfer': {
      if (t.department_id === action.department_id) return UNCHANGED;
      const assigned = t.assignee_id !== null || Boolean(t.pending_assignment);
      ctx.t = {
        ...t,
        department_id: action.department_id,
        // Whether the assignee may stay depends on memberships the engine cannot see.
        pending_assignment: assigned
          ? { strategy: 'keep_if_member', department_id: action.department_id }
          : (t.pending_assignment ?? null),
      };
      effects.push({
        rule_id,
        action_index,
        type: 'transfer',
        department_id: action.department_id,
        from_department_id: t.department_id,
      });
      return APPLIED;
    }
    case 'assign': {
      if (action.to === 'round_robin' || action.to === 'least_busy') {
        const department = t.department_id;
        if (department === null) return skipped('the ticket has no department');
        const pending = t.pending_assignment;
        if (pending && pending.strategy === action.to && pending.department_id === department)
          return UNCHANGED;
        ctx.t = { ...t, pending_assignment: { strategy: action.to, department_id: department } };
        effects.push({
          rule_id,
          action_index,
          type: 'assign_intent',
          strategy: action.to,
          department_id: department,
        });
        return APPLIED;
      }
      const agent = action.to === 'agent' ? action.agent_id : null;
      if (t.assignee_id === agent && !t.pending_assignment) return UNCHANGED;
      ctx.t = { ...t, assignee_id: agent, pending_assignment: null };
      effects.push({ rule_id, action_index, type: 'assign', agent_id: agent });
      return APPLIED;
    }
    case 'add_tags': {
      const { list, known } = tagState(ctx);
      if (action.tags.every((tag) => known.includes(tag))) return UNCHANGED;
      const missing = action.tags.filter((tag) => !known.includes(tag));
      const room = Math.max(0, LIMITS.maxTicketTags - list.length);
      if (room === 0) return skipped(`tickets carry at most ${LIMITS.maxTicketTags} tags`);
      const added = missing.length > room ? missing.slice(0, room) : missing;
      const next = list.concat(added);
      setTags(ctx, next, known.concat(added));
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added, removed: [] });
      return missing.length > room
        ? {
            outcome: 'applied',
            reason: `${missing.length - room} tag(s) left out: tickets carry at most ${LIMITS.maxTicketTags}`,
          }
        : APPLIED;
    }
    case 'remove_tags': {
      const { list, known } = tagState(ctx);
      if (!known.some((tag) => action.tags.includes(tag))) return UNCHANGED;
      const next: string[] = [];
      const kept: string[] = [];
      known.forEach((tag, i) => {
        if (!action.tags.includes(tag)) {
          next.push(list[i]!);
          kept.push(tag);
        }
      });
      const removed = [...new Set(known.filter((tag) => action.tags.includes(tag)))];
      setTags(ctx, next, kept);
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added: [], removed });
      return APPLIED;
    }
    case 'replace_tags': {
      const { known } = tagState(ctx);
      const next = action.tags.slice();
      const added = next.filter((tag) => !known.includes(tag));
      const removed = [...new Set(known.filter((tag) => !next.includes(tag)))];
      if (added.length === 0 && removed.length === 0 && known.length === next.length) return UNCHANGED;
      setTags(ctx, next, next);
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added, removed });
      return APPLIED;
    }
    case 'set_priority': {
      if (t.priority === action.priority) return UNCHANGED;
      ctx.t = { ...t, priority: action.priority };
      effects.push({
        rule_id,
        action_index,
        type: 'set_priority',
        priority: action.priority,
        from: t.priority,
      });
      return APPLIED;
    }
    case 'set_status': {
      let until: string | null = null;
      if (action.status === 'postponed') {
        const start = Date.parse(ctx.event.occurred_at);
        if (Number.isNaN(start)) return skipped('event.occurred_at is not a date');
        until = new Date(start + action.postpone_seconds * 1000).toISOString();
      }
      if (t.status === action.status && t.postponed_until === until) return UNCHANGED;
      ctx.t = { ...t, status: action.status, postponed_until: until };
      effects.push({
        rule_id,
        action_index,
        type: 'set_status',
        status: action.status,
        from: t.status,
        postponed_until: until,
      });
      return APPLIED;
    }
    case 'mark_spam': {
      if (t.status === 'spam') return UNCHANGED;
      ctx.t = { ...t, status: 'spam', postponed_until: null };
      effects.push({ rule_id, action_index, type: 'mark_spam', from: t.status });
      return APPLIED;
    }
    case 'add_note':
      effects.push({ rule_id, action_index, type: 'add_note', body: action.body });
      return APPLIED;
  }
}

function runActions(ctx: EvalContext, rule: CompiledRule, effects: Effect[], trace: ActionTrace[]): void {
  const actions = rule.actions;
  for (let index = 0; index < actions.length; index++) {
    const action = actions[index]!;
    const { outcome, reason } =
      rule.departmentId !== null && ctx.t.department_id !== rule.departmentId
        ? LEFT_DEPARTMENT
        : applyAction(ctx, action, rule, index, effects);
    trace.push({ pointer: rule.actionPointers[index]!, type: action.type, outcome, reason });
  }
}

interface Traced {
  rules: RuleTrace[];
  stoppedBy: string | null;
}

/** The explaining pass: walks each considered rule's condition tree, recording every node. */
function runTraced(ctx: EvalContext, compiled: CompiledRules, effects: Effect[]): Traced {
  const rules: RuleTrace[] = [];
  let stoppedBy: string | null = null;
  for (const rule of compiled.rules) {
    let skipped: SkipReason | null = null;
    if (stoppedBy !== null) skipped = 'stopped';
    else if (!rule.active) skipped = 'inactive';
    else if ((rule.triggerMask & ctx.bit) === 0) skipped = 'trigger';
    else if (rule.departmentId !== null && ctx.t.department_id !== rule.departmentId) skipped = 'department';
    let conditions: ConditionTrace[] | null = null;
    let matched = false;
    let actions: ActionTrace[] | null = null;
    if (skipped === null) {
      conditions = [];
      matched = traceCondition(rule.condition, ctx, conditions);
      if (matched) {
        actions = [];
        runActions(ctx, rule, effects, actions);
        if (rule.stopProcessing) stoppedBy = rule.id;
      }
    }
    rules.push(ruleTrace(rule, skipped, matched, conditions, actions));
  }
  return { rules, stoppedBy };
}

/** The fast pass: generated chunks find the next matching rule; only matches build objects. */
function runCompiled(
  ctx: EvalContext,
  compiled: CompiledRules,
  effects: Effect[],
  everyRule: boolean,
): Traced {
  const all = compiled.rules;
  const candidates = candidatesOf(ctx, compiled);
  const matches: RuleTrace[] = [];
  let stoppedBy: string | null = null;
  const act = (rule: CompiledRule): boolean => {
    const actions: ActionTrace[] = [];
    runActions(ctx, rule, effects, actions);
    matches.push(ruleTrace(rule, null, true, null, actions));
    if (rule.stopProcessing) stoppedBy = rule.id;
    return rule.stopProcessing;
  };
  if (!everyRule) {
    // Only candidates can match, and nothing is reported about the others: visit just those.
    for (let i = 0; i < all.length; i++) {
      if (candidates[i] === 0) continue;
      const rule = all[i]!;
      if (rule.departmentId !== null && ctx.t.department_id !== rule.departmentId) continue;
      const chunk = compiled.chunks[compiled.chunkOf[i]!]!;
      if (chunk.one(ctx, i - chunk.start) && act(rule)) break;
    }
    return { rules: matches, stoppedBy };
  }
  const status = new Uint8Array(all.length);
  let next = 0;
  while (next < all.length) {
    const chunk = compiled.chunks[compiled.chunkOf[next]!]!;
    const hit = chunk.run(ctx, next - chunk.start, status, candidates);
    if (hit < 0) {
      next = chunk.end;
      continue;
    }
    if (act(all[hit]!)) break;
    next = hit + 1;
  }
  const rules: RuleTrace[] = [];
  let m = 0;
  for (let i = 0; i < all.length; i++) {
    const code = status[i]!;
    if (code === STATUS.matched) rules.push(matches[m++]!);
    else rules.push(ruleTrace(all[i]!, SKIPPED_BY_STATUS[code]!, false, null, null));
  }
  return { rules, stoppedBy };
}

// Entries are built whole, in one shape, so reading a long trace stays monomorphic.
function ruleTrace(
  rule: CompiledRule,
  skipped: SkipReason | null,
  matched: boolean,
  conditions: ConditionTrace[] | null,
  actions: ActionTrace[] | null,
): RuleTrace {
  return {
    rule_id: rule.id,
    position: rule.position,
    considered: skipped === null,
    skipped,
    matched,
    conditions,
    actions,
  };
}

/**
 * Runs a compiled rule set for one event on one ticket snapshot. Rules run once each, in
 * position order; a rule is considered when it is active, lists the event's trigger and (if
 * department-owned) the ticket is in its department as the snapshot stands at its turn. A
 * matching rule's actions update the snapshot the next rule sees; changes made by rules raise
 * no new events, so no rule runs twice and loops cannot happen. Deterministic and pure: the
 * inputs are not mutated and no clock is read (postponing counts from event.occurred_at).
 */
export function evaluate(
  event: RuleEvent,
  ticket: TicketSnapshot,
  compiled: CompiledRules,
  options: EvaluateOptions = {},
): EvaluationResult {
  const bit = triggerBit(event.type);
  const ctx: EvalContext = {
    t: ticket,
    input: ticket,
    event,
    bit,
    stable: new Array(compiled.slotCount),
    patternHits: new Array(compiled.slotCount),
    signatures: new Array(compiled.slotCount),
    memo: new Int8Array(compiled.memoSize),
    tagsRaw: undefined,
    tagsComparable: EMPTY,
    tagState: null,
    domains: new Int32Array(4),
    domainsOf: null,
  };
  const effects: Effect[] = [];
  const traced =
    options.trace === 'rules' || options.trace === 'matches'
      ? runCompiled(ctx, compiled, effects, options.trace === 'rules')
      : runTraced(ctx, compiled, effects);
  return {
    effects,
    ticket: ctx.t,
    trace: {
      version: compiled.version,
      event: event.type,
      rules: traced.rules,
      stopped_by: traced.stoppedBy,
    },
  };
}
