// npm run bench:events
//
// What events cost and how fast they arrive, against PostgreSQL, in a scratch database
// deskroute_events_bench_<pid> created and dropped here (BENCH_DATABASE_URL, else DATABASE_URL,
// else postgres://postgres@127.0.0.1:5432/postgres names the server). The server is the real one:
// `node <npm start's flags> src/server.ts` in a child process with DATABASE_URL and
// WEBHOOKS_ALLOW_PRIVATE=true, driven only through its HTTP API. What it sends goes to a second
// child process (events-listener.ts): webhook receivers and SSE subscribers on raw sockets.
//
//   (a) ticket creation (POST /v1/tickets by API token, autocannon, a new contact per ticket, as
//       in bench:tickets) with 10 active webhooks against none, in the same run on the same
//       database: phases alternate none / with / with / none ... (--rounds, 4: two phases of 10 s
//       differ by up to 8 % with nothing changed, so two rounds left the ratio to chance), the
//       webhooks switched by PATCH active, and the deliveries of a "with" phase drained before
//       the next phase.
//       Target: throughput with webhooks at most 10 % lower. Also printed: the deliveries/s the
//       server sustained while 10 webhooks had a backlog.
//   (b) commit-to-delivery: creations at a steady --rate (200/s) for --steady seconds (30), one
//       webhook on ticket.created; latency from each creation's 201 to the receiver getting its
//       delivery, p50/p99, and the deliveries/s received. Target: p99 < 1 s.
//   (c) SSE fan-out: --subscribers (1,000) streams on GET /v1/events/stream, held by agents
//       (role agent, readers of the one department; --sse-as admin for the owner instead), then
//       creations at --sse-rate (20/s) for --sse-seconds (15): latency from each creation's 201 to
//       each subscriber receiving its ticket.created, p50/p99 over every (subscriber, ticket).
//       Target: p99 < 250 ms.
// A part whose endpoints the server does not have (404) is reported as not run.
// --env KEY=VALUE (repeatable) passes settings to the server; --keep keeps the scratch database.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { jsonRequest } from '../json-request.ts';
import {
  cpuLine,
  cpuPerRequest,
  cpuSnapshot,
  machine,
  onServer,
  postLoad,
  processCpuSeconds,
  http as request,
  scratchDatabase,
} from './http.ts';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '4' },
    webhooks: { type: 'string', default: '10' },
    'drain-timeout': { type: 'string', default: '600' },
    rate: { type: 'string', default: '200' },
    steady: { type: 'string', default: '30' },
    subscribers: { type: 'string', default: '1000' },
    'sse-as': { type: 'string', default: 'agents' },
    'sse-rate': { type: 'string', default: '20' },
    'sse-seconds': { type: 'string', default: '15' },
    only: { type: 'string' },
    env: { type: 'string', multiple: true, default: [] },
    keep: { type: 'boolean', default: false },
  },
});
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const ROUNDS = Number(args.rounds);
const WEBHOOKS = Number(args.webhooks);
const DRAIN_TIMEOUT_MS = Number(args['drain-timeout']) * 1000;
const RATE = Number(args.rate);
const STEADY_SECONDS = Number(args.steady);
const SUBSCRIBERS = Number(args.subscribers);
const SSE_RATE = Number(args['sse-rate']);
const SSE_SECONDS = Number(args['sse-seconds']);
const PARTS = new Set((args.only ?? 'a,b,c').split(','));
const PASSWORD = 'bench-password-0123456789';
const OWNER_EMAIL = 'owner@bench.example';

const { serverUrl, scratch, scratchUrl } = scratchDatabase('deskroute_events_bench');

const out = (line = '') => process.stdout.write(`${line}\n`);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const msText = (n: number | null) => (n === null ? '-' : `${n.toFixed(1)} ms`);

/** CPU seconds a process has used (Linux /proc; 0 elsewhere). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** How busy the server and the listener were over a span: which one was the bottleneck. */
function busyLine(
  server: Server,
  listener: Listener,
  since: { at: number; server: number; listener: number },
) {
  const seconds = (now() - since.at) / 1000;
  const pct = (cpu: number) => `${((cpu / seconds) * 100).toFixed(0)} %`;
  return `CPU over those ${seconds.toFixed(1)} s: server ${pct(cpuSeconds(server.child.pid) - since.server)} of a core, listener ${pct(cpuSeconds(listener.child.pid) - since.listener)}`;
}
const busySince = (server: Server, listener: Listener) => ({
  at: now(),
  server: cpuSeconds(server.child.pid),
  listener: cpuSeconds(listener.child.pid),
});

/**
 * The feed hands out only rows below the oldest transaction still running that holds a
 * transaction id, anywhere in the PostgreSQL cluster (pg_snapshot_xmin: ids are cluster-wide).
 * A long writing transaction, in any database (a bulk load, CREATE or DROP DATABASE of a test
 * run), therefore holds every event back until it ends. Sampled during a phase, so that a slow
 * figure can be told from a held-back horizon.
 */
function sampleHorizon(client: pg.Client) {
  const samples: { ageMs: number; where: string }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const { rows } = await client.query(
          `select coalesce(extract(epoch from clock_timestamp() - xact_start) * 1000, 0)::float8 as age_ms,
             datname || ': ' || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 60) as what
           from pg_stat_activity where backend_xid is not null order by xact_start limit 1`,
        );
        samples.push({ ageMs: rows[0]?.age_ms ?? 0, where: rows[0]?.what ?? '' });
      } catch {}
      await sleep(200);
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    const worst = samples.reduce((a, b) => (b.ageMs > a.ageMs ? b : a), { ageMs: 0, where: '' });
    const held = samples.filter((x) => x.ageMs > 250).length;
    return (
      `feed horizon: the oldest writing transaction in the cluster was up to ${(worst.ageMs / 1000).toFixed(1)} s old` +
      `${worst.where ? ` (${worst.where})` : ''}; older than 250 ms in ${held} of ${samples.length} samples`
    );
  };
}

const admin = <T>(fn: (client: pg.Client) => Promise<T>) => onServer(serverUrl, fn);

/** The Node flags of package.json's start script (`node <flags> src/server.ts`). */
function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const words = String(pkg.scripts.start).trim().split(/\s+/);
  if (words[0] !== 'node') throw new Error(`start script does not run node: ${pkg.scripts.start}`);
  return words.slice(1, -1);
}

interface Server {
  child: ChildProcess;
  base: string;
  output(): string;
}

/** `node src/server.ts` on a free port of 127.0.0.1, up when /healthz answers. */
async function startServer(): Promise<Server> {
  const port = await new Promise<number>((resolve) => {
    const probe = http.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
  const extra = Object.fromEntries(
    (args.env as string[]).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const child = spawn(
    process.execPath,
    [...startFlags(), new URL('../../src/server.ts', import.meta.url).pathname],
    {
      env: {
        PATH: process.env.PATH,
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: scratchUrl,
        WEBHOOKS_ALLOW_PRIVATE: 'true',
        JWT_SECRET: randomBytes(32).toString('base64url'),
        JWT_TTL_SECONDS: '3600',
        LOG_LEVEL: 'warn',
        DESKROUTE_ADMIN_EMAIL: OWNER_EMAIL,
        DESKROUTE_ADMIN_PASSWORD: PASSWORD,
        // Part of the request path, kept on, but far above what the bench sends.
        RATE_LIMIT_MAX: '1000000000',
        RATE_LIMIT_PER_ADDRESS_MAX: '1000000000',
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  // The server's log lines (warn and up) and errors, kept for when something goes wrong; read
  // all along, so that a full pipe never slows the server down.
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.setEncoding('utf8');
    let partial = '';
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      // stdout also carries the start-up banner: only its JSON log lines are kept.
      const kept = stream === child.stderr ? lines : lines.filter((l) => l.startsWith('{'));
      if (kept.length) output = `${output}${kept.join('\n')}\n`.slice(-20_000);
    });
  }
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}): ${output}`);
    if (Date.now() > deadline) throw new Error(`server did not come up within 90 s: ${output}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    await sleep(100);
  }
  return { child, base, output: () => output };
}

interface Listener {
  child: ChildProcess;
  base: string;
  ask<T = any>(command: Record<string, unknown>): Promise<T>;
}

function startListener(): Promise<Listener> {
  const child = fork(new URL('./events-listener.ts', import.meta.url), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const waiting = new Map<number, (m: unknown) => void>();
  return new Promise((resolve, reject) => {
    child.on('message', (m: { id?: number; port?: number }) => {
      if (m.port) {
        resolve({
          child,
          base: `http://127.0.0.1:${m.port}`,
          ask: (command) =>
            new Promise((answer) => {
              const id = next++;
              waiting.set(id, answer as (m: unknown) => void);
              child.send({ ...command, id });
            }),
        });
      } else if (m.id !== undefined) {
        waiting.get(m.id)?.(m);
        waiting.delete(m.id);
      }
    });
    child.once('exit', (code) => reject(new Error(`listener exited with ${code}`)));
  });
}

// A new customer per ticket, as in bench:tickets: the contact look-up misses and a contact and
// its email are created.
let ticketNumber = 0;
function ticketBody(departmentId: string): string {
  const n = ticketNumber++;
  return JSON.stringify({
    subject: `Where is my order #${100000 + n}?`,
    channel: 'email',
    contact: { email: `customer-${n}-${process.pid}@bench.example`, name: 'Bench Customer' },
    message: { body: 'Hello, my parcel has not arrived yet. Could you check the tracking, please?' },
    department_id: departmentId,
  });
}

interface Steady {
  /** ticket id -> when its 201 arrived */
  created: Map<string, number>;
  sent: number;
  failed: Record<string, number>;
  lateStarts: number;
  responseP50: number;
  responseP99: number;
  from: number;
  to: number;
}

/**
 * Creations at a steady `rate` for `seconds`, open loop: the n-th request leaves at
 * start + n / rate whatever the earlier ones are doing, as real traffic does (a closed loop
 * would slow down with the server and hide its queueing). Requests that could not leave on time
 * because `maxInFlight` were out are counted as late starts.
 */
async function steadyCreations(
  base: string,
  token: string,
  departmentId: string,
  rate: number,
  seconds: number,
): Promise<Steady> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const url = new URL('/v1/tickets', base);
  const created = new Map<string, number>();
  const failed: Record<string, number> = {};
  const responses: number[] = [];
  const total = Math.round(rate * seconds);
  const maxInFlight = 256;
  let sent = 0;
  let inFlight = 0;
  let lateStarts = 0;
  const from = now();
  const one = () =>
    new Promise<void>((resolve) => {
      const body = ticketBody(departmentId);
      const t0 = now();
      const req = http.request(
        url,
        {
          method: 'POST',
          agent,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => {
            const at = now();
            if (res.statusCode === 201) {
              created.set(JSON.parse(text).id, at);
              responses.push(at - t0);
            } else failed[String(res.statusCode)] = (failed[String(res.statusCode)] ?? 0) + 1;
            resolve();
          });
        },
      );
      req.on('error', (e) => {
        failed[e.message] = (failed[e.message] ?? 0) + 1;
        resolve();
      });
      req.end(body);
    });
  const all: Promise<void>[] = [];
  await new Promise<void>((done) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((now() - from) / 1000) * rate) + 1);
      while (sent < due && inFlight < maxInFlight) {
        // Held back by maxInFlight for more than 100 ms past its time: the server is not keeping up.
        if (now() - (from + (sent / rate) * 1000) > 100) lateStarts++;
        sent++;
        inFlight++;
        all.push(
          one().finally(() => {
            inFlight--;
          }),
        );
      }
      if (sent >= total) done();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(all);
  agent.destroy();
  responses.sort((a, b) => a - b);
  const q = (p: number) =>
    responses[Math.min(responses.length - 1, Math.ceil(p * responses.length) - 1)] ?? 0;
  return {
    created,
    sent,
    failed,
    lateStarts,
    responseP50: q(0.5),
    responseP99: q(0.99),
    from,
    to: now(),
  };
}

/**
 * Waits until the receivers' count stops growing for 10 s (or `expected` arrived, or timeout):
 * a queue under load delivers in bursts with pauses of several seconds between them.
 */
async function drain(listener: Listener, expected: number | null): Promise<{ total: number; ms: number }> {
  const started = now();
  let last = -1;
  let stableSince = now();
  for (;;) {
    const { total } = await listener.ask<{ total: number }>({ cmd: 'counts' });
    if (expected !== null && total >= expected) return { total, ms: now() - started };
    if (total !== last) {
      last = total;
      stableSince = now();
    } else if (now() - stableSince > 10_000) return { total, ms: stableSince - started };
    if (now() - started > DRAIN_TIMEOUT_MS) return { total, ms: now() - started };
    await sleep(250);
  }
}

/**
 * Brings every phase of (a) to the same start: the server idle (under 5 % of a core over a whole
 * second, so the feed's consumers have caught up with the load before; at most 60 s), then
 * `VACUUM ANALYZE`. Without it a phase inherits the one before: a drain leaves 200,000 and more
 * dead delivery and job rows (autovacuum is off on these machines; a production database's would
 * clean them up), which the next phase's dispatch and deliveries wade through, and the phase
 * after the warm-up spends part of its time on the warm-up's events.
 */
async function settle(pid: number, client: pg.Client): Promise<{ idleMs: number; vacuumMs: number }> {
  const started = now();
  let last = processCpuSeconds(pid);
  while (now() - started < 60_000) {
    await sleep(1000);
    const cpu = processCpuSeconds(pid);
    if (cpu === null || last === null) break; // no /proc: nothing to wait for
    const busy = cpu - last;
    last = cpu;
    if (busy < 0.05) break;
  }
  const idle = now();
  await client.query('vacuum analyze');
  return { idleMs: idle - started, vacuumMs: now() - idle };
}

/** Whether the server has a route: 404 means the branch that builds it is not merged. */
async function has(base: string, token: string, path: string): Promise<boolean> {
  const res = await jsonRequest('GET', `${base}${path}`, { token, signal: AbortSignal.timeout(5000) }).catch(
    () => null,
  );
  return res !== null && res.status !== 404;
}

async function hasStream(base: string, token: string): Promise<boolean> {
  const status = await new Promise<number>((resolve) => {
    const req = http.get(
      `${base}/v1/events/stream`,
      { headers: { authorization: `Bearer ${token}` } },
      (res) => {
        resolve(res.statusCode ?? 0);
        req.destroy();
      },
    );
    req.on('error', () => resolve(0));
  });
  return status !== 404 && status !== 0;
}

async function main() {
  const started = performance.now();
  out(`bench:events on ${new URL(serverUrl).host}, scratch database ${scratch} (${machine()})`);
  await admin((c) => c.query(`create database ${scratch}`));
  let server: Server | undefined;
  let listener: Listener | undefined;
  const cleanup = async () => {
    // Both children are ours; nothing else is signalled.
    if (server && server.child.exitCode === null) server.child.kill('SIGKILL');
    if (listener && listener.child.exitCode === null) listener.child.kill('SIGKILL');
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      cleanup().finally(() =>
        admin((c) => c.query(`drop database if exists ${scratch} with (force)`)).finally(() =>
          process.exit(130),
        ),
      );
    });
  }
  const client = new pg.Client({ connectionString: scratchUrl });
  client.on('error', () => {});
  try {
    listener = await startListener();
    const starting = performance.now();
    server = await startServer();
    // From spawning to /healthz answering, on an empty database (every migration runs first).
    out(`server up in ${((performance.now() - starting) / 1000).toFixed(1)} s (migrations included)`);
    await client.connect();
    const base = server.base;
    const session = (
      await request('POST', `${base}/v1/auth/token`, null, { email: OWNER_EMAIL, password: PASSWORD })
    ).access_token as string;
    const department = await request('POST', `${base}/v1/departments`, session, { name: 'Support' });
    const { secret } = await request('POST', `${base}/v1/api-tokens`, session, {
      name: 'bench integration',
      scopes: ['read', 'write'],
    });
    const auth = { authorization: `Bearer ${secret}` };
    const hasWebhooks = await has(base, session, '/v1/webhooks');
    const hasFeed = await has(base, session, '/v1/events?limit=1');
    const hasSse = await hasStream(base, session);
    out(
      `server endpoints: /v1/events ${hasFeed ? 'yes' : 'MISSING'}, /v1/webhooks ${hasWebhooks ? 'yes' : 'MISSING'}, ` +
        `/v1/events/stream ${hasSse ? 'yes' : 'MISSING'}`,
    );

    // Creation slows down once the database holds some tickets: the warm-up gets past that, then
    // statistics are taken as after any load (autovacuum is off on these machines).
    out(`warm-up: ${DURATION + 5} s of creations with ${CONNECTIONS} connections`);
    const load = (duration: number) =>
      postLoad({
        url: base,
        path: '/v1/tickets',
        headers: auth,
        body: () => ticketBody(department.id),
        duration,
        connections: CONNECTIONS,
      });
    await load(DURATION + 5);
    await client.query('vacuum analyze');

    const hooks: { id: string }[] = [];
    const setHooks = async (active: boolean) => {
      for (const h of hooks) await request('PATCH', `${base}/v1/webhooks/${h.id}`, session, { active });
    };

    out();
    out(`(a) creation with ${WEBHOOKS} active webhooks against none`);
    if (!PARTS.has('a')) out('  skipped (--only)');
    else if (!hasWebhooks) out('  NOT RUN: the server has no /v1/webhooks (branch webhooks not merged)');
    else {
      for (let i = 0; i < WEBHOOKS; i++) {
        hooks.push(
          await request('POST', `${base}/v1/webhooks`, session, {
            url: `${listener.base}/hook/a${i}`,
            active: false,
            description: `bench receiver ${i}`,
          }),
        );
      }
      // ABBA...: the database grows through the run, so each arm gets early and late phases.
      const order: boolean[] = [];
      for (let r = 0; r < ROUNDS; r++) order.push(...(r % 2 === 0 ? [false, true] : [true, false]));
      out(
        `  phases of ${DURATION} s, ${CONNECTIONS} connections, order ${order.map((w) => (w ? 'with' : 'none')).join(' ')}`,
      );
      const results: { withHooks: boolean; rps: number; cpu: ReturnType<typeof cpuPerRequest> }[] = [];
      let sustained: { deliveries: number; seconds: number }[] = [];
      for (const withHooks of order) {
        const settled = await settle(server.child.pid!, client);
        await setHooks(withHooks);
        await listener.ask({ cmd: 'reset' });
        const before = cpuSnapshot(server.child.pid!);
        const t0 = now();
        const r = await load(DURATION);
        const t1 = now();
        const cpu = cpuPerRequest(before, cpuSnapshot(server.child.pid!), r.total);
        const during = (await listener.ask<{ total: number }>({ cmd: 'counts' })).total;
        // Second by second: how much got through before the server started yielding.
        const timeline = withHooks
          ? (await listener.ask<{ seconds: number[] }>({ cmd: 'timeline', from: t0, to: t1 })).seconds
          : [];
        let drained = '';
        if (withHooks) {
          // Turned off only once drained: events not yet dispatched go only to active webhooks.
          const d = await drain(listener, null);
          await setHooks(false);
          const perCreation = d.total / Math.max(1, r.total);
          sustained.push({ deliveries: during, seconds: (t1 - t0) / 1000 });
          drained =
            `; receivers got ${during} deliveries during the phase (${(during / ((t1 - t0) / 1000)).toFixed(0)}/s), ` +
            `${d.total} in all after ${(d.ms / 1000).toFixed(1)} s of draining (${perCreation.toFixed(2)} per creation)`;
        }
        results.push({ withHooks, rps: r.rps, cpu });
        out(
          `  ${withHooks ? 'with' : 'none'}  rps=${r.rps.toFixed(0)} p50=${r.p50}ms p99=${r.p99}ms` +
            ` (idle after ${(settled.idleMs / 1000).toFixed(1)} s, vacuumed in ${(settled.vacuumMs / 1000).toFixed(1)} s)` +
            `${r.non2xx || r.errors ? ` (${r.non2xx} non-2xx: ${r.statuses}; ${r.errors} errors)` : ''}${drained}`,
        );
        out(`        ${cpuLine(cpu)}`);
        if (timeline.length > 0)
          out(`        deliveries received in each second of the phase: ${timeline.join(', ')}`);
      }
      const mean = (w: boolean) => {
        const xs = results.filter((r) => r.withHooks === w).map((r) => r.rps);
        return xs.reduce((a, b) => a + b, 0) / xs.length;
      };
      const none = mean(false);
      const withHooks = mean(true);
      const change = (withHooks / none - 1) * 100;
      out(
        `creation with ${WEBHOOKS} webhooks ${withHooks.toFixed(0)}/s vs none ${none.toFixed(0)}/s: ratio ${(withHooks / none).toFixed(2)} ` +
          `(${change.toFixed(1)} %) ${change >= -10 ? 'OK' : 'MISSED (target at most 10 % lower)'}; ${machine()}`,
      );
      // Each round is a pair of phases side by side: how far the runs' single ratios spread.
      const pairs: string[] = [];
      for (let i = 0; i + 1 < results.length; i += 2) {
        const w = results[i]!.withHooks ? results[i]! : results[i + 1]!;
        const n = results[i]!.withHooks ? results[i + 1]! : results[i]!;
        pairs.push((w.rps / n.rps).toFixed(2));
      }
      out(`  each round's ratio (with against the none phase beside it): ${pairs.join(', ')}`);
      const totalDeliveries = sustained.reduce((a, s) => a + s.deliveries, 0);
      const totalSeconds = sustained.reduce((a, s) => a + s.seconds, 0);
      out(
        `  deliveries received while creating at full speed: ${(totalDeliveries / totalSeconds).toFixed(0)}/s`,
      );
      sustained = [];
    }

    // (a) leaves hundreds of thousands of settled deliveries, attempts and jobs behind: with
    // autovacuum off (as on these machines) their dead rows would slow (b) and (c) down, which
    // a production database's autovacuum would have cleaned up.
    await client.query('vacuum analyze');
    out();
    out(
      `(b) commit-to-delivery at ${RATE} creations/s for ${STEADY_SECONDS} s, one webhook on ticket.created`,
    );
    if (!PARTS.has('b')) out('  skipped (--only)');
    else if (!hasWebhooks) out('  NOT RUN: the server has no /v1/webhooks (branch webhooks not merged)');
    else {
      await setHooks(false);
      await request('POST', `${base}/v1/webhooks`, session, {
        url: `${listener.base}/hook/latency`,
        event_types: ['ticket.created'],
        description: 'bench latency receiver',
      });
      await listener.ask({ cmd: 'reset' });
      const busy = busySince(server, listener);
      const horizon = sampleHorizon(client);
      const s = await steadyCreations(base, secret, department.id, RATE, STEADY_SECONDS);
      const d = await drain(listener, s.created.size);
      const horizonText = await horizon();
      const busyText = busyLine(server, listener, busy);
      const lat = await listener.ask({
        cmd: 'deliveries',
        hook: 'latency',
        sent: [...s.created],
        from: s.from,
        to: s.to,
      });
      const seconds = (s.to - s.from) / 1000;
      out(
        `  sent ${s.sent} creations in ${seconds.toFixed(1)} s (${(s.sent / seconds).toFixed(0)}/s), ${s.created.size} answered 201` +
          ` (p50 ${msText(s.responseP50)}, p99 ${msText(s.responseP99)})` +
          `${Object.keys(s.failed).length ? `, failed: ${JSON.stringify(s.failed)}` : ''}` +
          `${s.lateStarts ? `, ${s.lateStarts} started over 100 ms late (256 in flight)` : ''}`,
      );
      out(
        `delivery latency from 201: p50 ${msText(lat.p50)} p99 ${msText(lat.p99)} max ${msText(lat.max)} over ${lat.n} deliveries` +
          ` (${lat.missing} never arrived) ${lat.p99 !== null && lat.p99 < 1000 && lat.missing === 0 ? 'OK' : 'MISSED (target p99 < 1 s, none lost)'}`,
      );
      out(
        `  deliveries/s received during the load: ${(lat.inWindow / seconds).toFixed(0)}; ` +
          `${lat.last ? `the last one ${((lat.last - s.to) / 1000).toFixed(2)} s after the last 201` : 'none arrived'} (drain ${(d.ms / 1000).toFixed(1)} s); ${machine()}`,
      );
      out(`  ${busyText} (load and drain)`);
      out(`  ${horizonText}`);
      const counts = await listener.ask({ cmd: 'counts' });
      if (counts.duplicates || counts.unsigned)
        out(
          `  WARNING: ${counts.duplicates} repeated webhook-ids, ${counts.unsigned} deliveries without a signature`,
        );
    }

    out();
    await client.query('vacuum analyze');
    out(`(c) SSE fan-out to ${SUBSCRIBERS} subscribers, ${SSE_RATE} creations/s for ${SSE_SECONDS} s`);
    if (!PARTS.has('c')) out('  skipped (--only)');
    else if (!hasSse) out('  NOT RUN: the server has no /v1/events/stream (branch stream not merged)');
    else {
      let tokens = [session];
      if (args['sse-as'] !== 'admin') {
        // Agents who see the department's tickets through membership: the visibility check runs
        // per subscriber, as it does for most frontends.
        tokens = [];
        for (let i = 0; i < 10; i++) {
          const email = `reader-${i}@bench.example`;
          await request('POST', `${base}/v1/agents`, session, {
            name: `Reader ${i}`,
            email,
            role: 'agent',
            password: PASSWORD,
            departments: [{ department_id: department.id, role: 'reader' }],
          });
          tokens.push(
            (await request('POST', `${base}/v1/auth/token`, null, { email, password: PASSWORD }))
              .access_token,
          );
        }
      }
      const t0 = now();
      const opened = await listener.ask({
        cmd: 'subscribe',
        url: `${base}/v1/events/stream`,
        tokens,
        count: SUBSCRIBERS,
        batch: 50,
      });
      out(
        `  ${opened.open} streams open after ${((now() - t0) / 1000).toFixed(1)} s, held by ${tokens.length} ${args['sse-as'] === 'admin' ? 'owner session' : 'agents (department readers)'}; statuses ${JSON.stringify(opened.statuses)}`,
      );
      await sleep(1000);
      const busy = busySince(server, listener);
      const horizon = sampleHorizon(client);
      const s = await steadyCreations(base, secret, department.id, SSE_RATE, SSE_SECONDS);
      // Until every subscriber has every ticket, or nothing more arrives for 3 s.
      const expected = opened.open * s.created.size;
      const waitStart = now();
      let lastN = -1;
      let lastChange = now();
      for (;;) {
        const { n } = await listener.ask<{ n: number }>({ cmd: 'receptions' });
        if (n >= expected || now() - waitStart > DRAIN_TIMEOUT_MS) break;
        if (n !== lastN) {
          lastN = n;
          lastChange = now();
        } else if (now() - lastChange > 3000) break;
        await sleep(250);
      }
      const lat = await listener.ask({ cmd: 'streams', sent: [...s.created] });
      out(`  ${busyLine(server, listener, busy)}`);
      out(`  ${await horizon()}`);
      out(
        `  created ${s.created.size} tickets (${Object.keys(s.failed).length ? JSON.stringify(s.failed) : 'all 201'})`,
      );
      out(
        `fan-out latency from 201: p50 ${msText(lat.p50)} p99 ${msText(lat.p99)} max ${msText(lat.max)} over ${lat.n} receptions ` +
          `(${lat.subscribers} subscribers x ${s.created.size} tickets; ${lat.missing} missing, ${lat.ended} streams ended early) ` +
          `${lat.p99 !== null && lat.p99 < 250 && lat.missing === 0 ? 'OK' : 'MISSED (target p99 < 250 ms, none missing)'}; ${machine()}`,
      );
      await listener.ask({ cmd: 'unsubscribe' });
    }
    const tail = server.output().trim();
    if (tail) {
      out();
      out('server warnings and errors (last lines):');
      for (const line of tail.split('\n').slice(-10)) out(`  ${line.slice(0, 400)}`);
    }
  } finally {
    if (listener && listener.child.exitCode === null) listener.child.send({ cmd: 'stop', id: -1 });
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await new Promise((resolve) => {
        server!.child.once('exit', resolve);
        setTimeout(() => server!.child.kill('SIGKILL'), 15_000).unref();
      });
    }
    await client.end().catch(() => {});
    out();
    const took = `${((performance.now() - started) / 1000).toFixed(1)} s`;
    if (args.keep) out(`done in ${took}; kept ${scratchUrl} (drop it when done)`);
    else {
      await admin((c) => c.query(`drop database if exists ${scratch} with (force)`));
      out(`done in ${took}; dropped ${scratch}`);
    }
  }
}

await main();
