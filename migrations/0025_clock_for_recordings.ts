import { type Kysely, sql } from 'kysely';

// The application's clock (migration 0021) for the rows a ticket change writes beside the
// ticket: a call, a chat, a rating and the rules' record of a run take their created_at from
// deskroute_now() like the ticket, its messages and its events, so one change has one time under
// a test's clock too. Frozen once run.
const TABLES = ['calls', 'chats', 'ratings', 'rule_runs'];

export async function up(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) {
    await sql`alter table ${sql.table(table)} alter column created_at set default deskroute_now()`.execute(
      db,
    );
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of TABLES) {
    await sql`alter table ${sql.table(table)} alter column created_at set default now()`.execute(db);
  }
}
