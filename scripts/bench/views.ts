// npm run bench:views [-- --tickets=1000000 --iterations=300 --keep]
//
// GET /v1/views/counts, the sidebar's one call, at 1,000,000 tickets (bulk-load.ts) on
// PostgreSQL, in a scratch database deskroute_views_<pid> created and dropped here
// (BENCH_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres).
// 20 views of every scope and kind (narrow, broad, text search, "me", no department) seen by an
// agent in 3 of 20 departments, and by an admin (who sees every ticket). Timed over HTTP one
// request at a time after warm-up. Target: p99 < 50 ms. Baselines measured in the same run:
// GET /v1/tickets/counts (the status counts per department) for the same callers, and the exact
// counts of the same 20 views in plain SQL (no cap), to show what the cap saves.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Principal } from '../../src/access/policy.ts';
import { loadTicketAccess } from '../../src/access/tickets.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import {
  cappedCountSettings,
  cappedMatching,
  countMatching,
  ticketsMatching,
  walksCapped,
} from '../../src/domains/tickets/repository.ts';
import { VIEW_COUNT_CAP, type ViewFilters } from '../../src/domains/views/schemas.ts';
import { loadBenchTickets } from './bulk-load.ts';
import {
  type BenchServers,
  http,
  machine,
  onServer,
  percentile,
  scratchDatabase,
  signIn,
  startTicketsServer,
  stopTicketsServer,
} from './http.ts';

const { values: args } = parseArgs({
  options: {
    tickets: { type: 'string', default: '1000000' },
    iterations: { type: 'string', default: '300' },
    keep: { type: 'boolean', default: false },
  },
});
const TICKETS = Number(args.tickets);
const ITERATIONS = Number(args.iterations);
const DEPARTMENTS = 20;
const PASSWORD = 'bench-password-0123456789';
const TARGET_MS = 50;

const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_views');
const out = (line = '') => process.stdout.write(`${line}\n`);
const ms = (n: number) => n.toFixed(2);
const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);

/** Latencies (ascending, ms) of `iterations` GETs of `url`, one at a time, after 30 untimed. */
async function timeGet(url: string, token: string, iterations = ITERATIONS): Promise<number[]> {
  for (let i = 0; i < 30; i++) await http('GET', url, token);
  const times: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await http('GET', url, token);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b);
}

const line = (name: string, times: number[]) =>
  `${name.padEnd(44)} n=${times.length} p50=${ms(percentile(times, 0.5))}ms p99=${ms(percentile(times, 0.99))}ms max=${ms(times[times.length - 1]!)}ms`;

async function bench(db: Kysely<Database>, client: pg.Client, app: string) {
  const { departments } = await loadBenchTickets(client, {
    tickets: TICKETS,
    departments: DEPARTMENTS,
    log: out,
  });
  const hash = await hashPassword(PASSWORD);
  const owner = await insertAgent(db, {
    name: 'Owner',
    email: 'owner@bench.example',
    role: 'owner',
    password_hash: hash,
  });
  const agent = await insertAgent(db, {
    name: 'Agent',
    email: 'agent@bench.example',
    role: 'agent',
    password_hash: hash,
  });
  // Three departments of different sizes (the biggest, a middle one, a small one), as manager.
  const mine = [departments[0]!, departments[4]!, departments[12]!];
  for (const d of mine) {
    await db
      .insertInto('department_members')
      .values({ department_id: d, agent_id: agent.id, role: 'manager' })
      .execute();
  }
  // The agent holds some tickets, so "me" matches something.
  await client.query(
    `update tickets set assignee_id = $1 where id in (select id from tickets where department_id = $2 order by id limit 2000)`,
    [agent.id, mine[0]],
  );
  await client.query('vacuum (analyze) tickets');
  const ownerToken = await signIn(app, owner.email, PASSWORD);
  const agentToken = await signIn(app, agent.email, PASSWORD);

  const day = 86_400_000;
  const since = (days: number) => new Date(Date.now() - days * day).toISOString();
  const views: {
    name: string;
    scope: 'personal' | 'department' | 'helpdesk';
    filters: ViewFilters;
    department?: string;
  }[] = [
    { name: 'Mine, to do', scope: 'personal', filters: { assignee_id: ['me'], status: ['new', 'open'] } },
    { name: 'Mine, all', scope: 'personal', filters: { assignee_id: ['me'] } },
    { name: 'Unassigned', scope: 'helpdesk', filters: { assignee_id: ['none'], status: ['new', 'open'] } },
    { name: 'New', scope: 'helpdesk', filters: { status: ['new'] } },
    { name: 'Open', scope: 'helpdesk', filters: { status: ['open'] } },
    { name: 'Answered', scope: 'helpdesk', filters: { status: ['answered'] } },
    { name: 'Postponed', scope: 'helpdesk', filters: { status: ['postponed'] } },
    { name: 'Resolved (broad)', scope: 'helpdesk', filters: { status: ['resolved'] } },
    { name: 'Everything (broadest)', scope: 'helpdesk', filters: {} },
    {
      name: 'Urgent, unsolved',
      scope: 'helpdesk',
      filters: { priority: ['urgent'], status: ['new', 'open', 'answered'] },
    },
    { name: 'High', scope: 'personal', filters: { priority: ['high'] } },
    { name: 'VIP', scope: 'helpdesk', filters: { tag: ['vip'] } },
    { name: 'Orders, open', scope: 'personal', filters: { tag: ['order'], status: ['open'] } },
    { name: 'Chats waiting', scope: 'helpdesk', filters: { channel: ['chat'], status: ['new', 'open'] } },
    { name: 'Email', scope: 'personal', filters: { channel: ['email'] } },
    {
      name: 'Biggest department',
      scope: 'department',
      department: mine[0],
      filters: { department_id: [mine[0]!] },
    },
    {
      name: 'Small department, open',
      scope: 'department',
      department: mine[2],
      filters: { department_id: [mine[2]!], status: ['open'] },
    },
    {
      name: 'No department',
      scope: 'helpdesk',
      filters: { department_id: ['none'], status: ['new', 'open'] },
    },
    {
      name: 'Refunds (text), unsolved',
      scope: 'personal',
      filters: { q: 'refund', status: ['new', 'open', 'answered'] },
    },
    { name: 'Created this week', scope: 'personal', filters: { created_from: since(7) } },
  ];
  for (const view of views) {
    await http('POST', `${app}/v1/views`, view.scope === 'helpdesk' ? ownerToken : agentToken, {
      name: view.name,
      scope: view.scope,
      filters: view.filters,
      ...(view.department && { department_id: view.department }),
    });
  }
  const counts = await http('GET', `${app}/v1/views/counts`, agentToken);
  const names = new Map<string, string>(
    (await http('GET', `${app}/v1/views`, agentToken)).data.map((v: { id: string; name: string }) => [
      v.id,
      v.name,
    ]),
  );
  out(`  ${views.length} views; the agent's counts (cap ${counts.cap}):`);
  for (const c of counts.data as { view_id: string; count: number; capped: boolean }[]) {
    out(`    ${names.get(c.view_id)?.padEnd(28)} ${c.capped ? `${c.count}+` : c.count}`);
  }
  out();
  out(`timed: ${ITERATIONS} requests per line after 30 warm-up ones, one at a time (${machine()})`);
  const results: [string, number[]][] = [];
  for (const [who, token] of [
    ['agent (3 of 20 departments)', agentToken],
    ['owner (every ticket)', ownerToken],
  ] as const) {
    const views = await timeGet(`${app}/v1/views/counts`, token);
    const baseline = await timeGet(`${app}/v1/tickets/counts`, token);
    results.push([`GET /v1/views/counts, ${who}`, views]);
    out(line(`GET /v1/views/counts, ${who}`, views));
    out(line(`  baseline GET /v1/tickets/counts`, baseline));
    out(
      `  ratio p99 views/counts : tickets/counts = ${(percentile(views, 0.99) / percentile(baseline, 0.99)).toFixed(2)}; ` +
        `${percentile(views, 0.99) < TARGET_MS ? 'OK' : 'MISSED'} (target p99 < ${TARGET_MS} ms)`,
    );
  }

  // The same 20 views counted exactly (no cap), through the list's own query, in one statement:
  // what the sidebar would cost without the cap.
  const principal: Principal = {
    agentId: agent.id,
    role: 'agent',
    scopes: ['read'],
    via: 'session',
    tokenId: null,
  };
  const access = await loadTicketAccess(db, principal);
  const exact = db.selectNoFrom(
    views.map((v, i) =>
      sql<string>`(select count(*) from (${ticketsMatching(db, access, v.filters).select(sql`1`.as('one'))}) m)`.as(
        `c${i}`,
      ),
    ),
  );
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await exact.execute();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  out(line('  baseline exact SQL counts, agent (no cap)', times));

  // Where the capped statement's time goes: each view's capped count alone, as the server counts
  // it (median of 5), and the plan of the slowest.
  out();
  out('each view capped at 1,000, alone, for the agent (SQL from this process, median of 5):');
  let slowest = { ms: 0, name: '', filters: {} as ViewFilters };
  for (const view of views) {
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await countMatching(db, access, [view.filters], VIEW_COUNT_CAP);
      runs.push(performance.now() - t0);
    }
    const median = runs.sort((a, b) => a - b)[2]!;
    out(`  ${view.name.padEnd(28)} ${ms(median)}ms`);
    if (median > slowest.ms) slowest = { ms: median, name: view.name, filters: view.filters };
  }
  const compiled = db
    .selectNoFrom(
      sql<string>`(select count(*) from (${cappedMatching(db, access, slowest.filters, VIEW_COUNT_CAP)}) m)`.as(
        'n',
      ),
    )
    .compile();
  await client.query('begin');
  await client.query(cappedCountSettings(walksCapped(slowest.filters)).compile(db).sql);
  const plan = await client.query(
    `explain (analyze, buffers) ${compiled.sql}`,
    compiled.parameters as unknown[],
  );
  await client.query('rollback');
  out(`EXPLAIN ANALYZE ${slowest.name}:`);
  for (const row of plan.rows) out(`  ${row['QUERY PLAN']}`);
}

async function main() {
  const started = performance.now();
  out(
    `bench:views on ${new URL(serverUrl).host}, scratch database ${scratch}, ${TICKETS.toLocaleString('en')} tickets`,
  );
  let servers: BenchServers | undefined;
  await admin((c) => c.query(`create database ${scratch}`));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      servers?.child.kill('SIGKILL');
      admin((c) => c.query(`drop database if exists ${scratch} with (force)`)).finally(() =>
        process.exit(130),
      );
    });
  }
  const pool = new pg.Pool({ connectionString: scratchUrl, max: 4 });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const client = new pg.Client({ connectionString: scratchUrl });
  pool.on('error', () => {});
  client.on('error', () => {});
  try {
    await migrateToLatest(db);
    await client.connect();
    servers = await startTicketsServer(scratchUrl, randomBytes(32).toString('base64url'));
    await bench(db, client, servers.app);
  } finally {
    await stopTicketsServer(servers);
    await client.end().catch(() => {});
    await db.destroy();
    out();
    const took = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    if (args.keep) {
      out(`done in ${took}; kept ${scratchUrl} (drop it when done)`);
    } else {
      await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
      out(`done in ${took}; dropped ${scratch}`);
    }
  }
}

await main();
