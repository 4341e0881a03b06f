import { type Kysely, sql, type Transaction } from 'kysely';
import { dbNow } from '../../db/clock.ts';
import type { Database } from '../../db/types.ts';
import type { TicketSort } from '../tickets/schemas.ts';
import type { View, ViewFilters } from './schemas.ts';

type Executor = Kysely<Database>;
type Row = Awaited<ReturnType<typeof findRow>> & {};

function findRow(db: Executor, id: string) {
  return db.selectFrom('saved_views').selectAll().where('id', '=', id).executeTakeFirst();
}

export function toView(row: Row): View {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    department_id: row.department_id,
    owner_agent_id: row.owner_agent_id,
    filters: row.filters as ViewFilters,
    sort: row.sort as TicketSort,
    position: row.position,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export async function findView(db: Executor, id: string): Promise<View | undefined> {
  const row = await findRow(db, id);
  return row ? toView(row) : undefined;
}

export async function lockView(db: Executor, id: string): Promise<View | undefined> {
  const row = await db
    .selectFrom('saved_views')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row ? toView(row) : undefined;
}

/**
 * The views one agent may see: their own, their departments' (every department for `null`, an
 * admin) and the help desk's; in sidebar order.
 */
export async function listVisibleViews(db: Executor, agentId: string, departments: string[] | null) {
  const rows = await db
    .selectFrom('saved_views')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb('scope', '=', 'helpdesk'),
        eb('owner_agent_id', '=', agentId),
        ...(departments === null
          ? [eb('scope', '=', 'department')]
          : departments.length > 0
            ? [eb('department_id', 'in', departments)]
            : []),
      ]),
    )
    .orderBy(sql`position asc nulls last`)
    .orderBy(sql`lower(name)`)
    .orderBy('id')
    .execute();
  return rows.map(toView);
}

/**
 * How many views one holder (an owner, a department, or the help desk for both null) has, the
 * holder locked against another creation until the transaction ends (so `trx` must be one): two
 * agents creating at once could otherwise both count 49 and both insert.
 */
export async function countViewsOf(
  db: Transaction<Database>,
  holder: { owner: string | null; department: string | null },
) {
  const key = `deskroute:views:${holder.owner ?? holder.department ?? 'helpdesk'}`;
  await sql`select pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(db);
  const row = await db
    .selectFrom('saved_views')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .$if(holder.owner !== null, (qb) => qb.where('owner_agent_id', '=', holder.owner!))
    .$if(holder.department !== null, (qb) => qb.where('department_id', '=', holder.department!))
    .$if(holder.owner === null && holder.department === null, (qb) => qb.where('scope', '=', 'helpdesk'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export interface ViewValues {
  name: string;
  filters: ViewFilters;
  sort: TicketSort;
  position: number | null;
}

export async function insertView(
  db: Executor,
  holder: Pick<View, 'scope' | 'owner_agent_id' | 'department_id'>,
  values: ViewValues,
  createdBy: string,
): Promise<string> {
  const row = await db
    .insertInto('saved_views')
    .values({ ...holder, ...values, filters: JSON.stringify(values.filters), created_by: createdBy })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function updateView(db: Executor, id: string, values: ViewValues) {
  await db
    .updateTable('saved_views')
    .set({ ...values, filters: JSON.stringify(values.filters), updated_at: dbNow })
    .where('id', '=', id)
    .execute();
}

export async function deleteView(db: Executor, id: string) {
  await db.deleteFrom('saved_views').where('id', '=', id).execute();
}

/** Which of these ids are not departments. */
export async function missingDepartments(db: Executor, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const found = await db.selectFrom('departments').select('id').where('id', 'in', ids).execute();
  const present = new Set(found.map((r) => r.id));
  return new Set(ids.filter((id) => !present.has(id)));
}

/** Which of these ids are not agents. */
export async function missingAgents(db: Executor, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const found = await db.selectFrom('agents').select('id').where('id', 'in', ids).execute();
  const present = new Set(found.map((r) => r.id));
  return new Set(ids.filter((id) => !present.has(id)));
}
