import { type Kysely, sql } from 'kysely';

// A webhook delivery's body is its event as dispatch rendered it, the same for every
// subscription the event goes to: kept once per event in webhook_bodies instead of in each
// delivery row. With 10 subscriptions a ticket's creation wrote its ~0.9 kB body 20 times, and
// every claim and outcome rewrote it with the row (bench:events: ~3 kB of heap per delivery).
// The narrow rows leave room on their pages (fillfactor 80) for the claim's update to stay on
// the page, with no new index entries (HOT). No foreign key: 20 deliveries checking one body row
// would share-lock it from every dispatch and outcome; the retention deletes a body once its
// event is past the retention and no delivery needs it.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  // Held to the end: a server still running the old code must not dispatch a delivery (with its
  // body in the row) between the copy below and the column's drop; it waits, then fails on the
  // missing column until it runs the new code (its dispatch and jobs retry; nothing is lost).
  await sql`lock table webhook_deliveries in access exclusive mode`.execute(db);
  await sql`
    create table webhook_bodies (
      event_id text primary key,
      body text not null,
      created_at timestamptz(3) not null default now()
    )`.execute(db);
  await sql`
    insert into webhook_bodies (event_id, body, created_at)
    select distinct on (event_id) event_id, body, created_at
      from webhook_deliveries
     order by event_id, seq`.execute(db);
  // The retention's sweep of bodies no delivery needs, oldest first.
  await sql`create index webhook_bodies_created on webhook_bodies (created_at)`.execute(db);
  await sql`alter table webhook_deliveries drop column body`.execute(db);
  await sql`alter table webhook_deliveries set (fillfactor = 80)`.execute(db);
  // The same uniqueness with the event first: the retention asks whether any delivery of an
  // event is left before it deletes the event's body (ON CONFLICT finds it by its columns).
  await sql`drop index webhook_deliveries_event`.execute(db);
  await sql`create unique index webhook_deliveries_event on webhook_deliveries (event_id, webhook_id)`.execute(
    db,
  );
  // When a delivery settled (delivered or failed; null while pending), for the retention
  // (WEBHOOK_DELIVERY_RETENTION_DAYS counts from then, so a delivery that failed after a day of
  // retries, or was retried by hand late, stays listed and retryable for the whole retention).
  // Set only by the updates that change the status, which never stay on their page anyway: a
  // failed attempt with a retry ahead (last_attempt_at) still can. Pending ones are not in the
  // index, so a dispatch and a claim write no entry.
  await sql`alter table webhook_deliveries add column settled_at timestamptz(3)`.execute(db);
  await sql`
    update webhook_deliveries set settled_at = coalesce(delivered_at, last_attempt_at, created_at)
     where status <> 'pending'`.execute(db);
  await sql`
    create index webhook_deliveries_settled on webhook_deliveries (settled_at)
     where status <> 'pending'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index webhook_deliveries_settled`.execute(db);
  await sql`alter table webhook_deliveries drop column settled_at`.execute(db);
  await sql`drop index webhook_deliveries_event`.execute(db);
  await sql`create unique index webhook_deliveries_event on webhook_deliveries (webhook_id, event_id)`.execute(
    db,
  );
  await sql`alter table webhook_deliveries reset (fillfactor)`.execute(db);
  await sql`alter table webhook_deliveries add column body text`.execute(db);
  await sql`
    update webhook_deliveries d set body = b.body
      from webhook_bodies b where b.event_id = d.event_id`.execute(db);
  await sql`update webhook_deliveries set body = '{}' where body is null`.execute(db);
  await sql`alter table webhook_deliveries alter column body set not null`.execute(db);
  await sql`drop table webhook_bodies`.execute(db);
}
