import { type Kysely, sql } from 'kysely';

// Incremental ticket exports follow when a ticket last changed in this help desk (issue 16):
// changed_at, the real time of the writing transaction (now()), set wherever updated_at is.
// updated_at is the ticket's own time: an import replays history at its time (deskroute.now),
// so a ticket imported today could carry an updated_at of 2023, below every export cursor handed
// out before the import, and a warehouse syncing with that cursor never got it. Existing rows
// take their updated_at, so cursors handed out before this migration stay exact. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets add column changed_at timestamptz(3)`.execute(db);
  await sql`update tickets set changed_at = updated_at`.execute(db);
  await sql`alter table tickets alter column changed_at set default now(),
    alter column changed_at set not null`.execute(db);
  await sql`create index tickets_changed_idx on tickets (changed_at, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets drop column changed_at`.execute(db);
}
