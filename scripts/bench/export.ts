// npm run bench:export [-- --tickets 1000000]
//
// The tickets export at scale, against PostgreSQL, in a scratch database
// deskroute_export_bench_<pid> created and dropped here (BENCH_DATABASE_URL, else DATABASE_URL,
// else postgres://postgres@127.0.0.1:5432/postgres names the server). Loads --tickets tickets
// (default 1,000,000) over 5,000 contacts with emails, then times, in the same run:
//   - GET /v1/exports/tickets (ndjson, then csv) over a real socket from a server in this process,
//     the client counting lines;
//   - PostgreSQL's own COPY (<the export's own statement, unbatched>) TO STDOUT, text and csv,
//     through psql (\copy) in a child process, its output counted the same way.
// Prints rows/s of each and the ratio export / COPY (target >= 0.5).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { loadTicketAccess } from '../../src/access/tickets.ts';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/client.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { ticketsChangedIn } from '../../src/domains/exports/repository.ts';
import { hashApiToken } from '../../src/plugins/auth.ts';
import { withoutIndexes } from './bulk-load.ts';

const { values: args } = parseArgs({ options: { tickets: { type: 'string', default: '1000000' } } });
const TICKETS = Number(args.tickets);
const CONTACTS = 5000;
const out = (line = '') => process.stdout.write(`${line}\n`);
const rate = (rows: number, ms: number) => `${Math.round((rows / ms) * 1000).toLocaleString('en')} rows/s`;

async function timeHttp(port: number, token: string, format: string) {
  const started = performance.now();
  let lines = 0;
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    http
      .get(
        {
          host: '127.0.0.1',
          port,
          path: `/v1/exports/tickets?format=${format}`,
          headers: { authorization: `Bearer ${token}` },
        },
        (res) => {
          if (res.statusCode !== 200) reject(new Error(`export answered ${res.statusCode}`));
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      )
      .on('error', reject);
  });
  return { ms: performance.now() - started, rows: format === 'csv' ? lines - 1 : lines, bytes };
}

async function timeCopy(url: string, select: string, csv: boolean) {
  const started = performance.now();
  let lines = 0;
  let bytes = 0;
  const child = spawn(
    'psql',
    [url, '-X', '-q', '-c', `\\copy (${select}) to stdout${csv ? ' with (format csv)' : ''}`],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  child.stdout.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`psql exited with ${code}`);
  return { ms: performance.now() - started, rows: lines, bytes };
}

const literal = (v: unknown) =>
  v instanceof Date
    ? `'${v.toISOString()}'`
    : typeof v === 'number'
      ? String(v)
      : `'${String(v).replaceAll("'", "''")}'`;

async function main() {
  const serverUrl =
    process.env.BENCH_DATABASE_URL ||
    loadConfig().databaseUrl ||
    'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = `deskroute_export_bench_${process.pid}`;
  const u = new URL(serverUrl);
  u.pathname = `/${scratch}`;
  const url = u.toString();
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${scratch}`);
  out(
    `scratch database ${scratch}, ${TICKETS.toLocaleString('en')} tickets (load average ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs)`,
  );
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: createPool(url, { max: 10 }) }) });
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await migrateToLatest(db);
    const t0 = performance.now();
    const owner = (
      await client.query(
        `insert into agents (name, email, role) values ('Owner', 'owner@bench.example', 'owner') returning id`,
      )
    ).rows[0].id as string;
    const token = `drt_${randomBytes(24).toString('base64url')}`;
    await client.query(
      `insert into api_tokens (agent_id, name, token_hash, token_prefix, scopes) values ($1, 'export bench', $2, $3, '{read}')`,
      [owner, hashApiToken(token), token.slice(0, 8)],
    );
    await client.query(
      `insert into departments (name) select 'Department ' || g from generate_series(1, 5) g`,
    );
    await client.query(
      `insert into contacts (name) select 'Customer ' || g from generate_series(1, ${CONTACTS}) g`,
    );
    await client.query(
      `insert into contact_emails (contact_id, email, position) select id, 'c-' || id || '@bench.example', 0 from contacts`,
    );
    await withoutIndexes(client, 'tickets', async () => {
      await client.query(
        `insert into tickets (subject, channel, status, priority, department_id, contact_id, tags, created_at, updated_at, waiting_since)
         select 'Bench ticket ' || g, 'email', 'open', 'normal', d.ids[1 + g % 5], c.ids[1 + g % ${CONTACTS}], '{bench}',
                now() - interval '1 second' * g, now() - interval '1 second' * g, now()
         from generate_series(1, ${TICKETS}) g,
              (select array_agg(id) ids from departments) d, (select array_agg(id) ids from contacts) c`,
      );
    });
    await client.query('vacuum analyze');
    out(`load: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // The export's own statement for an owner without filters, unbatched, for COPY.
    const access = await loadTicketAccess(db, {
      agentId: owner,
      role: 'owner',
      scopes: ['read'],
      via: 'api_token',
      tokenId: null,
    });
    const compiled = ticketsChangedIn(db, access, {}, { from: null, to: new Date() }).compile();
    const select = compiled.sql.replace(/\$(\d+)/g, (_, n: string) =>
      literal(compiled.parameters[Number(n) - 1]),
    );

    const secret = randomBytes(32).toString('base64url');
    const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', JWT_SECRET: secret }), {
      db,
      jwtSecret: secret,
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      for (const [format, csv] of [
        ['ndjson', false],
        ['csv', true],
      ] as const) {
        const copy = await timeCopy(url, select, csv);
        const exported = await timeHttp(port, token, format);
        out(
          `${format}: export ${rate(exported.rows, exported.ms)} (${exported.rows} rows, ${(exported.bytes / 1e6).toFixed(0)} MB, ${(exported.ms / 1000).toFixed(1)} s)` +
            ` | COPY ${csv ? 'csv' : 'text'} ${rate(copy.rows, copy.ms)} (${copy.rows} rows, ${(copy.bytes / 1e6).toFixed(0)} MB)` +
            ` | ratio ${(copy.ms / exported.ms).toFixed(2)}x COPY (target >= 0.5)`,
        );
      }
    } finally {
      await app.close();
    }
  } finally {
    await client.end().catch(() => {});
    await db.destroy();
    await admin.query(`drop database if exists ${scratch} with (force)`);
    await admin.end();
  }
}

await main();
