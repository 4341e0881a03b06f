import { sql } from 'kysely';
import type { Db } from '../../src/db/database.ts';
import type { EmailChannelDeps } from '../../src/domains/notifications/channels.ts';
import { drainNotifications } from '../../src/domains/notifications/service.ts';

/**
 * Runs the notifications consumer once every transaction committed so far is below the feed's
 * horizon: the horizon is the oldest transaction running anywhere on the server (other test
 * files' too). With `mail`, notifications go out by email too.
 */
export async function settleNotifications(db: Db, mail?: EmailChannelDeps) {
  const { rows } = await sql<{ x: string }>`select pg_current_xact_id()::text as x`.execute(db);
  const mine = BigInt(rows[0]!.x);
  for (;;) {
    const { rows: h } = await sql<{
      h: string;
    }>`select pg_snapshot_xmin(pg_current_snapshot())::text as h`.execute(db);
    if (BigInt(h[0]!.h) > mine) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await drainNotifications(db, mail);
}
