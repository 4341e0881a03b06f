// What the HTTP benchmarks (tickets.ts, rules.ts, sla.ts, ...) share: the scratch database and
// the servers of tickets-server.ts, a JSON request, an autocannon load of POSTs with a fresh body
// per request, where the CPU goes, and the number of statements one ticket creation sends.
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import autocannon from 'autocannon';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool, roundTrips } from '../../src/db/client.ts';
import type { Database } from '../../src/db/types.ts';
import { jsonRequest } from '../json-request.ts';

/** One JSON request; throws on any status from 300 up. */
export async function http(method: string, url: string, token: string | null, body?: unknown) {
  const res = await jsonRequest(method, url, { token, body });
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.text}`);
  return res.text ? JSON.parse(res.text) : null;
}

/** A session token for an agent, by email and password. */
export async function signIn(base: string, email: string, password: string): Promise<string> {
  return (await http('POST', `${base}/v1/auth/token`, null, { email, password })).access_token;
}

/** CPU seconds used so far: by the server process, by all PostgreSQL processes, by this one. */
export interface CpuSnapshot {
  server: number;
  postgres: number;
  /**
   * The backends connected to the bench's database alone (0 unless it was named): on a shared
   * machine, what the bench's statements cost whatever else the server runs. Backends that ended
   * between the snapshots are missing: use it across loads whose pool stays connected.
   */
  backends: number;
  loadGenerator: number;
}

// /proc/<pid>/stat: utime and stime are fields 14 and 15, cutime and cstime (children that
// ended and were waited for) 16 and 17, in clock ticks (100 per second on Linux).
const TICKS = 100;
function processCpu(pid: string): { name: string; seconds: number; children: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    return {
      name,
      seconds: (Number(fields[11]) + Number(fields[12])) / TICKS,
      children: (Number(fields[13]) + Number(fields[14])) / TICKS,
    };
  } catch {
    return null; // gone between the listing and the read
  }
}

/** CPU seconds one process has used so far (Linux /proc; null elsewhere or once it is gone). */
export function processCpuSeconds(pid: number): number | null {
  return processCpu(String(pid))?.seconds ?? null;
}

/** Whether a PostgreSQL process serves `database`: its title is "postgres: [cluster: ]user database host state". */
function servesDatabase(pid: string, database: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').includes(` ${database} `);
  } catch {
    return false;
  }
}

/**
 * Where the machine's CPU goes during a load (Linux /proc; null elsewhere). PostgreSQL counts
 * every postgres process of the machine: run the bench on an otherwise idle server. With
 * `database`, `backends` counts the backends serving that database alone.
 */
export function cpuSnapshot(serverPid: number, database?: string): CpuSnapshot | null {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return null;
  }
  let postgres = 0;
  let backends = 0;
  for (const pid of pids) {
    const cpu = processCpu(pid);
    if (cpu?.name !== 'postgres') continue;
    // Backends and autovacuum workers come and go: the postmaster's children time keeps theirs.
    postgres += cpu.seconds + cpu.children;
    if (database && servesDatabase(pid, database)) backends += cpu.seconds;
  }
  const own = process.cpuUsage();
  return {
    server: processCpu(String(serverPid))?.seconds ?? 0,
    postgres,
    backends,
    loadGenerator: (own.user + own.system) / 1e6,
  };
}

/** CPU milliseconds per request between two snapshots (null without /proc). */
export function cpuPerRequest(
  before: CpuSnapshot | null,
  after: CpuSnapshot | null,
  requests: number,
): CpuSnapshot | null {
  if (!before || !after || requests === 0) return null;
  const per = (key: keyof CpuSnapshot) => ((after[key] - before[key]) * 1000) / requests;
  return {
    server: per('server'),
    postgres: per('postgres'),
    backends: per('backends'),
    loadGenerator: per('loadGenerator'),
  };
}

/** The line the HTTP benches print for a load's CPU per request. */
export function cpuLine(cpu: CpuSnapshot | null): string {
  if (!cpu) return 'CPU per request: not measured (no /proc)';
  const backends = cpu.backends > 0 ? ` (its backends for this bench ${cpu.backends.toFixed(2)})` : '';
  return `CPU per request (ms): server ${cpu.server.toFixed(2)}, PostgreSQL ${cpu.postgres.toFixed(2)}${backends}, load generator ${cpu.loadGenerator.toFixed(2)}`;
}

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
  statuses: string;
}

/** POSTs `body()` to `url` + `path` over `connections` connections for `duration` seconds. */
export async function postLoad(options: {
  url: string;
  path: string;
  headers: Record<string, string>;
  body: () => string;
  duration: number;
  connections: number;
}): Promise<Load> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.duration,
    requests: [
      {
        method: 'POST',
        path: options.path,
        headers: { 'content-type': 'application/json', ...options.headers },
        setupRequest: (request) => ({ ...request, body: options.body() }),
      },
    ],
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    statuses: Object.entries(result.statusCodeStats ?? {})
      .map(([code, stat]) => `${code}: ${stat.count ?? 0}`)
      .join(', '),
  };
}

/**
 * Round trips to PostgreSQL of one POST /v1/tickets, counted by the app's own client on an app
 * in this process (pipelined BEGIN and COMMIT travel with a statement: not counted apart): the
 * mean over `samples` creations after one unmeasured.
 */
export async function queriesPerCreation(
  databaseUrl: string,
  authorization: string,
  payload: () => string | object,
  samples: number,
): Promise<number> {
  const counted = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: createPool(databaseUrl, { max: 1 }) }),
  });
  const secret = randomBytes(32).toString('base64url');
  const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent', JWT_SECRET: secret }), {
    db: counted,
    databaseUrl,
    jwtSecret: secret,
  });
  try {
    // As a running server does: its credentials cache listening (plugins/auth-cache.ts).
    await app.ready();
    for (let i = 0; i < 200 && !app.authCache.listening; i++) await new Promise((r) => setTimeout(r, 25));
    const send = () =>
      app.inject({
        method: 'POST',
        url: '/v1/tickets',
        headers: { authorization, 'content-type': 'application/json' },
        payload: payload(),
      });
    await send();
    const counts: number[] = [];
    for (let i = 0; i < samples; i++) {
      const before = roundTrips();
      const res = await send();
      if (res.statusCode !== 201) throw new Error(`POST /v1/tickets: ${res.statusCode} ${res.body}`);
      counts.push(roundTrips() - before);
    }
    return counts.reduce((a, b) => a + b, 0) / counts.length;
  } finally {
    await app.close();
    await counted.destroy();
  }
}

/**
 * The PostgreSQL a bench runs against (BENCH_DATABASE_URL, else DATABASE_URL, else the local
 * server) and the scratch database it creates there and drops at the end: `<prefix>_<pid>`.
 */
export function scratchDatabase(prefix: string): { serverUrl: string; scratch: string; scratchUrl: string } {
  // A script, not the server: the bench's own variable is read here; DATABASE_URL goes through
  // the config module like everywhere else.
  const serverUrl =
    process.env.BENCH_DATABASE_URL ||
    loadConfig().databaseUrl ||
    'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = `${prefix}_${process.pid}`;
  const url = new URL(serverUrl);
  url.pathname = `/${scratch}`;
  return { serverUrl, scratch, scratchUrl: url.toString() };
}

/** Runs `fn` with a client on the server's own database: creating and dropping the scratch one. */
export async function onServer<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

// Other work on the machine (a parallel test run) shows up in every figure, p99 first: say so.
export const machine = () => `load average ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs`;

/** The value at quantile `q` of an ascending list (nearest rank). */
export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export interface BenchServers {
  child: ChildProcess;
  pid: number;
  /** The real app. */
  app: string;
  /** The bare fastify + pg routes and the floor probes. */
  bare: string;
}

/**
 * tickets-server.ts in a child process on the scratch database, so the load generator has an
 * event loop of its own; resolves once both servers listen.
 */
export function startTicketsServer(
  scratchUrl: string,
  jwtSecret: string,
  execArgv: string[] = process.execArgv,
): Promise<BenchServers> {
  const child = fork(new URL('./tickets-server.ts', import.meta.url), [scratchUrl, jwtSecret], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv,
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => {
      const ports = m as { app: number; bare: number };
      resolve({
        child,
        pid: child.pid!,
        app: `http://127.0.0.1:${ports.app}`,
        bare: `http://127.0.0.1:${ports.bare}`,
      });
    });
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
}

/** Asks tickets-server.ts to stop and waits for it (killed after 5 s). */
export async function stopTicketsServer(servers: BenchServers | undefined): Promise<void> {
  if (!servers || servers.child.exitCode !== null || !servers.child.connected) return;
  const exited = new Promise((resolve) => servers.child.once('exit', resolve));
  servers.child.send('stop');
  setTimeout(() => servers.child.kill('SIGKILL'), 5000).unref();
  await exited;
}
