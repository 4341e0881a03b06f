import type { Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';

/**
 * Whether the department exists and is offered on the contact form. A found department is
 * key-share-locked for the rest of the transaction, so it cannot be deleted before the new
 * ticket refers to it; unlike FOR UPDATE, this does not queue concurrent form submissions.
 */
export async function holdFormDepartment(trx: Transaction<Database>, id: string): Promise<boolean> {
  const row = await trx
    .selectFrom('departments')
    .select('id')
    .where('id', '=', id)
    .where('selectable_on_contact_form', '=', true)
    .forKeyShare()
    .executeTakeFirst();
  return row !== undefined;
}
