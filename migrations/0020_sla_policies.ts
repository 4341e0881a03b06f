import { type Kysely, sql } from 'kysely';

// SLA policies (issue 14) and each ticket's SLA clock. Policies are read whole and compiled in the
// process, so conditions and targets are jsonb. sla_policies_state is one row whose policies_key
// is renewed with every change to any policy (in the same transaction) and is null while no
// policy is active: the ticket write path reads it in a statement it runs anyway and skips the
// clock entirely for a help desk without policies. Tickets keep the clock's state (src/sla's
// SlaState, null before any policy applied) and its summary for filters, sorting and the queue.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table sla_policies (
      id uuid primary key default gen_random_uuid(),
      name text not null,
      position integer not null,
      active boolean not null default true,
      conditions jsonb not null,
      targets jsonb not null,
      pause_when_answered boolean not null default false,
      on_transfer text not null default 'continue' check (on_transfer in ('restart', 'continue', 'keep')),
      warn_before_minutes integer,
      version integer not null default 1,
      created_at timestamptz(3) not null default now(),
      updated_at timestamptz(3) not null default now()
    )`.execute(db);
  await sql`create index sla_policies_position_idx on sla_policies (position, id)`.execute(db);

  await sql`
    create table sla_policies_state (
      id boolean primary key default true check (id),
      policies_key uuid
    )`.execute(db);
  await sql`insert into sla_policies_state (id, policies_key) values (true, null)`.execute(db);

  await sql`
    alter table tickets
      add column sla_state jsonb,
      add column sla_policy_id uuid,
      add column sla_due_at timestamptz(3),
      add column sla_breached boolean not null default false`.execute(db);
  // "Which tickets are due first": only tickets with a running target have a due, and those are
  // live ones (resolving, spam and delete stop every clock), so the partial index stays small
  // whatever status filter the list adds.
  await sql`create index tickets_sla_due_idx on tickets (sla_due_at, id) where sla_due_at is not null`.execute(
    db,
  );
  // The to-solve queue now orders by the earliest due first (none last), then as before.
  await sql`create index tickets_queue_sla_idx on tickets
    (department_id, sla_due_at, priority_rank desc, waiting_since, id) where status in ('new', 'open')`.execute(
    db,
  );
  await sql`drop index tickets_queue_idx`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`create index tickets_queue_idx on tickets (department_id, priority_rank desc, waiting_since, id)
    where status in ('new', 'open')`.execute(db);
  await sql`drop index tickets_queue_sla_idx`.execute(db);
  await sql`drop index tickets_sla_due_idx`.execute(db);
  await sql`
    alter table tickets
      drop column sla_state,
      drop column sla_policy_id,
      drop column sla_due_at,
      drop column sla_breached`.execute(db);
  await sql`drop table sla_policies_state`.execute(db);
  await sql`drop table sla_policies`.execute(db);
}
