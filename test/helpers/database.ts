import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { createPool } from '../../src/db/client.ts';
import type { Db } from '../../src/db/database.ts';
import { MIGRATIONS_DIR, migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';

export interface TestDatabase {
  db: Db;
  /** How the suite reached PostgreSQL: env (TEST_DATABASE_URL), container, or pglite. */
  kind: 'env' | 'container' | 'pglite';
  url: string | null;
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database for one test file, so files run in parallel without touching each
 * other: TEST_DATABASE_URL when set, else a testcontainers PostgreSQL when a container engine
 * answers, else embedded PGlite. On a server, the schema is migrated once into a template
 * database and each file gets a copy (CREATE DATABASE ... TEMPLATE), which takes milliseconds.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const envUrl = process.env.TEST_DATABASE_URL;
  if (envUrl) return fromServer(envUrl, 'env');
  const containerUrl = await startContainer();
  if (containerUrl) return fromServer(containerUrl, 'container');
  const pglite = new PGlite();
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
  await migrateToLatest(db);
  return { db, kind: 'pglite', url: null, drop: () => db.destroy() };
}

async function startContainer(): Promise<string | null> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
  } catch {
    return null; // no engine: fails in milliseconds, and PGlite takes over
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  // Reused across test files (and runs), so the suite starts one server, not one per file.
  const container = await new PostgreSqlContainer('postgres:15-alpine').withReuse().start();
  return container.getConnectionUri();
}

async function migrationsHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of (await readdir(MIGRATIONS_DIR)).sort()) {
    hash.update(file).update(await readFile(path.join(MIGRATIONS_DIR, file)));
  }
  return hash.digest('hex').slice(0, 12);
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function fromServer(url: string, kind: 'env' | 'container'): Promise<TestDatabase> {
  const template = `deskroute_tpl_${await migrationsHash()}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    // One file builds the template while the others wait; a half-built one never has the final name.
    await admin.query('select pg_advisory_lock(hashtext($1))', [template]);
    const exists = await admin.query('select 1 from pg_database where datname = $1', [template]);
    if (exists.rowCount === 0) {
      const building = `${template}_building`;
      await admin.query(`drop database if exists ${building}`);
      await admin.query(`create database ${building}`);
      const db = new Kysely<Database>({
        dialect: new PostgresDialect({
          pool: new pg.Pool({ connectionString: withDatabase(url, building), max: 1 }),
        }),
      });
      await migrateToLatest(db);
      await db.destroy();
      await admin.query(`alter database ${building} rename to ${template}`);
    }
    await admin.query('select pg_advisory_unlock(hashtext($1))', [template]);

    const name = `deskroute_test_${randomBytes(6).toString('hex')}`;
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`create database ${name} template ${template}`);
        break;
      } catch (error) {
        // "source database is being accessed by other users": another file is copying it right now.
        if ((error as { code?: string }).code !== '55006' || attempt > 50) throw error;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
      }
    }
    const testUrl = withDatabase(url, name);
    const db = new Kysely<Database>({
      // The app's own pool: marked statements run prepared here as in production.
      dialect: new PostgresDialect({ pool: createPool(testUrl) }),
    });
    return {
      db,
      kind,
      url: testUrl,
      drop: async () => {
        await db.destroy();
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          // Closed connections can take a moment to leave pg_stat_activity; wait rather than
          // force, which would kill a straggler with an error the test would then report.
          for (let attempt = 0; ; attempt++) {
            try {
              await c.query(`drop database if exists ${name}`);
              break;
            } catch (error) {
              if ((error as { code?: string }).code !== '55006') throw error;
              if (attempt > 100) {
                await c.query(`drop database if exists ${name} with (force)`);
                break;
              }
              await new Promise((r) => setTimeout(r, 50));
            }
          }
        } finally {
          await c.end();
        }
      },
    };
  } finally {
    await admin.end();
  }
}

export { sql };
