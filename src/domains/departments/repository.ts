import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database, DepartmentRole, DepartmentRow, MemberLevel } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { Department, Member } from './schemas.ts';

type Executor = Kysely<Database>;

type DepartmentWithCount = DepartmentRow & { member_count: number };

export function toDepartment(row: DepartmentWithCount): Department {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    to_solve_enabled: row.to_solve_enabled,
    selectable_on_contact_form: row.selectable_on_contact_form,
    schedule_id: row.schedule_id,
    availability: {
      chat: row.chat_availability,
      phone: row.phone_availability,
      messaging: row.messaging_availability,
    },
    member_count: Number(row.member_count),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

function selectDepartments(db: Executor) {
  return db
    .selectFrom('departments')
    .selectAll('departments')
    .select((eb) =>
      eb
        .selectFrom('department_members as m')
        .select(eb.fn.countAll<number>().as('n'))
        .whereRef('m.department_id', '=', 'departments.id')
        .as('member_count'),
    );
}

export async function findDepartment(db: Executor, id: string): Promise<Department | undefined> {
  const row = await selectDepartments(db).where('departments.id', '=', id).executeTakeFirst();
  return row ? toDepartment(row as DepartmentWithCount) : undefined;
}

/**
 * Key-share-locks the department row: it cannot be deleted until commit, and writers that move
 * tickets (or anything else) into it are not held up. Whether it exists.
 */
export async function holdDepartment(trx: Transaction<Database>, id: string): Promise<boolean> {
  const row = await trx
    .selectFrom('departments')
    .select('id')
    .where('id', '=', id)
    .forKeyShare()
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Locks the department's round-robin cursor, which its deletion deletes (on delete cascade). An
 * assignment locks the cursor and then, through the cursor's and the ticket's foreign keys, the
 * key share of the department: its deletion takes them in that order too.
 */
export async function lockRoundRobinCursor(trx: Transaction<Database>, departmentId: string) {
  await trx
    .selectFrom('round_robin_cursors')
    .select('department_id')
    .where('department_id', '=', departmentId)
    .forUpdate()
    .execute();
}

/** Locks the department row for the rest of the transaction and returns its representation. */
export async function lockDepartment(
  trx: Transaction<Database>,
  id: string,
): Promise<Department | undefined> {
  const locked = await trx
    .selectFrom('departments')
    .select('id')
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return locked ? findDepartment(trx, id) : undefined;
}

export interface DepartmentFilter {
  q?: string | undefined;
  selectable_on_contact_form?: boolean | undefined;
}

const departmentKeyset = (filter: DepartmentFilter): Keyset<DepartmentWithCount & { sort_key: string }> => ({
  list: `departments:${JSON.stringify(filter)}`,
  columns: [sql`lower(departments.name)`, sql`departments.id`],
  key: (row) => [row.sort_key, row.id],
  direction: 'asc',
});

export async function listDepartments(
  db: Executor,
  filter: DepartmentFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset = departmentKeyset(filter);
  const after = afterCursor(keyset, page.cursor);
  const like = filter.q ? `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
  const rows = await selectDepartments(db)
    .select(sql<string>`lower(departments.name)`.as('sort_key'))
    .$if(like !== undefined, (qb) => qb.where('departments.name', 'ilike', like!))
    .$if(filter.selectable_on_contact_form !== undefined, (qb) =>
      qb.where('departments.selectable_on_contact_form', '=', filter.selectable_on_contact_form!),
    )
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows as (DepartmentWithCount & { sort_key: string })[], page.limit, toDepartment);
}

type EditableColumns =
  | 'description'
  | 'to_solve_enabled'
  | 'selectable_on_contact_form'
  | 'schedule_id'
  | 'chat_availability'
  | 'phone_availability'
  | 'messaging_availability';

export function insertDepartment(
  db: Executor,
  values: Pick<DepartmentRow, 'name'> & Partial<Pick<DepartmentRow, EditableColumns>>,
) {
  return db.insertInto('departments').values(values).returning('id').executeTakeFirstOrThrow();
}

export function updateDepartment(
  trx: Executor,
  id: string,
  patch: Partial<Pick<DepartmentRow, 'name' | EditableColumns>>,
) {
  return trx
    .updateTable('departments')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export function deleteDepartmentRow(trx: Executor, id: string) {
  return trx.deleteFrom('departments').where('id', '=', id).execute();
}

export async function departmentsExist(db: Executor, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.selectFrom('departments').select('id').where('id', 'in', ids).execute();
  return new Set(rows.map((r) => r.id));
}

/** Every department with the schedule it names (null: the default's), for departmentCalendars. */
export function departmentSchedules(db: Executor): Promise<{ id: string; schedule_id: string | null }[]> {
  return db.selectFrom('departments').select(['id', 'schedule_id']).execute();
}

/** The departments that name a schedule: how many, and the first names (for a 409). */
export async function departmentsUsingSchedule(
  db: Executor,
  scheduleId: string,
  listed: number,
): Promise<{ count: number; names: string[] }> {
  const rows = await db
    .selectFrom('departments')
    .select(['name', sql<number>`count(*) over ()`.as('total')])
    .where('schedule_id', '=', scheduleId)
    .orderBy(sql`lower(name)`)
    .limit(listed)
    .execute();
  return { count: Number(rows[0]?.total ?? 0), names: rows.map((r) => r.name) };
}

// Members

export async function roleInDepartment(
  db: Executor,
  agentId: string,
  departmentId: string,
): Promise<DepartmentRole | null> {
  const row = await db
    .selectFrom('department_members')
    .select('role')
    .where('agent_id', '=', agentId)
    .where('department_id', '=', departmentId)
    .executeTakeFirst();
  return row?.role ?? null;
}

function selectMembers(db: Executor) {
  return db
    .selectFrom('department_members as m')
    .innerJoin('agents as a', 'a.id', 'm.agent_id')
    .select([
      'm.agent_id',
      'a.name',
      'a.email',
      'a.status as agent_status',
      'm.role',
      'm.level',
      'm.created_at',
      'm.updated_at',
      sql<string>`lower(a.name)`.as('sort_key'),
    ]);
}

type MemberRow = Awaited<ReturnType<ReturnType<typeof selectMembers>['executeTakeFirstOrThrow']>>;

function toMember(row: MemberRow): Member {
  return {
    agent_id: row.agent_id,
    name: row.name,
    email: row.email,
    agent_status: row.agent_status,
    role: row.role,
    level: row.level,
    added_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export async function findMember(db: Executor, departmentId: string, agentId: string) {
  const row = await selectMembers(db)
    .where('m.department_id', '=', departmentId)
    .where('m.agent_id', '=', agentId)
    .executeTakeFirst();
  return row ? toMember(row) : undefined;
}

export async function listMembers(
  db: Executor,
  departmentId: string,
  filter: { role?: DepartmentRole | undefined },
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<MemberRow> = {
    list: `members:${departmentId}:${filter.role ?? ''}`,
    columns: [sql`lower(a.name)`, sql`m.agent_id`],
    key: (row) => [row.sort_key, row.agent_id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await selectMembers(db)
    .where('m.department_id', '=', departmentId)
    .$if(filter.role !== undefined, (qb) => qb.where('m.role', '=', filter.role!))
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toMember);
}

/**
 * Adds the agent or changes their role (and level, when given; a new member without one is at
 * level 1); returns whether the membership is new.
 */
export async function upsertMember(
  trx: Executor,
  departmentId: string,
  agentId: string,
  role: DepartmentRole,
  level?: MemberLevel,
): Promise<boolean> {
  const row = await trx
    .insertInto('department_members')
    .values({ department_id: departmentId, agent_id: agentId, role, ...(level !== undefined && { level }) })
    .onConflict((oc) =>
      oc.columns(['department_id', 'agent_id']).doUpdateSet({
        role,
        ...(level !== undefined && { level }),
        updated_at: sql`case when department_members.role = excluded.role and department_members.level = excluded.level then department_members.updated_at else now() end`,
      }),
    )
    .returning(sql<boolean>`xmax = 0`.as('inserted'))
    .executeTakeFirstOrThrow();
  return row.inserted;
}

export async function removeMember(trx: Executor, departmentId: string, agentId: string): Promise<boolean> {
  const result = await trx
    .deleteFrom('department_members')
    .where('department_id', '=', departmentId)
    .where('agent_id', '=', agentId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export async function removeMembersExcept(trx: Executor, departmentId: string, keep: string[]) {
  await trx
    .deleteFrom('department_members')
    .where('department_id', '=', departmentId)
    .$if(keep.length > 0, (qb) => qb.where('agent_id', 'not in', keep))
    .execute();
}

export async function addAllAgents(
  trx: Executor,
  departmentId: string,
  role: DepartmentRole,
  includeDisabled: boolean,
): Promise<number> {
  const result = await trx
    .insertInto('department_members')
    .columns(['department_id', 'agent_id', 'role'])
    .expression((eb) =>
      eb
        .selectFrom('agents')
        .select([
          sql<string>`${departmentId}::uuid`.as('department_id'),
          'agents.id',
          sql<DepartmentRole>`${role}::text`.as('role'),
        ])
        .$if(!includeDisabled, (qb) => qb.where('agents.status', '=', 'active')),
    )
    .onConflict((oc) => oc.columns(['department_id', 'agent_id']).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0);
}

export interface MemberStanding {
  role: DepartmentRole;
  level: MemberLevel;
}

/** Each member's role and level, for telling what a change of membership did (settings events). */
export async function memberRoles(db: Executor, departmentId: string): Promise<Map<string, MemberStanding>> {
  const rows = await db
    .selectFrom('department_members')
    .select(['agent_id', 'role', 'level'])
    .where('department_id', '=', departmentId)
    .execute();
  return new Map(rows.map((r) => [r.agent_id, { role: r.role, level: r.level }]));
}

/** The roles that may hold (be assigned) a department's tickets. */
export const HOLDING_ROLES: readonly DepartmentRole[] = ['solver', 'supervisor', 'manager'];

/** The statuses that count against an agent's capacity, and that least busy counts. */
export const BUSY_STATUSES = ['new', 'open', 'answered'] as const;

export interface AssignableFilter {
  /** Only members of this level (1 to 3); escalations ask for the level above the current one. */
  level?: MemberLevel | undefined;
  /** Only agents online now (their confirmation still holds) and under their capacity. */
  availableOnly?: boolean | undefined;
  /** Only these roles (a subset of HOLDING_ROLES): escalation to the supervisors. */
  roles?: readonly DepartmentRole[] | undefined;
  /** Never this agent (the assignee an escalation hands the ticket on from). */
  except?: string | null | undefined;
}

/** The roles that supervise a department's work (manager includes supervisor). */
export const SUPERVISING_ROLES: readonly DepartmentRole[] = ['supervisor', 'manager'];

/**
 * The members who may be handed a department's tickets automatically: active agents who are
 * solvers or more there, narrowed by level and availability. A query over `m`
 * (department_members) and `a` (agents) for the caller to select from and order; the round
 * robin, least busy and SLA escalations (tickets/escalation.ts) all start here, so they can never
 * disagree on who qualifies. Availability is judged with the database's clock (now()), the same
 * test as agents/repository.ts effectivePresence.
 */
export function assignableMembers(db: Executor, departmentId: string, filter: AssignableFilter = {}) {
  return db
    .selectFrom('department_members as m')
    .innerJoin('agents as a', 'a.id', 'm.agent_id')
    .where('m.department_id', '=', departmentId)
    .where('m.role', 'in', HOLDING_ROLES)
    .where('a.status', '=', 'active')
    .$if(filter.level !== undefined, (qb) => qb.where('m.level', '=', filter.level!))
    .$if(filter.roles !== undefined, (qb) => qb.where('m.role', 'in', filter.roles!))
    .$if(typeof filter.except === 'string', (qb) => qb.where('m.agent_id', '<>', filter.except!))
    .$if(filter.availableOnly === true, (qb) =>
      qb
        .where('a.presence', '=', 'online')
        .where('a.presence_expires_at', '>', sql<Date>`now()`)
        .where((eb) =>
          eb.or([
            eb('a.capacity', 'is', null),
            eb(
              eb
                .selectFrom('tickets as busy')
                .select(eb.fn.countAll<number>().as('n'))
                .whereRef('busy.assignee_id', '=', 'a.id')
                .where('busy.status', 'in', BUSY_STATUSES),
              '<',
              eb.ref('a.capacity'),
            ),
          ]),
        ),
    );
}

/** An agent's role and level in a department; undefined when not a member. */
export async function memberStanding(
  db: Executor,
  departmentId: string,
  agentId: string,
): Promise<MemberStanding | undefined> {
  return db
    .selectFrom('department_members')
    .select(['role', 'level'])
    .where('department_id', '=', departmentId)
    .where('agent_id', '=', agentId)
    .executeTakeFirst();
}

/** The active supervisors and managers of a department, whatever their presence (they read later). */
export async function supervisorsOf(db: Executor, departmentId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('department_members as m')
    .innerJoin('agents as a', 'a.id', 'm.agent_id')
    .select('m.agent_id')
    .where('m.department_id', '=', departmentId)
    .where('m.role', 'in', SUPERVISING_ROLES)
    .where('a.status', '=', 'active')
    .orderBy('m.agent_id')
    .execute();
  return rows.map((r) => r.agent_id);
}
