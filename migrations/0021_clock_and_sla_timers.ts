import { type Kysely, sql } from 'kysely';

// The application's clock and the SLA timers (issue 14, docs/sla.md "Timers").
//
// deskroute_now() is the instant every ticket change is stamped with: the transaction's time,
// now(). It is a function of its own so that a test database can replace it and move time
// (test/helpers/clock.ts) for every process that uses that database; being a one-line SQL
// function of now(), PostgreSQL inlines it, so production pays nothing. The tickets' columns
// that default to the time take it too.
//
// sla_next_at is when a ticket's SLA clock next needs the timer (its earliest pending warning or
// due): the timers are the rows themselves, written in the change's own statement, and found by
// this partial index. Tickets that already carry a clock are due at once, so the timer plans
// them (and sets their next instant) on its first turn. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create function deskroute_now() returns timestamptz language sql stable parallel safe
    as $$ select now() $$`.execute(db);
  await sql`alter table tickets
    alter column created_at set default deskroute_now(),
    alter column updated_at set default deskroute_now(),
    alter column waiting_since set default deskroute_now(),
    add column sla_next_at timestamptz(3)`.execute(db);
  await sql`alter table ticket_messages alter column created_at set default deskroute_now()`.execute(db);
  await sql`alter table ticket_events alter column occurred_at set default deskroute_now()`.execute(db);
  await sql`update tickets set sla_next_at = now() where sla_state is not null`.execute(db);
  await sql`create index tickets_sla_next_idx on tickets (sla_next_at) where sla_next_at is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index tickets_sla_next_idx`.execute(db);
  await sql`alter table ticket_events alter column occurred_at set default now()`.execute(db);
  await sql`alter table ticket_messages alter column created_at set default now()`.execute(db);
  await sql`alter table tickets
    alter column created_at set default now(),
    alter column updated_at set default now(),
    alter column waiting_since set default now(),
    drop column sla_next_at`.execute(db);
  await sql`drop function deskroute_now()`.execute(db);
}
