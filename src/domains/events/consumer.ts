import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { type FeedRow, feedHead, readFeed } from './repository.ts';

/**
 * A named, transactional consumer of the feed. The handler runs on the next batch inside ONE
 * transaction that also advances the consumer's stored cursor, so each event is handled exactly
 * once (a failing handler rolls the cursor back with its own work). The consumer is held with a
 * transaction-level advisory lock, tried without waiting: when another process holds it, this
 * call handles nothing and returns 0 at once instead of queueing behind it. Not a row lock: FOR
 * UPDATE would give the batch a transaction id from its first statement, and the feed's horizon
 * (the oldest running transaction) would wait on every consumer's whole batch; this way the
 * transaction takes an id only when the handler writes. A consumer seen for the first time starts at the feed
 * head, not at the beginning of time. Imported history is passed by (readFeed's `live`): the
 * answer counts the live events handled, the limit when more may follow.
 */
export async function consumeFeedBatch(
  db: Kysely<Database>,
  name: string,
  limit: number,
  handler: (trx: Transaction<Database>, rows: FeedRow[]) => Promise<void>,
): Promise<number> {
  // Created outside the batch's transaction: the first run of two racing processes agrees on one
  // row (the loser's insert does nothing) and neither batch waits on the other's insert.
  const exists = await db
    .selectFrom('feed_consumers')
    .select('name')
    .where('name', '=', name)
    .executeTakeFirst();
  if (!exists) {
    await db
      .insertInto('feed_consumers')
      .values({ name, cursor: await feedHead(db) })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
  }
  return db.transaction().execute(async (trx) => {
    const { rows: held } = await sql<{ held: boolean }>`
      select pg_try_advisory_xact_lock(hashtextextended(${`deskroute.feed_consumer.${name}`}, 0)) as held`.execute(
      trx,
    );
    if (!held[0]?.held) return 0;
    // Read after the lock: a batch that committed while we waited for nothing is seen here.
    const current = await trx
      .selectFrom('feed_consumers')
      .select('cursor')
      .where('name', '=', name)
      .executeTakeFirst();
    if (!current) return 0;
    // Imported history is the past: nothing reacts to it now (no webhook, mail or notification).
    const { rows: live, next } = await readFeed(trx, { after: current.cursor, limit, live: true });
    if (live.length > 0) await handler(trx, live);
    if (next !== current.cursor) {
      await trx
        .updateTable('feed_consumers')
        .set({ cursor: next, updated_at: sql`now()` })
        .where('name', '=', name)
        .execute();
    }
    return live.length;
  });
}
