// Applies every pending migration (npm run migrate) to DATABASE_URL, or to the embedded PGlite
// database in DATA_DIR when DATABASE_URL is unset. The server migrates at boot too; this is for
// deploys that migrate as a separate step. Safe to run repeatedly.
import { ConfigError, loadConfig } from '../src/config.ts';
import { createDatabase, type Db } from '../src/db/database.ts';
import { migrateToLatest } from '../src/db/migrate.ts';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

const target = config.databaseUrl ? redact(config.databaseUrl) : `embedded PGlite in ${config.dataDir}`;
let db: Db | undefined;
try {
  db = await createDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  const applied = await migrateToLatest(db);
  if (applied.length === 0) {
    process.stdout.write(`${target}: schema is current\n`);
  } else {
    process.stdout.write(`${target}: applied ${applied.length} migration(s)\n`);
    for (const name of applied) process.stdout.write(`  ${name}\n`);
  }
} catch (error) {
  process.stderr.write(`Migration of ${target} failed: ${describe(error)}\n`);
  process.exitCode = 1;
} finally {
  await db?.destroy().catch(() => {});
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'DATABASE_URL';
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : '';
  const code = (error as { code?: string }).code;
  const parts = [error.message || error.name];
  if (code) parts.push(`(${code})`);
  if (cause && !error.message.includes(cause)) parts.push(`- ${cause}`);
  return parts.join(' ');
}
