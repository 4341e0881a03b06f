import { type Kysely, sql } from 'kysely';

// Canned responses (issue 15): help-desk wide (department_id null) or a department's; the body is
// Liquid, filled for a ticket when an agent's message names it; tags to add and a status to set
// travel with that message's write. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table canned_responses (
    id uuid primary key default gen_random_uuid(),
    department_id uuid references departments(id) on delete cascade,
    title text not null,
    body text not null,
    tags text[] not null default '{}',
    status text check (status in ('open', 'answered', 'resolved')),
    created_at timestamptz not null default deskroute_now(),
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create index canned_responses_department_idx on canned_responses (department_id, lower(title), id)`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table canned_responses`.execute(db);
}
