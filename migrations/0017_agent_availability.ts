import { type Kysely, sql } from 'kysely';

// Agent availability (issue 14): presence, capacity and membership levels. Presence is what the
// agent last said (online, away, offline) and until when that holds: each confirmation (a
// heartbeat) moves presence_expires_at to now plus the configured timeout, and readers compare it
// with their own clock, so an agent whose client went away reads offline without any job writing
// it. presence_changed_at is when the stated presence last changed (a timeout changes it at
// presence_expires_at). capacity bounds the new, open and answered tickets automatic assignment
// gives an agent (null: no bound). Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table agents
      add column presence text not null default 'offline'
        check (presence in ('online', 'away', 'offline')),
      add column presence_confirmed_at timestamptz(3),
      add column presence_expires_at timestamptz(3),
      add column presence_changed_at timestamptz(3),
      add column capacity integer check (capacity between 0 and 10000)`.execute(db);
  await sql`
    alter table department_members
      add column level smallint not null default 1 check (level between 1 and 3)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table department_members drop column level`.execute(db);
  await sql`
    alter table agents
      drop column presence,
      drop column presence_confirmed_at,
      drop column presence_expires_at,
      drop column presence_changed_at,
      drop column capacity`.execute(db);
}
