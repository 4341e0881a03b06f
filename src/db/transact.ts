import type { Kysely, Transaction } from 'kysely';
import type { Database } from './types.ts';

/**
 * Runs `work` in a transaction: the caller's when `db` already is one (the importer replays many
 * records in one transaction, each under a savepoint), else a new one. Services whose change
 * must be able to join a caller's transaction open theirs with this instead of
 * `db.transaction()`, which Kysely refuses inside a transaction.
 */
export function transact<T>(
  db: Kysely<Database>,
  work: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  return db.isTransaction ? work(db as Transaction<Database>) : db.transaction().execute(work);
}
