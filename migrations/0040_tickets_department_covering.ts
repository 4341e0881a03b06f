import { type Kysely, sql } from 'kysely';

// Saved views' counts (issue 16): the department index carries what a sidebar filters on, so a
// capped count over an agent's departments is an index-only walk that stops at the cap. The
// counts read visibility as disjoint parts (src/access/tickets.ts visibleTicketParts) and the
// departments' part walks this index; before, a channel or priority filter either filtered every
// row of a sequential scan with the visibility OR or built a bitmap of every match first. The
// same index, wider, rather than one more: the department lists sorted by creation keep their
// keys. Not the tags: a btree row holds at most 2,704 bytes, and every ticket is in this index
// (tickets_views_unfinished_idx, 0036, includes them for unfinished tickets only; the API keeps
// a ticket's tags to 2,000 bytes so that its row fits). Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_department_created_idx`.execute(db);
  await sql`create index tickets_department_created_idx on tickets (department_id, created_at desc, id desc)
    include (assignee_id, status, priority, channel)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_department_created_idx`.execute(db);
  await sql`create index tickets_department_created_idx on tickets (department_id, created_at desc, id desc)`.execute(
    db,
  );
}
