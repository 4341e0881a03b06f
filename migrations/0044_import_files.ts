import { type Kysely, sql } from 'kysely';

// Files for imported messages (issue 16, docs/import.md "Attachments"): a help desk's export
// names its attachments (Zendesk: URLs on its own servers, behind the account's credentials),
// and no import line may carry a file of megabytes. So the files come first, each uploaded with
// PUT /v1/imports/files/{external_id}?source=, and a message record names them by external id.
//
// - import_files: one row per source and external id, the file kept in the blob store. Its
//   bytes never change (a second upload with other bytes is refused), so a re-run of an import
//   links what the first run linked.
// - An imported attachment row (attachments) points at the same blob: linked attachments are
//   never deleted one by one, and these rows are never deleted, so no blob is removed while a
//   row needs it. Whatever comes to delete an import file must first check that no attachment
//   has its blob_key. Frozen once run.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table import_files (
    source text not null,
    external_id text not null,
    filename text not null,
    content_type text not null,
    size_bytes bigint not null check (size_bytes >= 0),
    sha256 text not null,
    blob_key text not null,
    uploaded_by uuid references agents(id) on delete set null,
    created_at timestamptz not null default now(),
    primary key (source, external_id)
  )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table import_files`.execute(db);
}
