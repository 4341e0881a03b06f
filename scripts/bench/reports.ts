// npm run bench:reports
//
// Reports at scale, against PostgreSQL, in a scratch database deskroute_reports_bench_<pid>
// created and dropped here (BENCH_DATABASE_URL, else DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/postgres names the server):
//
//   1. Load: 1,000,000 tickets with ~6,500,000 events over 2025 across 20 departments, 200 agents
//      and all channels (SLA verdicts included), generated in SQL. The events go into ticket_events one month per
//      statement, so the report trigger counts them as it would count the API's.
//   2. JSON over HTTP (app.inject, a read-only API token), p50/p99 over repeated runs:
//      (a) the year by month by department, and by tag, all columns, in UTC (the help desk's
//          zone), Europe/Prague, America/New_York and Asia/Kathmandu (+05:45); (b) the last 30
//          days by day by agent, and by tag, for one department, all columns.
//      Target: p99 < 100 ms. Each is also computed from the raw events (the same report with
//      source=events, as attribution=current does) in the same run: the ratio is raw / counters,
//      target >= 20.
//   3. CSV export of a day x department x agent x channel breakdown of the year, streamed over a
//      real socket from a server in a child process started with the Node flags of package.json's
//      start script (what production runs): rows/s, the first byte (target < 1 s) and the
//      server's peak RSS (target < 200 MB); then the year by day x tag in Europe/Prague (time and
//      one dimension: the tags of the whole year are read before the first rows), with all
//      columns and with percentile columns alone.
//
// --keep keeps the scratch database; --reuse <db> runs the queries on a kept one (migrated to the
// latest schema first); --load-only stops after loading; --only json|export|tags|export-tags
// runs one part (tags: the JSON reports by tag; export-tags: the two CSV exports by tag);
// --match <text> only the JSON reports whose name contains it;
// --export-flags="<node flags>" repeats the export from a server started with those flags.
// Run the bench itself with --expose-gc to see the export server's live heap as well.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/client.ts';
import { migrateToLatest } from '../../src/db/migrate.ts';
import type { Database } from '../../src/db/types.ts';
import { METRICS } from '../../src/domains/reports/metrics.ts';
import {
  countPendingEvents,
  findReportRows,
  findReportTotals,
  type ReportSpec,
} from '../../src/domains/reports/repository.ts';
import { compactReports } from '../../src/domains/reports/service.ts';
import { hashApiToken } from '../../src/plugins/auth.ts';

const { values: args } = parseArgs({
  options: {
    tickets: { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '50' },
    'raw-runs': { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    'load-only': { type: 'boolean', default: false },
    reuse: { type: 'string' },
    only: { type: 'string' },
    'export-flags': { type: 'string' },
    serve: { type: 'string' },
    match: { type: 'string' },
  },
});
const TICKETS = Number(args.tickets);
const RUNS = Number(args.runs);
const RAW_RUNS = Number(args['raw-runs']);
// Each request uses up to four of the pool's ten connections, and a connection's first
// statements are slower (catalog caches, PL/pgSQL functions compiled on first call): enough
// warm-up runs to have used them all, so that the figures are a running server's.
const WARM_UP = 20;
const DEPARTMENTS = 20;
const AGENTS_PER_DEPARTMENT = 10;
const CONTACTS = 5000;
const YEAR = { from: '2025-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' };
const SLA_FIRST_ANSWER_SECONDS = 4 * 3600;
const SLA_RESOLUTION_SECONDS = 48 * 3600;
/** An instant as the SLA clock writes it into event data (toISOString). */
const iso = (at: string) => `to_char((${at}) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

const out = (line = '') => process.stdout.write(`${line}\n`);
const ms = (n: number) => `${n.toFixed(1)} ms`;
const since = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(1)} s`;
const machine = () => `load average ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} CPUs`;
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;

interface CsvExport {
  query: string;
  label: string;
}
const BY_DAY_AND_AGENT_AND_CHANNEL: CsvExport = {
  query: 'from=2025-01-01&to=2026-01-01&interval=day&group_by=department,agent,channel',
  label: 'the year by day x department x agent x channel, all columns',
};
const BY_DAY_AND_TAG: CsvExport = {
  query: 'from=2025-01-01&to=2026-01-01&interval=day&group_by=tag&timezone=Europe/Prague',
  label: 'the year by day x tag in Europe/Prague, all columns',
};
const BY_DAY_AND_TAG_MEDIANS: CsvExport = {
  query:
    'from=2025-01-01&to=2026-01-01&interval=day&group_by=tag&timezone=Europe/Prague&columns=median_first_answer_time,p90_first_answer_time,median_resolution_time',
  label: 'the year by day x tag in Europe/Prague, three percentile columns alone',
};

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function kysely(url: string, max = 10) {
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool: createPool(url, { max }) }),
  });
}

async function appFor(url: string) {
  const secret = randomBytes(32).toString('base64url');
  const db = kysely(url);
  const app = await buildApp(
    // Unlimited: on a smaller database (an import's 100,000 tickets) the timed reads pass 600 a minute.
    loadConfig({
      LOG_LEVEL: 'silent',
      JWT_SECRET: secret,
      DESKROUTE_TIMEZONE: 'UTC',
      RATE_LIMIT_MAX: '1000000000',
    }),
    {
      db,
      jwtSecret: secret,
    },
  );
  await app.ready();
  return { app, db };
}

// The export's server: a child process, so its peak RSS is the server's alone.
if (args.serve) {
  const { app, db } = await appFor(args.serve);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  process.send!({ port: typeof address === 'object' && address ? address.port : 0 });
  // Where the memory goes: the peaks of V8's heap and of memory outside it, sampled.
  // Run the bench with --expose-gc to also see the live heap (collected every second).
  const peak = { heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0, liveHeap: 0 };
  setInterval(() => {
    const m = process.memoryUsage();
    for (const key of ['heapTotal', 'heapUsed', 'external', 'arrayBuffers'] as const)
      peak[key] = Math.max(peak[key], m[key]);
  }, 50).unref();
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    setInterval(() => {
      gc();
      peak.liveHeap = Math.max(peak.liveHeap, process.memoryUsage().heapUsed);
    }, 1000).unref();
  }
  process.on('message', async (message) => {
    if (message === 'rss') process.send!({ maxRSS: process.resourceUsage().maxRSS, peak });
    if (message === 'stop') {
      await app.close();
      await db.destroy();
      process.exit(0);
    }
  });
} else {
  await main();
}

async function main() {
  const serverUrl =
    process.env.BENCH_DATABASE_URL ||
    loadConfig().databaseUrl ||
    'postgres://postgres@127.0.0.1:5432/postgres';
  const scratch = args.reuse ?? `deskroute_reports_bench_${process.pid}`;
  const u = new URL(serverUrl);
  u.pathname = `/${scratch}`;
  const scratchUrl = u.toString();
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  if (!args.reuse) await admin.query(`create database ${scratch}`);
  out(`${args.reuse ? 'reusing' : 'scratch'} database ${scratch} (${machine()})`);
  const client = new pg.Client({ connectionString: scratchUrl });
  try {
    await client.connect();
    let fixture: Fixture;
    const setup = kysely(scratchUrl, 1);
    const migrateStarted = performance.now();
    const applied = await migrateToLatest(setup);
    await setup.destroy();
    if (args.reuse && applied.length > 0) out(`  migrated: ${applied.join(', ')} (${since(migrateStarted)})`);
    if (args.reuse) {
      fixture = await existingFixture(client);
    } else {
      fixture = await load(client, scratchUrl);
    }
    if (!args['load-only']) {
      if (args.only !== 'export' && args.only !== 'export-tags') await queries(scratchUrl, client, fixture);
      if (args.only === 'export-tags') {
        await exportCsv(scratchUrl, startFlags(), 'as npm start', BY_DAY_AND_TAG);
        await exportCsv(scratchUrl, startFlags(), 'as npm start', BY_DAY_AND_TAG_MEDIANS);
      } else if (args.only !== 'json' && args.only !== 'tags') {
        await exportCsv(scratchUrl, startFlags());
        // Time and one dimension: every tag has a row in every period, so the tags of the whole
        // year are read before the first chunk (query.ts, reportEntitiesQuery).
        await exportCsv(scratchUrl, startFlags(), 'as npm start', BY_DAY_AND_TAG);
        // The same with percentile columns alone: the tags come from the counted groups, so
        // no percentile of the whole year is computed before the first chunk.
        await exportCsv(scratchUrl, startFlags(), 'as npm start', BY_DAY_AND_TAG_MEDIANS);
        // --export-flags="...": the same export from a server with other Node flags, to try them.
        if (args['export-flags']) await exportCsv(scratchUrl, args['export-flags'].split(/\s+/), 'as asked');
      }
    }
  } finally {
    await client.end().catch(() => {});
    if (args.keep || args.reuse) out(`kept ${scratch}`);
    else await admin.query(`drop database if exists ${scratch} with (force)`);
    await admin.end();
  }
}

interface Fixture {
  departments: string[];
  token: string;
}

/**
 * The year of activity, in SQL. Per ticket (t0 uniform over 2025): created; the customer's
 * message, or an inbound call (80 % answered) or a chat (10 % missed) on those channels; 90 % of
 * messaged tickets answered (first-answer waits from minutes to days), 30 % of those with a
 * follow-up and a second answer; 10 % transferred to another department; 80 % resolved, a
 * quarter of those rated (80 % positive), 5 % reopened, answered and resolved again (the first
 * resolve carries the resolution time, as the API writes it).
 */
async function load(client: pg.Client, scratchUrl: string): Promise<Fixture> {
  const started = performance.now();
  out(`load: ${TICKETS.toLocaleString('en')} tickets`);
  const departments = (
    await client.query(
      `insert into departments (name) select 'Department ' || lpad(g::text, 2, '0') from generate_series(1, ${DEPARTMENTS}) g returning id, name`,
    )
  ).rows
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((r) => r.id as string);
  const agents = (
    await client.query(
      `insert into agents (name, email, role) select 'Agent ' || lpad(g::text, 3, '0'), 'agent-' || g || '@bench.example', 'agent'
       from generate_series(1, ${DEPARTMENTS * AGENTS_PER_DEPARTMENT}) g returning id, name`,
    )
  ).rows
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((r) => r.id as string);
  await client.query(
    `insert into department_members (department_id, agent_id, role)
     select ($1::uuid[])[(g - 1) / ${AGENTS_PER_DEPARTMENT} + 1], ($2::uuid[])[g], 'solver'
     from generate_series(1, ${DEPARTMENTS * AGENTS_PER_DEPARTMENT}) g`,
    [departments, agents],
  );
  await client.query(
    `insert into contacts (name) select 'Customer ' || g from generate_series(1, ${CONTACTS}) g`,
  );
  const owner = (
    await client.query(
      `insert into agents (name, email, role) values ('Bench owner', 'owner@bench.example', 'owner') returning id`,
    )
  ).rows[0].id as string;
  const token = `drt_${randomBytes(24).toString('base64url')}`;
  await client.query(
    `insert into api_tokens (agent_id, name, token_hash, token_prefix, scopes) values ($1, 'reports bench', $2, $3, '{read}')`,
    [owner, hashApiToken(token), token.slice(0, 8)],
  );

  await client.query('select setseed(0.42)');
  await client.query(`
    create unlogged table bench_t as
    select *,
      coalesce(a1, case when d1 is null then floor(random() * ${DEPARTMENTS * AGENTS_PER_DEPARTMENT})::int
                        else d1 * ${AGENTS_PER_DEPARTMENT} + floor(random() * ${AGENTS_PER_DEPARTMENT})::int end) as ar,
      case when transferred then d2 * ${AGENTS_PER_DEPARTMENT} + floor(random() * ${AGENTS_PER_DEPARTMENT})::int else a1 end as a2,
      channel not in ('chat', 'call') as messaged
    from (
      select *,
        case when transferred then (d1 + 1 + floor(random() * ${DEPARTMENTS - 1})::int) % ${DEPARTMENTS} else d1 end as d2,
        case when d1 is null or random() < 0.1 then null
             else d1 * ${AGENTS_PER_DEPARTMENT} + floor(random() * ${AGENTS_PER_DEPARTMENT})::int end as a1
      from (
        select *, transfer and d1 is not null as transferred
        from (
          select g as n, gen_random_uuid() as id,
            timestamptz '${YEAR.from}' + random() * interval '365 days' as t0,
            (array['email','email','email','email','email','email','email','email','contact_form','contact_form',
                   'chat','chat','chat','call','call','call','facebook','whatsapp','instagram','api'])[1 + floor(random() * 20)::int] as channel,
            case when random() < 0.03 then null else least(${DEPARTMENTS - 1}, floor(power(random(), 1.5) * ${DEPARTMENTS}))::int end as d1,
            random() < 0.10 as transfer,
            random() < 0.9 as replies, random() < 0.3 as follows, random() < 0.8 as resolves,
            random() < 0.25 as rates, random() < 0.8 as positive, random() < 0.05 as reopens,
            random() < 0.2 as call_missed, random() < 0.1 as chat_missed,
            60 + (-ln(1 - random())) * 10800 as w1, 60 + (-ln(1 - random())) * 3600 as w2,
            60 + (-ln(1 - random())) * 7200 as w3, 600 + random() * 172800 as f,
            600 + random() * 86400 as r, 300 + random() * 86400 as rt, 3600 + random() * 259200 as ro,
            -- Tags: 30 % none, else 1 to 3 of 30, the first few far more used (correlated on g:
            -- drawn per ticket).
            case when random() < 0.3 then '{}'::text[] else array(
              select distinct 'tag-' || lpad((1 + floor(power(random(), 2) * 30))::int::text, 2, '0')
              from generate_series(1, 1 + g % 3)) end as tags,
            30 + floor(random() * 870)::int as call_seconds, 5 + random() * 115 as pickup,
            60 + random() * 1740 as chat_seconds, 1 + floor(random() * 8)::int as cm, 1 + floor(random() * 8)::int as am
          from generate_series(1, ${TICKETS}) g
        ) w
      ) x
    ) y`);
  // The moments of each ticket's story.
  await client.query(`
    create unlogged table bench_s as
    select b.*,
      t0 + w1 * interval '1 second' as t_reply,
      t0 + (w1 + f) * interval '1 second' as t_follow,
      t0 + (w1 + f + w2) * interval '1 second' as t_reply2,
      t0 + (w1 + (case when messaged and replies and follows then f + w2 else 0 end) + 600) * interval '1 second' as t_transfer,
      t0 + (w1 + (case when messaged and replies and follows then f + w2 else 0 end) + 600 + r) * interval '1 second' as t_resolve,
      messaged and replies as replied,
      messaged and replies and follows as followed
    from bench_t b`);
  await client.query('drop table bench_t');
  out(`  stories drawn (${since(started)})`);

  const indexes = (
    await client.query(
      `select i.indexname, i.indexdef from pg_indexes i
       where i.tablename = 'tickets' and i.indexname not in (select conname from pg_constraint where conrelid = 'tickets'::regclass)`,
    )
  ).rows as { indexname: string; indexdef: string }[];
  for (const index of indexes) await client.query(`drop index ${index.indexname}`);
  await client.query(
    `insert into tickets (id, subject, channel, status, priority, department_id, assignee_id, contact_id, created_at, updated_at, waiting_since, first_resolved_at, tags)
     select id, 'Bench ticket ' || n, channel,
       case when resolves then 'resolved' when replied or (channel = 'call' and not call_missed) or (channel = 'chat' and not chat_missed)
            then 'answered' when n % 50 = 0 then 'postponed' when n % 7 = 0 then 'open' else 'new' end,
       'normal', ($1::uuid[])[d2 + 1], ($2::uuid[])[a2 + 1], ($3::uuid[])[1 + n % ${CONTACTS}], t0, t0, t0,
       case when resolves then t_resolve end, tags
     from bench_s`,
    [departments, agents, (await client.query('select array_agg(id) as ids from contacts')).rows[0].ids],
  );
  for (const index of indexes) await client.query(index.indexdef);
  out(`  tickets inserted, indexes rebuilt (${since(started)})`);

  // Every event, staged; then appended to ticket_events month by month through the trigger.
  const D = '($1::uuid[])';
  const A = '($2::uuid[])';
  const ev = (
    where: string,
    type: string,
    at: string,
    dep: string,
    agent: string,
    actor: string,
    data: string,
  ) => `
    select id as ticket_id, '${type}' as type, case when ${actor} is null then 'contact' else 'agent' end as actor_type,
      ${A}[${actor} + 1] as actor_agent_id, ${D}[${dep} + 1] as department_id, ${A}[${agent} + 1] as agent_id,
      channel, ${data} as data, ${at} as occurred_at
    from bench_s where ${where}`;
  const parts = [
    ev('true', 'created', 't0', 'd1', 'a1', 'null::int', `jsonb_build_object('tags', to_jsonb(tags))`),
    ev('messaged', 'message_added', 't0', 'd1', 'a1', 'null::int', `'{"kind":"customer"}'::jsonb`),
    ev(
      `channel = 'call'`,
      'call_recorded',
      't0',
      'd1',
      'a1',
      'ar',
      `jsonb_build_object('direction', 'inbound', 'outcome', case when call_missed then 'missed' else 'answered' end,
        'agent_id', case when call_missed then null else (${A})[ar + 1] end,
        'duration_seconds', case when call_missed then 0 else call_seconds end)`,
    ),
    ev(
      `channel = 'chat'`,
      'chat_recorded',
      't0',
      'd1',
      'a1',
      'ar',
      `jsonb_build_object('missed', chat_missed, 'agent_id', case when chat_missed then null else (${A})[ar + 1] end,
        'pickup_seconds', case when chat_missed then null else pickup end,
        'duration_seconds', case when chat_missed then null else chat_seconds end,
        'customer_messages', cm, 'agent_messages', case when chat_missed then 0 else am end)`,
    ),
    ev(
      'replied',
      'message_added',
      't_reply',
      'd1',
      'a1',
      'ar',
      `jsonb_build_object('kind', 'agent', 'first_answer', true, 'wait_seconds', w1)`,
    ),
    ev('replied', 'status_changed', 't_reply', 'd1', 'a1', 'ar', `'{"from":"new","to":"answered"}'::jsonb`),
    ev('followed', 'message_added', 't_follow', 'd1', 'a1', 'null::int', `'{"kind":"customer"}'::jsonb`),
    ev(
      'followed',
      'status_changed',
      't_follow',
      'd1',
      'a1',
      'null::int',
      `'{"from":"answered","to":"open"}'::jsonb`,
    ),
    ev(
      'followed',
      'message_added',
      't_reply2',
      'd1',
      'a1',
      'ar',
      `jsonb_build_object('kind', 'agent', 'first_answer', false, 'wait_seconds', w2)`,
    ),
    ev(
      'transferred',
      'transferred',
      't_transfer',
      'd2',
      'a2',
      'ar',
      `jsonb_build_object('from_department_id', (${D})[d1 + 1], 'to_department_id', (${D})[d2 + 1])`,
    ),
    ev(
      'resolves',
      'status_changed',
      't_resolve',
      'd2',
      'a2',
      'coalesce(a2, ar)',
      `jsonb_build_object('from', 'answered', 'to', 'resolved', 'first_resolution', true,
        'resolution_seconds', extract(epoch from t_resolve - t0)::float8)`,
    ),
    ev(
      'resolves and rates',
      'rated',
      `t_resolve + rt * interval '1 second'`,
      'd2',
      'a2',
      'null::int',
      `jsonb_build_object('value', case when positive then 'positive' else 'negative' end, 'rated_agent_id', (${A})[a2 + 1])`,
    ),
    ev(
      'resolves and reopens',
      'message_added',
      `t_resolve + ro * interval '1 second'`,
      'd2',
      'a2',
      'null::int',
      `'{"kind":"customer"}'::jsonb`,
    ),
    ev(
      'resolves and reopens',
      'status_changed',
      `t_resolve + ro * interval '1 second'`,
      'd2',
      'a2',
      'null::int',
      `'{"from":"resolved","to":"open","reopened":true}'::jsonb`,
    ),
    ev(
      'resolves and reopens',
      'message_added',
      `t_resolve + (ro + w3) * interval '1 second'`,
      'd2',
      'a2',
      'coalesce(a2, ar)',
      `jsonb_build_object('kind', 'agent', 'first_answer', false, 'wait_seconds', w3)`,
    ),
    ev(
      'resolves and reopens',
      'status_changed',
      `t_resolve + (ro + w3 + 3600) * interval '1 second'`,
      'd2',
      'a2',
      'coalesce(a2, ar)',
      `'{"from":"answered","to":"resolved"}'::jsonb`,
    ),
    // The SLA clock's verdicts (migrations/0022): a 4-hour first answer and a 48-hour resolution,
    // met when the reply or the resolve comes in time, else breached at the due and recorded by
    // that later write, as the write path records breaches no timer has fired.
    ...(
      [
        ['replied', 'first_answer', 't_reply', SLA_FIRST_ANSWER_SECONDS, 'd1', 'a1'],
        ['resolves', 'resolution', 't_resolve', SLA_RESOLUTION_SECONDS, 'd2', 'a2'],
      ] as const
    ).flatMap(([where, kind, met, within, dep, agent]) => {
      const due = `t0 + ${within} * interval '1 second'`;
      const verdict = (at: string, late: string) =>
        `jsonb_build_object('kind', '${kind}', 'cycle', 1, 'at', ${iso(at)}, 'due_at', ${iso(due)}, 'late', ${late})`;
      return [
        ev(
          `${where} and ${met} < ${due}`,
          'sla.fulfilled',
          met,
          dep,
          agent,
          'null::int',
          verdict(met, 'false'),
        ),
        ev(
          `${where} and ${met} >= ${due}`,
          'sla.breached',
          met,
          dep,
          agent,
          'null::int',
          verdict(due, 'null'),
        ),
      ];
    }),
  ];
  await client.query(`create unlogged table bench_e as ${parts.join(' union all ')}`, [departments, agents]);
  const staged = Number((await client.query('select count(*) as n from bench_e')).rows[0].n);
  await client.query('create index on bench_e (occurred_at)');
  out(`  ${staged.toLocaleString('en')} events staged (${since(started)})`);

  const months = (
    await client.query(
      `select m from generate_series(date_trunc('month', (select min(occurred_at) from bench_e), 'UTC'),
         (select max(occurred_at) from bench_e), interval '1 month') m`,
    )
  ).rows.map((r) => r.m as Date);
  const appendStarted = performance.now();
  for (const m of months) {
    const next = new Date(Date.UTC(m.getUTCFullYear(), m.getUTCMonth() + 1, 1));
    // Event ids grow with time, as when the API writes them.
    await client.query(
      `insert into ticket_events (ticket_id, type, actor_type, actor_agent_id, department_id, agent_id, channel, data, occurred_at)
       select ticket_id, type, actor_type, actor_agent_id, department_id, agent_id, channel, data, occurred_at
       from bench_e where occurred_at >= $1 and occurred_at < $2 order by occurred_at`,
      [m, next],
    );
  }
  const appendSeconds = (performance.now() - appendStarted) / 1000;
  out(
    `  ${staged.toLocaleString('en')} events appended (the report trigger noting them) in ${months.length} statements: ` +
      `${appendSeconds.toFixed(1)} s, ${Math.round(staged / appendSeconds).toLocaleString('en')} events/s (${since(started)})`,
  );
  // What the scheduler does every few seconds, here for the whole load: count the noted events
  // into the report tables, in batches.
  const countStarted = performance.now();
  const counter = kysely(scratchUrl, 1);
  let counted = 0;
  for (let n = -1; n !== 0; counted += n) n = await countPendingEvents(counter, 250_000);
  await counter.destroy();
  const countSeconds = (performance.now() - countStarted) / 1000;
  out(
    `  ${counted.toLocaleString('en')} events counted into the report tables: ${countSeconds.toFixed(1)} s, ` +
      `${Math.round(counted / countSeconds).toLocaleString('en')} events/s (${since(started)})`,
  );
  await client.query('drop table bench_e');
  await client.query('drop table bench_s');
  const compactStarted = performance.now();
  const db = kysely(scratchUrl, 1);
  const folded = await compactReports(db);
  await db.destroy();
  out(`  compacted: ${(folded ?? 0).toLocaleString('en')} fresh rows folded in ${since(compactStarted)}`);
  await client.query('vacuum analyze');
  const sizes = (
    await client.query(`
      select relname, n_live_tup as rows, pg_size_pretty(pg_total_relation_size(relid)) as size
      from pg_stat_user_tables
      where relname = 'ticket_events' or relname like 'report\\_%'
      order by relname`)
  ).rows as { relname: string; rows: string; size: string }[];
  for (const s of sizes)
    out(`  ${s.relname.padEnd(32)} ${Number(s.rows).toLocaleString('en').padStart(11)} rows  ${s.size}`);
  out(`  loaded and vacuumed (${since(started)})`);
  return { departments, token };
}

/** The departments and a fresh read-only token of a database loaded by an earlier --keep run. */
async function existingFixture(client: pg.Client): Promise<Fixture> {
  const departments = (await client.query(`select id from departments order by name`)).rows.map(
    (r) => r.id as string,
  );
  const token = `drt_${randomBytes(24).toString('base64url')}`;
  await client.query(
    `insert into api_tokens (agent_id, name, token_hash, token_prefix, scopes)
     select id, 'reports bench', $1, $2, '{read}' from agents where role = 'owner'`,
    [hashApiToken(token), token.slice(0, 8)],
  );
  return { departments, token };
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function specFor(
  base: Omit<ReportSpec, 'metrics' | 'sort' | 'agents' | 'channels' | 'attribution' | 'source' | 'weekShift'>,
) {
  return {
    ...base,
    weekShift: 0,
    agents: null,
    channels: null,
    attribution: 'event' as const,
    source: 'counters' as const,
    metrics: METRICS,
    sort: [],
  } satisfies ReportSpec;
}

async function queries(scratchUrl: string, client: pg.Client, fixture: Fixture) {
  const { app, db } = await appFor(scratchUrl);
  const department = fixture.departments[3]!;
  const last30 = { from: '2025-12-02T00:00:00Z', to: YEAR.to };
  // The year 2025 as each zone's clock shows it: what the help desk's own zone reads.
  const ZONES = [
    { zone: 'UTC', from: YEAR.from, to: YEAR.to },
    { zone: 'Europe/Prague', from: '2024-12-31T23:00:00Z', to: '2025-12-31T23:00:00Z' },
    { zone: 'America/New_York', from: '2025-01-01T05:00:00Z', to: '2026-01-01T05:00:00Z' },
    { zone: 'Asia/Kathmandu', from: '2024-12-31T18:15:00Z', to: '2025-12-31T18:15:00Z' },
  ];
  const inZone = (zone: string) => (zone === 'UTC' ? '' : `&timezone=${zone}`);
  const yearly = ZONES.flatMap(({ zone, from, to }) => [
    {
      name: `year by month by department, all columns (${zone})`,
      tag: false,
      url: `/v1/reports/departments?from=2025-01-01&to=2026-01-01&interval=month${inZone(zone)}&limit=10000`,
      spec: specFor({
        from: new Date(from),
        to: new Date(to),
        timezone: zone,
        interval: 'month',
        groupBy: ['time', 'department'],
        departments: null,
      }),
    },
    {
      name: `year by month by tag, all columns (${zone})`,
      tag: true,
      url: `/v1/reports/tags?from=2025-01-01&to=2026-01-01&interval=month${inZone(zone)}&limit=10000`,
      spec: specFor({
        from: new Date(from),
        to: new Date(to),
        timezone: zone,
        interval: 'month',
        groupBy: ['time', 'tag'],
        departments: null,
      }),
    },
  ]);
  const shapes = [
    ...yearly,
    {
      name: 'last 30 days by day by tag, one department, all columns',
      tag: true,
      url: `/v1/reports/tags?from=2025-12-02&to=2026-01-01&interval=day&department_id=${department}&limit=10000`,
      spec: specFor({
        from: new Date(last30.from),
        to: new Date(last30.to),
        timezone: 'UTC',
        interval: 'day',
        groupBy: ['time', 'tag'],
        departments: [department],
      }),
    },
    {
      name: 'last 30 days by day by agent, one department, all columns',
      tag: false,
      url: `/v1/reports/agents?from=2025-12-02&to=2026-01-01&interval=day&department_id=${department}&limit=10000`,
      spec: specFor({
        from: new Date(last30.from),
        to: new Date(last30.to),
        timezone: 'UTC',
        interval: 'day',
        groupBy: ['time', 'agent'],
        departments: [department],
      }),
    },
  ];
  const headers = { authorization: `Bearer ${fixture.token}` };
  // Every shape's first read finds nothing kept, even on a database an earlier run left.
  await client.query('delete from report_percentile_cache');
  await client.query('delete from report_count_cache');
  out();
  out(`JSON over HTTP: ${RUNS} timed runs each after ${WARM_UP} warm-up runs, one at a time (${machine()})`);
  const summary: string[] = [];
  // --only tags: the reports by tag alone.
  for (const shape of shapes.filter(
    (s) => (args.only !== 'tags' || s.tag) && (!args.match || s.name.includes(args.match)),
  )) {
    let rows = 0;
    const run = async () => {
      const res = await app.inject({ method: 'GET', url: shape.url, headers });
      if (res.statusCode !== 200) throw new Error(`${shape.url}: ${res.statusCode} ${res.body}`);
      rows = res.json().data.length;
    };
    // The first read computes every percentile; the server keeps those of the ended periods
    // after answering (src/domains/reports/cache.ts), so the warm-up reads that follow find them.
    const cold = await timeIt(run);
    for (let i = 1; i < WARM_UP; i++) await run();
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await timeIt(run));
    times.sort((a, b) => a - b);
    const p50 = percentile(times, 0.5);
    const p99 = percentile(times, 0.99);

    // The same report through the repository, from the counters and from the raw events.
    const direct = async (spec: ReportSpec) => {
      await Promise.all([findReportRows(db, spec, { limit: 10000 }), findReportTotals(db, spec)]);
    };
    const countersTimes: number[] = [];
    for (let i = 0; i < 5; i++) countersTimes.push(await timeIt(() => direct(shape.spec)));
    countersTimes.sort((a, b) => a - b);
    const rawTimes: number[] = [];
    for (let i = 0; i < RAW_RUNS; i++)
      rawTimes.push(await timeIt(() => direct({ ...shape.spec, source: 'events' })));
    rawTimes.sort((a, b) => a - b);
    const counters = percentile(countersTimes, 0.5);
    out(
      `${shape.name}: ${rows} rows  p50=${ms(p50)} p99=${ms(p99)} ${p99 < 100 ? 'OK' : 'MISSED (target p99 < 100 ms)'}` +
        ` (first read, no percentiles kept: ${ms(cold)})`,
    );
    // --raw-runs 0 skips the raw events (half a minute per run on the year).
    if (rawTimes.length > 0) {
      const raw = percentile(rawTimes, 0.5);
      const ratio = raw / counters;
      out(
        `  same report, repository only: counters ${ms(counters)} (median of 5), raw events ${ms(raw)} (median of ${RAW_RUNS}): ` +
          `raw/counters = ${ratio.toFixed(1)}x ${ratio >= 20 ? 'OK' : 'MISSED (target >= 20x)'}`,
      );
      summary.push(`${shape.name}: p99 ${ms(p99)}, raw/counters ${ratio.toFixed(1)}x`);
    } else {
      out(`  same report, repository only: counters ${ms(counters)} (median of 5)`);
      summary.push(`${shape.name}: p99 ${ms(p99)}`);
    }

    // Where the time goes: the same report without its percentile columns.
    const noPercentiles = { ...shape.spec, metrics: METRICS.filter((m) => !('percentile' in m.formula)) };
    const lean: number[] = [];
    for (let i = 0; i < 5; i++) lean.push(await timeIt(() => direct(noPercentiles)));
    lean.sort((a, b) => a - b);
    out(`  without the 8 median/p90 columns: ${ms(percentile(lean, 0.5))} (median of 5)`);
  }
  const histogram = (
    await client.query(`select (select count(*) from report_department_histograms_month) as department,
      (select count(*) from report_histograms_month) as full, (select sum(n) from report_department_histograms_month) as samples`)
  ).rows[0];
  out(
    `  (${Number(histogram.samples).toLocaleString('en')} durations behind the percentiles, in ` +
      `${Number(histogram.department).toLocaleString('en')} department-month and ` +
      `${Number(histogram.full).toLocaleString('en')} month x department x agent x channel histogram rows)`,
  );
  await app.close();
  await db.destroy();
}

/** The Node flags of package.json's start script (`node <flags> src/server.ts`). */
function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const words = String(pkg.scripts.start).trim().split(/\s+/);
  if (words[0] !== 'node') throw new Error(`start script does not run node: ${pkg.scripts.start}`);
  return words.slice(1, -1);
}

async function exportCsv(
  scratchUrl: string,
  v8Flags: string[],
  origin = 'as npm start',
  which: CsvExport = BY_DAY_AND_AGENT_AND_CHANNEL,
) {
  out();
  const child = fork(new URL(import.meta.url), ['--serve', scratchUrl], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv, ...v8Flags],
  });
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { port: number }));
    child.once('exit', (code) => reject(new Error(`export server exited with ${code}`)));
  });
  const ask = (message: string) =>
    new Promise<{ maxRSS: number; peak: Record<string, number> }>((resolve) => {
      child.once('message', (m) => resolve(m as { maxRSS: number; peak: Record<string, number> }));
      child.send(message);
    });
  const before = await ask('rss');
  const token = (
    await (async () => {
      const c = new pg.Client({ connectionString: scratchUrl });
      await c.connect();
      const secret = `drt_${randomBytes(24).toString('base64url')}`;
      await c.query(
        `insert into api_tokens (agent_id, name, token_hash, token_prefix, scopes)
         select id, 'export bench', $1, $2, '{read}' from agents where role = 'owner'`,
        [hashApiToken(secret), secret.slice(0, 8)],
      );
      // Nothing kept by an earlier export or run: each export computes its own.
      await c.query('delete from report_percentile_cache');
      await c.query('delete from report_count_cache');
      await c.end();
      return secret;
    })()
  ).toString();
  const url = `http://127.0.0.1:${port}/v1/reports/departments.csv?${which.query}`;
  out(
    `CSV export: ${which.label}, over HTTP ` +
      `(server: node ${v8Flags.join(' ') || 'with default V8 heap settings'}, ${origin})`,
  );
  const t0 = performance.now();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`export: ${res.status} ${await res.text()}`);
  let bytes = 0;
  let lines = 0;
  let firstByte = 0;
  for await (const chunk of res.body!) {
    if (firstByte === 0) firstByte = performance.now() - t0;
    bytes += chunk.length;
    for (const b of chunk) if (b === 10) lines++;
  }
  const seconds = (performance.now() - t0) / 1000;
  const rows = lines; // the header line has a newline after it, the last row none
  const after = await ask('rss');
  out(
    `  ${rows.toLocaleString('en')} rows, ${(bytes / 1024 / 1024).toFixed(1)} MB in ${seconds.toFixed(1)} s: ` +
      `${Math.round(rows / seconds).toLocaleString('en')} rows/s (first byte after ${(firstByte / 1000).toFixed(1)} s, ${firstByte < 1000 ? 'OK' : 'MISSED (target < 1 s)'})`,
  );
  out(
    `  server peak RSS ${mb(after.maxRSS)} (${mb(before.maxRSS)} before the export) ${after.maxRSS < 200 * 1024 ? 'OK' : 'MISSED (target < 200 MB)'}`,
  );
  const peaks = Object.entries(after.peak)
    .filter(([k, v]) => k !== 'liveHeap' || v > 0)
    .map(([k, v]) => `${k} ${(v / 1024 / 1024).toFixed(0)} MB`);
  out(`  server peaks during the export (process.memoryUsage()): ${peaks.join(', ')}`);
  out(`  ${res.headers.get('content-disposition')}`);
  child.send('stop');
}
