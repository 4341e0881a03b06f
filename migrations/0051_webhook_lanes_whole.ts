import { type Kysely, sql } from 'kysely';

// The lane index (subscription, ticket, seq) covers every delivery, not only the pending ones.
// Partial on status = 'pending', it misled the planner whenever the statistics were taken with
// nothing pending (an idle hour, a drained backlog: what a webhook queue mostly is): it then
// took that index for empty and scanned all of it for each claim of a burst, reading every
// pending delivery once per claimed one (5.4 s for a claim of 50 with 51,000 pending, against
// 9.5 ms with this index; docs/events-performance.md). Whole, its size is known and lookups by
// lane stay lookups, whatever the statistics say. The status stays out of it: in the index,
// `status = 'pending'` is checked on the index alone, and a scan of all of it for the rows that
// statistics say do not exist looks cheap again (test/webhook-lanes.test.ts failed that way).
// What that costs: a subscription's list filtered on pending
// (GET /v1/webhooks/{id}/deliveries?status=pending) walks its deliveries newest first, as the
// lists filtered on delivered or failed always have; a backlog is the newest part.
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
