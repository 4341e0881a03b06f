import { type Kysely, sql } from 'kysely';

// The to-solve queue's two questions, each with its own index in queue order (earliest due, then
// priority, then waiting longest), replacing tickets_queue_sla_idx (migrations/0020):
// - "the next unassigned ticket of my departments": read per department (a few entries of each,
//   then the best of them; PostgreSQL cannot merge one index's per-department order across an IN
//   list). Only unassigned tickets are in it, so tickets agents already hold are never walked past
//   (bench:sla part (c): 100 ms and a sort of 5,000 rows per hand-out before, 0.5 ms after).
// - "the ticket I was handed and have not answered": read by assignee, in order, stopping at the
//   first in one of their departments (an agent holding 4,700 queued tickets: 128 ms, 0.7 ms after).
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tickets_queue_unassigned_idx on tickets
    (department_id, sla_due_at, priority_rank desc, waiting_since, id)
    where status in ('new', 'open') and assignee_id is null`.execute(db);
  await sql`create index tickets_queue_assigned_idx on tickets
    (assignee_id, sla_due_at, priority_rank desc, waiting_since, id)
    where status in ('new', 'open') and assignee_id is not null`.execute(db);
  await sql`drop index tickets_queue_sla_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index tickets_queue_sla_idx on tickets
    (department_id, sla_due_at, priority_rank desc, waiting_since, id) where status in ('new', 'open')`.execute(
    db,
  );
  await sql`drop index tickets_queue_assigned_idx`.execute(db);
  await sql`drop index tickets_queue_unassigned_idx`.execute(db);
}
