import { type Kysely, sql } from 'kysely';

// Mail out and CSAT surveys (issue 15).
// - mail_outbox: every mail Deskroute sends, rendered when it was decided (the feed consumer, in
//   the transaction that moves its cursor), then delivered by the job queue. state: queued (to
//   send, maybe after a failed attempt: last_error says why), sent, failed (permanent answer or
//   attempts spent), suppressed (nobody to send it to: no address, a bounced one, one of our own,
//   the acknowledgement loop guard), cancelled (a survey whose ticket was reopened before it went).
//   locked_until is the lease of the process sending it now; mail_message_id (without <>) is
//   fixed before the first attempt, so a resend after a crash carries the same Message-ID.
// - csat_settings: a department's survey choice (no row: the help-desk default from config).
// - csat_surveys: one survey link; only the SHA-256 of its token is stored, used once.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table mail_outbox (
    id uuid primary key default gen_random_uuid(),
    kind text not null check (kind in ('acknowledgement', 'agent_reply', 'outside_hours',
      'transfer_notice', 'resolved_notice', 'csat_survey')),
    ticket_id uuid not null references tickets(id) on delete cascade,
    message_id uuid references ticket_messages(id) on delete set null,
    department_id uuid references departments(id) on delete set null,
    to_address text,
    from_name text not null,
    from_address text,
    subject text not null,
    text_body text not null,
    html_body text not null,
    headers jsonb not null default '{}'::jsonb,
    mail_message_id text not null unique,
    state text not null default 'queued'
      check (state in ('queued', 'sent', 'failed', 'suppressed', 'cancelled')),
    attempts integer not null default 0,
    last_error text,
    next_attempt_at timestamptz,
    locked_until timestamptz,
    sent_at timestamptz,
    created_at timestamptz not null default deskroute_now(),
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create index mail_outbox_ticket_idx on mail_outbox (ticket_id, created_at, id)`.execute(db);
  // The acknowledgement loop guard counts an address's recent acknowledgements.
  await sql`create index mail_outbox_ack_guard_idx on mail_outbox (to_address, created_at)
    where kind in ('acknowledgement', 'outside_hours')`.execute(db);
  await sql`create table csat_settings (
    department_id uuid primary key references departments(id) on delete cascade,
    enabled boolean not null,
    delay_minutes integer not null check (delay_minutes between 0 and 43200),
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create table csat_surveys (
    id uuid primary key default gen_random_uuid(),
    ticket_id uuid not null references tickets(id) on delete cascade,
    outbox_id uuid references mail_outbox(id) on delete set null,
    token_hash text not null unique,
    expires_at timestamptz not null,
    used_at timestamptz,
    rating_id uuid references ratings(id) on delete set null,
    created_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create index csat_surveys_ticket_idx on csat_surveys (ticket_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table csat_surveys`.execute(db);
  await sql`drop table csat_settings`.execute(db);
  await sql`drop table mail_outbox`.execute(db);
}
