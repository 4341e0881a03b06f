import { type Kysely, type Selectable, sql } from 'kysely';
import type { Database, ImportKeysTable, ImportsTable } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy } from '../../plugins/pagination.ts';

type Executor = Kysely<Database>;

export type ImportRow = Selectable<ImportsTable>;

export function findKey(db: Executor, source: string, type: string, externalId: string) {
  return db
    .selectFrom('import_keys')
    .select(['target_id', 'digest'])
    .where('source', '=', source)
    .where('type', '=', type)
    .where('external_id', '=', externalId)
    .executeTakeFirst();
}

export async function insertKey(db: Executor, key: Selectable<ImportKeysTable>): Promise<void> {
  await db.insertInto('import_keys').values(key).execute();
}

/**
 * The keys a batch's records already have, in one statement (`type \0 external_id` to the key).
 * Each looked up by its own probe of the primary key (the lateral's LIMIT keeps it from being
 * flattened into a join): planned as a join, PostgreSQL hashed the whole table for every batch,
 * 10 ms a batch at 50,000 keys and growing with the import.
 */
export async function findKeys(
  db: Executor,
  source: string,
  records: readonly { type: string; external_id: string }[],
): Promise<Map<string, { target_id: string; digest: string | null }>> {
  const found = new Map<string, { target_id: string; digest: string | null }>();
  if (records.length === 0) return found;
  const rows = await sql<{ type: string; external_id: string; target_id: string; digest: string | null }>`
    select k.type, k.external_id, k.target_id, k.digest
    from unnest(${records.map((r) => r.type)}::text[], ${records.map((r) => r.external_id)}::text[])
      as wanted (type, external_id)
    cross join lateral (select * from import_keys k where k.source = ${source} and k.type = wanted.type
      and k.external_id = wanted.external_id limit 1) k`.execute(db);
  for (const row of rows.rows) found.set(`${row.type}\u0000${row.external_id}`, row);
  return found;
}

/**
 * Inserts a batch's new keys in one statement. Answers how many went in: fewer than given when
 * another import of the same source took one of them meanwhile (its row stays).
 */
export async function insertKeys(
  db: Executor,
  keys: readonly Selectable<ImportKeysTable>[],
): Promise<number> {
  if (keys.length === 0) return 0;
  const result = await db
    .insertInto('import_keys')
    .values([...keys])
    .onConflict((oc) => oc.columns(['source', 'type', 'external_id']).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0);
}

export async function updateKeyDigest(
  db: Executor,
  source: string,
  type: string,
  externalId: string,
  digest: string,
): Promise<void> {
  await db
    .updateTable('import_keys')
    .set({ digest })
    .where('source', '=', source)
    .where('type', '=', type)
    .where('external_id', '=', externalId)
    .execute();
}

/** The first message of a ticket (an imported ticket's opening message). */
export async function firstMessageOf(db: Executor, ticketId: string): Promise<string | null> {
  const row = await db
    .selectFrom('ticket_messages')
    .select('id')
    .where('ticket_id', '=', ticketId)
    .orderBy('created_at')
    .orderBy('id')
    .limit(1)
    .executeTakeFirst();
  return row?.id ?? null;
}

export async function agentByEmail(db: Executor, email: string) {
  const row = await db
    .selectFrom('agents')
    .select(['id', 'role'])
    .where(sql<boolean>`lower(email) = lower(${email})`)
    .executeTakeFirst();
  return row ?? null;
}

export async function departmentByName(db: Executor, name: string): Promise<string | null> {
  const row = await db
    .selectFrom('departments')
    .select('id')
    .where(sql<boolean>`lower(name) = lower(${name.trim()})`)
    .executeTakeFirst();
  return row?.id ?? null;
}

export async function contactFieldByKey(db: Executor, key: string): Promise<string | null> {
  const row = await db.selectFrom('contact_fields').select('id').where('key', '=', key).executeTakeFirst();
  return row?.id ?? null;
}

export async function contactByEmail(db: Executor, email: string): Promise<string | null> {
  const row = await db
    .selectFrom('contact_emails')
    .select('contact_id')
    .where(sql<boolean>`lower(email) = lower(${email})`)
    .executeTakeFirst();
  return row?.contact_id ?? null;
}

export async function insertImport(
  db: Executor,
  values: {
    id: string;
    source: string;
    format: 'ndjson' | 'csv';
    run_rules: boolean;
    blob_key: string;
    size_bytes: number;
    created_by: string;
  },
): Promise<ImportRow> {
  return db.insertInto('imports').values(values).returningAll().executeTakeFirstOrThrow();
}

export function findImport(db: Executor, id: string) {
  return db.selectFrom('imports').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function listImports(db: Executor, page: { limit: number; cursor?: string | undefined }) {
  const keyset: Keyset<ImportRow> = {
    list: 'imports',
    columns: [sql`created_at`, sql`id`],
    key: (r) => [r.created_at.toISOString(), r.id],
    direction: 'desc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('imports')
    .selectAll()
    .$if(after !== null, (q) => q.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return { keyset, rows };
}

export type ImportErrorRow = {
  line: number;
  type: string | null;
  external_id: string | null;
  code: string;
  message: string;
};

export async function listErrors(
  db: Executor,
  importId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<ImportErrorRow> = {
    list: `import-errors:${importId}`,
    columns: [sql`line`],
    key: (r) => [r.line],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('import_errors')
    .select(['line', 'type', 'external_id', 'code', 'message'])
    .where('import_id', '=', importId)
    .$if(after !== null, (q) => q.where(after!))
    .orderBy('line')
    .limit(page.limit + 1)
    .execute();
  return { keyset, rows };
}

export async function errorCount(db: Executor, importId: string): Promise<number> {
  const row = await db
    .selectFrom('import_errors')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('import_id', '=', importId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/**
 * Takes the oldest import waiting for a worker (queued, or running under a lease that ran out:
 * its process died, or under one of `ours`: leases this process could not hand back), under a
 * new lease. Two processes never take the same one.
 */
export async function claimImport(
  db: Executor,
  token: string,
  leaseSeconds: number,
  ours: readonly string[] = [],
): Promise<ImportRow | undefined> {
  const { rows } = await sql<ImportRow>`
    update imports set state = 'running', started_at = coalesce(started_at, now()),
      lease_token = ${token}::uuid, lease_until = now() + ${leaseSeconds} * interval '1 second'
    where id = (
      select id from imports
      where state in ('queued', 'running')
        and (lease_until is null or lease_until < now() or lease_token = any(${ours}::uuid[]))
      order by created_at limit 1 for update skip locked)
    returning *`.execute(db);
  return rows[0];
}

/** Locks the import for the batch's commit; undefined when another process took it over. */
export function lockLease(db: Executor, id: string, token: string) {
  return db
    .selectFrom('imports')
    .select('id')
    .where('id', '=', id)
    .where('lease_token', '=', token)
    .forUpdate()
    .executeTakeFirst();
}

export interface Progress {
  position: number;
  read: number;
  created: number;
  updated: number;
  skipped: number;
  failed: number;
}

export async function recordProgress(
  db: Executor,
  id: string,
  p: Progress,
  leaseSeconds: number,
  finished: boolean,
): Promise<void> {
  await db
    .updateTable('imports')
    .set({
      position: p.position,
      read_count: sql`read_count + ${p.read}`,
      created_count: sql`created_count + ${p.created}`,
      updated_count: sql`updated_count + ${p.updated}`,
      skipped_count: sql`skipped_count + ${p.skipped}`,
      failed_count: sql`failed_count + ${p.failed}`,
      ...(finished
        ? { state: 'finished', finished_at: sql`now()`, lease_until: null, lease_token: null }
        : { lease_until: sql`now() + ${leaseSeconds} * interval '1 second'` }),
    })
    .where('id', '=', id)
    .execute();
}

export async function insertErrors(
  db: Executor,
  rows: {
    import_id: string;
    line: number;
    type: string | null;
    external_id: string | null;
    code: string;
    message: string;
  }[],
): Promise<void> {
  if (rows.length > 0)
    await db
      .insertInto('import_errors')
      .values(rows)
      .onConflict((oc) => oc.doNothing())
      .execute();
}

export async function failImport(db: Executor, id: string, reason: string): Promise<void> {
  await db
    .updateTable('imports')
    .set({ state: 'failed', failure: reason, finished_at: sql`now()`, lease_until: null, lease_token: null })
    .where('id', '=', id)
    .execute();
}
