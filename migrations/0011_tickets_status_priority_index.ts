import { type Kysely, sql } from 'kysely';

// Listing tickets by status and priority (the "new, high priority" view every help desk has)
// had no index in list order: PostgreSQL fetched every matching ticket (610 of a million on the
// benchmark) and sorted them to return a page of 51. This one returns them in list order, so a
// page stops after the visible ones it needs. Frozen once run anywhere.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tickets_status_priority_created_idx
    on tickets (status, priority, created_at desc, id desc)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_status_priority_created_idx`.execute(db);
}
