import { type Kysely, sql } from 'kysely';

// "What is due first in this department": GET /v1/tickets?department_id=...&sort=sla_due_at read
// every ticket of the department with a due and sorted them on each page (bench:sla part (c):
// 60-90 ms of SQL at 100,000 open tickets, 4,020 buffers); this index reads the page in order
// (54 buffers). tickets_queue_sla_idx cannot serve it: it holds only new and open tickets, and
// answered ones have dues too. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index tickets_department_sla_due_idx on tickets (department_id, sla_due_at, id)
    where sla_due_at is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_department_sla_due_idx`.execute(db);
}
