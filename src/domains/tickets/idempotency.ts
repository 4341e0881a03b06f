import { createHash } from 'node:crypto';
import type { Transaction } from 'kysely';
import { sql } from 'kysely';
import type { Db } from '../../db/database.ts';
import type { Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';

export interface IdempotentResult<T> {
  status: number;
  body: T;
  replayed: boolean;
}

/**
 * Runs `create` once per (scope, key): a retry with the same key gets the first response back
 * instead of a second ticket. The key row is inserted in the same transaction as the ticket, so
 * a concurrent retry waits on it and then reads the committed result; if the first attempt
 * fails, nothing is kept and the retry runs afresh.
 */
export async function idempotent<T>(
  db: Db,
  scope: string,
  key: string,
  request: unknown,
  create: (trx: Transaction<Database>) => Promise<{ status: number; body: T }>,
): Promise<IdempotentResult<T>> {
  const requestHash = createHash('sha256').update(JSON.stringify(request)).digest('hex');
  return db.transaction().execute(async (trx) => {
    const inserted = await trx
      .insertInto('idempotency_keys')
      .values({ scope, key, request_hash: requestHash })
      .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst();
    if (!inserted) {
      const row = await trx
        .selectFrom('idempotency_keys')
        .select(['request_hash', 'status_code', 'response'])
        .where('scope', '=', scope)
        .where('key', '=', key)
        .executeTakeFirstOrThrow();
      if (row.request_hash !== requestHash) {
        const error = new DomainError(
          'unprocessable',
          'idempotency_key_reused',
          'This Idempotency-Key was already used for a different request.',
        );
        error.errors = [{ field: 'headers/idempotency-key', message: 'was used with another body' }];
        throw error;
      }
      // Stored as JSON text (see below); rows written before that hold the object itself.
      const body = typeof row.response === 'string' ? JSON.parse(row.response) : row.response;
      return { status: row.status_code ?? 200, body: body as T, replayed: true };
    }
    const result = await create(trx);
    await trx
      .updateTable('idempotency_keys')
      // A jsonb object would come back with its keys reordered, and so with another ETag than the
      // first response had; a jsonb string keeps the response exactly as it was sent.
      .set({ status_code: result.status, response: JSON.stringify(JSON.stringify(result.body)) })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .execute();
    return { ...result, replayed: false };
  });
}

/** Keys are kept for a day, long enough for any sane retry policy. */
export async function forgetOldIdempotencyKeys(db: Db): Promise<number> {
  const result = await db
    .deleteFrom('idempotency_keys')
    .where('created_at', '<', sql<Date>`now() - interval '24 hours'`)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
