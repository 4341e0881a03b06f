// npm run bench:tickets
//
// Two measurements against PostgreSQL, in a scratch database deskroute_bench_<pid> created and
// dropped here (BENCH_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres
// names the server):
//
//   (a) ticket creation over HTTP: POST /v1/tickets on the real app (auth by API token, validation,
//       contact resolution, events) against a bare fastify + pg route that inserts one row, both
//       loaded by autocannon with the same connections for the same time. Target: creation/bare >= 0.5.
//       Two floor probes (tickets-server.ts): the least a creation writes on this schema, per
//       request and batched across requests, to tell the app's cost from the work's. Creation and
//       the per-request floor alternate over --rounds (3) phases each: creation / floor, target
//       >= 0.8, is their requests summed (each round's ratio is printed too).
//   (b) an agent's ticket list at 1,000,000 tickets: GET /v1/tickets with two filters (and the
//       unfiltered inbox), by a member of 3 of 20 departments, through HTTP, after warm-up, over
//       varying departments and pages. Target: p99 < 20 ms. The plans come with EXPLAIN ANALYZE.
//
// Both servers run in a child process (tickets-server.ts) so the load generator has its own
// event loop; on this 2-core machine they still share the CPUs with PostgreSQL.
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Principal } from '../../src/access/policy.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import { Random } from '../seed-demo/random.ts';
import { loadBenchTickets } from './bulk-load.ts';
import {
  type BenchServers,
  queriesPerCreation as countQueries,
  cpuLine,
  cpuPerRequest,
  cpuSnapshot,
  http,
  machine,
  onServer,
  percentile,
  postLoad,
  scratchDatabase,
  signIn,
  startTicketsServer,
  stopTicketsServer,
} from './http.ts';
import { explainLines, listPages, listStatements, timeGets, timePage } from './ticket-list.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    tickets: { type: 'string', default: '1000000' },
    iterations: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const TICKETS = Number(args.tickets);
const ITERATIONS = Number(args.iterations);
const ROUNDS = Number(args.rounds);
const PASSWORD = 'bench-password-0123456789';

const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_bench');

const out = (line = '') => process.stdout.write(`${line}\n`);
const ms = (n: number) => n.toFixed(2);
const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;
const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);

const load = (
  url: string,
  path: string,
  headers: Record<string, string>,
  body: () => string,
  duration: number,
) => postLoad({ url, path, headers, body, duration, connections: CONNECTIONS });
const queriesPerCreation = (authorization: string, departmentId: string) =>
  countQueries(
    scratchUrl,
    authorization,
    () => ({
      subject: 'Counting queries',
      channel: 'email',
      contact: { email: `counted-${randomBytes(6).toString('hex')}@bench.example` },
      message: { body: 'Hello' },
      department_id: departmentId,
    }),
    1,
  );

/** (a) POST /v1/tickets on the app against one insert on the bare route. */
async function benchCreation(db: Kysely<Database>, servers: { pid: number; app: string; bare: string }) {
  out('(a) ticket creation over HTTP');
  const owner = await insertAgent(db, {
    name: 'Bench owner',
    email: 'owner@bench.example',
    role: 'owner',
    password_hash: await hashPassword(PASSWORD),
  });
  const session = await signIn(servers.app, owner.email, PASSWORD);
  const department = await http('POST', `${servers.app}/v1/departments`, session, { name: 'Support' });
  const { secret } = await http('POST', `${servers.app}/v1/api-tokens`, session, {
    name: 'bench integration',
    scopes: ['read', 'write'],
  });
  let n = 0;
  // A new customer per ticket: the contact lookup misses and a contact and its email are created.
  const ticketBody = () =>
    JSON.stringify({
      subject: `Where is my order #${100000 + n}?`,
      channel: 'email',
      contact: { email: `customer-${n++}@bench.example`, name: 'Bench Customer' },
      message: { body: 'Hello, my parcel has not arrived yet. Could you check the tracking, please?' },
      department_id: department.id,
    });
  let m = 0;
  const bareBody = () => JSON.stringify({ n: m++, subject: 'Where is my order?' });
  const auth = { authorization: `Bearer ${secret}` };

  // Creation slows down once the database holds some tickets (bench:rules measured the first
  // seconds on an empty database at twice the steady rate): the app's warm-up is long enough to
  // get past that, so the figure is the steady one.
  out(
    `  warm-up ${DURATION + 5} s (app), 3 s (bare) and 3 s (floor), then ${DURATION} s each with ${CONNECTIONS} connections, creation and floor alternated ${ROUNDS} times (${machine()})`,
  );
  await load(servers.app, '/v1/tickets', auth, ticketBody, DURATION + 5);
  await load(servers.bare, '/bare', {}, bareBody, 3);
  await load(servers.bare, '/floor', auth, ticketBody, 3);
  const measured = async (
    path: string,
    server: string,
    headers: Record<string, string>,
    body: () => string,
  ) => {
    const before = cpuSnapshot(servers.pid);
    const result = await load(server, path, headers, body, DURATION);
    return { ...result, cpu: cpuPerRequest(before, cpuSnapshot(servers.pid), result.total) };
  };
  type Measured = Awaited<ReturnType<typeof measured>>;
  /** Several phases as one: requests and CPU summed, the latencies of the median phase by rate. */
  const combined = (phases: Measured[]): Measured => {
    const total = phases.reduce((n, p) => n + p.total, 0);
    const byRate = [...phases].sort((a, b) => a.rps - b.rps);
    const middle = byRate[Math.floor(byRate.length / 2)]!;
    const cpuOf = (key: 'server' | 'postgres' | 'backends' | 'loadGenerator') =>
      phases.every((p) => p.cpu) ? phases.reduce((sum, p) => sum + p.cpu![key] * p.total, 0) / total : 0;
    return {
      ...middle,
      rps: phases.reduce((sum, p) => sum + p.rps, 0) / phases.length,
      total,
      non2xx: phases.reduce((n, p) => n + p.non2xx, 0),
      errors: phases.reduce((n, p) => n + p.errors, 0),
      statuses: phases.map((p) => p.statuses).join('; '),
      cpu: phases.every((p) => p.cpu)
        ? {
            server: cpuOf('server'),
            postgres: cpuOf('postgres'),
            backends: cpuOf('backends'),
            loadGenerator: cpuOf('loadGenerator'),
          }
        : null,
    };
  };
  // Creation and its floor probe alternate (app, floor, app, floor, ...): on a shared machine
  // one phase of each says little (the floor moved between 1,015 and 1,391/s from run to run),
  // and alternating gives both the same conditions and the same table sizes.
  const rounds: { create: Measured; floor: Measured }[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const create = await measured('/v1/tickets', servers.app, auth, ticketBody);
    const floor = await measured('/floor', servers.bare, auth, ticketBody);
    rounds.push({ create, floor });
  }
  const create = combined(rounds.map((r) => r.create));
  const floor = combined(rounds.map((r) => r.floor));
  const bare = await measured('/bare', servers.bare, {}, bareBody);
  const trips = await queriesPerCreation(auth.authorization, department.id);
  const probe = await measured(`/bare-round-trips?n=${trips}`, servers.bare, {}, bareBody);
  // The floor probes create tickets of their own.
  const created = await db
    .selectFrom('tickets')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  await http('GET', `${servers.bare}/floor-batches`, null);
  const floorBatched = await measured('/floor-batched', servers.bare, auth, ticketBody);
  const batches = await http('GET', `${servers.bare}/floor-batches`, null);
  for (const [name, r] of [
    ['create', create],
    ['bare', bare],
    ['probe', probe],
    ['floor', floor],
    ['floor-batched', floorBatched],
  ] as const) {
    if (r.non2xx > 0 || r.errors > 0) {
      out(`  WARNING ${name}: ${r.non2xx} non-2xx answers (${r.statuses}), ${r.errors} errors`);
    }
  }
  for (const [i, r] of rounds.entries()) {
    out(
      `  round ${i + 1}: create ${r.create.rps.toFixed(0)}/s, floor ${r.floor.rps.toFixed(0)}/s: creation / floor ${(r.create.rps / r.floor.rps).toFixed(2)}`,
    );
  }
  out(
    `creation / floor (per-request floor probe, ${ROUNDS} alternated rounds of ${DURATION} s, requests summed): ` +
      `${(create.rps / floor.rps).toFixed(2)} (target >= 0.8); median of the rounds ${percentile(
        rounds.map((r) => r.create.rps / r.floor.rps).sort((a, b) => a - b),
        0.5,
      ).toFixed(2)}`,
  );
  out(
    `create  rps=${create.rps.toFixed(0)} p50=${create.p50}ms p99=${create.p99}ms | ` +
      `bare rps=${bare.rps.toFixed(0)} p50=${bare.p50}ms p99=${bare.p99}ms | ratio=${(create.rps / bare.rps).toFixed(2)}`,
  );
  out(`  (${Number(created.n)} tickets created in all, target ratio >= 0.5; ${machine()})`);
  out(`  create: ${cpuLine(create.cpu)}`);
  out(`  bare:   ${cpuLine(bare.cpu)}`);
  if (create.cpu && create.cpu.postgres > 0) {
    // The bound the app's statements set, whatever the server costs: on a machine whose CPUs
    // PostgreSQL shares with everything else, its own CPU time per creation caps the rate.
    const ceiling = (availableParallelism() * 1000) / create.cpu.postgres;
    out(
      `  ceiling: PostgreSQL alone needs ${create.cpu.postgres.toFixed(2)} ms of CPU per creation, so with these statements even a server that ` +
        `cost nothing would create at most ${ceiling.toFixed(0)}/s on ${availableParallelism()} CPUs: ${(ceiling / bare.rps).toFixed(2)}x the bare route`,
    );
  }
  out(
    `probe   rps=${probe.rps.toFixed(0)} p50=${probe.p50}ms p99=${probe.p99}ms | ratio to bare=${(probe.rps / bare.rps).toFixed(2)}` +
      `  (the bare route making ${trips} round trips, as many as one creation makes, one insert among them)`,
  );
  out(`  probe:  ${cpuLine(probe.cpu)}`);
  // What the work itself costs, apart from the app's design (tickets-server.ts, "Floor probes").
  out(
    `floor   rps=${floor.rps.toFixed(0)} p50=${floor.p50}ms p99=${floor.p99}ms | ratio to bare=${(floor.rps / bare.rps).toFixed(2)}` +
      '  (the least a creation does: read the token, then write contact, email, ticket, message, 2 events in one statement; no validation or rules)',
  );
  out(`  floor:  ${cpuLine(floor.cpu)}`);
  out(
    `floor, batched  rps=${floorBatched.rps.toFixed(0)} p50=${floorBatched.p50}ms p99=${floorBatched.p99}ms | ratio to bare=${(floorBatched.rps / bare.rps).toFixed(2)}` +
      `  (the same, concurrent requests gathered into one statement of each: ${batches.mean.toFixed(1)} creations per statement on average)`,
  );
  out(`  floor, batched:  ${cpuLine(floorBatched.cpu)}`);
  await db.deleteFrom('ticket_events').execute();
  await db.deleteFrom('ticket_messages').execute();
  await db.deleteFrom('tickets').execute();
  await db.deleteFrom('contact_emails').execute();
  await db.deleteFrom('contacts').execute();
  await db.deleteFrom('departments').execute();
}

const DEPARTMENTS = 20;

/** The 1M tickets of bulk-load.ts, 20 departments of 3 solvers each. */
const loadMillion = (client: pg.Client) =>
  loadBenchTickets(client, { tickets: TICKETS, departments: DEPARTMENTS, log: out });

interface Shape {
  name: string;
  queries: Record<string, string | string[]>[];
}

/** (b) The list an agent sees, at 1M tickets. */
async function benchList(db: Kysely<Database>, client: pg.Client, servers: { app: string }) {
  out();
  out(`(b) an agent's ticket list at ${TICKETS.toLocaleString('en')} tickets`);
  const { departments } = await loadMillion(client);
  // Three departments of different sizes: the biggest, a middle one, a small one.
  const mine = [departments[0]!, departments[4]!, departments[12]!];
  const agent = await insertAgent(db, {
    name: 'Bench agent',
    email: 'bench-agent@bench.example',
    role: 'agent',
    password_hash: await hashPassword(PASSWORD),
  });
  for (const d of mine) {
    await db
      .insertInto('department_members')
      .values({ department_id: d, agent_id: agent.id, role: 'solver' })
      .execute();
  }
  const sizes = (
    await client.query(
      `select count(*) filter (where department_id = any($1::uuid[]) or department_id is null) as visible,
              count(*) filter (where status = 'open' and department_id = any($1::uuid[])) as open_mine,
              count(*) filter (where status = 'new' and priority = 'high' and (department_id = any($1::uuid[]) or department_id is null)) as new_high
       from tickets`,
      [mine],
    )
  ).rows[0];
  const perDepartment = (
    await client.query(
      `select department_id, count(*) as n, count(*) filter (where status = 'open') as open from tickets
       where department_id = any($1::uuid[]) group by 1`,
      [mine],
    )
  ).rows as { department_id: string; n: string; open: string }[];
  out(
    `  agent in 3 of ${DEPARTMENTS} departments (${mine
      .map((d) => {
        const row = perDepartment.find((r) => r.department_id === d);
        return `${row?.n ?? 0} tickets, ${row?.open ?? 0} open`;
      })
      .join(
        '; ',
      )}); sees ${sizes.visible} tickets, ${sizes.open_mine} open in their departments, ${sizes.new_high} new+high`,
  );

  const token = await signIn(servers.app, 'bench-agent@bench.example', PASSWORD);
  out(`  ${ITERATIONS} timed requests per shape after 100 warm-up ones, one at a time (${machine()})`);
  const shapes: Shape[] = [
    {
      name: 'status=open&department_id=<theirs>',
      queries: mine.map((d) => ({ status: 'open', department_id: d })),
    },
    { name: 'status=new&priority=high', queries: [{ status: 'new', priority: 'high' }] },
    { name: '(no filter: the inbox)', queries: [{}] },
  ];
  const random = new Random(42);
  const missed: Shape[] = [];
  for (const shape of shapes) {
    // Cursors of the first pages of each query, collected once; then timed requests over them.
    const pages = await listPages(servers.app, token, shape.queries);
    const times = await timeGets(pages, token, { warmUp: 100, iterations: ITERATIONS, random });
    const p99 = percentile(times, 0.99);
    out(
      `list ${shape.name.padEnd(36)} n=${ITERATIONS} pages=${pages.length} p50=${ms(percentile(times, 0.5))}ms ` +
        `p99=${ms(p99)}ms max=${ms(times[times.length - 1]!)}ms ${p99 < 20 ? 'OK' : 'MISSED (target p99 < 20 ms)'}`,
    );
    if (p99 >= 20) missed.push(shape);
  }

  // The exact SQL listTickets sends for each page, timed on its own (the database's share of the
  // latency), and the plans of the first and the last page.
  const principal: Principal = {
    agentId: agent.id,
    role: 'agent',
    scopes: ['read', 'write'],
    via: 'session',
    tokenId: null,
  };
  for (const shape of shapes) {
    const statements = await listStatements(scratchUrl, principal, shape.queries);
    const times: number[] = [];
    for (let i = 0; i < 300; i++) times.push(await timePage(client, random.pick(statements)));
    times.sort((a, b) => a - b);
    out();
    out(
      `sql  ${shape.name.padEnd(36)} n=300 p50=${ms(percentile(times, 0.5))}ms p99=${ms(percentile(times, 0.99))}ms` +
        ` max=${ms(times[times.length - 1]!)}ms (the list query alone, from this process)`,
    );
    const last = statements[statements.length - 1]!;
    for (const [label, page] of [
      ['page 1', statements[0]!],
      [`page ${statements.length} of the last query`, last],
    ] as const) {
      for (const statement of page) {
        const [text, ...plan] = await explainLines(client, statement);
        out(`EXPLAIN ANALYZE ${shape.name} (${label})${missed.includes(shape) ? '  <- target missed' : ''}`);
        if (label === 'page 1') out(`  ${text}`);
        for (const line of plan) out(`  ${line}`);
      }
    }
  }
}

async function main() {
  const started = performance.now();
  out(`bench:tickets on ${new URL(serverUrl).host}, scratch database ${scratch}`);
  let servers: BenchServers | undefined;
  await admin((c) => c.query(`create database ${scratch}`));
  // Interrupted (Ctrl-C): still leave no scratch database behind.
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
  // Dropping the database on Ctrl-C ends these connections; that is expected, not a crash.
  pool.on('error', () => {});
  client.on('error', () => {});
  try {
    await migrateToLatest(db);
    await client.connect();
    await client.query(
      'create table bench_bare (id bigserial primary key, payload text not null, created_at timestamptz not null default now())',
    );
    servers = await startTicketsServer(scratchUrl, randomBytes(32).toString('base64url'));
    await benchCreation(db, servers);
    // The creation phase left tens of thousands of dead rows behind (its tickets, events,
    // messages and contacts, deleted; the events it noted for reports, which no scheduler
    // counts here): vacuumed now, so autovacuum does not clean them up while (b) is measured.
    await client.query('delete from report_pending_events');
    await client.query(
      'vacuum ticket_events, ticket_messages, tickets, contact_emails, contacts, report_pending_events, report_current_counts',
    );
    await benchList(db, client, servers);
  } finally {
    await stopTicketsServer(servers);
    await client.end().catch(() => {});
    await db.destroy();
    out();
    if (args.keep) {
      out(`done in ${seconds(started)}; kept ${scratchUrl} (drop it when done)`);
    } else {
      await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
      out(`done in ${seconds(started)}; dropped ${scratch}`);
    }
  }
}

await main();
