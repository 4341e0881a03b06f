import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

/**
 * Takes one attempt for the key before its password is checked: 0 when it may go ahead (and it
 * is counted now, as a failure until `clearFailures` says otherwise), else the seconds until the
 * key may try again (nothing counted). Checking the lock first and counting the failure after
 * the password check let attempts sent together all pass the check: each read the lock before
 * any of them had failed. The key's row is locked while it is read and counted, so concurrent
 * attempts take their turns and at most `maxFailures` of them are checked per window.
 */
export async function takeAttempt(
  db: Executor,
  key: string,
  maxFailures: number,
  lockSeconds: number,
): Promise<number> {
  const window = sql`make_interval(secs => ${lockSeconds})`;
  return db.transaction().execute(async (trx) => {
    await sql`insert into sign_in_throttle (key, failures, window_started_at)
      values (${key}, 0, now()) on conflict (key) do nothing`.execute(trx);
    const { rows } = await sql<{ seconds: number | null }>`
      select case when blocked_until > now() then ceil(extract(epoch from (blocked_until - now())))::int end as seconds
      from sign_in_throttle where key = ${key} for update`.execute(trx);
    const seconds = rows[0]?.seconds ?? null;
    if (seconds !== null) return Math.max(1, seconds);
    const fresh = sql`t.window_started_at < now() - ${window}`;
    await sql`
      update sign_in_throttle as t set
        failures = case when ${fresh} then 1 else t.failures + 1 end,
        window_started_at = case when ${fresh} then now() else t.window_started_at end,
        blocked_until = case
          when (case when ${fresh} then 1 else t.failures + 1 end) >= ${maxFailures} then now() + ${window}
          else t.blocked_until
        end
      where t.key = ${key}`.execute(trx);
    return 0;
  });
}

export async function clearFailures(db: Executor, key: string) {
  await db.deleteFrom('sign_in_throttle').where('key', '=', key).execute();
}
