// npm run bench:import [-- --scale 0.01] [--keep] [--server-flags="<node flags>"]
//
// Bulk import (docs/import.md) at scale, against PostgreSQL, in a scratch database
// deskroute_import_bench_<pid> created and dropped here (BENCH_DATABASE_URL, else DATABASE_URL,
// else postgres://postgres@127.0.0.1:5432/postgres names the server):
//
//   1. Generate, streamed into a temp file: 20 agents, 5 departments, their memberships, 10,000
//      contacts, then 100,000 tickets of 10 timeline records each (the ticket with its first
//      message, 2 assignments, a transfer, 4 messages, 2 status changes): 1,000,000 records.
//   2. Start the server as production runs it (src/server.ts: the app, the job queue, the
//      scheduler) in a child process with the Node flags of package.json's start script
//      (--server-flags overrides them), so the import runs wherever the importer puts it.
//   3. Baseline, in the same run and on the same server: POST /v1/tickets (one ticket with its
//      first message per request, 4 in flight) for a sample, after a warm-up: records/s.
//   4. POST the file, streamed, to /v1/imports (application/x-ndjson), then poll
//      GET /v1/imports/{id} until finished or failed: elapsed time, records/s, the ratio to the
//      baseline (import records/s over API tickets/s), the server's peak RSS (VmHWM) and CPU.
//   5. Floor probes (import-floor.ts), with the server stopped, in a second scratch database
//      deskroute_import_floor_<pid> on the latest schema: the same history written by bare
//      statements, per record on one connection and on two, and as a set per batch: records/s
//      and CPU per record, and the import's rate against each (--floor-tickets, default 5,000
//      tickets or the bench's count if fewer; 0 skips them).
//
// --scale multiplies the tickets and contacts (0.01: 1,000 tickets, 10,000 records, a quick run).

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { insertAgent } from '../../src/domains/agents/repository.ts';
import { hashPassword } from '../../src/domains/auth/passwords.ts';
import { cpuSnapshot, http, machine, onServer, scratchDatabase, signIn } from './http.ts';
import { importFloor } from './import-floor.ts';

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    'server-flags': { type: 'string' },
    'baseline-sample': { type: 'string' },
    'timeout-minutes': { type: 'string', default: '120' },
    'floor-tickets': { type: 'string' },
  },
});
const SCALE = Number(args.scale);
if (!(SCALE > 0)) throw new Error('--scale must be a positive number');
const TICKETS = Math.max(1, Math.round(100_000 * SCALE));
const CONTACTS = Math.max(1, Math.round(10_000 * SCALE));
const AGENTS = 20;
const DEPARTMENTS = 5;
const RECORDS_PER_TICKET = 10;
const BASELINE = Number(args['baseline-sample'] ?? Math.max(200, Math.round(5_000 * SCALE)));
const TIMEOUT_MS = Number(args['timeout-minutes']) * 60_000;
/** Tickets over 2025, one every ~5 minutes at full scale; each one's history within two days. */
const TICKET_STEP_MS = Math.floor((365 * 24 * 3600 * 1000 - 2 * 86_400_000) / TICKETS);
const FLOOR_TICKETS = Number(args['floor-tickets'] ?? Math.min(TICKETS, 5_000));
if (!(FLOOR_TICKETS >= 0)) throw new Error('--floor-tickets must be 0 or more');
const PASSWORD = 'bench-password-0123456789';

const out = (line = '') => process.stdout.write(`${line}\n`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const rate = (n: number, ms: number) => Math.round((n * 1000) / ms).toLocaleString('en');
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

/** The Node flags of package.json's start script (`node <flags> src/server.ts`). */
function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const words = String(pkg.scripts.start).trim().split(/\s+/);
  if (words[0] !== 'node') throw new Error(`start script does not run node: ${pkg.scripts.start}`);
  return words.slice(1, -1);
}

/** A kB figure of /proc/<pid>/status (VmHWM: peak resident set; VmRSS: current), null without /proc. */
function procStatus(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(
      new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'),
    );
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Writes the import file, streamed; returns its line count split into setup and timeline. */
async function generate(path: string): Promise<{ setup: number; timeline: number; bytes: number }> {
  const file = createWriteStream(path);
  let setup = 0;
  let timeline = 0;
  const write = async (record: object, counted: 'setup' | 'timeline') => {
    if (counted === 'setup') setup++;
    else timeline++;
    if (!file.write(`${JSON.stringify(record)}\n`))
      await new Promise((resolve) => file.once('drain', resolve));
  };
  for (let a = 0; a < AGENTS; a++) {
    await write(
      {
        type: 'agent',
        external_id: `a${a}`,
        email: `agent-${a}@import.bench`,
        name: `Agent ${a}`,
        role: 'agent',
        status: 'active',
      },
      'setup',
    );
  }
  for (let d = 0; d < DEPARTMENTS; d++) {
    await write({ type: 'department', external_id: `d${d}`, name: `Imported ${d}` }, 'setup');
  }
  for (let a = 0; a < AGENTS; a++) {
    const d = a % DEPARTMENTS;
    await write(
      { type: 'membership', external_id: `d${d}:a${a}`, department: `d${d}`, agent: `a${a}`, role: 'solver' },
      'setup',
    );
  }
  for (let c = 0; c < CONTACTS; c++) {
    await write(
      {
        type: 'contact',
        external_id: `c${c}`,
        name: `Customer ${c}`,
        emails: [`customer-${c}@import.bench`],
        phones: [],
      },
      'setup',
    );
  }
  // Tickets over 2025, one every ~5 minutes at full scale; each one's history within two days.
  const start = Date.parse('2025-01-01T00:00:00Z');
  const step = TICKET_STEP_MS;
  const at = (base: number, minutes: number) => new Date(base + minutes * 60_000).toISOString();
  for (let i = 0; i < TICKETS; i++) {
    const t = `t${i}`;
    const base = start + i * step;
    const d = i % DEPARTMENTS;
    const d2 = (i + 1) % DEPARTMENTS;
    const a1 = `a${d}`; // a member of d
    const a2 = `a${d2 + DEPARTMENTS}`; // a member of d2 (agents a5..a9 are in d0..d4 too)
    const records: object[] = [
      {
        type: 'ticket',
        external_id: t,
        created_at: at(base, 0),
        subject: `Where is my order #${100000 + i}?`,
        channel: i % 3 === 0 ? 'chat' : 'email',
        contact: `c${i % CONTACTS}`,
        department: `d${d}`,
        priority: i % 10 === 0 ? 'high' : 'normal',
        tags: i % 4 === 0 ? ['order'] : [],
        message: {
          body: 'Hello, my parcel has not arrived yet. Could you check the tracking, please?',
          author: 'contact',
        },
      },
      { type: 'assignment', external_id: `${t}:1`, ticket: t, at: at(base, 5), assignee: a1, agent: a1 },
      {
        type: 'message',
        external_id: `${t}:2`,
        ticket: t,
        at: at(base, 30),
        kind: 'reply',
        body: 'Checking with the carrier.',
        agent: a1,
      },
      { type: 'status', external_id: `${t}:3`, ticket: t, at: at(base, 30), status: 'answered', agent: a1 },
      {
        type: 'message',
        external_id: `${t}:4`,
        ticket: t,
        at: at(base, 240),
        kind: 'customer',
        body: 'Any news?',
      },
      {
        type: 'transfer',
        external_id: `${t}:5`,
        ticket: t,
        at: at(base, 300),
        department: `d${d2}`,
        agent: a1,
      },
      { type: 'assignment', external_id: `${t}:6`, ticket: t, at: at(base, 301), assignee: a2, agent: a2 },
      {
        type: 'message',
        external_id: `${t}:7`,
        ticket: t,
        at: at(base, 360),
        kind: 'note',
        body: 'Lost in transit; resend.',
        agent: a2,
      },
      {
        type: 'message',
        external_id: `${t}:8`,
        ticket: t,
        at: at(base, 365),
        kind: 'reply',
        body: 'We sent a new parcel.',
        agent: a2,
      },
      { type: 'status', external_id: `${t}:9`, ticket: t, at: at(base, 1440), status: 'resolved', agent: a2 },
    ];
    for (const r of records) await write(r, 'timeline');
  }
  await new Promise<void>((resolve, reject) =>
    file.end((error?: Error | null) => (error ? reject(error) : resolve())),
  );
  return { setup, timeline, bytes: statSync(path).size };
}

/** POST /v1/tickets for `n` tickets, 4 in flight: tickets per second. */
async function baseline(app: string, token: string, n: number): Promise<number> {
  const department = await http('POST', `${app}/v1/departments`, token, { name: 'Baseline' });
  let next = 0;
  const create = () =>
    http('POST', `${app}/v1/tickets`, token, {
      subject: `Where is my order #${next}?`,
      channel: 'email',
      contact: { email: `baseline-${next++}@import.bench`, name: 'Baseline Customer' },
      message: { body: 'Hello, my parcel has not arrived yet. Could you check the tracking, please?' },
      department_id: department.id,
    });
  const run = async (count: number) => {
    let left = count;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (left-- > 0) await create();
      }),
    );
  };
  await run(Math.min(100, n)); // warm-up: connections, caches, compiled schemas
  const t0 = performance.now();
  await run(n);
  return (n * 1000) / (performance.now() - t0);
}

/** The server as production runs it: src/server.ts in its own process, jobs and scheduler included. */
interface Server {
  child: ChildProcess;
  pid: number;
  app: string;
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function startServer(databaseUrl: string, flags: string[]): Promise<Server> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [...flags, new URL('../../src/server.ts', import.meta.url).pathname],
    {
      // The rate limiter stays on (it is part of the request path) but far above what the bench sends.
      env: {
        ...process.env,
        DATABASE_URL: databaseUrl,
        JWT_SECRET: randomBytes(32).toString('base64url'),
        HOST: '127.0.0.1',
        PORT: String(port),
        LOG_LEVEL: 'error',
        IMAP_WATCHER: 'false',
        RATE_LIMIT_MAX: '1000000000',
        RATE_LIMIT_PER_ADDRESS_MAX: '1000000000',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const app = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before it was ready`))),
  );
  exited.catch(() => {});
  const deadline = performance.now() + 120_000;
  while (performance.now() < deadline) {
    const ready = await Promise.race([
      fetch(`${app}/healthz`).then(
        (r) => r.status === 200,
        () => false,
      ),
      exited,
    ]);
    if (ready) return { child, pid: child.pid!, app };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  child.kill('SIGKILL');
  throw new Error('server not ready after 120 s');
}

/** SIGTERM (close-with-grace finishes in-flight work), SIGKILL after 10 s. */
async function stopServer(server: Server | undefined): Promise<void> {
  if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

interface ImportResource {
  id: string;
  state: 'queued' | 'running' | 'finished' | 'failed';
  counts: { read: number; created: number; updated: number; skipped: number; failed: number };
  started_at: string | null;
  finished_at: string | null;
}

/**
 * When the server's peak resident set grew, sampled every 100 ms from the upload on (the polls of
 * a second miss a short spike): each step of 2 MB or more with the time and the records read by
 * the last poll, so that a peak can be matched with what the import was doing.
 */
function peakSteps(pid: number, t0: number, read: () => number) {
  const steps: { ms: number; read: number; kb: number }[] = [];
  let last = procStatus(pid, 'VmHWM') ?? 0;
  const timer = setInterval(() => {
    const kb = procStatus(pid, 'VmHWM') ?? 0;
    if (kb - last < 2048) return;
    last = kb;
    steps.push({ ms: performance.now() - t0, read: read(), kb });
  }, 100);
  return {
    stop: () => clearInterval(timer),
    text: () =>
      steps.map((s) => `${mb(s.kb)} at ${seconds(s.ms)} (${s.read.toLocaleString('en')} read)`).join(', ') ||
      'none',
  };
}

async function runImport(servers: Server, session: () => Promise<string>, path: string, lines: number) {
  let token = await session();
  const t0 = performance.now();
  const cpuBefore = cpuSnapshot(servers.pid);
  let readSoFar = 0;
  const steps = peakSteps(servers.pid, t0, () => readSoFar);
  const res = await fetch(`${servers.app}/v1/imports?source=bench`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-ndjson' },
    body: Readable.toWeb(createReadStream(path)) as ReadableStream,
    duplex: 'half',
  } as RequestInit & { duplex: 'half' });
  const text = await res.text();
  if (res.status !== 202) throw new Error(`POST /v1/imports: ${res.status} ${text}`);
  const uploaded = performance.now() - t0;
  let resource = JSON.parse(text) as ImportResource;
  out(
    `  uploaded ${lines.toLocaleString('en')} lines in ${seconds(uploaded)} (202, import ${resource.id}); server peak RSS so far ${mb(procStatus(servers.pid, 'VmHWM') ?? 0)}`,
  );
  let peakRss = 0;
  let lastReport = performance.now();
  while (resource.state !== 'finished' && resource.state !== 'failed') {
    if (performance.now() - t0 > TIMEOUT_MS)
      throw new Error(`import not finished after ${args['timeout-minutes']} min`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    peakRss = Math.max(peakRss, procStatus(servers.pid, 'VmRSS') ?? 0);
    let answer = await fetch(`${servers.app}/v1/imports/${resource.id}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (answer.status === 401) {
      token = await session(); // a long import outlives a session token
      answer = await fetch(`${servers.app}/v1/imports/${resource.id}`, {
        headers: { authorization: `Bearer ${token}` },
      });
    }
    if (answer.status !== 200)
      throw new Error(`GET /v1/imports/${resource.id}: ${answer.status} ${await answer.text()}`);
    resource = (await answer.json()) as ImportResource;
    readSoFar = resource.counts.read;
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      const read = resource.counts.read;
      out(
        `  ${seconds(performance.now() - t0)}: ${resource.state}, ${read.toLocaleString('en')} read (${rate(read, performance.now() - t0)}/s so far)`,
      );
    }
  }
  const elapsed = performance.now() - t0;
  const cpuAfter = cpuSnapshot(servers.pid);
  steps.stop();
  return {
    resource,
    elapsed,
    token,
    peakRss,
    peakSteps: steps.text(),
    cpu:
      cpuBefore && cpuAfter
        ? { server: cpuAfter.server - cpuBefore.server, postgres: cpuAfter.postgres - cpuBefore.postgres }
        : null,
  };
}

/** Where the floor probes run (dropped after them, and on an interrupt). */
const FLOOR_SCRATCH = scratchDatabase('deskroute_import_floor');

/** Step 5: the floor probes, in a scratch database of their own, with the server stopped. */
async function floorProbes(serverUrl: string, importRate: number): Promise<void> {
  const { scratch, scratchUrl } = FLOOR_SCRATCH;
  const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);
  out();
  out(
    `floor probes: the same history by bare statements, ${FLOOR_TICKETS.toLocaleString('en')} tickets ` +
      `(${(FLOOR_TICKETS * RECORDS_PER_TICKET).toLocaleString('en')} records) each, in ${scratch} (${machine()})`,
  );
  await admin((c) => c.query(`create database ${scratch}`));
  try {
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: scratchUrl, max: 1 }) }),
    });
    await migrateToLatest(db).finally(() => db.destroy());
    const figures = await importFloor(
      scratchUrl,
      FLOOR_TICKETS,
      TICKET_STEP_MS,
      () => cpuSnapshot(process.pid, scratch)?.backends ?? 0,
    );
    for (const f of figures) {
      const perSecond = f.records / f.seconds;
      out(
        `  ${f.name.padEnd(15)} ${rate(f.records, f.seconds * 1000).padStart(6)} records/s; CPU per record: ` +
          `client ${f.clientMs.toFixed(3)} ms, its PostgreSQL backends ${f.postgresMs.toFixed(3)} ms; ` +
          `the import ran at ${(importRate / perSecond).toFixed(2)}x this`,
      );
    }
    const target = 1_000_000 / 300;
    out(
      `  (the target, 1,000,000 records in 5 minutes, is ${rate(1_000_000, 300_000)} records/s: ` +
        `${figures.map((f) => `${f.name} ${(f.records / f.seconds / target).toFixed(2)}x of it`).join(', ')})`,
    );
  } finally {
    await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
  }
}

async function main() {
  const started = performance.now();
  const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_import_bench');
  const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);
  const flags =
    args['server-flags'] !== undefined ? args['server-flags'].split(/\s+/).filter(Boolean) : startFlags();
  const file = join(tmpdir(), `deskroute-import-bench-${process.pid}.ndjson`);
  out(
    `bench:import on ${new URL(serverUrl).host}, scratch database ${scratch}, scale ${SCALE} (${machine()})`,
  );

  const t0 = performance.now();
  const generated = await generate(file);
  out(
    `generated ${(generated.setup + generated.timeline).toLocaleString('en')} records (${generated.setup.toLocaleString('en')} agents, departments, ` +
      `memberships and contacts; ${generated.timeline.toLocaleString('en')} tickets and timeline records, ${TICKETS.toLocaleString('en')} x ${RECORDS_PER_TICKET}), ` +
      `${(generated.bytes / 1024 / 1024).toFixed(0)} MB in ${seconds(performance.now() - t0)}`,
  );

  let servers: Server | undefined;
  let importRate: number | undefined;
  await admin((c) => c.query(`create database ${scratch}`));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      servers?.child.kill('SIGKILL');
      rmSync(file, { force: true });
      admin(async (c) => {
        await c.query(`drop database if exists ${scratch} with (force)`);
        await c.query(`drop database if exists ${FLOOR_SCRATCH.scratch} with (force)`);
      }).finally(() => process.exit(130));
    });
  }
  const pool = new pg.Pool({ connectionString: scratchUrl, max: 2 });
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrateToLatest(db);
    const owner = await insertAgent(db, {
      name: 'Bench owner',
      email: 'owner@import.bench',
      role: 'owner',
      password_hash: await hashPassword(PASSWORD),
    });
    servers = await startServer(scratchUrl, flags);
    out(
      `server: node ${flags.join(' ') || '(default V8 heap settings)'}, pid ${servers.pid}, peak RSS at start ${mb(procStatus(servers.pid, 'VmHWM') ?? 0)}`,
    );
    const app = servers.app;
    const session = () => signIn(app, owner.email, PASSWORD);

    out();
    out(
      `baseline: POST /v1/tickets, ${BASELINE.toLocaleString('en')} tickets (4 in flight, after 100 warm-up)`,
    );
    const apiRate = await baseline(app, await session(), BASELINE);
    out(`  ${apiRate.toFixed(0)} tickets/s (one record each: a ticket with its first message)`);
    const hwmBefore = procStatus(servers.pid, 'VmHWM') ?? 0;

    out();
    out(`import: POST /v1/imports (streamed), then GET /v1/imports/{id} every second`);
    const lines = generated.setup + generated.timeline;
    const {
      resource,
      elapsed,
      token,
      peakRss,
      peakSteps: grew,
      cpu,
    } = await runImport(servers, session, file, lines);
    const hwm = procStatus(servers.pid, 'VmHWM') ?? 0;
    const serverSide =
      resource.started_at && resource.finished_at
        ? Date.parse(resource.finished_at) - Date.parse(resource.started_at)
        : null;
    out(
      `  ${resource.state} in ${seconds(elapsed)} (upload to finished)${serverSide !== null ? `, ${seconds(serverSide)} from started_at to finished_at` : ''}`,
    );
    out(`  counts ${JSON.stringify(resource.counts)}`);
    importRate = (lines * 1000) / elapsed;
    out(
      `  ${importRate.toFixed(0)} records/s; ratio to the API baseline (records/s over tickets/s): ${(importRate / apiRate).toFixed(2)}`,
    );
    out(
      `  server peak RSS (VmHWM) ${mb(hwm)} (${mb(hwmBefore)} before the import; highest VmRSS seen while polling ${mb(peakRss)})`,
    );
    out(`  the peak grew (2 MB or more; times from the upload's start): ${grew}`);
    if (cpu) {
      out(
        `  CPU: server ${cpu.server.toFixed(0)} s, PostgreSQL (all its processes) ${cpu.postgres.toFixed(0)} s; ` +
          `per record ${((cpu.server * 1000) / lines).toFixed(3)} ms + ${((cpu.postgres * 1000) / lines).toFixed(3)} ms`,
      );
    }
    if (resource.counts.failed > 0) {
      const errors = await http('GET', `${app}/v1/imports/${resource.id}/errors?limit=5`, token);
      out(`  first errors: ${JSON.stringify(errors)}`);
    }
    const tickets = await db
      .selectFrom('tickets')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .executeTakeFirstOrThrow();
    out(
      `  tickets in the database: ${Number(tickets.n).toLocaleString('en')} (${TICKETS.toLocaleString('en')} imported + ${BASELINE + Math.min(100, BASELINE)} baseline expected)`,
    );
  } finally {
    await stopServer(servers);
    await db.destroy();
    rmSync(file, { force: true });
    if (importRate !== undefined && FLOOR_TICKETS > 0) {
      // A failed probe must not keep the import's database from being dropped below.
      await floorProbes(serverUrl, importRate).catch((error: Error) =>
        out(`floor probes failed: ${error.message}`),
      );
    }
    out();
    if (args.keep) {
      out(`done in ${seconds(performance.now() - started)}; kept ${scratchUrl} (drop it when done)`);
    } else {
      await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
      out(`done in ${seconds(performance.now() - started)}; dropped ${scratch}`);
    }
  }
}

await main();
