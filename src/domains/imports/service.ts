import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { type Principal, requireAdmin } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, invalid, notFound } from '../../errors.ts';
import { toPage } from '../../plugins/pagination.ts';
import { type BlobStore, BlobTooLarge } from '../../storage/blobs.ts';
import * as repo from './repository.ts';
import type { Import } from './schemas.ts';

function toImport(row: repo.ImportRow): Import {
  return {
    id: row.id,
    source: row.source,
    format: row.format,
    run_rules: row.run_rules,
    state: row.state,
    counts: {
      read: Number(row.read_count),
      created: Number(row.created_count),
      updated: Number(row.updated_count),
      skipped: Number(row.skipped_count),
      failed: Number(row.failed_count),
    },
    line: Number(row.position),
    size_bytes: Number(row.size_bytes),
    failure: row.failure,
    created_by: row.created_by,
    created_at: row.created_at.toISOString(),
    started_at: row.started_at?.toISOString() ?? null,
    finished_at: row.finished_at?.toISOString() ?? null,
  };
}

/**
 * Keeps the uploaded file in the blob store and queues its import; the worker (run.ts) does the
 * rest in the background. Owners and admins only: an import creates agents and departments.
 */
export async function startImport(
  db: Db,
  blobs: BlobStore,
  principal: Principal,
  input: { body: Readable; format: 'ndjson' | 'csv'; source: string; runRules: boolean; maxBytes: number },
): Promise<Import> {
  requireAdmin(principal);
  let stored: Awaited<ReturnType<BlobStore['put']>>;
  try {
    stored = await blobs.put(input.body, { maxBytes: input.maxBytes });
  } catch (error) {
    if (error instanceof BlobTooLarge) {
      throw new DomainError(
        'too_large',
        'import_too_large',
        `The file is larger than ${input.maxBytes} bytes (IMPORT_MAX_BYTES); nothing was imported. Split it: imports may follow each other.`,
      );
    }
    throw error;
  }
  if (stored.size === 0) {
    await blobs.delete(stored.key);
    throw invalid('empty_import', 'The file is empty.', [{ field: 'body', message: 'no records' }]);
  }
  try {
    const row = await repo.insertImport(db, {
      id: randomUUID(),
      source: input.source,
      format: input.format,
      run_rules: input.runRules,
      blob_key: stored.key,
      size_bytes: stored.size,
      created_by: principal.agentId,
    });
    return toImport(row);
  } catch (error) {
    await blobs.delete(stored.key).catch(() => {});
    throw error;
  }
}

export async function getImport(db: Db, principal: Principal, id: string): Promise<Import> {
  requireAdmin(principal);
  const row = await repo.findImport(db, id);
  if (!row) throw notFound('import');
  return toImport(row);
}

export async function listImports(
  db: Db,
  principal: Principal,
  page: { limit: number; cursor?: string | undefined },
) {
  requireAdmin(principal);
  const { keyset, rows } = await repo.listImports(db, page);
  return toPage(keyset, rows, page.limit, toImport);
}

export async function listImportErrors(
  db: Db,
  principal: Principal,
  id: string,
  page: { limit: number; cursor?: string | undefined },
) {
  requireAdmin(principal);
  if (!(await repo.findImport(db, id))) throw notFound('import');
  const { keyset, rows } = await repo.listErrors(db, id, page);
  return toPage(keyset, rows, page.limit, (r) => ({ ...r, line: Number(r.line) }));
}
