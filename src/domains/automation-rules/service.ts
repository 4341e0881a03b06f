import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { canManageDepartment, isAdmin, type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import type { AutomationRuleRow, Database } from '../../db/types.ts';
import { type Blocker, DomainError, type FieldError, forbidden, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import {
  type Catalog,
  type Condition,
  type ConditionLeaf,
  CUSTOM_PREFIX,
  type Effect,
  foldText,
  LIMITS,
  PREVIOUS_PREFIX,
  type PreviousValues,
  type Rule,
  type TicketSnapshot,
  type Trigger,
  type ValidationError,
  validateRule,
} from '../../rule-engine/index.ts';
import { roleInDepartment } from '../departments/repository.ts';
import type { Dependents } from '../dependents.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { findTicketRecord } from '../tickets/repository.ts';
import { requireReadable } from '../tickets/service.ts';
import * as repo from './repository.ts';
import {
  currentRuleSet,
  describeTrace,
  evaluateRun,
  outsideWorkingHours,
  pickAgent,
  type RuleSet,
  type RunInput,
  ruleSetOf,
  snapshotOf,
} from './runner.ts';
import {
  type AutomationRule,
  type CreateRuleInput,
  MAX_SIMULATED_NODES,
  type RuleRun,
  type SimulateInput,
  type Simulation,
  type UpdateRuleInput,
} from './schemas.ts';

type Trx = Transaction<Database>;

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

/**
 * Owners and admins write every rule; a department's managers write the rules their department
 * owns (and only give them a department they manage).
 */
async function requireRuleWriter(db: Kysely<Database>, principal: Principal, departmentId: string | null) {
  if (isAdmin(principal)) return;
  if (departmentId === null) {
    throw forbidden('Only owners and admins may write rules that belong to no department.', 'admin_required');
  }
  const role = await roleInDepartment(db, principal.agentId, departmentId);
  if (!canManageDepartment(principal, role)) {
    throw forbidden(
      "Only owners, admins and the department's managers may write the department's rules.",
      'department_manager_required',
    );
  }
}

/** Problems beyond these are counted in the detail, not listed, so the answer stays small. */
const MAX_LISTED_ERRORS = 50;

/**
 * The JSON nesting and the entries per array or object that no valid rule exceeds: conditions
 * nest LIMITS.maxDepth groups of two levels each ({"all": [...]}) above a leaf and its list of
 * values; lists hold at most LIMITS.maxListValues values, groups LIMITS.maxNodes children.
 */
const MAX_JSON_DEPTH = 2 * LIMITS.maxDepth + 4;
const MAX_ENTRIES = Math.max(LIMITS.maxListValues, LIMITS.maxNodes);

const pointerToken = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1');

/** Text PostgreSQL can store: text and jsonb refuse U+0000, and JSON text unpaired surrogates. */
const storable = (text: string) => !text.includes('\u0000') && text.isWellFormed();

type Walk = {
  value: unknown;
  pointer: string;
  depth: number;
  kind: 'node' | 'group' | 'value';
  level: number;
};

/**
 * What must hold before anything walks a rule recursively (validateRule, the no-change
 * comparison, JSON for the database), checked without recursion and stopping at the first
 * excess: at most LIMITS.maxNodes condition nodes nested at most LIMITS.maxDepth deep, no JSON
 * deeper or wider than a valid rule needs, and only text PostgreSQL can store. A 1 MB body of
 * 30,000 leaves or 100,000 levels gets one precise error at once, instead of a stack overflow,
 * seconds of pattern compiling, or 60,000 errors.
 */
function ruleBounds(rule: Record<string, unknown>): { errors: ValidationError[]; nodes: number } {
  const errors: ValidationError[] = [];
  let nodes = 0;
  const stack: Walk[] = Object.keys(rule)
    .reverse()
    .map((key) => ({
      value: rule[key],
      pointer: `/${pointerToken(key)}`,
      depth: 0,
      kind: key === 'conditions' ? 'node' : 'value',
      level: 1,
    }));
  while (stack.length > 0 && errors.length < MAX_LISTED_ERRORS) {
    const { value, pointer, depth, kind, level } = stack.pop()!;
    if (kind === 'node') {
      nodes += 1;
      if (nodes > LIMITS.maxNodes) {
        errors.push({
          pointer: '/conditions',
          message: `must have at most ${LIMITS.maxNodes} condition nodes`,
        });
        break;
      }
      if (level > LIMITS.maxDepth) {
        errors.push({ pointer, message: `nests deeper than ${LIMITS.maxDepth} levels` });
        continue;
      }
    }
    if (typeof value === 'string') {
      if (!storable(value))
        errors.push({ pointer, message: 'must not contain U+0000 or unpaired surrogates' });
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) {
      errors.push({ pointer, message: 'nests too deeply' });
      continue;
    }
    if (Array.isArray(value) && value.length > MAX_ENTRIES) {
      errors.push({ pointer, message: `must have at most ${MAX_ENTRIES} entries` });
      continue;
    }
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((child, i) => [String(i), child])
      : Object.entries(value);
    if (entries.length > MAX_ENTRIES) {
      errors.push({ pointer, message: `must have at most ${MAX_ENTRIES} entries` });
      continue;
    }
    for (const [key, child] of entries.reverse()) {
      let childKind: Walk['kind'] = 'value';
      let childLevel = level;
      if (kind === 'node' && !Array.isArray(value) && (key === 'all' || key === 'any')) childKind = 'group';
      else if ((kind === 'node' && !Array.isArray(value) && key === 'not') || kind === 'group') {
        childKind = 'node';
        childLevel = level + 1;
      }
      stack.push({
        value: child,
        pointer: `${pointer}/${pointerToken(key)}`,
        depth: depth + 1,
        kind: childKind,
        level: childLevel,
      });
    }
  }
  return { errors, nodes };
}

function invalidRule(errors: ValidationError[], at: string) {
  const first = errors[0]!;
  const more = errors.length - 1;
  return unprocessable(
    'invalid_rule',
    `The rule is not valid: ${at}${first.pointer} ${first.message}${more > 0 ? ` (and ${more} more)` : ''}.`,
    errors.slice(0, MAX_LISTED_ERRORS).map((e) => ({ field: `${at}${e.pointer}`, message: e.message })),
  );
}

/** Rejects a rule (or the part of one a request sends) that ruleBounds refuses; its node count. */
function assertBounded(rule: Record<string, unknown>, at = 'body'): number {
  const { errors, nodes } = ruleBounds(rule);
  if (errors.length > 0) throw invalidRule(errors, at);
  return nodes;
}

/** The engine's validation, each problem pointing at its node in the request body. */
function checkRule(rule: Rule, catalog: Catalog, at = 'body') {
  assertBounded(rule as unknown as Record<string, unknown>, at);
  const errors = validateRule(rule, catalog);
  if (errors.length > 0) throw invalidRule(errors, at);
}

/**
 * The departments a rule (or a change to one) names, locked against deletion until commit.
 * Taken before the rules' state row: deleting a department locks its row and then the state
 * row, so taking them the other way round would deadlock with it (the owner's foreign key
 * takes this lock anyway, only too late), and a department deleted meanwhile is then simply
 * missing from the catalog (422).
 */
async function holdNamedDepartments(
  trx: Trx,
  rule: Partial<Pick<Rule, 'department_id' | 'actions' | 'conditions'>>,
) {
  const ids = new Set<string>();
  if (typeof rule.department_id === 'string') ids.add(rule.department_id);
  for (const action of rule.actions ?? []) {
    if (action?.type === 'transfer' && typeof action.department_id === 'string')
      ids.add(action.department_id);
  }
  const visit = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (Array.isArray(n.all)) n.all.forEach(visit);
    else if (Array.isArray(n.any)) n.any.forEach(visit);
    else if ('not' in n) visit(n.not);
    else if (typeof n.field === 'string' && DEPARTMENT_FIELDS.has(n.field)) {
      for (const value of [n.value].flat()) if (typeof value === 'string') ids.add(value);
    }
  };
  if (rule.conditions) visit(rule.conditions);
  const uuids = [...ids].filter((id) => UUID.test(id)).sort();
  await repo.holdDepartments(trx, uuids);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const noteOf = (note: string | null | undefined) =>
  note === undefined || note === null || note.trim() === '' ? null : note;

/** JSON with sorted keys: stored jsonb comes back with its keys in another order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

export async function getRule(db: Db, id: string): Promise<AutomationRule> {
  const row = await repo.findRuleRow(db, id);
  if (!row) throw notFound('automation_rule');
  return repo.toRule(row);
}

export async function createRule(
  db: Db,
  principal: Principal,
  input: CreateRuleInput,
): Promise<AutomationRule> {
  const departmentId = input.department_id ?? null;
  await requireRuleWriter(db, principal, departmentId);
  assertBounded(input);
  const id = randomUUID();
  return db.transaction().execute(async (trx) => {
    await holdNamedDepartments(trx, input as Partial<Rule>);
    const rulesVersion = await repo.bumpRulesVersion(trx);
    const values: repo.RuleValues = {
      name: input.name.trim(),
      note: noteOf(input.note),
      active: input.active ?? true,
      position: input.position ?? (await repo.nextPosition(trx)),
      stop_processing: input.stop_processing ?? false,
      department_id: departmentId,
      triggers: input.triggers,
      idle: input.idle ?? null,
      conditions: input.conditions,
      actions: input.actions,
    };
    checkRule({ id, ...values } as Rule, await repo.loadCatalog(trx));
    const row = await repo.insertRuleRow(trx, id, values, principal.agentId);
    await repo.insertVersions(trx, [row], 'created', principal.agentId, rulesVersion);
    const rule = repo.toRule(row);
    await recordSettingsChange(trx, principal, 'rule.created', { departmentId, subjectId: id }, { rule });
    return rule;
  });
}

export async function updateRule(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: UpdateRuleInput,
): Promise<AutomationRule> {
  assertBounded(patch);
  return db.transaction().execute(async (trx) => {
    await holdNamedDepartments(trx, patch as Partial<Rule>);
    // Rule writes take turns on the state row; the rule set moves to a new version only when
    // something changes, so a change to nothing leaves every compiled cache valid.
    await repo.lockRulesState(trx);
    const row = await repo.lockRuleRow(trx, id);
    if (!row) throw notFound('automation_rule');
    await requireRuleWriter(trx, principal, row.department_id);
    assertIfMatch(preconditions.ifMatch, repo.toRule(row));
    if (patch.department_id !== undefined && patch.department_id !== row.department_id) {
      await requireRuleWriter(trx, principal, patch.department_id);
    }
    const values: repo.RuleValues = {
      name: patch.name?.trim() ?? row.name,
      note: patch.note !== undefined ? noteOf(patch.note) : row.note,
      active: patch.active ?? row.active,
      position: patch.position ?? row.position,
      stop_processing: patch.stop_processing ?? row.stop_processing,
      department_id: patch.department_id !== undefined ? patch.department_id : row.department_id,
      triggers: patch.triggers ?? row.triggers,
      idle: patch.idle !== undefined ? patch.idle : row.idle,
      conditions: patch.conditions ?? row.conditions,
      actions: patch.actions ?? row.actions,
    };
    const rule = { id, ...values } as Rule;
    if (canonical(repo.definitionOf(rule)) === canonical(repo.definitionOf(repo.toEngineRule(row)))) {
      return repo.toRule(row);
    }
    checkRule(rule, await repo.loadCatalog(trx));
    const rulesVersion = await repo.bumpRulesVersion(trx);
    const updated = await repo.updateRuleRow(trx, id, values, row.version + 1, principal.agentId);
    await repo.insertVersions(trx, [updated], 'updated', principal.agentId, rulesVersion);
    const after = repo.toRule(updated);
    await recordSettingsChange(
      trx,
      principal,
      'rule.updated',
      { departmentId: after.department_id, subjectId: id },
      { rule: after, changes: changesBetween(repo.toRule(row), after) },
    );
    return after;
  });
}

export async function deleteRule(db: Db, principal: Principal, preconditions: Preconditions, id: string) {
  await db.transaction().execute(async (trx) => {
    const rulesVersion = await repo.bumpRulesVersion(trx);
    const row = await repo.lockRuleRow(trx, id);
    if (!row) throw notFound('automation_rule');
    await requireRuleWriter(trx, principal, row.department_id);
    assertIfMatch(preconditions.ifMatch, repo.toRule(row));
    await repo.insertVersions(
      trx,
      [{ ...row, version: row.version + 1 }],
      'deleted',
      principal.agentId,
      rulesVersion,
    );
    await repo.deleteRuleRow(trx, id);
    await recordSettingsChange(
      trx,
      principal,
      'rule.deleted',
      { departmentId: row.department_id, subjectId: id },
      { rule: repo.toRule(row) },
    );
  });
}

/** Sets the running order: every rule, each once; positions become 1, 2, 3... */
export async function reorderRules(db: Db, principal: Principal, ruleIds: string[]) {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    await repo.lockRulesState(trx);
    const rows = await repo.lockAllRuleRows(trx);
    const known = new Map(rows.map((r) => [r.id, r]));
    const seen = new Set<string>();
    const errors: FieldError[] = [];
    ruleIds.forEach((id, i) => {
      if (!known.has(id)) errors.push({ field: `body/rule_ids/${i}`, message: 'no such rule' });
      else if (seen.has(id)) errors.push({ field: `body/rule_ids/${i}`, message: 'appears more than once' });
      seen.add(id);
    });
    const missing = rows.filter((r) => !seen.has(r.id));
    if (missing.length > 0) {
      errors.push({
        field: 'body/rule_ids',
        message: `must list every rule; missing: ${missing.map((r) => r.id).join(', ')}`,
      });
    }
    if (errors.length > 0) {
      throw unprocessable(
        'invalid_rule_order',
        'List every rule exactly once, in the order they should run.',
        errors,
      );
    }
    const moves = ruleIds
      .map((id, i) => ({ id, position: i + 1 }))
      .filter((m) => known.get(m.id)!.position !== m.position);
    if (moves.length === 0) return { data: ruleIds.map((id) => repo.toRule(known.get(id)!)) };
    const rulesVersion = await repo.bumpRulesVersion(trx);
    const moved = await repo.setPositions(trx, moves, principal.agentId);
    await repo.insertVersions(trx, moved, 'reordered', principal.agentId, rulesVersion);
    for (const after of moved) {
      const before = known.get(after.id)!;
      await recordSettingsChange(
        trx,
        principal,
        'rule.updated',
        { departmentId: after.department_id, subjectId: after.id },
        { rule: repo.toRule(after), changes: { position: { from: before.position, to: after.position } } },
      );
    }
    const byId = new Map(moved.map((r) => [r.id, r]));
    return { data: ruleIds.map((id) => repo.toRule(byId.get(id) ?? known.get(id)!)) };
  });
}

export async function listVersions(db: Db, id: string, page: { limit: number; cursor?: string | undefined }) {
  if (!(await repo.hasVersions(db, id))) throw notFound('automation_rule');
  return repo.listVersions(db, id, page);
}

// Explain: what the rules did to a ticket, and simulation.

/**
 * The rule runs of a ticket, each replayed on the rule set as it stood (rebuilt from the rules'
 * versions) with the full trace: every rule, the condition nodes it evaluated and the values
 * they read, or why it was not considered. The engine is deterministic, so the replay shows
 * exactly what happened; only what the rules saw is stored.
 */
export async function ruleTrace(
  db: Db,
  principal: Principal,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<{ data: RuleRun[]; next_cursor: string | null }> {
  await requireReadable(db, principal, ticketId);
  const runs = await repo.listRuleRuns(db, ticketId, page);
  const inputs = runs.data.map((run) => run.input as unknown as RunInput);
  const bodies = await repo.messageBodies(
    db,
    inputs.flatMap((input) => (input.message?.id ? [input.message.id] : [])),
  );
  const sets = new Map<number, RuleSet>();
  const data: RuleRun[] = [];
  for (const [i, run] of runs.data.entries()) {
    const version = Number(run.rules_version);
    let set = sets.get(version);
    if (!set) {
      set = ruleSetOf(version, await repo.ruleSetAt(db, version));
      sets.set(version, set);
    }
    const input = inputs[i]!;
    const events = run.event_types as Trigger[];
    const result = evaluateRun(set, events, input, bodies.get(input.message?.id ?? '') ?? null, 'conditions');
    data.push({
      id: String(run.id),
      events,
      rules_version: version,
      occurred_at: input.occurred_at,
      ticket: input.ticket as RuleRun['ticket'],
      previous: input.previous as Record<string, unknown>,
      message_id: input.message?.id ?? null,
      ...(input.sla && { sla: input.sla as RuleRun['sla'] }),
      ...(input.idle_rules && { idle_rules: input.idle_rules }),
      ...(input.failure && { failure: input.failure }),
      rules: result.trace.rules.map((entry) => describeTrace(entry, set)),
      stopped_by: result.trace.stopped_by,
      effects: run.effects as RuleRun['effects'],
    });
  }
  return { data, next_cursor: runs.next_cursor };
}

/** The snapshot of a saved ticket, with its first message for ticket.created. */
async function savedTicketInput(
  db: Db,
  principal: Principal,
  ticketId: string,
  event: SimulateInput['event'],
  at: Date,
) {
  await requireReadable(db, principal, ticketId);
  const record = (await findTicketRecord(db, ticketId))!;
  const contact = await repo.contactForRules(db, record.contact_id);
  // As a change to the ticket now would see it: its department's calendar at this instant.
  const snapshot = snapshotOf(
    record,
    { name: contact.name, email: contact.email, custom: contact.custom_fields },
    await outsideWorkingHours(db, record.department_id, at),
  );
  let message = event.message ? { body: event.message.body, sender_email: event.message.sender_email } : null;
  if (!message && event.type === 'ticket.created') {
    const first = await repo.firstMessageOf(db, ticketId);
    if (first) {
      const sender =
        first.kind === 'agent' && first.author_agent_id
          ? await repo.agentEmail(db, first.author_agent_id)
          : contact.email;
      message = { body: first.body, sender_email: sender };
    }
  }
  return { snapshot, message };
}

/** A draft ticket comes in now: both working-hours fields follow its department's calendar now. */
async function draftSnapshot(db: Db, ticket: SimulateInput['ticket'], at: Date): Promise<TicketSnapshot> {
  const outside = await outsideWorkingHours(db, ticket?.department_id ?? null, at);
  return {
    id: 'simulated',
    channel: ticket?.channel ?? 'api',
    subject: ticket?.subject ?? '',
    status: ticket?.status ?? 'new',
    priority: ticket?.priority ?? 'normal',
    department_id: ticket?.department_id ?? null,
    assignee_id: ticket?.assignee_id ?? null,
    tags: ticket?.tags ?? [],
    support_address: ticket?.support_address ?? null,
    postponed_until: null,
    contact: {
      name: ticket?.contact?.name ?? '',
      email: ticket?.contact?.email ?? null,
      custom: ticket?.contact?.custom ?? {},
    },
    created_in_working_hours: !outside,
    outside_working_hours: outside,
  };
}

/**
 * Runs rules on a ticket without writing anything: the saved rules, draft rules, or drafts
 * standing in for saved ones. Round robin and least busy show whom they would pick now.
 */
export async function simulate(db: Db, principal: Principal, input: SimulateInput): Promise<Simulation> {
  if ((input.ticket_id === undefined) === (input.ticket === undefined)) {
    throw unprocessable(
      'ticket_or_snapshot',
      'Give ticket_id or a ticket snapshot, not both and not neither.',
      [
        {
          field: input.ticket_id === undefined ? 'body/ticket' : 'body/ticket_id',
          message: 'give exactly one of ticket_id and ticket',
        },
      ],
    );
  }
  const drafts = input.rules;
  const withSaved = input.include_saved_rules ?? drafts === undefined;
  let set: RuleSet;
  let rulesVersion: number | null = null;
  const draftIds = new Set<string>();
  if (drafts === undefined) {
    set = await currentRuleSet(db);
    rulesVersion = set.version;
  } else {
    let nodes = 0;
    drafts.forEach((draft, i) => {
      nodes += assertBounded(draft, `body/rules/${i}`);
    });
    if (nodes > MAX_SIMULATED_NODES) {
      throw unprocessable(
        'simulation_too_large',
        `The draft rules have ${nodes} condition nodes; one simulation takes at most ${MAX_SIMULATED_NODES}.`,
        [{ field: 'body/rules', message: `must have at most ${MAX_SIMULATED_NODES} condition nodes in all` }],
      );
    }
    const saved = withSaved ? await currentRuleSet(db) : null;
    rulesVersion = saved?.version ?? null;
    const catalog = await repo.loadCatalog(db);
    let next = (saved?.rules.reduce((max, r) => Math.max(max, r.rule.position), 0) ?? 0) + 1;
    const rules: repo.StoredRule[] = drafts.map((draft, i) => {
      const rule = {
        ...draft,
        id: draft.id ?? `draft-${i + 1}`,
        note: noteOf(draft.note),
        active: draft.active ?? true,
        position: draft.position ?? next++,
        stop_processing: draft.stop_processing ?? false,
        department_id: draft.department_id ?? null,
      } as Rule;
      checkRule(rule, catalog, `body/rules/${i}`);
      draftIds.add(rule.id);
      return { rule, version: 0 };
    });
    const duplicate = rules.findIndex((r, i) => rules.findIndex((o) => o.rule.id === r.rule.id) !== i);
    if (duplicate >= 0) {
      throw unprocessable('duplicate_rule_id', 'Two draft rules have the same id.', [
        { field: `body/rules/${duplicate}/id`, message: 'repeats the id of an earlier draft' },
      ]);
    }
    const kept = (saved?.rules ?? []).filter((r) => !draftIds.has(r.rule.id));
    set = ruleSetOf(rulesVersion ?? 0, [...kept, ...rules]);
  }

  const at = new Date();
  const fromTicket =
    input.ticket_id !== undefined
      ? await savedTicketInput(db, principal, input.ticket_id, input.event, at)
      : null;
  const snapshot = fromTicket?.snapshot ?? (await draftSnapshot(db, input.ticket, at));
  const message =
    fromTicket?.message ??
    (input.event.message
      ? {
          body: input.event.message.body,
          sender_email: input.event.message.sender_email ?? snapshot.contact.email,
        }
      : null);
  const runInput: RunInput = {
    ticket: snapshot,
    occurred_at: at.toISOString(),
    message: message ? { id: null, sender_email: message.sender_email ?? null } : null,
    previous: (input.event.previous ?? {}) as PreviousValues,
    ...(input.event.sla && {
      sla: { kind: input.event.sla.kind, policy_id: input.event.sla.policy_id ?? null },
    }),
  };
  const result = evaluateRun(set, [input.event.type], runInput, message?.body ?? null, 'conditions');
  const outcome = await preview(db, snapshot, result.effects);
  return {
    event: input.event.type,
    rules_version: rulesVersion,
    ticket: snapshot as Simulation['ticket'],
    result: outcome.result as Simulation['result'],
    changes: outcome.changes,
    notes: outcome.notes,
    effects: result.effects.map((effect, i) => ({
      ...effect,
      rule_version: draftIds.has(effect.rule_id) ? null : (set.byId.get(effect.rule_id)?.version ?? null),
      ...(effect.type === 'assign_intent' && {
        agent_id: outcome.picks.get(i)?.agentId ?? null,
        ...(outcome.picks.get(i)?.reason && { reason: outcome.picks.get(i)?.reason }),
      }),
    })),
    rules: result.trace.rules.map((entry) => describeTrace(entry, set, draftIds)),
    stopped_by: result.trace.stopped_by,
  };
}

/** What the effects would do to the ticket, deciding assignments as they would be now (read-only). */
async function preview(db: Db, snapshot: TicketSnapshot, effects: readonly Effect[]) {
  let ticket: TicketSnapshot = { ...snapshot, pending_assignment: null };
  const notes: string[] = [];
  const picks = new Map<number, { agentId: string | null; reason: string | null }>();
  for (const [i, effect] of effects.entries()) {
    switch (effect.type) {
      case 'transfer': {
        const keeps =
          ticket.assignee_id !== null &&
          (await repo.assignability(db, ticket.assignee_id, effect.department_id)) === 'ok';
        ticket = {
          ...ticket,
          department_id: effect.department_id,
          assignee_id: keeps ? ticket.assignee_id : null,
        };
        break;
      }
      case 'assign':
        ticket = { ...ticket, assignee_id: effect.agent_id };
        break;
      case 'assign_intent': {
        const { agentId, reason } = await pickAgent(db, effect, false);
        picks.set(i, { agentId, reason });
        ticket = { ...ticket, assignee_id: agentId };
        break;
      }
      case 'set_tags':
        ticket = { ...ticket, tags: effect.tags };
        break;
      case 'set_priority':
        ticket = { ...ticket, priority: effect.priority };
        break;
      case 'set_status':
        ticket = { ...ticket, status: effect.status, postponed_until: effect.postponed_until };
        break;
      case 'mark_spam':
        ticket = { ...ticket, status: 'spam', postponed_until: null };
        break;
      case 'add_note':
        notes.push(effect.body);
        break;
    }
  }
  const changes = (['department_id', 'assignee_id', 'status', 'postponed_until', 'priority', 'tags'] as const)
    .filter((field) => JSON.stringify(snapshot[field]) !== JSON.stringify(ticket[field]))
    .map((field) => ({ field, from: snapshot[field], to: ticket[field] }));
  return { result: ticket, changes, notes, picks };
}

// What deleting a department or an agent does to the rules that name it.

type Reference = { department: string } | { agent: string };

const DEPARTMENT_FIELDS = new Set(['department_id', 'previous.department_id']);
const AGENT_FIELDS = new Set(['assignee_id', 'previous.assignee_id']);

function leafMentions(value: unknown, id: string): boolean {
  return value === id || (Array.isArray(value) && value.includes(id));
}

/** Whether some leaf of a condition tree passes `test`. */
function someLeaf(node: Condition, test: (leaf: ConditionLeaf) => boolean): boolean {
  if ('all' in node) return node.all.some((c) => someLeaf(c, test));
  if ('any' in node) return node.any.some((c) => someLeaf(c, test));
  if ('not' in node) return someLeaf(node.not, test);
  return test(node);
}

function conditionMentions(node: Condition, fields: Set<string>, id: string): boolean {
  return someLeaf(node, (leaf) => fields.has(leaf.field) && leafMentions(leaf.value, id));
}

/** Whether a rule names the department (owner, condition, transfer) or the agent (condition, assign). */
function mentions(rule: Rule, ref: Reference): boolean {
  if ('department' in ref) {
    return (
      rule.department_id === ref.department ||
      rule.actions.some((a) => a.type === 'transfer' && a.department_id === ref.department) ||
      conditionMentions(rule.conditions, DEPARTMENT_FIELDS, ref.department)
    );
  }
  return (
    rule.actions.some((a) => a.type === 'assign' && a.to === 'agent' && a.agent_id === ref.agent) ||
    conditionMentions(rule.conditions, AGENT_FIELDS, ref.agent)
  );
}

function rewriteCondition(node: Condition, fields: Set<string>, from: string, to: string): Condition {
  if ('all' in node) return { all: node.all.map((c) => rewriteCondition(c, fields, from, to)) };
  if ('any' in node) return { any: node.any.map((c) => rewriteCondition(c, fields, from, to)) };
  if ('not' in node) return { not: rewriteCondition(node.not, fields, from, to) };
  if (!fields.has(node.field)) return node;
  if (node.value === from) return { ...node, value: to };
  if (Array.isArray(node.value) && node.value.includes(from)) {
    return { ...node, value: [...new Set(node.value.map((v) => (v === from ? to : v)))] };
  }
  return node;
}

/** The rule with every mention of `from` (a department or an agent) replaced by `to`. */
function rewrite(rule: Rule, kind: 'department' | 'agent', from: string, to: string): repo.RuleValues {
  const fields = kind === 'department' ? DEPARTMENT_FIELDS : AGENT_FIELDS;
  return {
    name: rule.name,
    note: rule.note ?? null,
    active: rule.active,
    position: rule.position,
    stop_processing: rule.stop_processing,
    department_id: kind === 'department' && rule.department_id === from ? to : (rule.department_id ?? null),
    triggers: rule.triggers,
    idle: rule.idle ?? null,
    conditions: rewriteCondition(rule.conditions, fields, from, to),
    actions: rule.actions.map((a) => {
      if (kind === 'department' && a.type === 'transfer' && a.department_id === from)
        return { ...a, department_id: to };
      if (kind === 'agent' && a.type === 'assign' && a.to === 'agent' && a.agent_id === from)
        return { ...a, agent_id: to };
      return a;
    }),
  };
}

/**
 * The rules that stand in the way of a change elsewhere (a deletion, a contact field's change):
 * waits for rule writes in progress and keeps new ones out until commit, then keeps the rules
 * `holds` picks.
 */
async function rulesHolding(trx: Kysely<Database>, holds: (rule: Rule, row: AutomationRuleRow) => boolean) {
  await repo.lockRulesState(trx as Trx);
  return (await repo.allRuleRows(trx)).filter((row) => holds(repo.toEngineRule(row), row));
}

function rulesMentioning(trx: Kysely<Database>, ref: Reference, owned: boolean) {
  // Inactive rules block nothing (they are checked again when switched on), except that a
  // department cannot go while it owns rules.
  return rulesHolding(
    trx,
    (rule, row) =>
      (rule.active && mentions(rule, ref)) ||
      (owned && 'department' in ref && row.department_id === ref.department),
  );
}

async function rewriteRules(
  trx: Kysely<Database>,
  kind: 'department' | 'agent',
  from: string,
  to: string,
  by: Principal,
) {
  const ref: Reference = kind === 'department' ? { department: from } : { agent: from };
  // Waits for rule writes in progress, so a rule written meanwhile that names `from` is rewritten
  // too instead of being left pointing at a department or agent that is gone.
  await repo.lockRulesState(trx as Trx);
  const rows = (await repo.allRuleRows(trx)).filter((row) => mentions(repo.toEngineRule(row), ref));
  if (rows.length === 0) return;
  const rulesVersion = await repo.bumpRulesVersion(trx as Trx);
  const updated: AutomationRuleRow[] = [];
  for (const row of rows) {
    const after = await repo.updateRuleRow(
      trx,
      row.id,
      rewrite(repo.toEngineRule(row), kind, from, to),
      row.version + 1,
      by.agentId,
    );
    updated.push(after);
    const rule = repo.toRule(after);
    await recordSettingsChange(
      trx as Trx,
      by,
      'rule.updated',
      { departmentId: rule.department_id, subjectId: rule.id },
      {
        rule,
        changes: changesBetween(repo.toRule(row), rule),
        reason: kind === 'department' ? 'department_deleted' : 'agent_deleted',
      },
    );
  }
  await repo.insertVersions(trx, updated, 'updated', by.agentId, rulesVersion);
}

const named = (names: string[]) => names.map((n) => `"${n}"`).join(', ');
const rulesRefer = (n: number) => `${n} automation rule${n === 1 ? '' : 's'} refer${n === 1 ? 's' : ''}`;

/** Rules that name a department block its deletion, or follow its tickets to the substitute. */
export const departmentRuleDependents: Dependents = {
  kind: 'automation_rules',
  async count(trx, id) {
    const rows = await rulesMentioning(trx, { department: id }, true);
    return { count: rows.length, names: rows.map((r) => r.name) };
  },
  moveTo: (trx, fromId, toId, by) => rewriteRules(trx, 'department', fromId, toId, by),
  describe: (n, names) => `${rulesRefer(n)} to the department: ${named(names ?? [])}`,
};

/**
 * What active rules hold against a change to the contact field `key` (the blocker of a 409, or
 * null): rules are checked against the fields when written, so a field they read cannot lose its
 * key or its type, nor go, under them; nor can a choice field drop an option they compare with
 * (`dropped`). Inactive rules block nothing: they are checked again when switched on.
 */
export async function contactFieldRuleBlocker(
  trx: Kysely<Database>,
  key: string,
  dropped?: readonly string[],
): Promise<Blocker | null> {
  const fields = new Set([`${CUSTOM_PREFIX}${key}`, `${PREVIOUS_PREFIX}${CUSTOM_PREFIX}${key}`]);
  // Rules name a choice as validation accepts it: matching an option when both are folded.
  const gone = dropped && new Set(dropped.map(foldText));
  const valuesOf = (value: ConditionLeaf['value']) => (Array.isArray(value) ? value : [value]);
  const reads = (leaf: ConditionLeaf) =>
    fields.has(leaf.field) &&
    (gone === undefined || valuesOf(leaf.value).some((v) => typeof v === 'string' && gone.has(foldText(v))));
  const names = (await rulesHolding(trx, (rule) => rule.active && someLeaf(rule.conditions, reads))).map(
    (row) => row.name,
  );
  if (names.length === 0) return null;
  const what = dropped === undefined ? 'to the field' : 'to an option this change removes';
  return {
    kind: 'automation_rules',
    count: names.length,
    detail: `${rulesRefer(names.length)} ${what}: ${named(names)}`,
  };
}

/** Rules that name an agent block their deletion, unless a substitute agent takes their place. */
export const agentRuleDependents: Dependents = {
  kind: 'automation_rules',
  async count(trx, id) {
    const rows = await rulesMentioning(trx, { agent: id }, false);
    return { count: rows.length, names: rows.map((r) => r.name) };
  },
  moveTo: (trx, fromId, toId, by) => rewriteRules(trx, 'agent', fromId, toId, by),
  describe: (n, names) => `${rulesRefer(n)} to the agent: ${named(names ?? [])}`,
};
