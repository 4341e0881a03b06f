import { type Kysely, sql } from 'kysely';

// Bulk import (issue 16, docs/import.md).
// - deskroute_now() reads the transaction-local setting deskroute.now first: the importer replays
//   each historical record through the tickets' one write path with the clock set to the record's
//   time (`set_config('deskroute.now', at, true)`), so every row, event and report counter is
//   stamped as if it had happened then. Unset (every other transaction) it is now(), as before.
// - ticket_events.import_id: the import an event was replayed by (null for live events), taken
//   from the transaction-local setting deskroute.import_id, so no write path needs to pass it.
// - imports: one uploaded file and its progress. `position` is the last line fully handled: a
//   batch of records and the position after it commit together, so a crash resumes there.
//   lease_until / lease_token: the process working on it holds it until then (renewed every
//   batch); a process that finds another token there has lost it and stops.
// - import_errors: one row per refused line. import_keys: what each external id became, per
//   source and record type: a record seen again changes nothing (a contact whose fields changed,
//   by its digest, is updated).
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create or replace function deskroute_now() returns timestamptz language sql stable parallel safe
    as $$ select coalesce(nullif(current_setting('deskroute.now', true), '')::timestamptz, now()) $$`.execute(
    db,
  );
  await sql`alter table ticket_events
    add column import_id uuid default nullif(current_setting('deskroute.import_id', true), '')::uuid`.execute(
    db,
  );
  await sql`create table imports (
    id uuid primary key default gen_random_uuid(),
    source text not null,
    format text not null check (format in ('ndjson', 'csv')),
    run_rules boolean not null default false,
    state text not null default 'queued' check (state in ('queued', 'running', 'finished', 'failed')),
    blob_key text,
    size_bytes bigint not null,
    position bigint not null default 0,
    read_count bigint not null default 0,
    created_count bigint not null default 0,
    updated_count bigint not null default 0,
    skipped_count bigint not null default 0,
    failed_count bigint not null default 0,
    failure text,
    lease_until timestamptz,
    lease_token uuid,
    created_by uuid references agents(id) on delete set null,
    created_at timestamptz(3) not null default now(),
    started_at timestamptz,
    finished_at timestamptz
  )`.execute(db);
  await sql`create index imports_pending_idx on imports (created_at) where state in ('queued', 'running')`.execute(
    db,
  );
  await sql`create index imports_created_idx on imports (created_at, id)`.execute(db);
  await sql`create table import_errors (
    import_id uuid not null references imports(id) on delete cascade,
    line bigint not null,
    type text,
    external_id text,
    code text not null,
    message text not null,
    primary key (import_id, line)
  )`.execute(db);
  await sql`create table import_keys (
    source text not null,
    type text not null,
    external_id text not null,
    target_id uuid not null,
    digest text,
    import_id uuid not null references imports(id) on delete cascade,
    primary key (source, type, external_id)
  )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table import_keys`.execute(db);
  await sql`drop table import_errors`.execute(db);
  await sql`drop table imports`.execute(db);
  await sql`alter table ticket_events drop column import_id`.execute(db);
  await sql`create or replace function deskroute_now() returns timestamptz language sql stable parallel safe
    as $$ select now() $$`.execute(db);
}
