import { type Kysely, sql } from 'kysely';

// Working hours (issue 14): schedules (a zone, weekly intervals and holidays, kept as jsonb: they
// are read and written whole, and compiled in the process), the help desk's default schedule, and
// per department the schedule it follows and its channels' availability. Tickets remember
// whether they came in during working hours, computed once at creation. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table schedules (
      id uuid primary key default gen_random_uuid(),
      name text not null,
      time_zone text not null,
      intervals jsonb not null default '[]',
      holidays jsonb not null default '[]',
      is_default boolean not null default false,
      version integer not null default 1,
      created_at timestamptz(3) not null default now(),
      updated_at timestamptz(3) not null default now()
    )`.execute(db);
  await sql`create unique index schedules_name_key on schedules (lower(name))`.execute(db);
  // At most one default: a second one is refused by the index, whatever the service does.
  await sql`create unique index schedules_default_key on schedules (is_default) where is_default`.execute(db);

  // on delete restrict: a department never points at a schedule that is gone.
  await sql`
    alter table departments
      add column schedule_id uuid references schedules (id) on delete restrict,
      add column chat_availability text not null default 'schedule'
        check (chat_availability in ('schedule', 'on', 'off')),
      add column phone_availability text not null default 'schedule'
        check (phone_availability in ('schedule', 'on', 'off')),
      add column messaging_availability text not null default 'schedule'
        check (messaging_availability in ('schedule', 'on', 'off'))`.execute(db);
  await sql`create index departments_schedule_id_idx on departments (schedule_id) where schedule_id is not null`.execute(
    db,
  );

  await sql`alter table tickets add column created_in_working_hours boolean`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets drop column created_in_working_hours`.execute(db);
  await sql`
    alter table departments
      drop column schedule_id,
      drop column chat_availability,
      drop column phone_availability,
      drop column messaging_availability`.execute(db);
  await sql`drop table schedules`.execute(db);
}
