// npm run seed:demo [-- --tickets 3000 --months 6 --seed 1 --force]
//
// Fills DATABASE_URL (or the embedded PGlite database in DATA_DIR) with a demo help desk:
// departments, agents, integrations and a few thousand tickets on every channel over the last
// months, with the history the API would have recorded. Migrates first; refuses a database
// that already has tickets unless --force.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../src/config.ts';
import { createDatabase, type Db } from '../src/db/database.ts';
import { type SeedOptions, SeedRefused, type SeedResult, seedDemo } from './seed-demo/seed.ts';

export { type SeedOptions, SeedRefused, type SeedResult, seedDemo } from './seed-demo/seed.ts';

const USAGE = `Usage: npm run seed:demo -- [--tickets N] [--months N] [--seed N] [--now ISO-TIME] [--force]`;

function positiveInteger(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`--${name} must be a positive integer`);
  return value;
}

class UsageError extends Error {}

function summary(result: SeedResult, target: string): string {
  const lines = [
    `Seeded ${target} with a demo help desk (${result.period.from.toISOString().slice(0, 10)} to ${result.period.to.toISOString().slice(0, 10)}).`,
    '',
    'Rows per table:',
    ...Object.entries(result.counts).map(([table, n]) => `  ${table.padEnd(20)} ${n}`),
    '',
    `Seeded tickets by channel: ${Object.entries(result.channels)
      .sort(([, a], [, b]) => b - a)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
    `Seeded tickets by status:  ${Object.entries(result.statuses)
      .sort(([, a], [, b]) => b - a)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
    '',
    `Owner: ${result.owner.email}${
      result.owner.generatedPassword
        ? ` / password ${result.owner.generatedPassword} (generated: shown only now)`
        : result.owner.created
          ? ' (created with DESKROUTE_ADMIN_PASSWORD)'
          : ' (existing)'
    }`,
    `Demo agents (e.g. martina.kovacs@acme-outdoor.example) sign in with: ${result.agentPassword}`,
  ];
  return `${lines.join('\n')}\n`;
}

const OPTIONS = {
  tickets: { type: 'string' },
  months: { type: 'string' },
  seed: { type: 'string' },
  now: { type: 'string' },
  force: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

function readOptions(): { config: ReturnType<typeof loadConfig>; options: SeedOptions } | 'help' {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    values = parseArgs({ options: OPTIONS, strict: true }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  const now = values.now === undefined ? new Date() : new Date(values.now);
  if (Number.isNaN(now.getTime())) throw new UsageError('--now must be an ISO date-time');
  const config = loadConfig();
  return {
    config,
    options: {
      tickets: positiveInteger('tickets', values.tickets, 3000),
      months: positiveInteger('months', values.months, 6),
      seed: positiveInteger('seed', values.seed, 1),
      force: values.force,
      now,
      admin:
        config.admin.email && config.admin.password
          ? { email: config.admin.email, password: config.admin.password }
          : undefined,
      log: (line) => process.stdout.write(`  ${line}\n`),
    },
  };
}

async function main(): Promise<number> {
  let read: ReturnType<typeof readOptions>;
  try {
    read = readOptions();
  } catch (error) {
    if (error instanceof ConfigError || error instanceof UsageError) {
      process.stderr.write(`${error.message}\n${USAGE}\n`);
      return 2;
    }
    throw error;
  }
  if (read === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { config, options } = read;
  const target = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${config.dataDir}`;
  let db: Db | undefined;
  const started = performance.now();
  try {
    db = await createDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    process.stdout.write(`Seeding ${target}...\n`);
    const result = await seedDemo(db, options);
    process.stdout.write(summary(result, target));
    process.stdout.write(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.\n`);
    return 0;
  } catch (error) {
    if (error instanceof SeedRefused) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    await db?.destroy().catch(() => {});
  }
}

if (import.meta.main) process.exitCode = await main();
