import { type Kysely, sql } from 'kysely';

// The lane index (subscription, ticket, seq) covers every delivery, not only the pending ones.
// Partial on status = 'pending', it misled the planner whenever the statistics were taken with
// nothing pending (an idle hour, a drained backlog: what a webhook queue mostly is): it then
// took that index for empty and scanned all of it for each claim of a burst, reading every
// pending delivery once per claimed one (5.4 s for a claim of 50 with 51,000 pending, against
// 9.5 ms with this index; docs/events-performance.md). Whole, its size is known and lookups by
// lane stay lookups, whatever the statistics say.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index webhook_deliveries_lane`.execute(db);
  await sql`create index webhook_deliveries_lane on webhook_deliveries (webhook_id, ticket_id, seq)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index webhook_deliveries_lane`.execute(db);
  await sql`create index webhook_deliveries_lane on webhook_deliveries (webhook_id, ticket_id, seq)
    where status = 'pending'`.execute(db);
}
