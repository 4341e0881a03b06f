import { type Kysely, sql } from 'kysely';

// Department mail identity and templates (issue 15):
// - mail_settings: one row, the help desk's defaults (its name, sender name, signature, a default
//   from-address) for departments that set none.
// - department_mail_identities: a department's own sender name and signature; null columns (or no
//   row) fall back to mail_settings. Its support addresses are department_addresses (0030).
// - mail_templates: Liquid templates per kind, help-desk wide (department_id null) or per
//   department; each has subject, html and text. No row: the built-in default in code.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table mail_settings (
    id boolean primary key default true check (id),
    help_desk_name text not null default 'Help desk',
    sender_name text,
    signature_text text,
    signature_html text,
    from_address text check (from_address = lower(from_address) and from_address like '%_@_%'),
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`insert into mail_settings (id) values (true)`.execute(db);
  await sql`create table department_mail_identities (
    department_id uuid primary key references departments(id) on delete cascade,
    sender_name text,
    signature_text text,
    signature_html text,
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create table mail_templates (
    id uuid primary key default gen_random_uuid(),
    department_id uuid references departments(id) on delete cascade,
    kind text not null check (kind in ('acknowledgement', 'agent_reply', 'outside_hours',
      'transfer_notice', 'resolved_notice', 'csat_survey')),
    subject text not null,
    html text not null,
    text text not null,
    created_at timestamptz not null default deskroute_now(),
    updated_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create unique index mail_templates_help_desk_idx on mail_templates (kind)
    where department_id is null`.execute(db);
  await sql`create unique index mail_templates_department_idx on mail_templates (department_id, kind)
    where department_id is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table mail_templates`.execute(db);
  await sql`drop table department_mail_identities`.execute(db);
  await sql`drop table mail_settings`.execute(db);
}
