import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import type { CalendarDefinition, Holiday, WeeklyInterval } from '../../business-time/index.ts';
import { prepared } from '../../db/prepared.ts';
import type { Database, ScheduleRow } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { Schedule } from './schemas.ts';

type Executor = Kysely<Database>;

export function toSchedule(row: ScheduleRow): Schedule {
  return {
    id: row.id,
    name: row.name,
    time_zone: row.time_zone,
    intervals: row.intervals as WeeklyInterval[],
    holidays: row.holidays as Holiday[],
    is_default: row.is_default,
    version: row.version,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export async function findSchedule(db: Executor, id: string): Promise<Schedule | undefined> {
  const row = await db.selectFrom('schedules').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? toSchedule(row) : undefined;
}

/** Locks the schedule row for the rest of the transaction (and, for FOR UPDATE, against new references). */
export async function lockSchedule(trx: Transaction<Database>, id: string): Promise<Schedule | undefined> {
  const row = await trx
    .selectFrom('schedules')
    .selectAll()
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row ? toSchedule(row) : undefined;
}

const scheduleKeyset = (filter: ScheduleFilter): Keyset<ScheduleRow & { sort_key: string }> => ({
  list: `schedules:${JSON.stringify(filter)}`,
  columns: [sql`lower(schedules.name)`, sql`schedules.id`],
  key: (row) => [row.sort_key, row.id],
  direction: 'asc',
});

export interface ScheduleFilter {
  is_default?: boolean | undefined;
}

export async function listSchedules(
  db: Executor,
  filter: ScheduleFilter,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset = scheduleKeyset(filter);
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('schedules')
    .selectAll('schedules')
    .select(sql<string>`lower(schedules.name)`.as('sort_key'))
    .$if(filter.is_default !== undefined, (qb) => qb.where('schedules.is_default', '=', filter.is_default!))
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toSchedule);
}

export interface ScheduleValues {
  name: string;
  time_zone: string;
  intervals: WeeklyInterval[];
  holidays: Holiday[];
  is_default: boolean;
}

export function insertSchedule(trx: Executor, values: ScheduleValues) {
  return trx
    .insertInto('schedules')
    .values({
      ...values,
      intervals: JSON.stringify(values.intervals),
      holidays: JSON.stringify(values.holidays),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
}

/** Writes the whole schedule and moves its version on. */
export function updateSchedule(trx: Executor, id: string, values: ScheduleValues) {
  return trx
    .updateTable('schedules')
    .set({
      ...values,
      intervals: JSON.stringify(values.intervals),
      holidays: JSON.stringify(values.holidays),
      version: sql`version + 1`,
      updated_at: new Date(),
    })
    .where('id', '=', id)
    .execute();
}

/**
 * Default switches take this lock first: two concurrent switches would otherwise each clear the
 * old default and both set their own, and the second would fail on the one-default index.
 */
export async function lockDefaultSwitch(trx: Transaction<Database>) {
  await sql`select pg_advisory_xact_lock(hashtext('deskroute:schedules:default'))`.execute(trx);
}

/** The current default other than `exceptId`, locked. */
export async function lockOtherDefault(trx: Transaction<Database>, exceptId: string | null) {
  const row = await trx
    .selectFrom('schedules')
    .selectAll()
    .where('is_default', '=', true)
    .$if(exceptId !== null, (qb) => qb.where('id', '<>', exceptId!))
    .forUpdate()
    .executeTakeFirst();
  return row ? toSchedule(row) : undefined;
}

export function clearDefault(trx: Executor, id: string) {
  return trx
    .updateTable('schedules')
    .set({ is_default: false, version: sql`version + 1`, updated_at: new Date() })
    .where('id', '=', id)
    .execute();
}

export function deleteScheduleRow(trx: Executor, id: string) {
  return trx.deleteFrom('schedules').where('id', '=', id).execute();
}

/**
 * The key ('<id>@<version>', or null) of the schedule a department follows: its own, else the
 * help desk's default. A scalar subquery, so the ticket's opening reads it in a statement that
 * runs anyway (contacts' find-or-create, the lock of a ticket's change: pass the column then);
 * a ticket with no department follows the default.
 */
export function scheduleKeySql(departmentId: string | null | RawBuilder<unknown>) {
  return sql<string | null>`(select s.id::text || '@' || s.version from schedules s
    where s.id = coalesce(
      (select d.schedule_id from departments d where d.id = ${departmentId}::uuid),
      (select x.id from schedules x where x.is_default)))`;
}

/** scheduleKeySql on its own: one small indexed query. */
export async function scheduleKeyFor(db: Executor, departmentId: string | null): Promise<string | null> {
  const result = await prepared(
    sql<{ key: string | null }>`select ${scheduleKeySql(departmentId)} as key`,
  ).execute(db);
  return result.rows[0]?.key ?? null;
}

/** The keys of these schedules and of the default, in one query (lists of departments). */
export async function scheduleKeys(
  db: Executor,
  ids: string[],
): Promise<{ id: string; version: number; is_default: boolean }[]> {
  // The same key shape as scheduleKeySql, built by the caller.
  return db
    .selectFrom('schedules')
    .select(['id', 'version', 'is_default'])
    .where((eb) =>
      ids.length > 0
        ? eb.or([eb('id', 'in', ids), eb('is_default', '=', true)])
        : eb('is_default', '=', true),
    )
    .execute();
}

export async function calendarDefinitionOf(
  db: Executor,
  id: string,
): Promise<(CalendarDefinition & { version: number }) | undefined> {
  const row = await db
    .selectFrom('schedules')
    .select(['time_zone', 'intervals', 'holidays', 'version'])
    .where('id', '=', id)
    .executeTakeFirst();
  return row
    ? {
        time_zone: row.time_zone,
        intervals: row.intervals as WeeklyInterval[],
        holidays: row.holidays as Holiday[],
        version: row.version,
      }
    : undefined;
}
