import { type Kysely, sql } from 'kysely';

// A subscription gets the events written after it was created or last turned on, not older
// ones that the dispatch had not reached yet. Dispatch may lag (webhook work yields to requests
// under load, src/jobs/yield.ts), and it matched subscriptions as they were when it ran: a
// subscription turned on during a backlog received events from before it existed.
//
// - active_since_tx: when the subscription was created or last turned on, as the oldest
//   transaction id still running then (the snapshot's xmin); an event is its own when the event's
//   transaction id (the feed's `tx`) is this or later. Transaction ids follow the order in which
//   transactions began, not the one in which they commit: a change that began before the
//   subscription was turned on but commits after it has a lower id than the turning-on. The
//   xmin is at or below the id of every transaction still running then, so every event committed
//   after the subscription was on is its own (a few committed just before may be too).
//   Existing subscriptions keep every event (0): the migration does not drop the ones waiting.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table webhooks add column active_since_tx xid8 not null default '0'`.execute(db);
  await sql`alter table webhooks alter column active_since_tx
    set default pg_snapshot_xmin(pg_current_snapshot())`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table webhooks drop column active_since_tx`.execute(db);
}
