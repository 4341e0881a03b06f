import { type Kysely, sql, type Transaction } from 'kysely';
import type { ContactFieldType, Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { ContactField } from './schemas.ts';

type Executor = Kysely<Database>;

const COLUMNS = ['id', 'key', 'label', 'type', 'options', 'created_at', 'updated_at'] as const;

type ContactFieldRow = {
  id: string;
  key: string;
  label: string;
  type: ContactFieldType;
  options: string[];
  created_at: Date;
  updated_at: Date;
};

export function toContactField(row: ContactFieldRow): ContactField {
  return {
    id: row.id,
    key: row.key,
    label: row.label,
    type: row.type,
    options: row.options,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

/** The definition the values are checked against; `options` is empty unless type is choice. */
export type FieldDefinition = Pick<ContactFieldRow, 'key' | 'type' | 'options'>;

export async function findContactField(db: Executor, id: string): Promise<ContactField | undefined> {
  const row = await db.selectFrom('contact_fields').select(COLUMNS).where('id', '=', id).executeTakeFirst();
  return row ? toContactField(row) : undefined;
}

/** Locks the definition until the transaction ends, so no contact write sees it half-changed. */
export async function lockContactField(
  trx: Transaction<Database>,
  id: string,
): Promise<ContactField | undefined> {
  const row = await trx
    .selectFrom('contact_fields')
    .select(COLUMNS)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
  return row ? toContactField(row) : undefined;
}

/**
 * The definitions of the given keys, share-locked: a contact write validates its values against
 * them, and a concurrent change of type, key or options waits until that write has committed
 * (and then counts its values) instead of slipping in between the check and the write.
 */
export async function shareFieldDefinitions(
  trx: Executor,
  keys: string[],
): Promise<Map<string, FieldDefinition>> {
  if (keys.length === 0) return new Map();
  const rows = await trx
    .selectFrom('contact_fields')
    .select(['key', 'type', 'options'])
    .where('key', 'in', keys)
    .orderBy('key')
    .forShare()
    .execute();
  return new Map(rows.map((r) => [r.key, r]));
}

const fieldKeyset: Keyset<ContactFieldRow> = {
  list: 'contact-fields',
  columns: [sql`key`, sql`id`],
  key: (row) => [row.key, row.id],
  direction: 'asc',
};

export async function listContactFields(db: Executor, page: { limit: number; cursor?: string | undefined }) {
  const after = afterCursor(fieldKeyset, page.cursor);
  const rows = await db
    .selectFrom('contact_fields')
    .select(COLUMNS)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(fieldKeyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(fieldKeyset, rows, page.limit, toContactField);
}

function keyTaken(error: unknown): never {
  const e = error as { code?: string; constraint?: string };
  if (e.code === '23505' && e.constraint === 'contact_fields_key_key') {
    const taken = new DomainError(
      'conflict',
      'contact_field_key_taken',
      'A contact field with this key exists.',
    );
    taken.errors = [{ field: 'body/key', message: 'is taken' }];
    throw taken;
  }
  throw error;
}

export async function insertContactField(
  db: Executor,
  values: { key: string; label: string; type: ContactFieldType; options: string[] },
): Promise<string> {
  const row = await db
    .insertInto('contact_fields')
    .values(values)
    .returning('id')
    .executeTakeFirstOrThrow()
    .catch(keyTaken);
  return row.id;
}

export async function updateContactField(
  trx: Executor,
  id: string,
  patch: Partial<{ key: string; label: string; type: ContactFieldType; options: string[] }>,
) {
  await trx
    .updateTable('contact_fields')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .execute()
    .catch(keyTaken);
}

export async function deleteContactFieldRow(trx: Executor, id: string) {
  await trx.deleteFrom('contact_fields').where('id', '=', id).execute();
}
