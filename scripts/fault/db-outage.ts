// npm run fault:db
//
// The server must outlive its database (docs/architecture.md, "Faults"). This script starts a
// throwaway PostgreSQL cluster of its own (initdb + pg_ctl from /usr/lib/postgresql/*/bin, a
// private port on 127.0.0.1 and a temporary data folder, as the unprivileged `postgres` user when
// run as root), runs the real server on it (`node src/server.ts`) and, under concurrent ticket
// creations:
//
//   0. starts the server while the cluster is still down: it must wait (with logged backoff),
//      then serve once the cluster starts;
//   1. terminates every backend of the server (pg_terminate_backend);
//   2. restarts the cluster (pg_ctl restart -m immediate, a crash and recovery);
//   3. stops the cluster for a few seconds, then starts it again.
//
// It checks that the process stays alive; that while the cluster is down requests answer 503
// problem+json with Retry-After quickly (counted; the slowest is printed), /healthz 200 and
// /readyz 503; that the server serves again by itself (recovery time printed); and that every
// ticket that got a 201 exists afterwards with its message and its events (lost writes = 0).
// Exits non-zero on any failure, 0 with "skipped: ..." where no PostgreSQL binaries exist. The
// whole run is bounded (2 minutes) and the cluster and its folder are removed even on failure.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { jsonRequest } from '../json-request.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const TOTAL_BUDGET_MS = 120_000;
/** A 503 slower than this counts as a hang (the connect timeout is 5 s). */
const ANSWER_BOUND_MS = 10_000;
const WORKERS = 4;
const EMAIL = 'owner@fault.example';
const PASSWORD = 'fault-script-password-0123';

const failures: string[] = [];
const check = (ok: boolean, what: string) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

function findBinaries(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter(
      (v) =>
        existsSync(path.join(root, v, 'bin', 'initdb')) && existsSync(path.join(root, v, 'bin', 'pg_ctl')),
    )
    .sort((a, b) => Number(b) - Number(a));
  // PostgreSQL 15 is what production and CI run; any other installed version will do otherwise.
  const chosen = versions.includes('15') ? '15' : versions[0];
  return chosen ? path.join(root, chosen, 'bin') : null;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const bin = findBinaries();
if (!bin) {
  console.log('skipped: no PostgreSQL binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin');
  process.exit(0);
}
const asRoot = process.getuid?.() === 0;
let owner: { uid: number; gid: number } | null = null;
if (asRoot) {
  try {
    const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
    owner = { uid: await id('-u'), gid: await id('-g') };
  } catch {
    console.log('skipped: running as root and there is no `postgres` user to run PostgreSQL as');
    process.exit(0);
  }
}

const work = mkdtempSync(path.join(tmpdir(), 'deskroute-fault-'));
const dataDir = path.join(work, 'pgdata');
const pgLog = path.join(work, 'postgresql.log');
const serverLog = path.join(work, 'server.log');
if (owner) chownSync(work, owner.uid, owner.gid);
const pgPort = await freePort();
const httpPort = await freePort();
const databaseUrl = `postgres://postgres@127.0.0.1:${pgPort}/postgres`;
let server: ChildProcess | null = null;
let serverExit: { code: number | null; signal: string | null } | null = null;

/** initdb / pg_ctl, as the postgres user when we are root. */
async function postgres(tool: string, args: string[]) {
  const command = path.join(bin!, tool);
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  try {
    await run(file, argv, { timeout: 60_000 });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${tool} ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}
const pgOptions = `-p ${pgPort} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${work} -c fsync=off -c max_connections=40`;
const pgCtl = (...args: string[]) =>
  postgres('pg_ctl', ['-D', dataDir, '-l', pgLog, '-o', pgOptions, ...args]);

async function cleanUp() {
  if (server && serverExit === null) {
    const exited = new Promise((resolve) => server!.once('exit', resolve));
    server.kill('SIGTERM');
    if ((await Promise.race([exited, sleep(15_000, 'late')])) === 'late') server.kill('SIGKILL');
    await exited;
  }
  if (existsSync(path.join(dataDir, 'postmaster.pid'))) {
    await pgCtl('stop', '-m', 'immediate', '-w').catch((error) => console.error(String(error)));
  }
  rmSync(work, { recursive: true, force: true });
}

const budget = setTimeout(() => {
  console.error(`FAIL the run took longer than ${TOTAL_BUDGET_MS / 1000} s`);
  void cleanUp().finally(() => process.exit(1));
}, TOTAL_BUDGET_MS);
budget.unref();

const base = `http://127.0.0.1:${httpPort}`;
let token = '';

interface Answer {
  status: number;
  ms: number;
  body: Record<string, unknown> | null;
  headers: Headers | null;
}

/** One request, bounded: status 0 means no HTTP answer at all (refused, reset, timed out). */
async function call(method: string, url: string, body?: unknown): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await jsonRequest(method, `${base}${url}`, {
      token,
      body,
      signal: AbortSignal.timeout(ANSWER_BOUND_MS + 5_000),
    });
    return { status: res.status, ms: performance.now() - started, body: res.body, headers: res.headers };
  } catch {
    return { status: 0, ms: performance.now() - started, body: null, headers: null };
  }
}

const is503Problem = (a: Answer) =>
  a.status === 503 &&
  (a.headers?.get('content-type') ?? '').startsWith('application/problem+json') &&
  /^\d+$/.test(a.headers?.get('retry-after') ?? '') &&
  a.body?.code === 'database_unavailable';

async function until(what: () => boolean | Promise<boolean>, ms: number, step = 100) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await what()) return true;
    await sleep(step);
  }
  return what();
}

// The load: concurrent ticket creations, each remembered with what it sent.
const created = new Map<string, { subject: string; body: string }>();
const statuses = new Map<number, number>();
const slow503: number[] = [];
const bad: string[] = [];
/** When each 201 arrived, in order. */
const createdTimes: number[] = [];
let loading = true;
let sequence = 0;

async function worker(n: number) {
  while (loading) {
    const i = ++sequence;
    const subject = `fault ${n}-${i}`;
    const body = `message of ticket ${n}-${i} ${randomBytes(4).toString('hex')}`;
    const answer = await call('POST', '/v1/tickets', {
      subject,
      contact: { email: `contact-${i % 50}@fault.example`, name: `Contact ${i % 50}` },
      message: { body },
    });
    statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    if (answer.status === 201 && typeof answer.body?.id === 'string') {
      created.set(answer.body.id, { subject, body });
      createdTimes.push(Date.now());
      await sleep(10);
    } else if (is503Problem(answer)) {
      slow503.push(answer.ms);
      await sleep(50);
    } else {
      bad.push(`POST /v1/tickets answered ${answer.status} ${JSON.stringify(answer.body)}`);
      await sleep(50);
    }
  }
}

/** Seconds from `since` until a ticket is created after it. */
async function recovery(since: number, what: string) {
  const first = () => createdTimes.find((at) => at > since);
  const back = await until(() => first() !== undefined, 30_000, 50);
  const seconds = ((first() ?? since) - since) / 1000;
  check(back, `${what}: creations resume (after ${back ? seconds.toFixed(2) : '>30'} s)`);
  return seconds;
}

async function terminateBackends() {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ n: number }>(
      `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
        where pid <> pg_backend_pid() and backend_type = 'client backend'`,
    );
    return rows[0]!.n;
  } finally {
    await admin.end();
  }
}

try {
  console.log(`PostgreSQL from ${bin}, port ${pgPort}, folder ${work}${asRoot ? ' (as user postgres)' : ''}`);
  await postgres('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync']);

  // 0. The server starts while PostgreSQL is down.
  const out = createWriteStream(serverLog);
  server = spawn(process.execPath, ['src/server.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(httpPort),
      DATABASE_URL: databaseUrl,
      DATA_DIR: path.join(work, 'app'),
      JWT_SECRET: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'warn',
      DESKROUTE_ADMIN_EMAIL: EMAIL,
      DESKROUTE_ADMIN_PASSWORD: PASSWORD,
      RATE_LIMIT_MAX: '1000000',
      RATE_LIMIT_PER_ADDRESS_MAX: '1000000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout!.pipe(out);
  server.stderr!.pipe(out);
  server.on('exit', (code, signal) => {
    serverExit = { code, signal };
  });
  const log = () => (existsSync(serverLog) ? readFileSync(serverLog, 'utf8') : '');
  const retries = () => (log().match(/database unreachable while migrating; retrying/g) ?? []).length;
  check(
    await until(() => retries() >= 3 || serverExit !== null, 20_000),
    'start-up with PostgreSQL down: retries with backoff (logged)',
  );
  check(serverExit === null, 'start-up with PostgreSQL down: the process waits instead of exiting');
  const clusterUp = Date.now();
  await pgCtl('start', '-w', '-t', '30');
  const listening = await until(() => /Deskroute listening on/.test(log()) || serverExit !== null, 30_000);
  check(
    listening && serverExit === null,
    `start-up: serves ${((Date.now() - clusterUp) / 1000).toFixed(2)} s after PostgreSQL started`,
  );
  if (!listening) throw new Error('the server never listened');

  const signIn = await call('POST', '/v1/auth/token', { email: EMAIL, password: PASSWORD });
  check(signIn.status === 200, `sign in (${signIn.status})`);
  token = String(signIn.body?.access_token ?? '');

  const workers = Array.from({ length: WORKERS }, (_, n) => worker(n));
  await sleep(2_000);
  check(created.size > 0, `load: ${created.size} tickets created before the faults`);

  const phases: Record<string, number> = {};
  let counted = 0;
  const count503s = (phase: string) => {
    phases[phase] = slow503.length - counted;
    counted = slow503.length;
  };
  count503s('before the faults');

  // 1. Every backend of the server terminated.
  const terminated = await terminateBackends();
  check(terminated > 0, `pg_terminate_backend: ${terminated} backends terminated`);
  await recovery(Date.now(), 'after pg_terminate_backend');
  await sleep(1_000);
  count503s('pg_terminate_backend');

  // 2. A crash and recovery of the whole cluster.
  const restartAt = Date.now();
  await pgCtl('restart', '-m', 'immediate', '-w', '-t', '30');
  console.log(`     pg_ctl restart -m immediate took ${((Date.now() - restartAt) / 1000).toFixed(2)} s`);
  await recovery(Date.now(), 'after pg_ctl restart -m immediate');
  await sleep(1_000);
  count503s('pg_ctl restart -m immediate');

  // 3. The cluster away for a few seconds.
  const stoppedAt = Date.now();
  const createdBeforeStop = created.size;
  await pgCtl('stop', '-m', 'immediate', '-w');
  await sleep(500);
  const healthz = await call('GET', '/healthz');
  const readyz = await call('GET', '/readyz');
  check(healthz.status === 200, `while down: /healthz ${healthz.status}`);
  check(
    is503Problem(readyz),
    `while down: /readyz ${readyz.status} problem+json with Retry-After (${readyz.ms.toFixed(0)} ms)`,
  );
  const during = slow503.length;
  await sleep(3_000);
  check(slow503.length > during, `while down: creations answer 503 (${slow503.length - during} in 3 s)`);
  const startAgain = Date.now();
  await pgCtl('start', '-w', '-t', '30');
  const recoverySeconds = await recovery(startAgain, 'after the cluster is back');
  const outageSeconds = (startAgain + recoverySeconds * 1000 - stoppedAt) / 1000;
  const readyAgain = await until(async () => (await call('GET', '/readyz')).status === 200, 10_000);
  check(readyAgain, '/readyz 200 again');
  await sleep(1_000);
  loading = false;
  await Promise.all(workers);
  count503s('cluster stopped, then started');
  check(created.size > createdBeforeStop, 'creations continue after the outage');

  // Verification: the process lived, and every acknowledged ticket is there, complete.
  check(serverExit === null, 'the server process is alive');
  check(!/shutting down after an error/.test(log()), 'the server never began shutting down');
  check(
    bad.length === 0,
    `every creation answered 201 or 503 problem+json${bad.length ? `: ${bad.slice(0, 3).join('; ')}` : ''}`,
  );
  const slowest = Math.max(0, ...slow503);
  check(
    slowest < ANSWER_BOUND_MS,
    `the slowest 503 took ${slowest.toFixed(0)} ms (bound ${ANSWER_BOUND_MS} ms)`,
  );
  let lost = 0;
  const ids = [...created.keys()];
  for (let i = 0; i < ids.length; i += 8) {
    await Promise.all(
      ids.slice(i, i + 8).map(async (id) => {
        const sent = created.get(id)!;
        const [ticket, messages, history] = await Promise.all([
          call('GET', `/v1/tickets/${id}`),
          call('GET', `/v1/tickets/${id}/messages`),
          call('GET', `/v1/tickets/${id}/history`),
        ]);
        const complete =
          ticket.status === 200 &&
          ticket.body?.subject === sent.subject &&
          messages.status === 200 &&
          (messages.body?.data as { body?: string }[] | undefined)?.some((m) => m.body === sent.body) ===
            true &&
          history.status === 200 &&
          ((history.body?.data as unknown[] | undefined)?.length ?? 0) > 0;
        if (!complete) {
          lost++;
          if (lost <= 3)
            console.log(
              `  lost or incomplete: ${id} (${ticket.status}/${messages.status}/${history.status})`,
            );
        }
      }),
    );
  }
  check(lost === 0, `every acknowledged ticket is there with its message and events (lost writes: ${lost})`);

  console.log('\nFigures');
  console.log(`  tickets acknowledged (201): ${created.size}`);
  console.log(`  answers by status: ${JSON.stringify(Object.fromEntries(statuses))}`);
  console.log(`  503 problem+json with Retry-After: ${slow503.length}, slowest ${slowest.toFixed(0)} ms`);
  for (const [phase, n] of Object.entries(phases)) console.log(`    ${phase}: ${n}`);
  console.log(`  outage (cluster stopped until creations resumed): ${outageSeconds.toFixed(2)} s`);
  console.log(`  recovery after the cluster was back: ${recoverySeconds.toFixed(2)} s`);
  console.log(`  lost writes: ${lost}`);
} catch (error) {
  failures.push(String(error instanceof Error ? error.message : error));
  console.error(`FAIL ${String(error instanceof Error ? error.message : error)}`);
} finally {
  if (failures.length > 0) {
    const tail = existsSync(serverLog)
      ? readFileSync(serverLog, 'utf8').split('\n').slice(-15).join('\n')
      : '';
    console.error(`\nserver log (last lines):\n${tail}`);
  }
  await cleanUp();
  clearTimeout(budget);
}
if (failures.length > 0) {
  console.error(`\n${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('\nfault:db passed');
