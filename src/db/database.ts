import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect } from 'kysely';
import pg from 'pg';
import { createPool } from './client.ts';
import type { Database } from './types.ts';

export type Db = Kysely<Database>;

// The PGlite behind an embedded Kysely: the job queue talks to it directly, since its schema
// set-up runs multi-statement SQL, which only PGlite's exec() takes (src/jobs/queue.ts).
const embedded = new WeakMap<Db, PGlite>();

export function registerEmbedded(db: Db, pglite: PGlite): void {
  embedded.set(db, pglite);
}

export function embeddedPglite(db: Db): PGlite | undefined {
  return embedded.get(db);
}

// int8 (counts) as numbers: our counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

/**
 * One code path, two ways to reach PostgreSQL: a pg pool when a URL is given (production,
 * CI, benchmarks), embedded PGlite in a data folder otherwise (the zero-setup default).
 */
export async function createDatabase(options: {
  databaseUrl?: string | undefined;
  dataDir?: string;
  /** See DATABASE_CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /** Told about pooled connections lost while idle (the pool replaces them by itself). */
  onIdleError?: (error: Error) => void;
}): Promise<Db> {
  if (options.databaseUrl) {
    const pool = createPool(options.databaseUrl, {
      ...(options.connectTimeoutMs !== undefined && { connectionTimeoutMillis: options.connectTimeoutMs }),
      ...(options.onIdleError && { onIdleError: options.onIdleError }),
    });
    return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  let dataDir: string | undefined;
  if (options.dataDir) {
    dataDir = path.resolve(options.dataDir, 'pgdata');
    await mkdir(dataDir, { recursive: true });
  }
  const pglite = new PGlite(dataDir);
  await pglite.waitReady;
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
  registerEmbedded(db, pglite);
  return db;
}
