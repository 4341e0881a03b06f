import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { CannedResponse } from './schemas.ts';

type Executor = Kysely<Database>;
type Row = Awaited<ReturnType<typeof findRow>> & {};

function findRow(db: Executor, id: string) {
  return db.selectFrom('canned_responses').selectAll().where('id', '=', id).executeTakeFirst();
}

export function toCannedResponse(row: Row): CannedResponse {
  return {
    id: row.id,
    department_id: row.department_id,
    title: row.title,
    body: row.body,
    tags: row.tags,
    status: row.status,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export async function findCannedResponse(db: Executor, id: string): Promise<CannedResponse | undefined> {
  const row = await findRow(db, id);
  return row ? toCannedResponse(row) : undefined;
}

export async function lockCannedResponse(db: Executor, id: string): Promise<CannedResponse | undefined> {
  const row = await db
    .selectFrom('canned_responses')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row ? toCannedResponse(row) : undefined;
}

export interface CannedResponseFilter {
  q?: string | undefined;
  department_id?: string | undefined;
  /** The departments the caller may use (null: every one, an admin). */
  departments: string[] | null;
}

const keysetOf = (filter: CannedResponseFilter): Keyset<Row & { sort_key: string }> => ({
  list: `canned_responses:${JSON.stringify(filter)}`,
  columns: [sql`lower(canned_responses.title)`, sql`canned_responses.id`],
  key: (row) => [row.sort_key, row.id],
  direction: 'asc',
});

export async function listCannedResponses(
  db: Executor,
  filter: CannedResponseFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset = keysetOf(filter);
  const after = afterCursor(keyset, page.cursor);
  const like = filter.q ? `%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : undefined;
  const departments =
    filter.department_id === undefined
      ? filter.departments
      : filter.departments === null || filter.departments.includes(filter.department_id)
        ? [filter.department_id]
        : [];
  const rows = await db
    .selectFrom('canned_responses')
    .selectAll()
    .select(sql<string>`lower(canned_responses.title)`.as('sort_key'))
    .where((eb) =>
      departments === null
        ? sql<boolean>`true`
        : eb.or([
            eb('department_id', 'is', null),
            ...(departments.length > 0 ? [eb('department_id', 'in', departments)] : []),
          ]),
    )
    .$if(like !== undefined, (qb) =>
      qb.where((eb) => eb.or([eb('title', 'ilike', like!), eb('body', 'ilike', like!)])),
    )
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toCannedResponse);
}

export interface CannedResponseValues {
  title: string;
  body: string;
  tags: string[];
  status: CannedResponse['status'];
}

export async function insertCannedResponse(
  db: Executor,
  departmentId: string | null,
  values: CannedResponseValues,
): Promise<string> {
  const row = await db
    .insertInto('canned_responses')
    .values({ department_id: departmentId, ...values })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

export async function updateCannedResponse(db: Executor, id: string, values: CannedResponseValues) {
  await db
    .updateTable('canned_responses')
    .set({ ...values, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export async function deleteCannedResponse(db: Executor, id: string) {
  await db.deleteFrom('canned_responses').where('id', '=', id).execute();
}
