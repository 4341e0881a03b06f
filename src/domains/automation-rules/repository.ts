import { type Kysely, sql, type Transaction } from 'kysely';
import { dbNowMs } from '../../db/clock.ts';
import { prepared } from '../../db/prepared.ts';
import type { AutomationRuleRow, Database, DepartmentRole, RuleVersionChange } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type {
  Action,
  Catalog,
  Condition,
  CustomFieldType,
  IdleAfter,
  Rule,
  Trigger,
} from '../../rule-engine/index.ts';
import { firstEmailOf, type SeenByRules } from '../contacts/repository.ts';
import {
  type AssignableFilter,
  assignableMembers,
  BUSY_STATUSES,
  HOLDING_ROLES,
} from '../departments/repository.ts';
import {
  SLA_READ_COLUMNS,
  type SlaRead,
  splitSlaRead,
  TICKET_COLUMNS,
  type TicketRecord,
} from '../tickets/repository.ts';
import type { AutomationRule, RuleVersion } from './schemas.ts';

type Executor = Kysely<Database>;
type Trx = Transaction<Database>;

const iso = (d: Date) => d.toISOString();

/** The rule as the engine takes it, and as every version stores it. */
export function toEngineRule(row: AutomationRuleRow): Rule {
  return {
    id: row.id,
    name: row.name,
    note: row.note,
    active: row.active,
    position: row.position,
    stop_processing: row.stop_processing,
    department_id: row.department_id,
    triggers: row.triggers as Trigger[],
    idle: row.idle,
    conditions: row.conditions as Condition,
    actions: row.actions as Action[],
  };
}

export function toRule(row: AutomationRuleRow): AutomationRule {
  return {
    ...definitionOf(toEngineRule(row)),
    id: row.id,
    version: row.version,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    created_by: row.created_by,
    updated_by: row.updated_by,
  };
}

/** A rule's definition without its id: what a version records. */
export function definitionOf(rule: Rule) {
  return {
    name: rule.name,
    note: rule.note ?? null,
    active: rule.active,
    position: rule.position,
    stop_processing: rule.stop_processing,
    department_id: rule.department_id ?? null,
    triggers: rule.triggers,
    idle: rule.idle ?? null,
    conditions: rule.conditions,
    actions: rule.actions,
  };
}

export interface RuleFilter {
  department_id?: string | undefined;
  active?: boolean | undefined;
}

export async function listRules(
  db: Executor,
  filter: RuleFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<AutomationRuleRow> = {
    list: `automation-rules:${JSON.stringify(filter)}`,
    columns: [sql`position`, sql`id`],
    key: (row) => [row.position, row.id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('automation_rules')
    .selectAll()
    .$if(filter.department_id === 'none', (qb) => qb.where('department_id', 'is', null))
    .$if(filter.department_id !== undefined && filter.department_id !== 'none', (qb) =>
      qb.where('department_id', '=', filter.department_id!),
    )
    .$if(filter.active !== undefined, (qb) => qb.where('active', '=', filter.active!))
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toRule);
}

export function findRuleRow(db: Executor, id: string) {
  return db.selectFrom('automation_rules').selectAll().where('id', '=', id).executeTakeFirst();
}

export function lockRuleRow(trx: Trx, id: string) {
  return trx.selectFrom('automation_rules').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

/** Every rule in running order, locked. */
export function lockAllRuleRows(trx: Trx) {
  return trx
    .selectFrom('automation_rules')
    .selectAll()
    .orderBy('position')
    .orderBy('id')
    .forUpdate()
    .execute();
}

/** After the last rule, so a new rule runs last unless given a position. */
export async function nextPosition(trx: Executor): Promise<number> {
  const row = await trx
    .selectFrom('automation_rules')
    .select((eb) => eb.fn.max('position').as('max'))
    .executeTakeFirst();
  return row?.max === null || row?.max === undefined ? 1 : Number(row.max) + 1;
}

export interface RuleValues {
  name: string;
  note: string | null;
  active: boolean;
  position: number;
  stop_processing: boolean;
  department_id: string | null;
  triggers: string[];
  idle: IdleAfter | null;
  conditions: unknown;
  actions: unknown[];
}

const columnsOf = (values: RuleValues) => ({
  name: values.name,
  note: values.note,
  active: values.active,
  position: values.position,
  stop_processing: values.stop_processing,
  department_id: values.department_id,
  triggers: sql<string[]>`${values.triggers}::text[]` as unknown as string[],
  idle: values.idle === null ? null : JSON.stringify(values.idle),
  conditions: JSON.stringify(values.conditions),
  actions: JSON.stringify(values.actions),
});

export function insertRuleRow(trx: Executor, id: string, values: RuleValues, agentId: string | null) {
  return trx
    .insertInto('automation_rules')
    .values({ id, ...columnsOf(values), version: 1, created_by: agentId, updated_by: agentId })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function updateRuleRow(
  trx: Executor,
  id: string,
  values: RuleValues,
  version: number,
  agentId: string | null,
) {
  return trx
    .updateTable('automation_rules')
    .set({ ...columnsOf(values), version, updated_by: agentId, updated_at: sql`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** New positions for many rules at once; each moved rule gets its next version. */
export function setPositions(trx: Executor, moves: { id: string; position: number }[], agentId: string) {
  if (moves.length === 0) return Promise.resolve([]);
  return sql<AutomationRuleRow>`
    update automation_rules r
    set position = m.position, version = r.version + 1, updated_by = ${agentId}, updated_at = now()
    from unnest(${moves.map((m) => m.id)}::uuid[], ${moves.map((m) => m.position)}::int[]) as m(id, position)
    where r.id = m.id
    returning r.*`
    .execute(trx)
    .then((r) => r.rows);
}

export function deleteRuleRow(trx: Executor, id: string) {
  return trx.deleteFrom('automation_rules').where('id', '=', id).execute();
}

/**
 * Every write to rules calls this first: it locks the state row (so rule writes, and the
 * deletion checks of departments and agents, take turns) and moves the rule set to a new version.
 */
export async function bumpRulesVersion(trx: Trx): Promise<number> {
  const row = await trx
    .updateTable('automation_rules_state')
    .set({ rules_version: sql`rules_version + 1`, rules_key: sql`gen_random_uuid()` })
    .returning('rules_version')
    .executeTakeFirstOrThrow();
  return Number(row.rules_version);
}

export async function insertVersions(
  trx: Executor,
  rows: AutomationRuleRow[],
  change: RuleVersionChange,
  changedBy: string | null,
  rulesVersion: number,
) {
  if (rows.length === 0) return;
  await trx
    .insertInto('automation_rule_versions')
    .values(
      rows.map((row) => ({
        rule_id: row.id,
        version: row.version,
        rules_version: rulesVersion,
        definition: JSON.stringify(definitionOf(toEngineRule(row))),
        change,
        changed_by: changedBy,
      })),
    )
    .execute();
}

export async function listVersions(
  db: Executor,
  ruleId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<{ version: number }> = {
    list: `automation-rule-versions:${ruleId}`,
    columns: [sql`version`],
    key: (row) => [row.version],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('automation_rule_versions')
    .select(['rule_id', 'version', 'change', 'definition', 'changed_by', 'changed_at'])
    .where('rule_id', '=', ruleId)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(
    keyset,
    rows,
    page.limit,
    (row): RuleVersion => ({
      rule_id: row.rule_id,
      version: row.version,
      change: row.change,
      // Versions written before ticket.idle existed have no idle in their definition.
      definition: { idle: null, ...row.definition } as RuleVersion['definition'],
      changed_by: row.changed_by,
      changed_at: iso(row.changed_at),
    }),
  );
}

export async function hasVersions(db: Executor, ruleId: string): Promise<boolean> {
  const row = await db
    .selectFrom('automation_rule_versions')
    .select('version')
    .where('rule_id', '=', ruleId)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

// The rule set, for evaluation.

export interface StoredRule {
  rule: Rule;
  version: number;
}

export interface StoredRuleSet {
  version: number;
  /** Random, renewed with every change: a cache key no other database shares. */
  key: string;
  rules: StoredRule[];
}

/** Waits for rule writes in progress, and keeps new ones out until commit (deletion checks). */
export async function lockRulesState(trx: Trx): Promise<void> {
  await trx.selectFrom('automation_rules_state').select('rules_version').forUpdate().execute();
}

export async function readRulesKey(db: Executor): Promise<{ version: number; key: string }> {
  const row = await db
    .selectFrom('automation_rules_state')
    .select(['rules_version', 'rules_key'])
    .executeTakeFirstOrThrow();
  return { version: Number(row.rules_version), key: String(row.rules_key) };
}

/**
 * The rules' cache key and the contact as rules see it, in the one query every change to a
 * ticket makes for its rules (the contact is cheap to bring along and saves a second one).
 */
export async function readRulesKeyAndContact(db: Executor, contactId: string): Promise<SeenByRules> {
  const { rows } = await prepared(sql<{
    rules_key: string;
    name: string | null;
    email: string | null;
    custom_fields: unknown;
  }>`select s.rules_key, c.name, ${firstEmailOf('c.id')} as email, c.custom_fields
    from automation_rules_state s left join contacts c on c.id = ${contactId}`).execute(db);
  const row = rows[0]!;
  return {
    rulesKey: String(row.rules_key),
    contact: {
      name: row.name ?? '',
      email: row.email,
      custom: (row.custom_fields ?? {}) as Record<string, unknown>,
    },
  };
}

/** Every rule with the version of the set, read in one statement so the two agree. */
export async function loadRuleSet(db: Executor): Promise<StoredRuleSet> {
  const { rows } = await sql<
    AutomationRuleRow & { set_version: string; set_key: string }
  >`select s.rules_version as set_version, s.rules_key as set_key, r.*
    from automation_rules_state s left join automation_rules r on true
    order by r.position, r.id`.execute(db);
  const first = rows[0]!;
  return {
    version: Number(first.set_version),
    key: String(first.set_key),
    rules: rows
      .filter((r) => r.id !== null)
      .map((row) => ({ rule: toEngineRule(row), version: row.version })),
  };
}

/** The rule set exactly as it stood at a rules version: the latest version of each rule then. */
export async function ruleSetAt(db: Executor, rulesVersion: number): Promise<StoredRule[]> {
  const { rows } = await sql<{
    rule_id: string;
    version: number;
    change: RuleVersionChange;
    definition: ReturnType<typeof definitionOf>;
  }>`select distinct on (rule_id) rule_id, version, change, definition
    from automation_rule_versions where rules_version <= ${rulesVersion}
    order by rule_id, version desc`.execute(db);
  return rows
    .filter((r) => r.change !== 'deleted')
    .map((r) => ({ rule: { id: r.rule_id, ...r.definition } as Rule, version: r.version }));
}

/** What exists, for validating rules when they are written. */
export async function loadCatalog(db: Executor): Promise<Catalog> {
  const departments = await db.selectFrom('departments').select('id').execute();
  const agents = await db.selectFrom('agents').select('id').execute();
  const fields = await db.selectFrom('contact_fields').select(['key', 'type', 'options']).execute();
  return {
    departmentIds: new Set(departments.map((d) => d.id)),
    agentIds: new Set(agents.map((a) => a.id)),
    customFields: new Map(
      fields.map((f) => [
        f.key,
        f.type === 'choice'
          ? { type: f.type as CustomFieldType, options: f.options }
          : (f.type as CustomFieldType),
      ]),
    ),
  };
}

// What rules need from the rest of the help desk when they run.

export async function contactForRules(db: Executor, contactId: string) {
  return db
    .selectFrom('contacts as c')
    .select(['c.name', firstEmailOf('c.id').as('email'), 'c.custom_fields'])
    .where('c.id', '=', contactId)
    .executeTakeFirstOrThrow();
}

export async function agentEmail(db: Executor, agentId: string): Promise<string | null> {
  const row = await db.selectFrom('agents').select('email').where('id', '=', agentId).executeTakeFirst();
  return row?.email ?? null;
}

export async function messageBodies(db: Executor, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom('ticket_messages').select(['id', 'body']).where('id', 'in', ids).execute();
  return new Map(rows.map((r) => [r.id, r.body]));
}

export async function firstMessageOf(db: Executor, ticketId: string) {
  return db
    .selectFrom('ticket_messages')
    .select(['id', 'body', 'kind', 'author_agent_id'])
    .where('ticket_id', '=', ticketId)
    .orderBy('created_at')
    .orderBy('id')
    .limit(1)
    .executeTakeFirst();
}

/** Key-share-locks departments so they cannot be deleted before the ticket refers to them. */
export async function holdDepartments(trx: Executor, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await trx
    .selectFrom('departments')
    .select('id')
    .where('id', 'in', ids)
    .forKeyShare()
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** Whether the agent is active and, in a department, a solver or more there. */
export async function assignability(db: Executor, agentId: string, departmentId: string | null) {
  const row = await db
    .selectFrom('agents as a')
    .select(['a.status'])
    .$if(departmentId !== null, (qb) =>
      qb.select((eb) =>
        eb
          .selectFrom('department_members as m')
          .select('m.role')
          .where('m.agent_id', '=', agentId)
          .where('m.department_id', '=', departmentId!)
          .as('role'),
      ),
    )
    .where('a.id', '=', agentId)
    .executeTakeFirst();
  if (!row) return 'missing' as const;
  if (row.status !== 'active') return 'disabled' as const;
  const role = (row as { role?: DepartmentRole | null }).role ?? null;
  if (departmentId !== null && (role === null || !HOLDING_ROLES.includes(role))) return 'not_member' as const;
  return 'ok' as const;
}

/**
 * The next agent of a department's round robin: the first qualifying member (active, solver or
 * more, narrowed by `filter`) after the one who got the last ticket, by agent id, wrapping
 * around. One cursor per department whatever the filter, so rules with different filters take
 * turns on one ring. With `lock`, the department's cursor row stays locked until commit and
 * moves to the agent chosen, so concurrent tickets take turns; without, nothing is written
 * (simulation).
 */
/**
 * Capacity counts an agent's tickets in every department, so the department's own lock (cursor
 * row, advisory lock) does not keep two departments from handing the same agent a ticket each
 * past their capacity. Assignments limited to available agents also take this one lock, always
 * after the department's and as the last lock of the pick (one assignment per evaluation, one
 * evaluation per transaction), so the order is the same everywhere and cannot deadlock. An SLA
 * escalation (tickets/escalation.ts) takes only this lock, after the rules of its write: it
 * never holds it while waiting for another.
 */
export async function lockCapacity(trx: Executor) {
  await sql`select pg_advisory_xact_lock(hashtext('assignment_capacity'))`.execute(trx);
}

export async function nextRoundRobinAgent(
  trx: Executor,
  departmentId: string,
  lock: boolean,
  filter: AssignableFilter = {},
): Promise<string | null> {
  if (lock) {
    // The cursor row, created on first use, is locked by this upsert until commit.
    await trx
      .insertInto('round_robin_cursors')
      .values({ department_id: departmentId, last_agent_id: null })
      .onConflict((oc) =>
        oc.column('department_id').doUpdateSet({ last_agent_id: sql`round_robin_cursors.last_agent_id` }),
      )
      .execute();
    if (filter.availableOnly) await lockCapacity(trx);
  }
  const cursor = await trx
    .selectFrom('round_robin_cursors')
    .select('last_agent_id')
    .where('department_id', '=', departmentId)
    .executeTakeFirst();
  const last = cursor?.last_agent_id ?? null;
  const next = await assignableMembers(trx, departmentId, filter)
    .select('m.agent_id')
    .$if(last !== null, (qb) => qb.orderBy(sql`m.agent_id <= ${last}::uuid`))
    .orderBy('m.agent_id')
    .limit(1)
    .executeTakeFirst();
  const agentId = next?.agent_id ?? null;
  if (lock && agentId !== null) {
    await trx
      .updateTable('round_robin_cursors')
      .set({ last_agent_id: agentId })
      .where('department_id', '=', departmentId)
      .execute();
  }
  return agentId;
}

/**
 * The qualifying member of a department (active, solver or more, narrowed by `filter`) with the
 * fewest new, open and answered tickets assigned (in any department), ties by agent id. With
 * `lock`, a transaction-scoped advisory lock per department makes concurrent assignments take
 * turns, so each sees the others' tickets.
 */
export async function leastBusyAgent(
  trx: Executor,
  departmentId: string,
  lock: boolean,
  filter: AssignableFilter = {},
) {
  if (lock) {
    await sql`select pg_advisory_xact_lock(hashtext(${`least_busy:${departmentId}`}))`.execute(trx);
    if (filter.availableOnly) await lockCapacity(trx);
  }
  const row = await assignableMembers(trx, departmentId, filter)
    .select([
      'm.agent_id',
      (eb) =>
        eb
          .selectFrom('tickets as t')
          .select(eb.fn.countAll<number>().as('n'))
          .whereRef('t.assignee_id', '=', 'm.agent_id')
          .where('t.status', 'in', BUSY_STATUSES)
          .as('open_tickets'),
    ])
    .orderBy('open_tickets')
    .orderBy('m.agent_id')
    .limit(1)
    .executeTakeFirst();
  return row?.agent_id ?? null;
}

/**
 * Why nobody qualified for an automatic assignment, for the rule's trace: the department has
 * nobody who may hold tickets (at that level), or they are all offline, away or at capacity.
 */
export async function whyNobodyQualifies(
  db: Executor,
  departmentId: string,
  filter: AssignableFilter,
): Promise<string> {
  const levelled = filter.level === undefined ? '' : ` of level ${filter.level}`;
  const holders = await assignableMembers(db, departmentId, { level: filter.level })
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  if (Number(holders.n) === 0) {
    return `the department has no active solver, supervisor or manager${levelled}`;
  }
  return `none of the department's ${Number(holders.n)} active solvers, supervisors or managers${levelled} is online and under capacity`;
}

// Rule runs: what the rules saw and did, for GET /v1/tickets/{id}/rule-trace.

export interface RuleRunRow {
  ticket_id: string;
  event_types: string[];
  rules_version: number;
  input: unknown;
  trace: unknown[];
  effects: unknown[];
}

/** The insert of a rule run, to travel with the ticket's own write (one round trip). */
export function ruleRunInsert(run: RuleRunRow) {
  // A fixed text, not a query builder: it runs with every change that has rules, and the
  // builder's compilation was a visible part of a creation's time.
  return sql`insert into rule_runs (ticket_id, event_types, rules_version, input, trace, effects)
    values (${run.ticket_id}::uuid, ${run.event_types}::text[], ${run.rules_version}::bigint,
      ${JSON.stringify(run.input)}::jsonb, ${JSON.stringify(run.trace)}::jsonb, ${JSON.stringify(run.effects)}::jsonb)`;
}

export async function listRuleRuns(
  db: Executor,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<{ id: string }> = {
    list: `rule-runs:${ticketId}`,
    columns: [sql`id`],
    key: (row) => [String(row.id)],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('rule_runs')
    .selectAll()
    .where('ticket_id', '=', ticketId)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, (row) => row);
}

// References to departments and agents, for their deletion.

export function allRuleRows(trx: Executor) {
  return trx.selectFrom('automation_rules').selectAll().orderBy('position').orderBy('id').execute();
}

// The ticket.idle sweeper (idle.ts).

/** A ticket.idle rule is due on the tickets (of a department, or of any) quiet since `cutoff`. */
export interface IdleDue {
  rule_id: string;
  /** The department whose tickets this cutoff is for (null: tickets without one), unless any. */
  department_id: string | null;
  any_department: boolean;
  cutoff: Date;
}

/** Statuses on which a ticket can be idle: live and in someone's hands (not postponed). */
export const IDLE_STATUSES = ['new', 'open', 'answered'] as const;

/**
 * Locks up to `limit` live tickets on which some rule of `due` has not yet run for their current
 * quiet spell, the longest quiet first; rows another sweeper holds are skipped. Each comes with
 * what the write path reads along with a ticket's lock (SLA_READ_COLUMNS).
 */
export async function lockIdleTickets(
  trx: Trx,
  due: readonly IdleDue[],
  limit: number,
): Promise<{ ticket: TicketRecord; sla: SlaRead }[]> {
  if (due.length === 0) return [];
  const latest = new Date(Math.max(...due.map((d) => d.cutoff.getTime())));
  const rows = await trx
    .selectFrom('tickets as t')
    .select(TICKET_COLUMNS)
    .select(SLA_READ_COLUMNS)
    .where('t.status', 'in', IDLE_STATUSES)
    .where('t.last_activity_at', '<=', latest)
    .where(
      sql<boolean>`exists (
        select 1 from jsonb_to_recordset(${JSON.stringify(due)}::jsonb)
          as d(rule_id uuid, department_id uuid, any_department boolean, cutoff timestamptz)
        where (d.any_department or d.department_id is not distinct from t.department_id)
          and t.last_activity_at <= d.cutoff
          and not exists (select 1 from idle_rule_firings f
            where f.rule_id = d.rule_id and f.ticket_id = t.id and f.activity_at >= t.last_activity_at))`,
    )
    .orderBy('t.last_activity_at')
    .orderBy('t.id')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
  return rows.map(splitSlaRead);
}

/**
 * Claims the runs of these rules on a ticket for its quiet spell since `activityAt`: returns the
 * rules claimed now, leaving out those that already ran for it (or a later one) and rules deleted
 * meanwhile. The upsert only moves a rule's instant forward, and waits for a concurrent claim of
 * the same pair, so two sweepers never both run one.
 */
export async function claimIdleRuns(
  trx: Trx,
  ticketId: string,
  activityAt: Date,
  ruleIds: readonly string[],
): Promise<string[]> {
  if (ruleIds.length === 0) return [];
  const { rows } = await sql<{ rule_id: string }>`
    insert into idle_rule_firings (rule_id, ticket_id, activity_at)
    select r.id, ${ticketId}::uuid, ${activityAt}::timestamptz
    from automation_rules r where r.id = any(${ruleIds}::uuid[])
    on conflict (rule_id, ticket_id) do update
      set activity_at = excluded.activity_at, fired_at = deskroute_now()
      where idle_rule_firings.activity_at < excluded.activity_at
    returning rule_id`.execute(trx);
  return rows.map((r) => r.rule_id);
}

/** The application's clock (db/clock.ts): quiet spells are measured with what stamped them. */
export async function databaseNow(db: Executor): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select ${dbNowMs} as now`.execute(db);
  return rows[0]!.now;
}
