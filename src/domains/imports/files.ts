import type { Readable } from 'node:stream';
import type { Kysely, Selectable } from 'kysely';
import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import type { Database, ImportFilesTable } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { type BlobStore, BlobTooLarge } from '../../storage/blobs.ts';
import { discardFiles, type PutFile, putFile } from '../attachments/store.ts';
import type { ImportFile } from './schemas.ts';

// Files for imported messages (docs/import.md "Attachments", migrations/0044): uploaded before
// the records that name them, kept under their source and external id, never changed. The
// server fetches nothing: the client brings the bytes (a URL in an upload would let an admin
// make the server call anywhere).

type Row = Selectable<ImportFilesTable>;
type Executor = Kysely<Database>;

const toImportFile = (row: Row): ImportFile => ({
  source: row.source,
  external_id: row.external_id,
  filename: row.filename,
  content_type: row.content_type,
  size_bytes: Number(row.size_bytes),
  sha256: row.sha256,
  created_at: row.created_at.toISOString(),
});

const findFile = (db: Executor, source: string, externalId: string) =>
  db
    .selectFrom('import_files')
    .selectAll()
    .where('source', '=', source)
    .where('external_id', '=', externalId)
    .executeTakeFirst();

/**
 * Keeps one file for an import. Answers whether it was new: the same bytes again (a retried
 * upload) answer the file as it is; other bytes under the same id are refused (409), so what an
 * import linked never changes under it.
 */
export async function putImportFile(
  db: Db,
  blobs: BlobStore,
  principal: Principal,
  input: { source: string; externalId: string; filename: string; body: Readable; maxBytes: number },
): Promise<{ file: ImportFile; created: boolean }> {
  requireAdmin(principal);
  let file: PutFile;
  try {
    file = await putFile(blobs, { filename: input.filename, content: input.body, maxBytes: input.maxBytes });
  } catch (error) {
    if (error instanceof BlobTooLarge) {
      throw new DomainError(
        'too_large',
        'attachment_too_large',
        `The file is larger than ${input.maxBytes} bytes (ATTACHMENT_MAX_BYTES); nothing was stored.`,
      );
    }
    throw error;
  }
  let inserted: Row | undefined;
  try {
    inserted = await db
      .insertInto('import_files')
      .values({
        source: input.source,
        external_id: input.externalId,
        ...file,
        uploaded_by: principal.agentId,
      })
      .onConflict((oc) => oc.columns(['source', 'external_id']).doNothing())
      .returningAll()
      .executeTakeFirst();
  } finally {
    if (!inserted) await discardFiles(blobs, [file]);
  }
  if (inserted) return { file: toImportFile(inserted), created: true };
  const existing = await findFile(db, input.source, input.externalId);
  if (existing && existing.sha256 === file.sha256) return { file: toImportFile(existing), created: false };
  throw new DomainError(
    'conflict',
    'import_file_exists',
    `A file with external_id ${JSON.stringify(input.externalId)} was uploaded for source ${JSON.stringify(input.source)} with other bytes (sha256 ${existing?.sha256 ?? 'unknown'}); an external id names one file for good.`,
  );
}

export async function getImportFile(
  db: Db,
  principal: Principal,
  source: string,
  externalId: string,
): Promise<ImportFile> {
  requireAdmin(principal);
  const row = await findFile(db, source, externalId);
  if (!row) throw new DomainError('not_found', 'import_file_not_found', 'No such import file.');
  return toImportFile(row);
}

/**
 * The files a record names that were uploaded for this source, in its order, and the ids of
 * those that were not.
 */
export async function importFilesNamed(
  db: Executor,
  source: string,
  externalIds: readonly string[],
): Promise<{ files: PutFile[]; missing: string[] }> {
  if (externalIds.length === 0) return { files: [], missing: [] };
  const rows = await db
    .selectFrom('import_files')
    .select(['external_id', 'filename', 'content_type', 'size_bytes', 'sha256', 'blob_key'])
    .where('source', '=', source)
    .where('external_id', 'in', [...externalIds])
    .execute();
  const byId = new Map(rows.map((r) => [r.external_id, r]));
  const files: PutFile[] = [];
  const missing: string[] = [];
  for (const id of externalIds) {
    const row = byId.get(id);
    if (!row) missing.push(id);
    else {
      const { external_id: _id, ...file } = row;
      files.push({ ...file, size_bytes: Number(file.size_bytes) });
    }
  }
  return { files, missing };
}
