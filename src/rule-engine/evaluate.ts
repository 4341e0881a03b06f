import { STATUS } from './codegen.ts';
import {
  type CompiledCondition,
  type CompiledRule,
  type CompiledRules,
  candidatesOf,
  candidateWords,
  type EvalContext,
  type Scratch,
  triggerBit,
} from './compile.ts';
import { canonicalTag, fittingTags, LIMITS, tagBytes } from './text.ts';
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
import { DOMAIN_COUNT, EMPTY } from './values.ts';

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

/** `list` followed by `more`, as a new array (concat is generic and slow on this path). */
function appended(list: readonly string[], more: readonly string[]): string[] {
  const out = list.slice();
  for (let i = 0; i < more.length; i++) out.push(more[i]!);
  return out;
}

type Outcome = { outcome: 'applied' | 'unchanged' | 'skipped'; reason: string | null };
const APPLIED: Outcome = { outcome: 'applied', reason: null };
const UNCHANGED: Outcome = { outcome: 'unchanged', reason: null };
const LEFT_DEPARTMENT: Outcome = { outcome: 'skipped', reason: "the ticket left the rule's department" };
const skipped = (reason: string): Outcome => ({ outcome: 'skipped', reason });
const TAG_BYTES_REASON = `a ticket's tags take at most ${LIMITS.maxTicketTagBytes} bytes together`;

function setTags(ctx: EvalContext, list: string[], known: string[]): void {
  keepDomains(ctx, { ...ctx.t, tags: list });
  ctx.tagState = { raw: list, list, known };
}

/** Replaces the snapshot by one with the same channel, status, priority and working hours. */
function keepDomains(ctx: EvalContext, next: TicketSnapshot): void {
  if (ctx.domainsOf === ctx.t) ctx.domainsOf = next;
  ctx.t = next;
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
      keepDomains(ctx, {
        ...t,
        department_id: action.department_id,
        // Whether the assignee may stay depends on memberships the engine cannot see.
        pending_assignment: assigned
          ? { strategy: 'keep_if_member', department_id: action.department_id }
          : (t.pending_assignment ?? null),
      });
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
        // Only what the action says travels, so an action without options plans as it always did.
        const filter = {
          ...(action.available_only === true && { available_only: true }),
          ...(action.level !== undefined && { level: action.level }),
        };
        const pending = t.pending_assignment;
        if (
          pending &&
          pending.strategy === action.to &&
          pending.department_id === department &&
          pending.available_only === filter.available_only &&
          pending.level === filter.level
        )
          return UNCHANGED;
        keepDomains(ctx, {
          ...t,
          pending_assignment: { strategy: action.to, department_id: department, ...filter },
        });
        effects.push({
          rule_id,
          action_index,
          type: 'assign_intent',
          strategy: action.to,
          department_id: department,
          ...filter,
        });
        return APPLIED;
      }
      const agent = action.to === 'agent' ? action.agent_id : null;
      if (t.assignee_id === agent && !t.pending_assignment) return UNCHANGED;
      keepDomains(ctx, { ...t, assignee_id: agent, pending_assignment: null });
      effects.push({ rule_id, action_index, type: 'assign', agent_id: agent });
      return APPLIED;
    }
    case 'add_tags': {
      const { list, known } = tagState(ctx);
      const missing: string[] = [];
      for (const tag of action.tags) if (!known.includes(tag)) missing.push(tag);
      if (missing.length === 0) return UNCHANGED;
      const room = Math.max(0, LIMITS.maxTicketTags - list.length);
      if (room === 0) return skipped(`tickets carry at most ${LIMITS.maxTicketTags} tags`);
      // The first missing tags that fit both budgets: the count, and the bytes together.
      let bytes = tagBytes(list);
      const added: string[] = [];
      for (const tag of missing) {
        if (added.length === room) break;
        bytes += Buffer.byteLength(tag);
        if (bytes > LIMITS.maxTicketTagBytes) break;
        added.push(tag);
      }
      const leftOut = missing.length - added.length;
      const why = added.length === room ? `tickets carry at most ${LIMITS.maxTicketTags}` : TAG_BYTES_REASON;
      if (added.length === 0) return skipped(why);
      const next = appended(list, added);
      setTags(ctx, next, appended(known, added));
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added, removed: [] });
      return leftOut > 0 ? { outcome: 'applied', reason: `${leftOut} tag(s) left out: ${why}` } : APPLIED;
    }
    case 'remove_tags': {
      const { list, known } = tagState(ctx);
      const unwanted = action.tags;
      if (!known.some((tag) => unwanted.includes(tag))) return UNCHANGED;
      const next: string[] = [];
      const kept: string[] = [];
      for (let i = 0; i < known.length; i++) {
        const tag = known[i]!;
        if (!unwanted.includes(tag)) {
          next.push(list[i]!);
          kept.push(tag);
        }
      }
      const removed = [...new Set(known.filter((tag) => unwanted.includes(tag)))];
      setTags(ctx, next, kept);
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added: [], removed });
      return APPLIED;
    }
    case 'replace_tags': {
      const { known } = tagState(ctx);
      const next = fittingTags(action.tags);
      const added = next.filter((tag) => !known.includes(tag));
      const removed = [...new Set(known.filter((tag) => !next.includes(tag)))];
      if (added.length === 0 && removed.length === 0 && known.length === next.length) return UNCHANGED;
      setTags(ctx, next, next);
      effects.push({ rule_id, action_index, type: 'set_tags', tags: next.slice(), added, removed });
      const leftOut = action.tags.length - next.length;
      return leftOut > 0
        ? {
            outcome: 'applied',
            reason: `${leftOut} tag(s) left out: ${TAG_BYTES_REASON}`,
          }
        : APPLIED;
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
  scratch: Scratch,
): Traced {
  const all = compiled.rules;
  const candidates = candidatesOf(ctx, compiled, scratch.candidates);
  const matches: RuleTrace[] = [];
  let stoppedBy: string | null = null;
  if (!everyRule) {
    // Only candidates can match, and nothing is reported about the others: visit just those.
    const chunks = compiled.chunks;
    const chunkOf = compiled.chunkOf;
    const words = candidateWords(all.length);
    scan: for (let w = 0; w < words; w++) {
      let bits = candidates[w]!;
      while (bits !== 0) {
        const low = bits & -bits;
        bits ^= low;
        const i = (w << 5) + 31 - Math.clz32(low);
        const rule = all[i]!;
        if (rule.departmentId !== null && ctx.t.department_id !== rule.departmentId) continue;
        const chunk = chunks[chunkOf[i]!]!;
        if (!chunk.one(ctx, i - chunk.start)) continue;
        matches.push(act(ctx, rule, effects));
        if (rule.stopProcessing) {
          stoppedBy = rule.id;
          break scan;
        }
      }
    }
    return { rules: matches, stoppedBy };
  }
  let status = scratch.status;
  if (status === null) {
    status = new Uint8Array(all.length);
    scratch.status = status;
  } else status.fill(0);
  let next = 0;
  while (next < all.length) {
    const chunk = compiled.chunks[compiled.chunkOf[next]!]!;
    const hit = chunk.run(ctx, next - chunk.start, status, candidates);
    if (hit < 0) {
      next = chunk.end;
      continue;
    }
    const rule = all[hit]!;
    matches.push(act(ctx, rule, effects));
    if (rule.stopProcessing) {
      stoppedBy = rule.id;
      break;
    }
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

/** Runs a matched rule's actions and returns its trace entry. */
function act(ctx: EvalContext, rule: CompiledRule, effects: Effect[]): RuleTrace {
  const actions: ActionTrace[] = [];
  runActions(ctx, rule, effects, actions);
  return ruleTrace(rule, null, true, null, actions);
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
  const scratch = takeScratch(compiled);
  const ctx: EvalContext = {
    t: ticket,
    input: ticket,
    event,
    bit: triggerBit(event.type),
    stable: scratch.stable,
    patternHits: scratch.patternHits,
    memo: scratch.memo,
    tagsRaw: undefined,
    tagsComparable: EMPTY,
    tagState: null,
    domains: scratch.domains,
    domainsOf: null,
  };
  const effects: Effect[] = [];
  const traced =
    options.trace === 'rules' || options.trace === 'matches'
      ? runCompiled(ctx, compiled, effects, options.trace === 'rules', scratch)
      : runTraced(ctx, compiled, effects);
  compiled.scratch.spare = scratch;
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

/**
 * The compiled set's spare buffers, cleared, or new ones. A call takes the spare out before using
 * it and puts its own back when done, so a call that throws, or one made while another is running
 * (nothing does that today), simply allocates; what an earlier call left never shows in a result.
 */
function takeScratch(compiled: CompiledRules): Scratch {
  const spare = compiled.scratch.spare;
  if (spare === null) {
    return {
      memo: new Int8Array(compiled.memoSize),
      candidates: new Int32Array(candidateWords(compiled.rules.length)),
      status: null,
      stable: new Array(compiled.slotCount),
      patternHits: new Array(compiled.slotCount),
      domains: new Int32Array(DOMAIN_COUNT),
    };
  }
  compiled.scratch.spare = null;
  spare.memo.fill(0);
  spare.stable.fill(undefined);
  spare.patternHits.fill(undefined);
  return spare;
}
