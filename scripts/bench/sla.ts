// npm run bench:sla [-- --only arithmetic,creation,due-soon,breaches --rounds 4 --open 100000 ...]
//
// The issue's four SLA figures (docs/sla.md, "Performance"), one function each:
//
//   (a) business-time arithmetic, the part of SLA work every ticket pays for: addBusinessMinutes
//       and businessMinutesBetween on one core with split shifts and 52 holidays in Europe/Prague,
//       from random instants over two years (both DST changes of each year inside), against the
//       naive minute-by-minute walk of the property tests on a smaller sample (both must agree;
//       --ops 200000, --naive-ops 100, --seed). Target: at least 200,000 operations/s each.
//   (b) ticket creation over HTTP with 20 active SLA policies against none, in the same run on
//       the same database: POST /v1/tickets by API token on the real app (tickets-server.ts in a
//       child process), loaded by autocannon, the bench:rules workload (a new customer per ticket,
//       70 % in one of 20 departments, mixed channels and priorities). The help desk has five
//       schedules (split shifts, a night shift past midnight, holidays) and the 20 policies of
//       sla-workload.ts (conditions on department, priority and channel; targets per priority in
//       business and calendar time). Phases alternate none / with, with / none, ... (--rounds 4),
//       each --duration 10 s after a 3 s warm-up, the policies switched by PATCH active. Target:
//       at most 10 % lower throughput with the policies (mean of the rounds' ratios >= 0.90).
//       Also printed: CPU per creation of the server and of this database's backends, a reading
//       that other load on the machine disturbs less than req/s.
//   (c) the due-soon list at 100,000 open tickets with due times (--open): new and open tickets
//       in 20 departments, their clock state computed by planSla over their lives and fireDue at
//       load time, plus resolved tickets without a due (--resolved 200000), loaded in bulk with
//       SQL, then VACUUM ANALYZE (autovacuum is off on our machines). GET
//       /v1/tickets?sort=sla_due_at as an agent of 3 departments (alone, with sla_due_before an
//       hour ahead, and filtered to each of their departments) and as an admin, over the first
//       8 pages, one request at a time (--iterations 500 each); then the to-solve queue (POST
//       /v1/queue/next) by --queue-agents 200 agents, each taking one ticket and asking again.
//       Target: p99 < 20 ms for every list. A list that misses it gets the plan of its slowest
//       page printed (EXPLAIN ANALYZE; --explain for every list).
//   (d) breaches of --breach-tickets 10,000 tickets falling due in the same instant, fired by one
//       real server process's SLA timer (scripts/bench/sla-breaches.ts, its own scratch
//       database); each once, at its due. Target: all within 60 s. Baseline: the floor, one
//       statement writing the same rows and events.
//
// (b)-(d) run in a scratch database deskroute_sla_bench_<pid> created and dropped here
// (BENCH_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres);
// --keep keeps it. The figures move with other load on the machine: each part says the load.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Principal } from '../../src/access/policy.ts';
import {
  ALWAYS_OPEN,
  type BusinessCalendar,
  type CalendarDefinition,
  compileCalendar,
} from '../../src/business-time/index.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { createApiToken } from '../../src/domains/api-tokens/service.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import { compilePolicies, type SlaPolicy } from '../../src/sla/index.ts';
import { referenceIsOpen } from '../../test/business-time/reference.ts';
import { Random } from '../seed-demo/random.ts';
import { withoutIndexes } from './bulk-load.ts';
import {
  type BenchServers,
  type CpuSnapshot,
  queriesPerCreation as countQueries,
  cpuLine,
  cpuPerRequest,
  cpuSnapshot,
  http,
  type Load,
  machine,
  onServer,
  percentile,
  postLoad,
  scratchDatabase,
  signIn,
  startTicketsServer,
  stopTicketsServer,
} from './http.ts';
import { ticketBodies } from './rules-workload.ts';
import { benchBreaches } from './sla-breaches.ts';
import { DEPARTMENTS, openTickets, pragueOffice, schedules, slaPolicies } from './sla-workload.ts';
import {
  explainLines,
  type ListQuery,
  listPages,
  listStatements,
  timeGets,
  timePage,
} from './ticket-list.ts';

const PARTS = ['arithmetic', 'creation', 'due-soon', 'breaches'] as const;
type Part = (typeof PARTS)[number];

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: PARTS.join(',') },
    // (d)
    'breach-tickets': { type: 'string', default: '10000' },
    // (a)
    ops: { type: 'string', default: '200000' },
    'naive-ops': { type: 'string', default: '100' },
    seed: { type: 'string', default: '20261204' },
    // (b)
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '4' },
    // (c)
    open: { type: 'string', default: '100000' },
    resolved: { type: 'string', default: '200000' },
    iterations: { type: 'string', default: '500' },
    'queue-agents': { type: 'string', default: '200' },
    explain: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const ONLY = new Set(args.only.split(',').map((p) => p.trim()));
for (const part of ONLY) {
  if (!(PARTS as readonly string[]).includes(part))
    throw new Error(`--only: unknown part ${part} (${PARTS})`);
}
const SEED = Number(args.seed);
const PASSWORD = 'bench-password-0123456789';

const out = (line = '') => process.stdout.write(`${line}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(2);
const seconds = (since: number) => `${((performance.now() - since) / 1000).toFixed(1)} s`;

/** What a part reports for the summary. */
interface Verdict {
  part: string;
  result: 'PASS' | 'FAIL' | 'NOT RUN';
  detail: string;
}

// ---- (a) business-time arithmetic ---------------------------------------------------------

function arithmetic(): Verdict & { mismatches: number } {
  const OPS = Number(args.ops);
  const NAIVE_OPS = Math.min(Number(args['naive-ops']), OPS);
  const TARGET = 200_000;
  const MINUTE = 60_000;
  const definition = pragueOffice(new Random(SEED));
  const random = new Random(SEED + 1);

  const FROM = Date.parse('2026-01-01T00:00:00Z');
  const SPAN = 2 * 365 * 24 * 60; // minutes
  const MAX_DURATION = 5 * 9 * 60; // five business days of 9 hours
  const starts = Array.from({ length: OPS }, () => FROM + random.int(0, SPAN - 1) * MINUTE);
  const durations = Array.from({ length: OPS }, () => random.int(5, MAX_DURATION));

  // The baseline: the naive reading of the semantics, minute by minute, asking Temporal for each
  // wall clock (the property tests' reference).
  const naiveAdd = (from: number, minutes: number) => {
    let at = from;
    let left = minutes;
    while (left > 0) {
      if (referenceIsOpen(definition, at)) left--;
      at += MINUTE;
    }
    return at;
  };
  const naiveBetween = (from: number, to: number) => {
    let count = 0;
    for (let at = from; at < to; at += MINUTE) if (referenceIsOpen(definition, at)) count++;
    return count;
  };

  interface Timing {
    wall: number;
    cpu: number;
  }
  const time = (run: () => void): Timing => {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    run();
    const wall = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    return { wall, cpu: (cpu.user + cpu.system) / 1e6 };
  };

  const compileStart = performance.now();
  let calendar = compileCalendar(definition);
  const compileMs = performance.now() - compileStart;

  const ends = new Array<number>(OPS);
  const addPass = () => {
    for (let i = 0; i < OPS; i++) ends[i] = calendar.addBusinessMinutes(starts[i]!, durations[i]!)!;
  };
  let sink = 0;
  const betweenPass = () => {
    for (let i = 0; i < OPS; i++) sink += calendar.businessMinutesBetween(starts[i]!, ends[i]!);
  };

  // A cold pass on a fresh calendar fills the per-day cache (what a new schedule version costs once).
  const cold = time(addPass);
  calendar = compileCalendar(definition);
  addPass(); // warm-up: JIT and the day cache
  betweenPass();
  const best = (pass: () => void, rounds: number): Timing => {
    let pick = time(pass);
    for (let i = 1; i < rounds; i++) {
      const again = time(pass);
      if (again.wall < pick.wall) pick = again;
    }
    return pick;
  };
  const add = best(addPass, 3);
  const between = best(betweenPass, 3);

  let roundTripMismatches = 0;
  for (let i = 0; i < OPS; i++) {
    if (calendar.businessMinutesBetween(starts[i]!, ends[i]!) !== durations[i]) roundTripMismatches++;
  }

  const naiveEnds: number[] = [];
  const naiveAddTime = time(() => {
    for (let i = 0; i < NAIVE_OPS; i++) naiveEnds.push(naiveAdd(starts[i]!, durations[i]!));
  });
  let naiveSink = 0;
  const naiveBetweenTime = time(() => {
    for (let i = 0; i < NAIVE_OPS; i++) naiveSink += naiveBetween(starts[i]!, ends[i]!);
  });
  let naiveMismatches = 0;
  for (let i = 0; i < NAIVE_OPS; i++) if (naiveEnds[i] !== ends[i]) naiveMismatches++;

  const line = (name: string, ours: Timing, naive: Timing) => {
    const rate = OPS / ours.wall;
    const naiveRate = NAIVE_OPS / naive.wall;
    out(
      `  ${name.padEnd(24)}${fmt(rate)} ops/s | ${fmt(OPS / ours.cpu)} per CPU-s   naive: ${fmt(naiveRate)} ops/s   ratio ${fmt(rate / naiveRate)}x   target ${fmt(TARGET)}/s: ${rate >= TARGET ? 'met' : 'NOT met'}`,
    );
    return rate;
  };

  out(
    `(a) business time: Europe/Prague, split shifts + Saturday, ${definition.holidays.length} holidays; ${fmt(OPS)} ops per pass (naive baseline: ${NAIVE_OPS}), node ${process.version}`,
  );
  out(`  one core, warm day cache, best of 3 passes; wall clock | per CPU-second (${machine()}):`);
  out(
    `  compileCalendar: ${compileMs.toFixed(2)} ms; cold first pass of addBusinessMinutes: ${fmt(OPS / cold.wall)} ops/s`,
  );
  const addRate = line('addBusinessMinutes', add, naiveAddTime);
  const betweenRate = line('businessMinutesBetween', between, naiveBetweenTime);
  out(`  baseline: naive minute-by-minute walk with Temporal (test/business-time/reference.ts)`);
  out(
    `  mismatches: naive vs ours ${naiveMismatches} of ${NAIVE_OPS}; round trip between(add) ${roundTripMismatches} of ${fmt(OPS)}`,
  );
  if (sink < 0 || naiveSink < 0) out('unreachable');
  const mismatches = naiveMismatches + roundTripMismatches;
  const ok = addRate >= TARGET && betweenRate >= TARGET && mismatches === 0;
  return {
    part: '(a) business-time arithmetic',
    result: ok ? 'PASS' : 'FAIL',
    detail: `add ${fmt(addRate)}/s, between ${fmt(betweenRate)}/s, ${mismatches} mismatches (target >= ${fmt(TARGET)}/s each, none)`,
    mismatches,
  };
}

// ---- the help desk of (b)-(d) -------------------------------------------------------------

interface HelpDesk {
  db: Kysely<Database>;
  client: pg.Client;
  servers: BenchServers;
  /** The owner's session. */
  session: string;
  /** A read-write API token of the owner, for creations. */
  token: string;
  passwordHash: string;
  /** In the order of DEPARTMENTS (biggest first). */
  departments: string[];
  policies: SlaPolicy[];
  calendarOf: (departmentId: string | null) => BusinessCalendar;
  /** Switches all 20 policies through the API, as an admin would. */
  setPolicies(active: boolean): Promise<void>;
}

/** Schedules, departments on them and the 20 policies (inactive), through the API. */
async function buildHelpDesk(db: Kysely<Database>, client: pg.Client, servers: BenchServers) {
  const base = servers.app;
  const passwordHash = await hashPassword(PASSWORD);
  const owner = await insertAgent(db, {
    name: 'Bench owner',
    email: 'owner@bench.example',
    role: 'owner',
    password_hash: passwordHash,
  });
  const session = await signIn(base, owner.email, PASSWORD);
  const definitions = new Map<string, CalendarDefinition>();
  const scheduleIds = new Map<string, string>();
  let fallback: CalendarDefinition | null = null;
  for (const schedule of schedules(SEED)) {
    const created = await http('POST', `${base}/v1/schedules`, session, {
      name: schedule.name,
      ...schedule.definition,
      is_default: schedule.is_default,
    });
    scheduleIds.set(schedule.name, created.id);
    definitions.set(schedule.name, schedule.definition);
    if (schedule.is_default) fallback = schedule.definition;
  }
  const departments: string[] = [];
  const calendars = new Map<string | null, BusinessCalendar>();
  calendars.set(null, fallback ? compileCalendar(fallback) : ALWAYS_OPEN);
  const compiled = new Map<string, BusinessCalendar>();
  for (const department of DEPARTMENTS) {
    const created = await http('POST', `${base}/v1/departments`, session, {
      name: department.name,
      ...(department.schedule && { schedule_id: scheduleIds.get(department.schedule) }),
    });
    departments.push(created.id);
    const name = department.schedule;
    if (name && !compiled.has(name)) compiled.set(name, compileCalendar(definitions.get(name)!));
    calendars.set(created.id, name ? compiled.get(name)! : calendars.get(null)!);
  }
  const policies: SlaPolicy[] = [];
  for (const body of slaPolicies(departments, false)) {
    policies.push(await http('POST', `${base}/v1/sla-policies`, session, body));
  }
  const { secret } = await http('POST', `${base}/v1/api-tokens`, session, {
    name: 'bench integration',
    scopes: ['read', 'write'],
  });
  const desk: HelpDesk = {
    db,
    client,
    servers,
    session,
    token: secret,
    passwordHash,
    departments,
    policies,
    calendarOf: (id) => calendars.get(id) ?? calendars.get(null)!,
    async setPolicies(active) {
      for (const [i, policy] of desk.policies.entries()) {
        if (policy.active === active) continue;
        desk.policies[i] = await http('PATCH', `${base}/v1/sla-policies/${policy.id}`, session, { active });
      }
    },
  };
  return desk;
}

// ---- (b) creation with 20 policies against none -------------------------------------------

async function creation(desk: HelpDesk): Promise<Verdict> {
  const DURATION = Number(args.duration);
  const CONNECTIONS = Number(args.connections);
  const ROUNDS = Number(args.rounds);
  const POLICIES = desk.policies.length;
  const { servers, db } = desk;
  out();
  out(`(b) ticket creation over HTTP with ${POLICIES} active SLA policies against none`);
  const body = ticketBodies(desk.departments);
  const auth = `Bearer ${desk.token}`;
  const load = (duration: number) =>
    postLoad({
      url: servers.app,
      path: '/v1/tickets',
      headers: { authorization: auth },
      body,
      duration,
      connections: CONNECTIONS,
    });
  // Where the CPU went (server, PostgreSQL, load generator) tells what the policies cost.
  const measured = async () => {
    const before = cpuSnapshot(servers.pid, scratch.scratch);
    const result = await load(DURATION);
    return { ...result, cpu: cpuPerRequest(before, cpuSnapshot(servers.pid, scratch.scratch), result.total) };
  };
  const lastNumber = async () =>
    Number(
      (await sql<{ n: string | null }>`select max(number) as n from tickets`.execute(db)).rows[0]!.n ?? 0,
    );

  await desk.setPolicies(false);
  // Creation slows down once the database holds some tickets (bench:rules measured an empty
  // database at twice the steady rate): an unmeasured load first, so every phase is steady.
  out(
    `  ${ROUNDS} rounds, none then with, with then none, ...; each 3 s warm-up + ${DURATION} s with ${CONNECTIONS} connections`,
  );
  out(`  settling: ${DURATION + 5} s of creations without policies, not measured (${machine()})`);
  await load(DURATION + 5);
  const phases: Record<'none' | 'with', (Load & { cpu: CpuSnapshot | null })[]> = { none: [], with: [] };
  let mix = '';
  for (let round = 1; round <= ROUNDS; round++) {
    // Alternating the order cancels a steady drift (the database growing, other load fading).
    const order = round % 2 === 1 ? (['none', 'with'] as const) : (['with', 'none'] as const);
    for (const phase of order) {
      await desk.setPolicies(phase === 'with');
      out(
        `  round ${round}, ${phase === 'with' ? `${POLICIES} active policies` : 'no policy'} (${machine()})`,
      );
      await load(3);
      const first = await lastNumber();
      phases[phase].push(await measured());
      if (phase === 'with' && !mix) mix = await policyMix(desk, first);
    }
  }
  for (const [name, list] of Object.entries(phases)) {
    for (const r of list) {
      if (r.non2xx > 0 || r.errors > 0)
        out(`  WARNING ${name}: ${r.non2xx} non-2xx (${r.statuses}), ${r.errors} errors`);
    }
  }
  const trips = (samples: number) => countQueries(scratch.scratchUrl, auth, body, samples);
  const tripsWith = await trips(100);
  await desk.setPolicies(false);
  const tripsNone = await trips(100);

  const label = `${POLICIES} policies`;
  for (let i = 0; i < ROUNDS; i++) {
    const none = phases.none[i]!;
    const withPolicies = phases.with[i]!;
    out(
      `round ${i + 1}: none rps=${none.rps.toFixed(0)} p50=${none.p50}ms p99=${none.p99}ms | ` +
        `${label} rps=${withPolicies.rps.toFixed(0)} p50=${withPolicies.p50}ms p99=${withPolicies.p99}ms | ratio=${(withPolicies.rps / none.rps).toFixed(3)}`,
    );
    out(`  none:        ${cpuLine(none.cpu)}`);
    out(`  ${label}: ${cpuLine(withPolicies.cpu)}`);
  }
  // Each round's two phases are a few seconds apart, so other load on the machine weighs on both
  // alike: the headline is the mean of the rounds' ratios.
  const ratios = phases.with.map((w, i) => w.rps / phases.none[i]!.rps);
  const ratio = ratios.reduce((a, b) => a + b, 0) / ratios.length;
  const mean = (list: Load[]) => list.reduce((a, r) => a + r.rps, 0) / list.length;
  const pass = ratio >= 0.9;
  out(
    `create  none: rps=${mean(phases.none).toFixed(0)} | ${label}: rps=${mean(phases.with).toFixed(0)} | ` +
      `ratio=${ratio.toFixed(3)} (mean of the rounds' ratios: the policies cost ${((1 - ratio) * 100).toFixed(1)} % of the throughput; target at most 10 % lower: ${pass ? 'PASS' : 'FAIL'})`,
  );
  // Where this run's own work goes, whatever else the machine runs: the server's CPU and that of
  // the backends serving the scratch database, per creation. Throughput on CPUs this work alone
  // saturated would follow their sum; a steadier reading than req/s on a busy machine, not the target.
  const cost = (cpu: CpuSnapshot | null) => (cpu ? cpu.server + cpu.backends : Number.NaN);
  const costs = phases.with.map((w, i) => cost(phases.none[i]!.cpu) / cost(w.cpu));
  const costRatio = costs.reduce((a, b) => a + b, 0) / costs.length;
  const meanCost = (list: { cpu: CpuSnapshot | null }[]) =>
    list.reduce((a, r) => a + cost(r.cpu), 0) / list.length;
  if (!Number.isNaN(costRatio)) {
    out(
      `  CPU per creation, server + this database's backends: ${meanCost(phases.none).toFixed(2)} ms without policies, ` +
        `${meanCost(phases.with).toFixed(2)} ms with ${POLICIES} (ratio ${costRatio.toFixed(3)}, rounds: ${costs.map((c) => c.toFixed(3)).join(', ')})`,
    );
  }
  out(`  ${mix}`);
  out(
    `  round trips to PostgreSQL per creation: ${tripsNone.toFixed(1)} without policies, ${tripsWith.toFixed(1)} with ${POLICIES}; ${machine()}`,
  );
  return {
    part: `(b) creation with ${POLICIES} SLA policies`,
    result: pass ? 'PASS' : 'FAIL',
    detail:
      `${mean(phases.with).toFixed(0)}/s against ${mean(phases.none).toFixed(0)}/s without, ratio ${ratio.toFixed(3)} ` +
      `(rounds: ${ratios.map((r) => r.toFixed(3)).join(', ')}; target >= 0.90); CPU-cost ratio ${costRatio.toFixed(3)}`,
  };
}

/** What the policies did to the tickets created after ticket number `after`. */
async function policyMix(desk: HelpDesk, after: number): Promise<string> {
  const row = (
    await sql<Record<string, string>>`
      select count(*) as tickets, count(sla_policy_id) as with_policy, count(distinct sla_policy_id) as policies,
        count(sla_due_at) as with_due,
        coalesce(sum(jsonb_array_length(sla_state -> 'targets')), 0) as targets,
        coalesce(sum((select count(*) from jsonb_array_elements(sla_state -> 'targets') t
                      where (t ->> 'business')::boolean)), 0) as business,
        (select count(*) from ticket_events e join tickets t2 on t2.id = e.ticket_id
          where t2.number > ${after} and e.type like 'sla.%') as events
      from tickets where number > ${after}`.execute(desk.db)
  ).rows[0]!;
  const n = Number(row.tickets);
  const per = (key: string) => (Number(row[key]) / Math.max(1, n)).toFixed(2);
  return (
    `policies at work: ${row.with_policy} of ${n} tickets of the first measured phase got a policy (${row.policies} different ones), ` +
    `${row.with_due} a due; ${per('targets')} targets per ticket, ${((100 * Number(row.business)) / Math.max(1, Number(row.targets))).toFixed(0)} % in business time; ${per('events')} sla.* events per ticket`
  );
}

// ---- (c) the due-soon list -------------------------------------------------------------------

const CONTACTS = 5000;
const AGENTS_PER_DEPARTMENT = 3;

/**
 * The open tickets (their clock from planSla, see sla-workload.ts) and the resolved ones (no
 * clock: closed before the policies), as a bulk import would load them; then VACUUM ANALYZE.
 */
async function loadTickets(desk: HelpDesk) {
  const { client } = desk;
  const OPEN = Number(args.open);
  const RESOLVED = Number(args.resolved);
  const started = performance.now();
  // Part (b)'s tickets go, so that every run measures the same shape of data.
  await client.query('delete from ticket_events');
  await client.query('delete from ticket_messages');
  await client.query('delete from rule_runs');
  await client.query('delete from tickets');
  await client.query('delete from contact_emails');
  await client.query('delete from contacts');
  await client.query('delete from report_pending_events');

  const agents = (
    await client.query(
      `insert into agents (name, email, role, password_hash)
       select 'Agent ' || g, 'agent-' || g || '@bench.example', 'agent', $1
       from generate_series(1, ${DEPARTMENTS.length * AGENTS_PER_DEPARTMENT}) g returning id, email`,
      [desk.passwordHash],
    )
  ).rows
    .sort((a, b) => Number(a.email.split(/[-@]/)[1]) - Number(b.email.split(/[-@]/)[1]))
    .map((r) => r.id as string);
  await client.query(
    `insert into department_members (department_id, agent_id, role)
     select ($1::uuid[])[(g - 1) / ${AGENTS_PER_DEPARTMENT} + 1], ($2::uuid[])[g], 'solver'
     from generate_series(1, ${agents.length}) g`,
    [desk.departments, agents],
  );
  const contacts = (
    await client.query(
      `insert into contacts (name) select 'Customer ' || g from generate_series(1, ${CONTACTS}) g returning id`,
    )
  ).rows.map((r) => r.id as string);
  await client.query(
    `insert into contact_emails (contact_id, email) select c, 'customer-' || ordinality || '@bench.example'
     from unnest($1::uuid[]) with ordinality c`,
    [contacts],
  );
  const agentsOf = (d: string) => {
    const i = desk.departments.indexOf(d);
    return agents.slice(i * AGENTS_PER_DEPARTMENT, (i + 1) * AGENTS_PER_DEPARTMENT);
  };

  const now = Date.now();
  const next = openTickets(
    {
      policies: compilePolicies(desk.policies),
      calendarOf: desk.calendarOf,
      departments: desk.departments,
      agentsOf,
      contacts,
      now,
    },
    new Random(SEED + 2),
  );
  let withDue = 0;
  let withoutDue = 0;
  let breached = 0;
  let planning = 0;
  const rebuilt = await withoutIndexes(client, 'tickets', async () => {
    while (withDue < OPEN) {
      const t0 = performance.now();
      const rows = [];
      while (rows.length < 5000 && withDue < OPEN) {
        const row = next();
        rows.push(row);
        if (row.sla_due_at === null) withoutDue++;
        else withDue++;
        if (row.sla_breached) breached++;
      }
      planning += performance.now() - t0;
      await client.query(
        `insert into tickets (id, subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
           created_at, updated_at, first_answered_at, last_customer_message_at, last_agent_message_at, waiting_since,
           search, sla_state, sla_policy_id, sla_due_at, sla_breached)
         select id, subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
           created_at, updated_at, first_answered_at, last_customer_message_at, last_agent_message_at, waiting_since,
           to_tsvector('simple', subject), sla_state, sla_policy_id, sla_due_at, sla_breached
         from jsonb_to_recordset($1::jsonb) as x(id uuid, subject text, channel text, status text, priority text,
           department_id uuid, assignee_id uuid, contact_id uuid, tags text[], created_at timestamptz,
           updated_at timestamptz, first_answered_at timestamptz, last_customer_message_at timestamptz,
           last_agent_message_at timestamptz, waiting_since timestamptz, sla_state jsonb, sla_policy_id uuid,
           sla_due_at timestamptz, sla_breached boolean)`,
        [JSON.stringify(rows)],
      );
    }
    out(
      `  loaded ${fmt(withDue + withoutDue)} open tickets: ${fmt(withDue)} with a due, ${fmt(withoutDue)} whose every target ` +
        `has breached (no due); ${fmt(breached)} breached at least once (planSla: ${(planning / 1000).toFixed(1)} s; ${seconds(started)})`,
    );
    // Resolved tickets of the past year, in the same departments: no due, listed after the rest.
    await client.query(
      `insert into tickets (subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
         created_at, updated_at, first_answered_at, last_customer_message_at, last_agent_message_at,
         resolved_at, first_resolved_at, waiting_since, search)
       select subject, channel, 'resolved', priority, department_id, assignee_id, contact_id, '{}',
         created_at, resolved, created_at + (resolved - created_at) / 3, created_at, resolved, resolved, resolved,
         resolved, to_tsvector('simple', subject)
       from (
         select 'Order #' || g || ' question' as subject,
           (array['email','email','email','chat','chat','call','contact_form','whatsapp','facebook','api'])[1 + floor(random() * 10)::int] as channel,
           (array['low','normal','normal','normal','normal','normal','high','high','urgent','normal'])[1 + floor(random() * 10)::int] as priority,
           ($1::uuid[])[d + 1] as department_id,
           case when d is null then null else ($2::uuid[])[d * ${AGENTS_PER_DEPARTMENT} + 1 + floor(random() * ${AGENTS_PER_DEPARTMENT})::int] end as assignee_id,
           ($3::uuid[])[1 + floor(random() * ${CONTACTS})::int] as contact_id,
           created_at,
           least(created_at + interval '3 days' * random(), now()) as resolved
         from (
           select g,
             case when random() < 0.05 then null
                  else least(${DEPARTMENTS.length - 1}, floor(power(random(), 1.7) * ${DEPARTMENTS.length}))::int end as d,
             now() - interval '365 days' * random() as created_at
           from generate_series(1, ${RESOLVED}) g
         ) a
       ) b`,
      [desk.departments, agents, contacts],
    );
    out(`  loaded ${fmt(RESOLVED)} resolved tickets without a due (${seconds(started)})`);
  });
  out(`  rebuilt ${rebuilt} indexes (${seconds(started)})`);
  // As after any bulk import, and autovacuum is off here: statistics and the visibility map,
  // and no dead rows of part (b) under the measurements.
  await client.query('vacuum (analyze) tickets, ticket_events, ticket_messages, contacts, contact_emails');
  await client.query('analyze');
  out(`  vacuumed and analyzed (${seconds(started)})`);
  return { now, withDue, agents };
}

interface Shape {
  name: string;
  token: string;
  principal: Principal;
  queries: ListQuery[];
}

async function dueSoon(desk: HelpDesk): Promise<Verdict> {
  const ITERATIONS = Number(args.iterations);
  const QUEUE_AGENTS = Number(args['queue-agents']);
  const base = desk.servers.app;
  out();
  out(`(c) the due-soon list at ${fmt(Number(args.open))} open tickets with due times`);
  await desk.setPolicies(true);
  await loadTickets(desk);

  // An agent of three departments of different sizes (the biggest, a middle one, a small one).
  const mine = [desk.departments[0]!, desk.departments[4]!, desk.departments[12]!];
  const agent = await insertAgent(desk.db, {
    name: 'Bench agent',
    email: 'bench-agent@bench.example',
    role: 'agent',
    password_hash: desk.passwordHash,
  });
  for (const d of mine) {
    await desk.db
      .insertInto('department_members')
      .values({ department_id: d, agent_id: agent.id, role: 'solver' })
      .execute();
  }
  const dueBefore = new Date(Date.now() + 60 * 60_000).toISOString();
  const sizes = (
    await desk.client.query(
      `select count(*) filter (where visible) as visible, count(*) filter (where visible and sla_due_at is not null) as due,
              count(*) filter (where visible and sla_due_at < $2) as due_soon
       from (select sla_due_at, department_id = any($1::uuid[]) or department_id is null or assignee_id = $3 as visible
             from tickets where status <> 'deleted') t`,
      [mine, dueBefore, agent.id],
    )
  ).rows[0];
  out(
    `  an agent of 3 of ${desk.departments.length} departments sees ${fmt(Number(sizes.visible))} tickets, ` +
      `${fmt(Number(sizes.due))} with a due, ${fmt(Number(sizes.due_soon))} due within the hour (or overdue)`,
  );
  const token = await signIn(base, agent.email, PASSWORD);
  const asAgent: Principal = {
    agentId: agent.id,
    role: 'agent',
    scopes: ['read', 'write'],
    via: 'session',
    tokenId: null,
  };
  const owner = await desk.db
    .selectFrom('agents')
    .select('id')
    .where('role', '=', 'owner')
    .executeTakeFirstOrThrow();
  const asOwner: Principal = {
    agentId: owner.id,
    role: 'owner',
    scopes: ['read', 'write'],
    via: 'session',
    tokenId: null,
  };
  const shapes: Shape[] = [
    { name: 'sort=sla_due_at', token, principal: asAgent, queries: [{ sort: 'sla_due_at' }] },
    {
      name: 'sort=sla_due_at&sla_due_before=<in 1 h>',
      token,
      principal: asAgent,
      queries: [{ sort: 'sla_due_at', sla_due_before: dueBefore }],
    },
    {
      name: 'sort=sla_due_at&department_id=<theirs>',
      token,
      principal: asAgent,
      queries: mine.map((d) => ({ sort: 'sla_due_at', department_id: d })),
    },
    {
      name: 'sort=sla_due_at (an admin: every ticket)',
      token: desk.session,
      principal: asOwner,
      queries: [{ sort: 'sla_due_at' }],
    },
  ];
  out(
    `  ${ITERATIONS} timed requests per list after 100 warm-up ones, one at a time, over its first 8 pages of 50 (${machine()})`,
  );
  const random = new Random(SEED + 3);
  const p99s: number[] = [];
  for (const shape of shapes) {
    const pages = await listPages(base, shape.token, shape.queries);
    await timeGets(pages, shape.token, { warmUp: 100, iterations: 0, random });
    const before = cpuSnapshot(desk.servers.pid, scratch.scratch);
    const times = await timeGets(pages, shape.token, { warmUp: 0, iterations: ITERATIONS, random });
    const cpu = cpuPerRequest(before, cpuSnapshot(desk.servers.pid, scratch.scratch), ITERATIONS);
    const p99 = percentile(times, 0.99);
    p99s.push(p99);
    out(
      `list ${shape.name.padEnd(44)} n=${ITERATIONS} pages=${pages.length} p50=${ms(percentile(times, 0.5))}ms ` +
        `p99=${ms(p99)}ms max=${ms(times[times.length - 1]!)}ms ${p99 < 20 ? 'OK' : 'MISSED (target p99 < 20 ms)'}`,
    );
    out(`  ${cpuLine(cpu)}`);
    // The database's share: the statements listTickets sends for those pages, from this process.
    const statements = await listStatements(scratch.scratchUrl, shape.principal, shape.queries);
    const sqlTimes: number[] = [];
    const perPage = statements.map(() => [] as number[]);
    for (let i = 0; i < 200; i++) {
      const page = random.int(0, statements.length - 1);
      const time = await timePage(desk.client, statements[page]!);
      sqlTimes.push(time);
      perPage[page]!.push(time);
    }
    sqlTimes.sort((a, b) => a - b);
    const medians = perPage.map((times) =>
      times.length
        ? percentile(
            times.sort((a, b) => a - b),
            0.5,
          )
        : 0,
    );
    const slowest = medians.indexOf(Math.max(...medians));
    out(
      `  its SQL alone: p50=${ms(percentile(sqlTimes, 0.5))}ms p99=${ms(percentile(sqlTimes, 0.99))}ms (n=200, from this process; ` +
        `slowest page ${slowest + 1} of ${statements.length}: median ${ms(medians[slowest]!)}ms)`,
    );
    if (p99 >= 20 || args.explain) {
      for (const statement of statements[slowest]!) {
        out(`  EXPLAIN ANALYZE of the slowest page${p99 >= 20 ? ' (target missed)' : ''}:`);
        for (const text of await explainLines(desk.client, statement)) out(`    ${text}`);
      }
    }
  }

  const queue = await queueNext(desk, QUEUE_AGENTS);
  const worst = Math.max(...p99s);
  const pass = worst < 20;
  return {
    part: '(c) due-soon list',
    result: pass ? 'PASS' : 'FAIL',
    detail: `worst list p99 ${ms(worst)} ms (target < 20 ms); to-solve queue's next ticket p99 ${ms(queue.take)} ms, again ${ms(queue.again)} ms`,
  };
}

/**
 * POST /v1/queue/next by `count` agents of three departments each (random ones, the big ones
 * likelier), one call each (it assigns them the most urgent ticket: a write with its SLA plan),
 * then once more each (their own ticket comes back). One request at a time.
 */
async function queueNext(desk: HelpDesk, count: number) {
  const random = new Random(SEED + 4);
  const { client } = desk;
  const agents = (
    await client.query(
      `insert into agents (name, email, role, password_hash)
       select 'Queue agent ' || g, 'queue-' || g || '@bench.example', 'agent', $1
       from generate_series(1, ${count}) g returning id, email`,
      [desk.passwordHash],
    )
  ).rows as { id: string; email: string }[];
  for (const agent of agents) {
    const chosen = new Set<string>();
    while (chosen.size < 3) {
      chosen.add(desk.departments[Math.floor(random.next() ** 1.7 * desk.departments.length)]!);
    }
    await client.query(
      `insert into department_members (department_id, agent_id, role) select d, $2, 'solver' from unnest($1::uuid[]) d`,
      [[...chosen], agent.id],
    );
  }
  await client.query('analyze department_members, agents');
  // API tokens made by the domain, as each agent would make one: sign-ins are rate limited.
  const tokens: string[] = [];
  for (const agent of agents) {
    const principal: Principal = {
      agentId: agent.id,
      role: 'agent',
      scopes: ['read', 'write'],
      via: 'session',
      tokenId: null,
    };
    tokens.push(
      (await createApiToken(desk.db, principal, { name: 'queue', scopes: ['read', 'write'] })).secret,
    );
  }
  const timed = async () => {
    const times: number[] = [];
    let empty = 0;
    for (const token of tokens) {
      const t0 = performance.now();
      const ticket = await http('POST', `${desk.servers.app}/v1/queue/next`, token);
      times.push(performance.now() - t0);
      if (!ticket) empty++;
    }
    return { times: times.sort((a, b) => a - b), empty };
  };
  // Warm-up: the connections of the pool, and the plans; then each agent's first hand-out.
  for (let i = 0; i < 20; i++) {
    await http('GET', `${desk.servers.app}/v1/tickets?sort=sla_due_at&limit=1`, random.pick(tokens));
  }
  const take = await timed();
  const again = await timed();
  for (const [name, r] of [
    ['take (assigns)', take],
    ['again (own ticket)', again],
  ] as const) {
    const p99 = percentile(r.times, 0.99);
    out(
      `queue next, ${name.padEnd(20)} n=${r.times.length} p50=${ms(percentile(r.times, 0.5))}ms p99=${ms(p99)}ms ` +
        `max=${ms(r.times[r.times.length - 1]!)}ms${r.empty ? ` (${r.empty} found the queue empty)` : ''} ${p99 < 20 ? 'OK' : 'over 20 ms'}`,
    );
  }
  return { take: percentile(take.times, 0.99), again: percentile(again.times, 0.99) };
}

// ---- (d) breach firing -------------------------------------------------------------------

/**
 * 10,000 tickets whose breaches fall due in the same instant, fired by a real server's SLA timer:
 * scripts/bench/sla-breaches.ts (a scratch database of its own, so the help desk's tickets do not
 * share the timer's work).
 */
async function breachFiring(_desk: HelpDesk): Promise<Verdict> {
  out();
  out(
    `(d) breaches of ${fmt(Number(args['breach-tickets']))} tickets due in the same instant, fired by a real server`,
  );
  const { last, pass } = await benchBreaches({
    tickets: Number(args['breach-tickets']),
    servers: 1,
    keep: args.keep,
  });
  return {
    part: '(d) breach firing',
    result: pass ? 'PASS' : 'FAIL',
    detail: `last breach ${last.toFixed(1)} s after the due (target 60 s)`,
  };
}

// ---- run ---------------------------------------------------------------------------------

const scratch = scratchDatabase('deskroute_sla_bench');
const DATABASE_PARTS: [Part, (desk: HelpDesk) => Promise<Verdict>][] = [
  ['creation', creation],
  ['due-soon', dueSoon],
  ['breaches', breachFiring],
];

async function withHelpDesk(run: (desk: HelpDesk) => Promise<void>) {
  const { serverUrl, scratchUrl } = scratch;
  const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);
  const started = performance.now();
  out();
  out(`on ${new URL(serverUrl).host}, scratch database ${scratch.scratch}`);
  let servers: BenchServers | undefined;
  await admin((c) => c.query(`create database ${scratch.scratch}`));
  // Interrupted (Ctrl-C): still leave no scratch database behind.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      servers?.child.kill('SIGKILL');
      admin((c) => c.query(`drop database if exists ${scratch.scratch} with (force)`)).finally(() =>
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
    servers = await startTicketsServer(scratchUrl, randomBytes(32).toString('base64url'));
    const desk = await buildHelpDesk(db, client, servers);
    out(
      `  help desk: ${DEPARTMENTS.length} departments on ${schedules(SEED).length} schedules, ${desk.policies.length} SLA policies (${seconds(started)})`,
    );
    await run(desk);
  } finally {
    await stopTicketsServer(servers);
    await client.end().catch(() => {});
    await db.destroy();
    out();
    if (args.keep) {
      out(`kept ${scratchUrl} (drop it when done)`);
    } else {
      await admin((c) => c.query(`drop database if exists ${scratch.scratch} with (force)`));
      out(`dropped ${scratch.scratch} (${seconds(started)})`);
    }
  }
}

async function main() {
  out(`bench:sla (${[...ONLY].join(', ')}); ${new Date().toISOString().slice(0, 19)}Z, ${machine()}`);
  const verdicts: Verdict[] = [];
  let mismatches = 0;
  if (ONLY.has('arithmetic')) {
    const a = arithmetic();
    mismatches = a.mismatches;
    verdicts.push(a);
  }
  const parts = DATABASE_PARTS.filter(([part]) => ONLY.has(part));
  if (parts.length > 0) {
    await withHelpDesk(async (desk) => {
      for (const [, run] of parts) verdicts.push(await run(desk));
    });
  }
  out();
  out(`summary (${machine()}):`);
  for (const v of verdicts) out(`  ${v.part}: ${v.result}, ${v.detail}`);
  process.exitCode = mismatches === 0 ? 0 : 1;
}

await main();
