import { type Kysely, sql } from 'kysely';

// The event feed (issue 13). Ticket events stay in ticket_events (the feed reads them, no copy);
// settings changes get their own append-only table. Both carry the id of the transaction that
// wrote them (xid8, never wraps): the feed returns only rows below the oldest transaction still
// running (pg_snapshot_xmin), so a row that commits late can never land behind a reader's cursor.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  // A constant default first: PostgreSQL stores it in the catalogue and rewrites nothing, so the
  // migration is instant on a large table; rows written before it read as transaction 0 (the
  // feed's beginning). Only then the volatile default for new rows.
  await sql`alter table ticket_events add column tx xid8 not null default '0'`.execute(db);
  await sql`alter table ticket_events alter column tx set default pg_current_xact_id()`.execute(db);
  await sql`create index ticket_events_tx_idx on ticket_events (tx, id)`.execute(db);

  await sql`
    create table settings_events (
      id bigserial primary key,
      tx xid8 not null default pg_current_xact_id(),
      type text not null,
      actor_type text not null check (actor_type in ('agent', 'token', 'system')),
      actor_agent_id uuid,
      actor_token_id uuid,
      department_id uuid,
      subject_id uuid,
      payload jsonb not null default '{}'::jsonb,
      occurred_at timestamptz(3) not null default now()
    )`.execute(db);
  await sql`create index settings_events_tx_idx on settings_events (tx, id)`.execute(db);
  await sql`create index settings_events_occurred_idx on settings_events (occurred_at)`.execute(db);

  await sql`
    create table feed_consumers (
      name text primary key,
      cursor text not null,
      updated_at timestamptz(3) not null default now()
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table feed_consumers`.execute(db);
  await sql`drop table settings_events`.execute(db);
  await sql`drop index ticket_events_tx_idx`.execute(db);
  await sql`alter table ticket_events drop column tx`.execute(db);
}
