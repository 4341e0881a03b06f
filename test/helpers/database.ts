import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PGliteDialect, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import tap from 'tap';
import { createPool } from '../../src/db/client.ts';
import { type Db, registerEmbedded } from '../../src/db/database.ts';
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
 * On PGlite, each database starts from a migrated snapshot (see pgliteFromSnapshot).
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const { kind, url } = await databaseSource();
  if (url) return fromServer(url, kind as 'env' | 'container');
  const pglite = await pgliteFromSnapshot();
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
  registerEmbedded(db, pglite);
  const drop = async () => {
    await db.destroy();
    // Kysely closes PGlite only if a query ran; an open PGlite keeps the process (and the
    // file, until tap's timeout) alive after its last test.
    if (!pglite.closed) await pglite.close();
  };
  return { db, kind: 'pglite', url: null, drop };
}

/**
 * Where this run's databases come from. A check that needs a real server (two connections,
 * isolation levels, pg_stat_activity, round trips) is skipped on PGlite with its reason:
 * `t.test('...', { skip: (await testDatabaseKind()) === 'pglite' ? 'why' : false }, ...)`.
 */
export async function testDatabaseKind(): Promise<TestDatabase['kind']> {
  return (await databaseSource()).kind;
}

type Source = { kind: TestDatabase['kind']; url: string | null };
let source: Promise<Source> | undefined;

function databaseSource(): Promise<Source> {
  source ??= findSource();
  return source;
}

async function findSource(): Promise<Source> {
  const envUrl = process.env.TEST_DATABASE_URL;
  if (envUrl) return { kind: 'env', url: envUrl };
  const containerUrl = await startContainer();
  if (containerUrl) return { kind: 'container', url: containerUrl };
  // PGlite runs every query on one thread, several times slower than a server: give the file
  // three times the timeout configured for the run (.taprc), counted from its first database.
  tap.setTimeout(3 * Number(process.env.TAP_TIMEOUT ?? 120) * 1000);
  return { kind: 'pglite', url: null };
}

const SNAPSHOT_DIR = fileURLToPath(new URL('../../node_modules/.cache/deskroute-test', import.meta.url));
let snapshot: Promise<Blob | null> | undefined;

/**
 * A PGlite instance with the schema migrated. A fresh PGlite runs initdb (a second WASM program)
 * and then every migration: ~4 s of CPU each time, and the suite makes ~70 databases. Loading a
 * tarball of an already migrated data folder costs ~1 s. The first test file that finds no
 * tarball for the current migrations and PGlite version writes one (concurrent first files may
 * each write it; the rename makes that harmless); later files and runs load it. The tarball lives
 * in node_modules/.cache, so `npm ci` starts afresh.
 */
async function pgliteFromSnapshot(): Promise<PGlite> {
  const file = path.join(SNAPSHOT_DIR, `pglite-${await pgliteVersion()}-${await migrationsHash()}.tar`);
  snapshot ??= readFile(file).then(
    (bytes) => new Blob([bytes]),
    () => null,
  );
  const tarball = await snapshot;
  if (tarball) {
    const pglite = new PGlite({ loadDataDir: tarball });
    await pglite.waitReady;
    return pglite;
  }
  const pglite = new PGlite();
  const db = new Kysely<Database>({ dialect: new PGliteDialect({ pglite }) });
  await migrateToLatest(db);
  const dumped = await pglite.dumpDataDir('none');
  snapshot = Promise.resolve(dumped);
  const partial = `${file}.${process.pid}.partial`;
  await mkdir(SNAPSHOT_DIR, { recursive: true });
  await writeFile(partial, Buffer.from(await dumped.arrayBuffer()));
  await rename(partial, file).catch(() => rm(partial, { force: true }));
  // Snapshots of older migrations or PGlite versions are never read again (43 MB each).
  for (const old of await readdir(SNAPSHOT_DIR)) {
    if (old.endsWith('.tar') && old !== path.basename(file))
      await rm(path.join(SNAPSHOT_DIR, old), { force: true });
  }
  return pglite;
}

async function pgliteVersion(): Promise<string> {
  // The package exports no package.json; it sits one folder above the entry point (dist/).
  const entry = fileURLToPath(import.meta.resolve('@electric-sql/pglite'));
  const pkg = JSON.parse(await readFile(path.join(path.dirname(entry), '..', 'package.json'), 'utf8'));
  return String(pkg.version);
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
              // An app still running on it (a test of an absent database) keeps its auth cache's
              // listening connection (src/plugins/auth-cache.ts), which takes being cut in stride.
              await c.query(
                `select pg_terminate_backend(pid) from pg_stat_activity
                  where datname = $1 and application_name = 'deskroute auth cache'`,
                [name],
              );
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
