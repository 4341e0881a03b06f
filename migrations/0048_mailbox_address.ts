import { type Kysely, sql } from 'kysely';

// The address a mailbox receives at, lower-cased, when its IMAP username is not that address:
// above all an inbound mailbox (POST /v1/inbound/email), which kept no address at all, so an
// admin could make the address it receives at another department's support address (support
// addresses route before mailboxes) and take its mail. Optional: existing mailboxes keep none.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table mailboxes add column address text`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table mailboxes drop column address`.execute(db);
}
