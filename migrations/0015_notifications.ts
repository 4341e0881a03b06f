import { type Kysely, sql } from 'kysely';

// Department notifications (issue 13): the in-app inbox, each agent's preferences per department
// and kind, and each department's defaults. Rows are written by the notifications feed consumer
// once per feed event. Like the feed, a notification carries the id of the transaction that wrote
// it (xid8): live streams read rows below the oldest running transaction only, so a notification
// that commits late is never skipped. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table notifications (
      id uuid primary key,
      seq bigserial not null,
      tx xid8 not null default pg_current_xact_id(),
      agent_id uuid not null references agents (id) on delete cascade,
      kind text not null check (kind in ('ticket_created', 'customer_replied', 'ticket_assigned', 'ticket_transferred', 'mentioned')),
      event_id text not null,
      ticket_id uuid not null references tickets (id) on delete cascade,
      department_id uuid,
      actor_agent_id uuid,
      subject text not null,
      created_at timestamptz(3) not null default now(),
      read_at timestamptz(3),
      unique (agent_id, event_id)
    )`.execute(db);
  // The inbox: unread first, then newest (keyset on these columns).
  await sql`
    create index notifications_inbox_idx
      on notifications (agent_id, (read_at is not null), created_at desc, seq desc)`.execute(db);
  await sql`create index notifications_tx_idx on notifications (tx, seq)`.execute(db);

  await sql`
    create table notification_preferences (
      agent_id uuid not null references agents (id) on delete cascade,
      department_id uuid not null references departments (id) on delete cascade,
      kind text not null,
      enabled boolean not null,
      updated_at timestamptz(3) not null default now(),
      primary key (agent_id, department_id, kind)
    )`.execute(db);
  await sql`
    create table notification_defaults (
      department_id uuid not null references departments (id) on delete cascade,
      kind text not null,
      enabled boolean not null,
      updated_at timestamptz(3) not null default now(),
      primary key (department_id, kind)
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table notification_defaults`.execute(db);
  await sql`drop table notification_preferences`.execute(db);
  await sql`drop table notifications`.execute(db);
}
