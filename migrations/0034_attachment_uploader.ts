import { type Kysely, sql } from 'kysely';

// Who staged an attachment (issue 15): an agent's upload waits on the ticket, unlinked, until
// that agent names it in a reply, so a colleague's staged files are not theirs to send. Null for
// files that came with mail or the contact form. Staged files older than a day are removed by
// housekeeping; the partial index finds them without reading linked ones.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table attachments
    add column uploaded_by_agent_id uuid references agents(id) on delete set null`.execute(db);
  await sql`create index attachments_staged_idx on attachments (created_at) where message_id is null`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index attachments_staged_idx`.execute(db);
  await sql`alter table attachments drop column uploaded_by_agent_id`.execute(db);
}
