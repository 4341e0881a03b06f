import { type Kysely, sql } from 'kysely';

// What a message needs to travel by mail (issue 15), shared by mail in, mail out and attachments:
// - mail_message_id: the RFC 5322 Message-ID (without angle brackets) a message arrived with or
//   went out with. Unique: a second delivery of one message makes no second message, and a reply's
//   In-Reply-To / References find the ticket it answers.
// - mail_address: the customer's address the message came from (customer) or went to (agent).
// - html_body: the sanitised HTML part; body stays the text part, always present.
// - raw_blob_key: the received message as it came (blob storage, src/storage/blobs.ts).
// - delivery_state / delivery_error / delivered_at: the outbox's word on an outgoing message.
// - mail_auto_submitted: the message came from a machine (auto-reply, out-of-office, bounce): it is
//   recorded but never answered, so no mail loop can start.
// - attachments: files on a message, stored as blobs; content_type is sniffed, not trusted.
// - department_addresses: the support addresses a department receives at and sends from
//   (lower-cased, unique across departments; one per department is the reply-from).
// - contact_emails.bounced_at / bounce_reason: an address a bounce reported undeliverable.
// Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ticket_messages
    add column mail_message_id text,
    add column mail_address text,
    add column html_body text,
    add column raw_blob_key text,
    add column delivery_state text
      check (delivery_state in ('queued', 'sent', 'failed', 'bounced', 'suppressed')),
    add column delivery_error text,
    add column delivered_at timestamptz,
    add column mail_auto_submitted boolean not null default false`.execute(db);
  await sql`create unique index ticket_messages_mail_message_id_idx on ticket_messages (mail_message_id)
    where mail_message_id is not null`.execute(db);
  await sql`create table attachments (
    id uuid primary key default gen_random_uuid(),
    ticket_id uuid not null references tickets(id) on delete cascade,
    message_id uuid references ticket_messages(id) on delete cascade,
    filename text not null,
    content_type text not null,
    size_bytes bigint not null check (size_bytes >= 0),
    sha256 text not null,
    blob_key text not null,
    created_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create table department_addresses (
    address text primary key check (address = lower(address) and address like '%_@_%'),
    department_id uuid not null references departments(id) on delete cascade,
    is_reply_from boolean not null default false,
    created_at timestamptz not null default deskroute_now()
  )`.execute(db);
  await sql`create index department_addresses_department_idx on department_addresses (department_id)`.execute(
    db,
  );
  await sql`create unique index department_addresses_reply_from_idx on department_addresses (department_id)
    where is_reply_from`.execute(db);
  await sql`alter table contact_emails add column bounced_at timestamptz, add column bounce_reason text`.execute(
    db,
  );
  await sql`create index attachments_ticket_idx on attachments (ticket_id, created_at, id)`.execute(db);
  await sql`create index attachments_message_idx on attachments (message_id) where message_id is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table contact_emails drop column bounced_at, drop column bounce_reason`.execute(db);
  await sql`drop table department_addresses`.execute(db);
  await sql`drop table attachments`.execute(db);
  await sql`drop index ticket_messages_mail_message_id_idx`.execute(db);
  await sql`alter table ticket_messages
    drop column mail_message_id, drop column mail_address, drop column html_body,
    drop column raw_blob_key, drop column delivery_state, drop column delivery_error,
    drop column delivered_at, drop column mail_auto_submitted`.execute(db);
}
