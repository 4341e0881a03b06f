import type { Insertable, Kysely } from 'kysely';
import type { ChatsTable, Database } from '../../db/types.ts';

export function insertChat(trx: Kysely<Database>, values: Insertable<ChatsTable>) {
  return trx.insertInto('chats').values(values).returningAll().executeTakeFirstOrThrow();
}
