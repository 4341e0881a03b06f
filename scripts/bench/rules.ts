// npm run bench:rules [-- --duration 10 --connections 10 --rules 500 --rounds 2 --skip-engine]
//
// Two measurements:
//
//   (a) the rule engine alone: scripts/bench/rules-engine.ts (500 rules over 10,000 tickets,
//       against json-rules-engine), run as it is in a child process.
//   (b) ticket creation over HTTP against PostgreSQL with 0 and with 500 active rules: POST
//       /v1/tickets on the real app (auth by API token, validation, contact, events, and the
//       rules: version check, snapshot, evaluation, effects, the stored run), loaded by
//       autocannon with the same connections for the same time, alternating 0 and 500 rules
//       for --rounds rounds, after an unmeasured settling load. The rules are realistic: two condition groups each, mixed
//       operators (channel, subject, message body patterns and words, sender, priority, tags,
//       department), a tenth owned by a department, most of them not matching a given ticket.
//       Target: 500 rules cost less than 15% of the throughput (ratio >= 0.85).
//
// A scratch database deskroute_bench_rules_<pid> is created and dropped on the server named by
// BENCH_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres. The app
// runs in a child process (tickets-server.ts) so that the load generator has its own event loop.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
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
  postLoad,
  scratchDatabase,
  startTicketsServer,
  stopTicketsServer,
} from './http.ts';
import { makeRules, ticketBodies } from './rules-workload.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    rules: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '2' },
    'skip-engine': { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const RULES = Number(args.rules);
const ROUNDS = Number(args.rounds);
const PASSWORD = 'bench-password-0123456789';

const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_bench_rules');

const out = (line = '') => process.stdout.write(`${line}\n`);
const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);

// ---- load --------------------------------------------------------------------------------

const load = (url: string, token: string, body: () => string, duration: number) =>
  postLoad({
    url,
    path: '/v1/tickets',
    headers: { authorization: `Bearer ${token}` },
    body,
    duration,
    connections: CONNECTIONS,
  });
const queriesPerCreation = (token: string, body: () => string) =>
  countQueries(scratchUrl, `Bearer ${token}`, body, 100);

async function main() {
  const started = performance.now();
  if (!args['skip-engine']) {
    out('(a) the rule engine alone: npm run bench:rules-engine');
    const engine = spawnSync(process.execPath, [new URL('./rules-engine.ts', import.meta.url).pathname], {
      stdio: 'inherit',
    });
    if (engine.status !== 0) process.exitCode = engine.status ?? 1;
    out();
  }

  out(
    `(b) ticket creation over HTTP with 0 vs ${RULES} active rules, on ${new URL(serverUrl).host} (${scratch})`,
  );
  let server: BenchServers | undefined;
  await admin((c) => c.query(`create database ${scratch}`));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      server?.child.kill('SIGKILL');
      admin((c) => c.query(`drop database if exists ${scratch} with (force)`)).finally(() =>
        process.exit(130),
      );
    });
  }
  const pool = new pg.Pool({ connectionString: scratchUrl, max: 2 });
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrateToLatest(db);
    server = await startTicketsServer(scratchUrl, randomBytes(32).toString('base64url'));
    const base = server.app;
    const owner = await insertAgent(db, {
      name: 'Bench owner',
      email: 'owner@bench.example',
      role: 'owner',
      password_hash: await hashPassword(PASSWORD),
    });
    const session = (
      await http('POST', `${base}/v1/auth/token`, null, { email: owner.email, password: PASSWORD })
    ).access_token as string;
    const departments: string[] = [];
    for (const name of [
      'Support',
      'Sales',
      'Returns',
      'Billing',
      'Marketing',
      'Wholesale',
      'Partners',
      'Press',
    ]) {
      const department = await http('POST', `${base}/v1/departments`, session, { name });
      departments.push(department.id);
      for (let i = 0; i < 3; i++) {
        await http('POST', `${base}/v1/agents`, session, {
          name: `${name} agent ${i}`,
          email: `${name.toLowerCase()}-${i}@bench.example`,
          departments: [{ department_id: department.id, role: 'solver' }],
        });
      }
    }
    const { secret } = await http('POST', `${base}/v1/api-tokens`, session, {
      name: 'bench integration',
      scopes: ['read', 'write'],
    });
    const body = ticketBodies(departments);

    const rules = makeRules(RULES, departments);
    const setActive = async (active: boolean) => {
      await db.updateTable('automation_rules').set({ active }).execute();
      // As every rule write does: a new version and cache key, so each instance recompiles.
      await sql`update automation_rules_state set rules_version = rules_version + 1, rules_key = gen_random_uuid()`.execute(
        db,
      );
    };
    const phases: Record<'off' | 'on', (Load & { cpu: CpuSnapshot | null })[]> = { off: [], on: [] };
    const runsBefore = async () =>
      Number((await sql<{ n: string }>`select count(*) as n from rule_runs`.execute(db)).rows[0]!.n);
    let matchStats = '';
    out(
      `  ${ROUNDS} rounds of: 0 rules, then ${RULES}; each 3 s warm-up + ${DURATION} s with ${CONNECTIONS} connections`,
    );
    // Creation slows down once the database has some tickets (the GIN full-text index's pending
    // list starts being flushed by inserting backends, among others): measured on an empty
    // database, the first phase alone would be faster than everything after it, whatever the
    // rules (0 rules against 0 rules gave a ratio of 0.41). So load it first, unmeasured.
    out(`  settling: ${DURATION + 5} s of creations with no rules, not measured (${machine()})`);
    await load(base, secret, body, DURATION + 5);
    // Where the CPU went (server, PostgreSQL, load generator) tells what the rules cost.
    const measured = async () => {
      const cpuBefore = cpuSnapshot(server!.child.pid!);
      const result = await load(base, secret, body, DURATION);
      return { ...result, cpu: cpuPerRequest(cpuBefore, cpuSnapshot(server!.child.pid!), result.total) };
    };
    for (let round = 1; round <= ROUNDS; round++) {
      if (round === 1) {
        out(`  round 1, 0 rules (none exist yet; ${machine()})`);
      } else {
        await setActive(false);
        out(`  round ${round}, 0 rules (all ${RULES} inactive; ${machine()})`);
      }
      await load(base, secret, body, 3);
      phases.off.push(await measured());
      if (round === 1) {
        const t0 = performance.now();
        for (const rule of rules) await http('POST', `${base}/v1/automation-rules`, session, rule);
        out(`  created ${RULES} rules through the API in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      } else {
        await setActive(true);
      }
      out(`  round ${round}, ${RULES} active rules (${machine()})`);
      await load(base, secret, body, 3);
      const before = await runsBefore();
      phases.on.push(await measured());
      if (round === 1) {
        const stats = (
          await sql<{ runs: string; matches: string; touched: string }>`
            select count(*) as runs, coalesce(sum(jsonb_array_length(trace)), 0) as matches,
              count(*) filter (where jsonb_array_length(effects) > 0) as touched
            from (select trace, effects from rule_runs order by id offset ${before}) r`.execute(db)
        ).rows[0]!;
        const runs = Number(stats.runs);
        matchStats = `${(Number(stats.matches) / runs).toFixed(2)} matching rules per ticket on average; ${(
          (100 * Number(stats.touched)) / runs
        ).toFixed(0)}% of tickets changed by rules`;
      }
    }
    for (const [name, list] of Object.entries(phases)) {
      for (const r of list) {
        if (r.non2xx > 0 || r.errors > 0)
          out(`  WARNING ${name}: ${r.non2xx} non-2xx (${r.statuses}), ${r.errors} errors`);
      }
    }
    const tripsOn = await queriesPerCreation(secret, body);
    await setActive(false);
    const tripsOff = await queriesPerCreation(secret, body);

    const mean = (list: Load[], key: 'rps' | 'p50' | 'p99') =>
      list.reduce((a, r) => a + r[key], 0) / list.length;
    for (let i = 0; i < ROUNDS; i++) {
      const off = phases.off[i]!;
      const on = phases.on[i]!;
      out(
        `round ${i + 1}: 0 rules rps=${off.rps.toFixed(0)} p50=${off.p50}ms p99=${off.p99}ms | ` +
          `${RULES} rules rps=${on.rps.toFixed(0)} p50=${on.p50}ms p99=${on.p99}ms | ratio=${(on.rps / off.rps).toFixed(3)}`,
      );
      out(`  0 rules:   ${cpuLine(off.cpu)}`);
      out(`  ${RULES} rules: ${cpuLine(on.cpu)}`);
    }
    // Each round's two measurements are minutes apart at most, so other load on the machine
    // weighs on both alike: the headline is the mean of the rounds' ratios.
    const ratios = phases.on.map((on, i) => on.rps / phases.off[i]!.rps);
    const ratio = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    out(
      `create  0 rules: rps=${mean(phases.off, 'rps').toFixed(0)} | ${RULES} rules: rps=${mean(phases.on, 'rps').toFixed(0)} | ` +
        `ratio=${ratio.toFixed(3)} (mean of the rounds' ratios; ${RULES} rules cost ${((1 - ratio) * 100).toFixed(1)}% of the throughput; target < 15%: ${ratio >= 0.85 ? 'met' : 'NOT met'})`,
    );
    out(`  ${matchStats}`);
    out(
      `  round trips to PostgreSQL per creation: ${tripsOff.toFixed(1)} with 0 rules, ${tripsOn.toFixed(1)} with ${RULES} (matches included); ${machine()}`,
    );
  } finally {
    await stopTicketsServer(server);
    await db.destroy();
    await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
    out(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; dropped ${scratch}`);
  }
}

await main();
