import { type Kysely, sql } from 'kysely';

// Incremental ticket exports follow when a ticket last changed in this help desk (issue 16):
// changed_at, the real time of the writing transaction (now()), set wherever updated_at is.
// updated_at is the ticket's own time: an import replays history at its time (deskroute.now),
// so a ticket imported today could carry an updated_at of 2023, below every export cursor handed
// out before the import, and a warehouse syncing with that cursor never got it. Rows written
// before this migration have none (null): they count by their updated_at, so cursors handed out
// before it stay exact, and adding the column rewrites nothing (a backfill of every row would
// have held the table, rewritten every index and fed the report trigger a million rows). The
// index is on that fallback, the key the exports read. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets add column changed_at timestamptz(3)`.execute(db);
  await sql`alter table tickets alter column changed_at set default now()`.execute(db);
  await sql`create index tickets_changed_idx on tickets ((coalesce(changed_at, updated_at)), id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets drop column changed_at`.execute(db);
}
