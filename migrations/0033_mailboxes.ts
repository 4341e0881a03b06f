import { type Kysely, sql } from 'kysely';

// Mail in (issue 15): mailboxes that feed tickets, each bound to a department.
// - kind imap: an IMAP account the watcher reads (imap_*); kind inbound: only the raw-MIME endpoint
//   POST /v1/inbound/email, which every mailbox also takes, authenticated by its inbound secret.
// - inbound_secret_hash: sha256 of the secret (shown once); the secret itself is never kept.
// - imap_password / smtp_password: kept as given (the watcher and mail out must log in with them),
//   write-only through the API, never logged.
// - imap_uidvalidity / imap_last_uid: how far the watcher has read the folder; a new UIDVALIDITY
//   starts over (duplicates are recognised by Message-ID).
// - next_poll_at / failures: a failing mailbox backs off; last_error says why (no secrets in it).
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table mailboxes (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    department_id uuid not null references departments(id) on delete restrict,
    kind text not null check (kind in ('imap', 'inbound')),
    active boolean not null default true,
    imap_host text,
    imap_port integer check (imap_port between 1 and 65535),
    imap_tls boolean not null default true,
    imap_username text,
    imap_password text,
    imap_folder text not null default 'INBOX',
    poll_seconds integer check (poll_seconds >= 1),
    imap_uidvalidity bigint,
    imap_last_uid bigint,
    smtp_host text,
    smtp_port integer check (smtp_port between 1 and 65535),
    smtp_secure boolean not null default false,
    smtp_username text,
    smtp_password text,
    inbound_secret_hash text not null unique,
    last_polled_at timestamptz,
    last_error text,
    failures integer not null default 0,
    next_poll_at timestamptz,
    created_at timestamptz not null default deskroute_now(),
    updated_at timestamptz not null default deskroute_now(),
    check (kind <> 'imap' or (imap_host is not null and imap_port is not null and imap_username is not null))
  )`.execute(db);
  await sql`create unique index mailboxes_name_key on mailboxes (lower(name))`.execute(db);
  await sql`create index mailboxes_department_idx on mailboxes (department_id, created_at, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table mailboxes`.execute(db);
}
