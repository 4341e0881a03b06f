// Part of npm run bench:sla (scripts/bench/sla.ts runs it): 10,000 tickets breaching in the same
// instant, fired by real server processes (node src/server.ts, the SLA timer every second), in a
// scratch database deskroute_sla_breaches_<pid> created and dropped here.
//
// Set-up: one policy (60 calendar minutes to a first answer), --breach-tickets tickets opened
// through the write path (the service's insert, 8 at a time), then every ticket's due rewritten
// to the same instant T, a few seconds ahead, in the clock's state and the timer column alike;
// VACUUM ANALYZE; --breach-servers server processes started before T. Measured: from T until the
// last breach is written (ticket_events.occurred_at of sla.breached; each must be at T and there
// must be exactly one per ticket), and the lag of each breach behind T (p50, p99). Target: all
// within 60 s. Baseline, measured in the same run on the same rows: the floor, one statement
// that writes what the breaches write (a sla.breached event per ticket and the ticket's SLA
// columns) without the write path, in a transaction rolled back.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import { insertPolicy, renewPoliciesKey } from '../../src/domains/sla-policies/repository.ts';
import { insertNewTicket } from '../../src/domains/tickets/service.ts';
import { scratchDatabase } from './http.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TARGET_SECONDS = 60;
const out = (line = '') => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The real server, as npm start runs it, on a free port; resolves once /healthz answers. */
async function startServer(databaseUrl: string): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--max-semi-space-size=8', '--max-old-space-size=160', path.join(ROOT, 'src/server.ts')],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: databaseUrl,
        JWT_SECRET: 'bench-secret-that-is-long-enough-0123456789',
        LOG_LEVEL: 'warn',
        SLA_TIMER_INTERVAL_MS: '1000',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    if (Date.now() > deadline) throw new Error('server did not come up within 120 s');
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return child;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
}

async function openTickets(db: Db, count: number) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      await db.transaction().execute((trx) =>
        insertNewTicket(
          trx,
          {
            subject: `Parcel ${n}`,
            channel: 'email',
            contact: { email: `customer-${n}@bench.example` },
            message: { body: 'Where is my parcel?' },
          },
          { type: 'system', agentId: null, contactId: null },
          null,
        ),
      );
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

export async function benchBreaches(options: { tickets: number; servers: number; keep: boolean }) {
  const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_sla_breaches');
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${scratch}`);
  const db = await createDatabase({ databaseUrl: scratchUrl });
  const servers: ChildProcess[] = [];
  try {
    await migrateToLatest(db);
    await db.transaction().execute(async (trx) => {
      await insertPolicy(trx, {
        name: 'One hour to answer',
        position: 1,
        active: true,
        conditions: { all: [] },
        targets: { normal: { first_answer: { minutes: 60, business: false } } },
        pause_when_answered: false,
        on_transfer: 'continue',
        warn_before_minutes: null,
        escalations: [],
      });
      await renewPoliciesKey(trx);
    });
    let started = performance.now();
    await openTickets(db, options.tickets);
    out(
      `  set-up: ${options.tickets} tickets opened under the policy in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    for (let i = 0; i < options.servers; i++) servers.push(await startServer(scratchUrl));

    // Every due at the same instant T, in the clock's state and in the timer's column.
    const { rows } = await sql<{
      t: Date;
    }>`select date_trunc('second', now()) + interval '8 seconds' as t`.execute(db);
    const t = rows[0]!.t;
    await sql`update tickets set sla_due_at = ${t}, sla_next_at = ${t},
      sla_state = jsonb_set(sla_state, '{targets,0,due_at}', to_jsonb(${t.getTime()}::bigint))
      where sla_state is not null`.execute(db);
    await sql`vacuum analyze tickets`.execute(db);
    await sql`vacuum analyze ticket_events`.execute(db);
    const wait = t.getTime() - Date.now();
    if (wait < 0) throw new Error('set-up took past T: raise the lead time');
    out(`  ${options.servers} server process(es) running; all ${options.tickets} dues at ${t.toISOString()}`);

    const deadline = t.getTime() + 5 * TARGET_SECONDS * 1000;
    for (;;) {
      const { rows: done } = await sql<{ n: number }>`select count(*)::int as n from tickets
        where sla_breached`.execute(db);
      if (done[0]!.n >= options.tickets) break;
      if (Date.now() > deadline) throw new Error(`only ${done[0]!.n} breached after ${5 * TARGET_SECONDS} s`);
      await sleep(250);
    }
    const { rows: breaches } = await sql<{ lag_ms: number; at: string; ticket_id: string }>`
      select extract(epoch from (occurred_at - ${t}::timestamptz)) * 1000 as lag_ms,
        data->>'at' as at, ticket_id
      from ticket_events where type = 'sla.breached'`.execute(db);
    const lags = breaches.map((b) => Number(b.lag_ms)).sort((a, b) => a - b);
    const once = new Set(breaches.map((b) => b.ticket_id)).size === breaches.length;
    const atDue = breaches.every((b) => b.at === t.toISOString());
    const last = lags.at(-1)! / 1000;
    out(
      `  breaches: ${breaches.length} (${once ? 'each once' : 'SOME TWICE'}, ${atDue ? 'each recorded at its due' : 'SOME NOT AT THEIR DUE'})`,
    );
    out(
      `  fired: last ${last.toFixed(1)} s after the due; lag p50 ${(quantile(lags, 0.5) / 1000).toFixed(1)} s, p99 ${(quantile(lags, 0.99) / 1000).toFixed(1)} s; ${(breaches.length / last).toFixed(0)} breaches/s`,
    );

    // The floor: what the breaches write, in one statement, rolled back.
    const client = new pg.Client({ connectionString: scratchUrl });
    await client.connect();
    await client.query('begin');
    started = performance.now();
    await client.query(`with d as (
        update tickets set sla_breached = true, sla_next_at = null, sla_due_at = null
        where sla_state is not null returning id, department_id, assignee_id, channel)
      insert into ticket_events (ticket_id, type, actor_type, department_id, agent_id, channel, data)
      select id, 'sla.breached', 'system', department_id, assignee_id, channel,
        jsonb_build_object('kind', 'first_answer', 'cycle', 1) from d`);
    const floor = (performance.now() - started) / 1000;
    await client.query('rollback');
    await client.end();
    out(
      `  baseline (floor: one statement writing the ${options.tickets} breaches' rows and events): ${floor.toFixed(2)} s; ratio floor/ours ${(floor / last).toFixed(3)}`,
    );
    const pass = once && atDue && last <= TARGET_SECONDS;
    out(`  target: every breach within ${TARGET_SECONDS} s of its due: ${pass ? 'PASS' : 'FAIL'}`);
    return { last, pass };
  } finally {
    for (const s of servers) s.kill('SIGTERM');
    await Promise.all(
      servers.map(
        (s) => new Promise((resolve) => (s.exitCode !== null ? resolve(null) : s.once('exit', resolve))),
      ),
    );
    await db.destroy();
    if (!options.keep) await admin.query(`drop database if exists ${scratch} with (force)`);
    await admin.end();
  }
}

if (import.meta.main) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
  };
  await benchBreaches({
    tickets: arg('breach-tickets', 10_000),
    servers: arg('breach-servers', 1),
    keep: process.argv.includes('--keep'),
  });
}
