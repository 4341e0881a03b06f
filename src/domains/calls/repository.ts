import type { Insertable, Kysely } from 'kysely';
import type { CallsTable, Database } from '../../db/types.ts';

export function insertCall(trx: Kysely<Database>, values: Insertable<CallsTable>) {
  return trx.insertInto('calls').values(values).returningAll().executeTakeFirstOrThrow();
}

export async function agentExists(db: Kysely<Database>, agentId: string): Promise<boolean> {
  const row = await db.selectFrom('agents').select('id').where('id', '=', agentId).executeTakeFirst();
  return row !== undefined;
}
