import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { pipeline, type Readable, Transform } from 'node:stream';
import { parse } from 'fast-csv';
import type { FastifyBaseLogger as Logger } from 'fastify';
import { sql } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import { type Db, embeddedPglite } from '../../db/database.ts';
import { isDatabaseUnreachable } from '../../db/outage.ts';
import { DomainError } from '../../errors.ts';
import { createAjv } from '../../plugins/ajv.ts';
import { loneSurrogateAt } from '../../plugins/problem.ts';
import type { BlobStore } from '../../storage/blobs.ts';
import { SetWrites } from '../tickets/set-writes.ts';
import { type ApplyContext, applyRecord, type BatchKeys } from './apply.ts';
import { IMPORT_RECORDS, type ImportRecord } from './records.ts';
import * as repo from './repository.ts';

// The import worker (docs/import.md): on every instance, it takes the oldest pending import under a
// lease and works through its file in batches. A batch is one transaction: each record under a
// savepoint (a bad record is rolled back alone and reported with its line), then the position
// after the batch and the counts. So a process killed mid-batch loses only that batch's
// uncommitted work, and whoever takes the import next (after the lease) starts right after the
// last committed batch: no record is applied twice, none is skipped.

export const MAX_LINE_BYTES = 1024 * 1024;
const LEASE_SECONDS = 120;
/**
 * Records per batch (one transaction). On the embedded PGlite, whose one connection serves every
 * request, the API waits while a batch runs: 200 records held it for a second or two, so batches
 * there are a tenth of that, at the price of more commits.
 */
export const importBatchSize = (db: Db) => (embeddedPglite(db) ? 20 : 200);
const MAX_ERROR_TEXT = 1000;
/** External ids resolved in earlier batches kept for look-ups (ApplyContext.known). */
const KNOWN_IDS = 20_000;

export interface ImportWorkerDeps {
  db: Db;
  blobs: BlobStore;
  log: Logger;
}

interface Item {
  line: number;
  record?: ImportRecord;
  error?: { code: string; message: string; type?: string | null; external_id?: string | null };
}

class LeaseLost extends Error {}

/** A deadlock, serialization failure, lock or statement timeout: worth the batch again. */
function isTransient(error: unknown): boolean {
  const code = String((error as { code?: unknown } | null)?.code ?? '');
  return code.startsWith('40') || code === '55P03' || code === '57014';
}

/** Text for import_errors: PostgreSQL text holds no NUL, and a line's own text may carry one. */
const clean = (text: string | null | undefined, max = MAX_ERROR_TEXT) =>
  text == null ? null : text.replaceAll('\u0000', '').slice(0, max);

/** Settings records (agents, departments...) lock rows live requests use: committed one by one. */
const ALONE = new Set(['agent', 'department', 'membership', 'contact_field']);

const ajv = createAjv('body');
for (const schema of IMPORT_RECORDS) ajv.addSchema(schema);
const validators = new Map(
  IMPORT_RECORDS.map((schema) => [
    schema.properties.type.const as string,
    ajv.getSchema((schema as unknown as { $id: string }).$id)!,
  ]),
);

/** One NDJSON line as a record, or why it is not one. */
export function parseRecord(line: number, text: string): Item {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { line, error: { code: 'invalid_json', message: `Not JSON: ${(error as Error).message}` } };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { line, error: { code: 'invalid_record', message: 'A record is a JSON object.' } };
  }
  const { type, external_id } = value as { type?: unknown; external_id?: unknown };
  const named = {
    type: typeof type === 'string' ? type.slice(0, 50) : null,
    external_id: typeof external_id === 'string' ? external_id.slice(0, 200) : null,
  };
  // JSON bodies of the API answer 400 invalid_text for these: pg would store U+FFFD instead.
  const surrogate = loneSurrogateAt(value, '');
  if (surrogate !== null) {
    return {
      line,
      error: {
        ...named,
        code: 'invalid_text',
        message: `${surrogate} holds half of a UTF-16 surrogate pair (\\uD800-\\uDFFF alone), no character.`,
      },
    };
  }
  const validate = typeof type === 'string' ? validators.get(type) : undefined;
  if (!validate) {
    return {
      line,
      error: {
        ...named,
        code: 'unknown_type',
        message: `type must be one of ${[...validators.keys()].join(', ')}.`,
      },
    };
  }
  if (!validate(value)) {
    const details = (validate.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
      .join('; ');
    return { line, error: { ...named, code: 'invalid_record', message: details } };
  }
  return { line, record: value as ImportRecord };
}

/** Lines of a byte stream, numbered from 1; a line longer than MAX_LINE_BYTES is reported, not held. */
async function* lines(stream: Readable): AsyncGenerator<{ line: number; bytes: Buffer | null }> {
  let line = 0;
  let parts: Buffer[] = [];
  let length = 0;
  let tooLong = false;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, end === -1 ? chunk.length : end);
      if (!tooLong) {
        if (length + piece.length > MAX_LINE_BYTES) {
          tooLong = true;
          parts = [];
        } else {
          parts.push(piece);
          length += piece.length;
        }
      }
      if (end === -1) break;
      line++;
      yield { line, bytes: tooLong ? null : Buffer.concat(parts) };
      parts = [];
      length = 0;
      tooLong = false;
      start = end + 1;
    }
  }
  if (length > 0 || tooLong) {
    line++;
    yield { line, bytes: tooLong ? null : Buffer.concat(parts) };
  }
}

async function* ndjsonItems(stream: Readable): AsyncGenerator<Item> {
  for await (const { line, bytes } of lines(stream)) {
    if (bytes === null) {
      yield {
        line,
        error: { code: 'line_too_long', message: `A line holds at most ${MAX_LINE_BYTES} bytes.` },
      };
      continue;
    }
    // Decoded as it came, bytes that are no UTF-8 would become U+FFFD without a word.
    if (!isUtf8(bytes)) {
      yield { line, error: { code: 'invalid_text', message: 'The line is not valid UTF-8.' } };
      continue;
    }
    const trimmed = bytes.toString('utf8').trim();
    if (trimmed === '') continue;
    yield parseRecord(line, trimmed);
  }
}

/**
 * The bytes as they come, or an error at the first that is no UTF-8: the CSV parser decodes with
 * U+FFFD in their place, a change nobody asked for. A CSV's rows are only known once decoded, so
 * the import fails (like a CSV the parser cannot read) instead of one row.
 */
function utf8Only(): Transform {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const notUtf8 = () => new Error('The file is not valid UTF-8.');
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      try {
        decoder.decode(chunk, { stream: true });
      } catch {
        return done(notUtf8());
      }
      done(null, chunk);
    },
    flush(done) {
      try {
        decoder.decode();
      } catch {
        return done(notUtf8());
      }
      done();
    },
  });
}

const CSV_BASE = new Set(['external_id', 'name', 'email', 'emails', 'phone', 'phones']);

/**
 * Contacts from a CSV with a header row (docs/import.md): external_id, name, email(s), phone(s)
 * (several separated by `;`), and any other column names a contact field, its cells converted to
 * the field's type. Rows are numbered as lines with the header as line 1.
 */
async function* csvItems(db: Db, stream: Readable): AsyncGenerator<Item> {
  const fields = new Map(
    (await db.selectFrom('contact_fields').select(['key', 'type']).execute()).map((f) => [f.key, f.type]),
  );
  // pipeline, not pipe: an error of the file's stream or of the UTF-8 check reaches the rows.
  const rows = pipeline(
    stream,
    utf8Only(),
    parse({ headers: true, ignoreEmpty: true, trim: true, discardUnmappedColumns: true }),
    () => {},
  );
  let line = 1;
  for await (const row of rows as AsyncIterable<Record<string, string>>) {
    line++;
    yield csvRecord(line, row, fields);
  }
}

function csvRecord(line: number, row: Record<string, string>, fields: Map<string, string>): Item {
  const list = (v: string | undefined) =>
    (v ?? '')
      .split(';')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  const custom: Record<string, string | number | boolean> = {};
  for (const [column, cell] of Object.entries(row)) {
    if (CSV_BASE.has(column) || cell === '') continue;
    const type = fields.get(column);
    if (!type) {
      return {
        line,
        error: {
          code: 'unknown_column',
          message: `Column ${JSON.stringify(column.slice(0, 100))} is neither a contact attribute nor a contact field's key.`,
          type: 'contact',
          external_id: row.external_id ?? null,
        },
      };
    }
    if (type === 'number') {
      const n = Number(cell);
      if (!Number.isFinite(n)) {
        return {
          line,
          error: {
            code: 'invalid_record',
            message: `${column}: not a number`,
            type: 'contact',
            external_id: row.external_id ?? null,
          },
        };
      }
      custom[column] = n;
    } else if (type === 'boolean') {
      const b = cell.toLowerCase();
      if (!['true', 'false', 'yes', 'no', '1', '0'].includes(b)) {
        return {
          line,
          error: {
            code: 'invalid_record',
            message: `${column}: not a boolean`,
            type: 'contact',
            external_id: row.external_id ?? null,
          },
        };
      }
      custom[column] = ['true', 'yes', '1'].includes(b);
    } else custom[column] = cell;
  }
  const emails = [...list(row.email), ...list(row.emails)];
  const phones = [...list(row.phone), ...list(row.phones)];
  const record = {
    type: 'contact',
    external_id: row.external_id ?? '',
    ...(row.name !== undefined && row.name !== '' && { name: row.name }),
    // Empty cells say nothing: an update must not wipe what the contact has.
    ...(emails.length > 0 && { emails }),
    ...(phones.length > 0 && { phones }),
    ...(Object.keys(custom).length > 0 && { custom_fields: custom }),
  };
  return parseRecord(line, JSON.stringify(record));
}

function describe(error: unknown): { code: string; message: string } {
  if (error instanceof DomainError) {
    const fields = (error.errors ?? []).map((e) => `${e.field}: ${e.message}`).join('; ');
    return {
      code: error.code,
      message: (fields ? `${error.message} (${fields})` : error.message).slice(0, MAX_ERROR_TEXT),
    };
  }
  const pg = error as { code?: string; message?: string; detail?: string };
  if (typeof pg.code === 'string' && /^[0-9A-Z]{5}$/.test(pg.code)) {
    return {
      code: 'rejected_by_database',
      message: `${pg.message ?? ''}${pg.detail ? ` (${pg.detail})` : ''}`.slice(0, MAX_ERROR_TEXT),
    };
  }
  return { code: 'internal_error', message: 'The record could not be applied.' };
}

/**
 * The import acts as the owner or admin who started it, with their role as it is now: one who has
 * been demoted, disabled or deleted since cannot have their import run (it fails, saying so).
 */
async function principalOf(db: Db, agentId: string | null): Promise<Principal> {
  const agent = agentId
    ? await db
        .selectFrom('agents')
        .select(['id', 'role', 'status'])
        .where('id', '=', agentId)
        .executeTakeFirst()
    : undefined;
  if (agent?.status !== 'active' || (agent.role !== 'owner' && agent.role !== 'admin')) {
    throw new Error('The agent who started this import is no longer an active owner or admin.');
  }
  return { agentId: agent.id, role: agent.role, scopes: ['read', 'write'], via: 'session', tokenId: null };
}

/**
 * Works one claimed import through to its end (or until `stop()` says so, or the lease is lost).
 * Answers whether it finished.
 */
async function work(
  deps: ImportWorkerDeps,
  row: repo.ImportRow,
  token: string,
  stop: () => boolean,
): Promise<boolean> {
  const { db, blobs, log } = deps;
  const ctx: ApplyContext = {
    importId: row.id,
    source: row.source,
    runRules: row.run_rules,
    importer: await principalOf(db, row.created_by),
    known: new Map(),
    pending: new Map(),
    careful: 0,
    notes: [],
  };
  const stream = await blobs.get(row.blob_key!);
  const items = row.format === 'csv' ? csvItems(db, stream) : ndjsonItems(stream);
  const size = importBatchSize(db);
  let batch: Item[] = [];
  let position = Number(row.position);
  const flush = async (finished: boolean) => {
    const done = await commitBatch(db, ctx, token, batch, position, finished);
    position = done;
    batch = [];
  };
  try {
    for await (const item of items) {
      if (item.line <= position) continue;
      batch.push(item);
      if (batch.length >= size || (item.record && ALONE.has(item.record.type))) {
        await flush(false);
        if (stop()) return false;
      }
    }
    await flush(true);
    log.info({ import_id: row.id }, 'import finished');
    return true;
  } finally {
    stream.destroy();
  }
}

/** A record of a batch applied in one go failed, or one of its keys was taken meanwhile. */
class BatchRefused extends Error {}

/**
 * A statement of the batch as a whole (its keys read or inserted) failed for something a record
 * holds (a NUL in an external id, say): record by record, that record is refused alone.
 */
async function refusedUnlessTransient<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (isDatabaseUnreachable(error) || isTransient(error)) throw error;
    throw new BatchRefused();
  }
}

/** After a batch had to be applied record by record, the next ones are too: bad lines cluster. */
const CAREFUL_BATCHES = 4;

/**
 * Applies a batch and commits it with the import's position and counts. First in one go: the
 * records' keys read in one statement, the records applied with no savepoint, their keys
 * inserted in one statement. Should a record fail, that transaction is rolled back whole and
 * the batch applied again record by record, each under a savepoint, so the bad one is reported
 * and the others kept: a clean batch saves four round trips per record, a bad one costs one
 * more pass.
 */
async function commitBatch(
  db: Db,
  ctx: ApplyContext,
  token: string,
  batch: Item[],
  from: number,
  finished: boolean,
): Promise<number> {
  if (ctx.careful > 0) ctx.careful--;
  else {
    try {
      return await applyBatch(db, ctx, token, batch, from, finished, 'together');
    } catch (error) {
      if (!(error instanceof BatchRefused)) throw error;
      ctx.careful = CAREFUL_BATCHES;
    }
  }
  return applyBatch(db, ctx, token, batch, from, finished, 'one by one');
}

async function applyBatch(
  db: Db,
  ctx: ApplyContext,
  token: string,
  batch: Item[],
  from: number,
  finished: boolean,
  mode: 'together' | 'one by one',
): Promise<number> {
  const counts = { read: 0, created: 0, updated: 0, skipped: 0, failed: 0 };
  const errors: Parameters<typeof repo.insertErrors>[1] = [];
  const position = batch.at(-1)?.line ?? from;
  /** A row of the import's errors for this line (a refusal, or a note). */
  const report = (
    line: number,
    about: { type?: string | null | undefined; external_id?: string | null | undefined },
    why: { code: string; message: string },
  ) =>
    errors.push({
      import_id: ctx.importId,
      line,
      type: clean(about.type, 50),
      external_id: clean(about.external_id, 200),
      code: why.code,
      message: clean(why.message) ?? '',
    });
  /** What a record that went in went in without (one note per line: the first). */
  const noted = (item: Item) => {
    if (ctx.notes[0]) report(item.line, item.record!, ctx.notes[0]);
  };
  try {
    await db.transaction().execute(async (trx) => {
      if (!(await repo.lockLease(trx, ctx.importId, token))) throw new LeaseLost();
      const keys: BatchKeys | undefined =
        mode === 'together'
          ? {
              found: await refusedUnlessTransient(
                repo.findKeys(
                  trx,
                  ctx.source,
                  batch.flatMap((item) => (item.record ? [item.record] : [])),
                ),
              ),
              created: new Map(),
              writes: ctx.runRules ? undefined : new SetWrites(ctx.importId),
            }
          : undefined;
      for (const item of batch) {
        counts.read++;
        if (!item.record) {
          counts.failed++;
          report(item.line, item.error!, item.error!);
          continue;
        }
        ctx.notes = [];
        if (keys) {
          try {
            counts[await applyRecord(trx, ctx, item.record, keys)]++;
          } catch (error) {
            if (isDatabaseUnreachable(error) || isTransient(error)) throw error;
            throw new BatchRefused();
          }
          noted(item);
          continue;
        }
        await sql`savepoint import_record`.execute(trx);
        try {
          counts[await applyRecord(trx, ctx, item.record)]++;
          await sql`release savepoint import_record`.execute(trx);
          noted(item);
        } catch (error) {
          // Not the record's fault: the whole batch is retried (see processPendingImports).
          if (isDatabaseUnreachable(error) || isTransient(error)) throw error;
          await sql`rollback to savepoint import_record`.execute(trx);
          counts.failed++;
          report(item.line, item.record, describe(error));
        }
      }
      // What the batch held, written as a set: a row the database refuses (a constraint) sends
      // the batch record by record, where the record it came from is refused alone.
      if (keys?.writes) await refusedUnlessTransient(keys.writes.flush(trx));
      // Another import of the same source took one of these keys meanwhile: one by one, that
      // record fails on its key and the others stay.
      if (
        keys &&
        (await refusedUnlessTransient(repo.insertKeys(trx, [...keys.created.values()]))) < keys.created.size
      ) {
        throw new BatchRefused();
      }
      await repo.insertErrors(trx, errors);
      await repo.recordProgress(trx, ctx.importId, { position, ...counts }, LEASE_SECONDS, finished);
    });
  } catch (error) {
    ctx.pending.clear();
    throw error;
  }
  // Emptied past KNOWN_IDS: at 200,000 ids (~30 MB) an import of a million records took the
  // server past its 300 MB target; what is dropped is read again when next named.
  if (ctx.known.size > KNOWN_IDS) ctx.known.clear();
  for (const [k, v] of ctx.pending) ctx.known.set(k, v);
  ctx.pending.clear();
  return position;
}

/**
 * Takes pending imports one after the other and works each through, until none is waiting (or
 * `stop()`). Answers how many it finished. Safe on every instance at once.
 */
export async function processPendingImports(
  deps: ImportWorkerDeps,
  stop: () => boolean = () => false,
): Promise<number> {
  let finished = 0;
  while (!stop()) {
    const token = randomUUID();
    const row = await repo.claimImport(deps.db, token, LEASE_SECONDS, [...unreleased]);
    if (!row) break;
    try {
      if (await work(deps, row, token, stop)) finished++;
      else await releaseLease(deps.db, row.id, token);
    } catch (error) {
      if (error instanceof LeaseLost) continue;
      // The database away, or a deadlock / serialization failure with live traffic: the batch
      // rolled back whole; the import is handed back and taken up again from its position.
      if (isDatabaseUnreachable(error) || isTransient(error)) {
        await releaseLease(deps.db, row.id, token).catch(() => {
          // Still away: this process takes the import up again once it is back, rather than
          // every process waiting out the lease (LEASE_SECONDS).
          // (A token whose import was taken up since matches nothing: the oldest are dropped.)
          if (unreleased.size >= 100) unreleased.delete(unreleased.values().next().value!);
          unreleased.add(token);
        });
        throw error;
      }
      deps.log.error({ import_id: row.id, err: error }, 'import failed');
      await repo.failImport(deps.db, row.id, error instanceof Error ? error.message.slice(0, 500) : 'failed');
    }
  }
  return finished;
}

/** Hands an import back at once (a graceful stop), so the next process need not wait for the lease. */
/** Leases this process took and could not hand back (the database was away). */
const unreleased = new Set<string>();

async function releaseLease(db: Db, id: string, token: string) {
  await db
    .updateTable('imports')
    .set({ lease_until: null, lease_token: null })
    .where('id', '=', id)
    .where('lease_token', '=', token)
    .execute();
}

/** The worker on every instance: looks for pending imports every `intervalMs`. Returns its stop. */
export function startImportWorker(deps: ImportWorkerDeps, intervalMs = 1000): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const turn = async () => {
    try {
      await processPendingImports(deps, () => stopped);
    } catch (error) {
      deps.log.warn({ reason: (error as Error).message }, 'import worker: database away; next turn retries');
    }
    if (!stopped) timer = setTimeout(() => (running = turn()), intervalMs);
  };
  running = turn();
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
