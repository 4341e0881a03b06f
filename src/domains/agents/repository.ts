import { type Kysely, sql, type Transaction } from 'kysely';
import type { Db } from '../../db/database.ts';
import { AUTH_NEUTRAL, prepared } from '../../db/prepared.ts';
import type {
  AgentPresence,
  AgentRole,
  AgentRow,
  AgentStatus,
  Database,
  DepartmentRole,
  MemberLevel,
  QualifiedColumn,
} from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { Agent, PresenceState } from './schemas.ts';

type Executor = Kysely<Database>;

export interface AgentDepartment {
  department_id: string;
  department_name: string;
  role: DepartmentRole;
  level: MemberLevel;
}

type PresenceColumns = Pick<
  AgentRow,
  'presence' | 'presence_confirmed_at' | 'presence_expires_at' | 'presence_changed_at'
>;

/**
 * The presence an agent has at `now`: what they stated, or offline once the confirmation ran
 * out (then it changed when it ran out). Nothing writes the timeout; every reader derives it,
 * and the assignment query (departments/repository.ts assignableMembers) says the same in SQL.
 */
export function effectivePresence(row: PresenceColumns, now = Date.now()): PresenceState {
  const expired =
    row.presence !== 'offline' &&
    (row.presence_expires_at === null || row.presence_expires_at.getTime() <= now);
  const changedAt = expired ? row.presence_expires_at : row.presence_changed_at;
  return {
    status: expired ? 'offline' : row.presence,
    stated_status: row.presence,
    changed_at: changedAt?.toISOString() ?? null,
    confirmed_at: row.presence_confirmed_at?.toISOString() ?? null,
    expires_at: row.presence === 'offline' ? null : (row.presence_expires_at?.toISOString() ?? null),
  };
}

export function toAgent(row: AgentRow, departments: AgentDepartment[]): Agent {
  const presence = effectivePresence(row);
  return {
    id: row.id,
    name: row.name,
    email: row.email,
    role: row.role,
    status: row.status,
    departments,
    has_password: row.password_hash !== null,
    last_sign_in_at: row.last_sign_in_at?.toISOString() ?? null,
    presence: presence.status,
    presence_changed_at: presence.changed_at,
    capacity: row.capacity,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** Departments of several agents in one query, keyed by agent id, sorted by department name. */
export async function departmentsOfAgents(db: Executor, agentIds: string[]) {
  const byAgent = new Map<string, AgentDepartment[]>(agentIds.map((id) => [id, []]));
  if (agentIds.length === 0) return byAgent;
  const rows = await db
    .selectFrom('department_members as m')
    .innerJoin('departments as d', 'd.id', 'm.department_id')
    .select(['m.agent_id', 'm.department_id', 'd.name as department_name', 'm.role', 'm.level'])
    .where('m.agent_id', 'in', agentIds)
    .orderBy(sql`lower(d.name)`)
    .orderBy('d.id')
    .execute();
  for (const r of rows) {
    byAgent.get(r.agent_id)?.push({
      department_id: r.department_id,
      department_name: r.department_name,
      role: r.role,
      level: r.level,
    });
  }
  return byAgent;
}

export async function findAgent(db: Executor, id: string): Promise<Agent | undefined> {
  const row = await db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  return toAgent(row, (await departmentsOfAgents(db, [id])).get(id) ?? []);
}

export function findAgentRow(db: Executor, id: string) {
  return db.selectFrom('agents').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * An agent's memberships as [department_id, role] pairs (a json array), for the auth statements.
 * `agentIdColumn` must name its table (`a.id`, `found.agent_id`): a bare `agent_id` would bind
 * to the subquery's own department_members.agent_id and return every agent's memberships (the
 * inner alias, own_m, is one no caller uses, for the same reason).
 */
export function departmentsOf(agentIdColumn: QualifiedColumn) {
  return sql<
    [string, DepartmentRole][]
  >`(select coalesce(json_agg(json_build_array(own_m.department_id, own_m.role)), '[]')
    from department_members own_m where own_m.agent_id = ${sql.ref(agentIdColumn)})`;
}

/** What authenticating a session needs of its agent, with the agent's departments: one round trip. */
export async function findAgentForAuth(db: Executor, id: string) {
  const { rows } = await prepared(sql<{
    id: string;
    role: AgentRole;
    status: AgentStatus;
    password_changed_at: Date | null;
    departments: [string, DepartmentRole][];
  }>`select a.id, a.role, a.status, a.password_changed_at, ${departmentsOf('a.id')} as departments
    from agents a where a.id = ${id}`).execute(db);
  return rows[0];
}

export function lockAgentRow(trx: Transaction<Database>, id: string) {
  return trx.selectFrom('agents').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export function findAgentRowByEmail(db: Executor, email: string) {
  return db
    .selectFrom('agents')
    .selectAll()
    .where(sql<string>`lower(email)`, '=', email.trim().toLowerCase())
    .executeTakeFirst();
}

export interface AgentFilter {
  q?: string | undefined;
  role?: AgentRole | undefined;
  status?: AgentStatus | undefined;
  department_id?: string | undefined;
}

// The sort key comes back from PostgreSQL (sort_key) rather than being recomputed in JS, whose
// lower-casing differs from the database's for some scripts.
const agentKeyset = (filter: AgentFilter): Keyset<AgentRow & { sort_key: string }> => ({
  list: `agents:${JSON.stringify(filter)}`,
  columns: [sql`lower(agents.name)`, sql`agents.id`],
  key: (row) => [row.sort_key, row.id],
  direction: 'asc',
});

export async function listAgents(
  db: Db,
  filter: AgentFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset = agentKeyset(filter);
  const after = afterCursor(keyset, page.cursor);
  const like = filter.q ? `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
  const rows = await db
    .selectFrom('agents')
    .selectAll('agents')
    .select(sql<string>`lower(agents.name)`.as('sort_key'))
    .$if(like !== undefined, (qb) =>
      qb.where((eb) => eb.or([eb('agents.name', 'ilike', like!), eb('agents.email', 'ilike', like!)])),
    )
    .$if(filter.role !== undefined, (qb) => qb.where('agents.role', '=', filter.role!))
    .$if(filter.status !== undefined, (qb) => qb.where('agents.status', '=', filter.status!))
    .$if(filter.department_id !== undefined, (qb) =>
      qb.where((eb) =>
        eb.exists(
          eb
            .selectFrom('department_members as m')
            .select(sql`1`.as('one'))
            .whereRef('m.agent_id', '=', 'agents.id')
            .where('m.department_id', '=', filter.department_id!),
        ),
      ),
    )
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  const departments = await departmentsOfAgents(
    db,
    rows.slice(0, page.limit).map((r) => r.id),
  );
  return toPage(keyset, rows, page.limit, (row) => toAgent(row, departments.get(row.id) ?? []));
}

export async function insertAgent(
  db: Executor,
  values: {
    name: string;
    email: string;
    role: AgentRole;
    password_hash: string | null;
    capacity?: number | null;
  },
) {
  return db
    .insertInto('agents')
    .values({ ...values, password_changed_at: values.password_hash ? new Date() : null })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function updateAgentRow(
  trx: Executor,
  id: string,
  patch: Partial<Pick<AgentRow, 'name' | 'email' | 'role' | 'status' | 'password_hash' | 'capacity'>>,
) {
  const changes: Record<string, unknown> = { ...patch, updated_at: new Date() };
  if (patch.password_hash !== undefined) changes.password_changed_at = new Date();
  return trx.updateTable('agents').set(changes).where('id', '=', id).returningAll().executeTakeFirstOrThrow();
}

/** Ends every session token issued so far (they carry password_changed_at; see plugins/auth.ts). */
export async function endSessions(trx: Executor, id: string) {
  await trx.updateTable('agents').set({ password_changed_at: new Date() }).where('id', '=', id).execute();
}

export async function deleteAgentRow(trx: Executor, id: string) {
  await trx.deleteFrom('agents').where('id', '=', id).execute();
}

/**
 * Serialises the changes that may take away an active owner until the transaction ends. Row
 * locks alone do not: two owners demoting each other lock different rows, each still counts the
 * other as an owner, and both commit.
 */
export async function lockOwnerChanges(trx: Transaction<Database>): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext('deskroute:agents:active-owners'))`.execute(trx);
}

export async function countActiveOwners(trx: Executor): Promise<number> {
  const row = await trx
    .selectFrom('agents')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('role', '=', 'owner')
    .where('status', '=', 'active')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function countAgents(db: Executor): Promise<number> {
  const row = await db
    .selectFrom('agents')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export function recordSignIn(db: Executor, id: string) {
  return db
    .updateTable('agents')
    .set({ last_sign_in_at: new Date() })
    .where('id', '=', id)
    .modifyEnd(AUTH_NEUTRAL)
    .execute();
}

/**
 * Records a presence the agent states at `at` (the server's clock; tests pass an earlier one):
 * online and away hold until `at` plus the timeout, offline until changed. Stating the presence
 * the agent already has is a heartbeat: it moves the expiry and keeps presence_changed_at.
 */
export async function confirmPresence(
  db: Executor,
  agentId: string,
  status: AgentPresence,
  options: { at: Date; timeoutSeconds: number },
): Promise<AgentRow | undefined> {
  const at = options.at;
  const expires = status === 'offline' ? null : new Date(at.getTime() + options.timeoutSeconds * 1000);
  // The presence in effect until now, as effectivePresence derives it (with `at` for now).
  const expired = sql<boolean>`(presence <> 'offline' and (presence_expires_at is null or presence_expires_at <= ${at}))`;
  return (
    db
      .updateTable('agents')
      .set({
        presence: status,
        presence_confirmed_at: at,
        presence_expires_at: expires,
        presence_changed_at: sql<Date | null>`case
        when (case when ${expired} then 'offline' else presence end) = ${status}
          then (case when ${expired} then presence_expires_at else presence_changed_at end)
        else ${at}::timestamptz end`,
      })
      .where('id', '=', agentId)
      .returningAll()
      // A heartbeat (every agent online, every few seconds) must not empty every auth cache.
      .modifyEnd(AUTH_NEUTRAL)
      .executeTakeFirst()
  );
}
