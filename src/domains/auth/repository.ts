import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

/** Seconds until the key may try again, or 0. */
export async function secondsBlocked(db: Executor, key: string): Promise<number> {
  const row = await db
    .selectFrom('sign_in_throttle')
    .select(sql<number>`ceil(extract(epoch from (blocked_until - now())))::int`.as('seconds'))
    .where('key', '=', key)
    .where('blocked_until', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row ? Math.max(1, row.seconds) : 0;
}

/**
 * Counts a failure in one statement (safe under concurrent attempts). Failures older than the
 * lock window are forgotten; reaching `maxFailures` blocks the key for `lockSeconds`.
 */
export async function recordFailure(db: Executor, key: string, maxFailures: number, lockSeconds: number) {
  const window = sql`make_interval(secs => ${lockSeconds})`;
  await sql`
    insert into sign_in_throttle as t (key, failures, window_started_at, blocked_until)
    values (${key}, 1, now(), case when 1 >= ${maxFailures} then now() + ${window} end)
    on conflict (key) do update set
      failures = case when t.window_started_at < now() - ${window} then 1 else t.failures + 1 end,
      window_started_at = case when t.window_started_at < now() - ${window} then now() else t.window_started_at end,
      blocked_until = case
        when (case when t.window_started_at < now() - ${window} then 1 else t.failures + 1 end) >= ${maxFailures}
        then now() + ${window}
        else t.blocked_until
      end`.execute(db);
}

export async function clearFailures(db: Executor, key: string) {
  await db.deleteFrom('sign_in_throttle').where('key', '=', key).execute();
}
