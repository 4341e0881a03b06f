// node scripts/bench/creation-profile.ts [--duration 10] [--cpu-prof | --cpu-prof-floor] [--what-if]
//
// Where a ticket creation's time goes, on the same servers as bench:tickets (tickets-server.ts:
// the app, and the per-request floor probe), in a scratch database deskroute_profile_<pid>:
//
//   1. Throughput of POST /v1/tickets and of /floor, alternated (app, floor, app, floor), with
//      the CPU per request of the server process and of THIS database's PostgreSQL backends only
//      (their /proc times), so that other work on a shared machine does not count as ours.
//   2. The statements of one creation, from an app in this process on one connection, one
//      request at a time: each statement's share of the request's wall time, and the rest (the
//      server's own work between statements).
//   3. --what-if: the same load with one part of the work removed from the schema for a moment
//      (report triggers disabled; then the tickets' secondary indexes dropped), to price them.
// --cpu-prof writes a V8 CPU profile of the server process during the app's measured phases
// (cpu-profile-hook.ts) and prints the functions and packages with the most self time;
// --cpu-prof-floor does the same for the floor probe's phases, to compare the two.
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool, roundTrips } from '../../src/db/client.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import { http, onServer, postLoad, scratchDatabase } from './http.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    samples: { type: 'string', default: '300' },
    'cpu-prof': { type: 'boolean', default: false },
    'cpu-prof-floor': { type: 'boolean', default: false },
    'what-if': { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const SAMPLES = Number(args.samples);
const PASSWORD = 'bench-password-0123456789';

const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_profile');
const out = (line = '') => process.stdout.write(`${line}\n`);

const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);

const TICKS = 100;
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

async function main() {
  await admin((c) => c.query(`create database ${scratch}`));
  const pool = new pg.Pool({ connectionString: scratchUrl, max: 2 });
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let child: ChildProcess | undefined;
  const profileDir = mkdtempSync(path.join(tmpdir(), 'deskroute-cpuprof-'));
  try {
    await migrateToLatest(db);
    await pool.query(
      'create table bench_bare (id bigserial primary key, payload text not null, created_at timestamptz not null default now())',
    );
    const jwtSecret = randomBytes(32).toString('base64url');
    child = fork(new URL('./tickets-server.ts', import.meta.url), [scratchUrl, jwtSecret], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: [
        ...process.execArgv,
        ...(args['cpu-prof'] || args['cpu-prof-floor']
          ? ['--import', new URL('./cpu-profile-hook.ts', import.meta.url).pathname]
          : []),
      ],
    });
    const ports = await new Promise<{ app: number; bare: number }>((resolve) =>
      child!.once('message', (m) => resolve(m as { app: number; bare: number })),
    );
    const app = `http://127.0.0.1:${ports.app}`;
    const bare = `http://127.0.0.1:${ports.bare}`;
    const owner = await insertAgent(db, {
      name: 'Bench owner',
      email: 'owner@bench.example',
      role: 'owner',
      password_hash: await hashPassword(PASSWORD),
    });
    const session = (
      await http('POST', `${app}/v1/auth/token`, null, { email: owner.email, password: PASSWORD })
    ).access_token;
    const department = await http('POST', `${app}/v1/departments`, session, { name: 'Support' });
    const { secret } = await http('POST', `${app}/v1/api-tokens`, session, {
      name: 'bench',
      scopes: ['read', 'write'],
    });
    let n = 0;
    const ticketBody = () =>
      JSON.stringify({
        subject: `Where is my order #${100000 + n}?`,
        channel: 'email',
        contact: { email: `customer-${n++}@bench.example`, name: 'Bench Customer' },
        message: { body: 'Hello, my parcel has not arrived yet. Could you check the tracking, please?' },
        department_id: department.id,
      });
    const auth = { authorization: `Bearer ${secret}` };
    const backends = async () =>
      (
        await admin((c) =>
          c.query('select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [
            scratch,
          ]),
        )
      ).rows.map((r) => r.pid as number);
    const measure = async (url: string, p: string) => {
      // Per backend: its CPU when first seen (0 for one that starts during the load: all its time
      // is the load's) and when last seen. The set is sampled all along, so a backend that ends
      // during the load (a pool closing an idle connection) keeps what it did until its last
      // sample, instead of taking its whole life's CPU out of the sum (negative figures).
      const first = new Map<number, number>();
      const last = new Map<number, number>();
      const sample = async (starting: boolean) => {
        for (const pid of await backends()) {
          const cpu = cpuOf(pid);
          if (cpu === 0 && !first.has(pid)) continue; // gone already
          if (!first.has(pid)) first.set(pid, starting ? cpu : 0);
          last.set(pid, cpu);
        }
      };
      await sample(true);
      const s0 = cpuOf(child!.pid!);
      let sampling = Promise.resolve();
      const sampler = setInterval(() => {
        sampling = sampling.then(() => sample(false)).catch(() => {});
      }, 200);
      const r = await postLoad({
        url,
        path: p,
        headers: auth,
        body: ticketBody,
        duration: DURATION,
        connections: CONNECTIONS,
      });
      clearInterval(sampler);
      await sampling;
      await sample(false);
      const server = ((cpuOf(child!.pid!) - s0) * 1000) / r.total;
      let pgCpu = 0;
      for (const [pid, cpu] of last) pgCpu += cpu - (first.get(pid) ?? 0);
      const postgres = (pgCpu * 1000) / r.total;
      if (r.non2xx || r.errors) out(`  WARNING ${p}: ${r.statuses}, ${r.errors} errors`);
      return { rps: r.rps, p50: r.p50, p99: r.p99, server, postgres };
    };
    const line = (name: string, r: Awaited<ReturnType<typeof measure>>) =>
      out(
        `  ${name.padEnd(8)} rps=${r.rps.toFixed(0)} p50=${r.p50}ms p99=${r.p99}ms  CPU per request (ms): server ${r.server.toFixed(2)}, PostgreSQL (this database's backends) ${r.postgres.toFixed(2)}`,
      );

    out(`1. throughput, ${DURATION} s phases, ${CONNECTIONS} connections, app and floor alternated`);
    await postLoad({
      url: app,
      path: '/v1/tickets',
      headers: auth,
      body: ticketBody,
      duration: DURATION + 5,
      connections: CONNECTIONS,
    });
    if (!args['cpu-prof'])
      await postLoad({
        url: bare,
        path: '/floor',
        headers: auth,
        body: ticketBody,
        duration: 3,
        connections: CONNECTIONS,
      });
    await pool.query('vacuum analyze');
    const profiled = (m: Record<string, unknown>, answer: string) =>
      new Promise<void>((resolve) => {
        const on = (reply: unknown) => {
          if (reply && typeof reply === 'object' && answer in reply) {
            child!.off('message', on);
            resolve();
          }
        };
        child!.on('message', on);
        child!.send(m);
      });
    // The profile is of the app's phases alone (or, --cpu-prof-floor, of the floor's): both
    // share the server process.
    const profiling = args['cpu-prof'] || args['cpu-prof-floor'];
    if (profiling) await profiled({ profile: 'start' }, 'profiling');
    const apps: number[] = [];
    const floors: number[] = [];
    for (let round = 0; round < 2; round++) {
      if (!args['cpu-prof-floor']) {
        const a = await measure(app, '/v1/tickets');
        line('app', a);
        apps.push(a.rps);
      }
      if (args['cpu-prof']) continue;
      const f = await measure(bare, '/floor');
      line('floor', f);
      floors.push(f.rps);
    }
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    if (profiling)
      await profiled({ profile: 'stop', file: path.join(profileDir, 'server.cpuprofile') }, 'profiled');
    if (floors.length && apps.length)
      out(`  creation / floor: ${(mean(apps) / mean(floors)).toFixed(2)} (target >= 0.8)`);

    if (args['what-if']) {
      out();
      out('3. what if (the same load, the schema changed for a moment)');
      const triggers = (
        await pool.query(
          `select tgrelid::regclass::text as tbl, tgname from pg_trigger
           where not tgisinternal and tgrelid in ('tickets'::regclass, 'ticket_events'::regclass, 'ticket_messages'::regclass)`,
        )
      ).rows as { tbl: string; tgname: string }[];
      out(`  triggers: ${triggers.map((t) => `${t.tbl}.${t.tgname}`).join(', ')}`);
      for (const t of triggers) await pool.query(`alter table ${t.tbl} disable trigger ${t.tgname}`);
      line('app, no triggers', await measure(app, '/v1/tickets'));
      line('floor, no triggers', await measure(bare, '/floor'));
      for (const t of triggers) await pool.query(`alter table ${t.tbl} enable trigger ${t.tgname}`);
      const indexes = (
        await pool.query(
          `select indexname, indexdef from pg_indexes where tablename = 'tickets'
           and indexname not in (select conname from pg_constraint where conrelid = 'tickets'::regclass)`,
        )
      ).rows as { indexname: string; indexdef: string }[];
      out(`  tickets' secondary indexes: ${indexes.map((i) => i.indexname).join(', ')}`);
      for (const i of indexes) await pool.query(`drop index ${i.indexname}`);
      line('app, no secondary indexes on tickets', await measure(app, '/v1/tickets'));
      for (const i of indexes) await pool.query(i.indexdef);
      line('app again, as it was', await measure(app, '/v1/tickets'));
    }

    out();
    out(
      `2. the statements of one creation (${SAMPLES} creations one at a time, app in this process, one connection)`,
    );
    const captured: { sql: string; ms: number }[] = [];
    const counted = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: createPool(scratchUrl, { max: 1 }) }),
      log: (event) => {
        if (event.level === 'query') captured.push({ sql: event.query.sql, ms: event.queryDurationMillis });
      },
    });
    const inproc = await buildApp(loadConfig({ LOG_LEVEL: 'silent', JWT_SECRET: jwtSecret }), {
      db: counted,
      databaseUrl: scratchUrl,
      jwtSecret,
    });
    try {
      const byStatement = new Map<string, { count: number; ms: number }>();
      let total = 0;
      let trips = 0;
      for (let i = 0; i < SAMPLES + 20; i++) {
        captured.length = 0;
        const r0 = roundTrips();
        const t0 = performance.now();
        const res = await inproc.inject({
          method: 'POST',
          url: '/v1/tickets',
          headers: { ...auth, 'content-type': 'application/json' },
          payload: ticketBody(),
        });
        const took = performance.now() - t0;
        if (res.statusCode !== 201) throw new Error(`${res.statusCode} ${res.body}`);
        if (i < 20) continue; // warm-up: prepared statements, JIT
        total += took;
        trips += roundTrips() - r0;
        for (const q of captured) {
          const key = q.sql.replace(/\s+/g, ' ').trim().slice(0, 90);
          const s = byStatement.get(key) ?? { count: 0, ms: 0 };
          s.count++;
          s.ms += q.ms;
          byStatement.set(key, s);
        }
      }
      const per = total / SAMPLES;
      let inStatements = 0;
      out(`  one creation: ${per.toFixed(2)} ms wall, ${(trips / SAMPLES).toFixed(1)} round trips`);
      for (const [key, s] of [...byStatement].sort((a, b) => b[1].ms - a[1].ms)) {
        const ms = s.ms / SAMPLES;
        inStatements += ms;
        out(
          `  ${(s.count / SAMPLES).toFixed(1)}x ${ms.toFixed(3)} ms (${((ms / per) * 100).toFixed(0)} %)  ${key}`,
        );
      }
      out(
        `  outside statements (the server's own work): ${(per - inStatements).toFixed(3)} ms (${(((per - inStatements) / per) * 100).toFixed(0)} %)`,
      );
    } finally {
      await inproc.close();
      await counted.destroy();
    }
  } finally {
    child?.send('stop');
    await new Promise((resolve) => {
      if (!child || child.exitCode !== null) return resolve(null);
      child.once('exit', resolve);
      setTimeout(() => child?.kill('SIGKILL'), 5000).unref();
    });
    await db.destroy();
    await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
  }
  if (args['cpu-prof'] || args['cpu-prof-floor']) summariseProfile(profileDir);
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

/** Self time per function and per package (node_modules/<name>, node:internal, our src). */
function summariseProfile(dir: string) {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return out(`no profile written in ${dir}`);
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const all = [...self.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = nodes.get(id)!.callFrame;
    const pkg =
      /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
      (url.startsWith('node:')
        ? url
        : url.includes('/src/')
          ? `src/${url.split('/src/')[1]?.split('/')[0]}`
          : url || `(${functionName})`);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  }
  out();
  out(
    `CPU profile of the server process (${file}, ${(all / 1e6).toFixed(1)} s sampled, the ${args['cpu-prof-floor'] ? 'floor' : 'app'}'s measured phases):`,
  );
  for (const [name, us] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 25))
    out(`  ${((us / all) * 100).toFixed(1).padStart(5)} %  ${name}`);
  out('  top functions by self time:');
  for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 30))
    out(`  ${((us / all) * 100).toFixed(1).padStart(5)} %  ${name}`);
  // Native work (socket writes, GC) has no package of its own: charged to the nearest caller
  // that belongs to a package or to our code.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const owner = (id: number): string => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const { url, functionName } = nodes.get(at)!.callFrame;
      const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)?.[1];
      if (pkg) return `${pkg} ${functionName}`;
      if (url.includes('/src/')) return `src/${url.split('/src/')[1]} ${functionName}`;
      if (url.includes('/scripts/')) return `scripts/${url.split('/scripts/')[1]} ${functionName}`;
    }
    return '(no package above)';
  };
  for (const native of ['writev', 'writeUtf8String', 'writeBuffer']) {
    const callers = new Map<string, number>();
    for (const [id, us] of self) {
      if (nodes.get(id)!.callFrame.functionName !== native) continue;
      const who = owner(id);
      callers.set(who, (callers.get(who) ?? 0) + us);
    }
    if (callers.size === 0) continue;
    out(`  ${native}, by caller:`);
    for (const [who, us] of [...callers].sort((a, b) => b[1] - a[1]).slice(0, 5))
      out(`    ${((us / all) * 100).toFixed(1).padStart(5)} %  ${who}`);
  }
  out(`  profile kept in ${dir}`);
}

await main();
