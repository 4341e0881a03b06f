import { type Kysely, sql } from 'kysely';

// Reports keep figures of deleted departments and agents under their ids (the counters are kept
// per event, and an event's department or agent does not change when the row goes), but named
// them by joining the live tables: past rows came out with department_name null, which the
// contract reads as "no department". A delete trigger keeps each deleted department's and
// agent's last name, whatever path deletes the row; reports fall back to it when the live row
// is gone. Rows deleted before this migration ran are gone with their names: their ids, found in
// the events, are kept under a generic name, so reports still accept them as filters and do not
// show them as "no department" or "no agent". Frozen once run.

export async function up(db: Kysely<any>): Promise<void> {
  for (const [table, kept] of [
    ['departments', 'deleted_departments'],
    ['agents', 'deleted_agents'],
  ] as const) {
    await sql
      .raw(`
      create table ${kept} (
        id uuid primary key,
        name text not null,
        deleted_at timestamptz(3) not null default now()
      )`)
      .execute(db);
    await sql
      .raw(`
      create function keep_name_of_${table}() returns trigger
      language plpgsql
      as $fn$
      begin
        insert into ${kept} (id, name) values (old.id, old.name)
        on conflict (id) do update set name = excluded.name, deleted_at = excluded.deleted_at;
        return null;
      end
      $fn$`)
      .execute(db);
    await sql
      .raw(`
      create trigger keep_name_of_${table} after delete on ${table}
      for each row execute function keep_name_of_${table}()`)
      .execute(db);
  }
  // Deleted before names were kept: the events still carry their ids (one pass over the events).
  await sql
    .raw(`
    insert into deleted_departments (id, name)
    select distinct e.department_id, 'Deleted department'
    from ticket_events e
    where e.department_id is not null
      and not exists (select 1 from departments d where d.id = e.department_id)
    on conflict (id) do nothing`)
    .execute(db);
  await sql
    .raw(`
    insert into deleted_agents (id, name)
    select distinct a.id, 'Deleted agent'
    from ticket_events e
    cross join lateral (values (e.agent_id), (e.actor_agent_id)) as a (id)
    where a.id is not null
      and not exists (select 1 from agents g where g.id = a.id)
    on conflict (id) do nothing`)
    .execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const [table, kept] of [
    ['departments', 'deleted_departments'],
    ['agents', 'deleted_agents'],
  ] as const) {
    await sql.raw(`drop trigger keep_name_of_${table} on ${table}`).execute(db);
    await sql.raw(`drop function keep_name_of_${table}()`).execute(db);
    await sql.raw(`drop table ${kept}`).execute(db);
  }
}
