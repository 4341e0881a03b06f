import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect } from 'kysely';
import pg from 'pg';
import { PREPARED_MARK, statementName } from './prepared.ts';
import type { Database } from './types.ts';

export type Db = Kysely<Database>;

// int8 (counts) as numbers: our counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

/** A pg client that runs statements marked by prepared() as named prepared statements. */
class PreparingClient extends pg.Client {
  // pg's query() has a dozen overloads; this one forwards them all.
  override query(config: any, values?: any, callback?: any): any {
    if (typeof config === 'string' && config.startsWith(PREPARED_MARK)) {
      return super.query({ name: statementName(config), text: config, values }, callback);
    }
    return super.query(config, values, callback);
  }
}

/** The pool the app reaches PostgreSQL through (tests use it too, to run the same client). */
export function createPool(connectionString: string, max = 10): pg.Pool {
  return new pg.Pool({ connectionString, max, Client: PreparingClient });
}

/**
 * One code path, two ways to reach PostgreSQL: a pg pool when a URL is given (production,
 * CI, benchmarks), embedded PGlite in a data folder otherwise (the zero-setup default).
 */
export async function createDatabase(options: {
  databaseUrl?: string | undefined;
  dataDir?: string;
}): Promise<Db> {
  if (options.databaseUrl) {
    const pool = createPool(options.databaseUrl);
    return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  }
  let dataDir: string | undefined;
  if (options.dataDir) {
    dataDir = path.resolve(options.dataDir, 'pgdata');
    await mkdir(dataDir, { recursive: true });
  }
  const pglite = new PGlite(dataDir);
  await pglite.waitReady;
  return new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
}
