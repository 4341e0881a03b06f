import { type Kysely, sql } from 'kysely';

// Counting events for reports leaves the writer's transaction. Frozen once run anywhere;
// docs/metrics.md explains it.
//
// Until now the trigger on ticket_events computed each statement's facts and samples and
// appended fresh rows to all fifteen report tables (five kinds, three grains) inside the
// writer's transaction: measured, 2.3 ms of the ~5.5 ms of PostgreSQL time a ticket creation
// costs, paid once per statement however few events it inserts. Now the trigger only notes
// the ids of the events that count in report_pending_events, and report_count_pending()
// counts the noted events in one set-based statement (the trigger's former statement, over
// many events at once), then forgets them. It runs in the scheduler's compaction turn and at
// the start of every report (src/domains/reports), so a report still sees every event
// committed before it: figures stay exact, and writers pay for one small insert.
//
// Without an argument it counts every noted event; with one, at most that many, oldest first
// (the scheduler and bulk loads go in batches). It takes a transaction-level advisory lock first: two callers never count the same
// events, and a caller that waited for another sees, once it returns, everything the other
// counted. Events of transactions still running are not visible to it and stay noted for the
// next call. Facts depend only on an event and the ticket's earlier events (0004), which never
// change, so counting later gives the figures counting at once gave.

/** The tables the trigger appended to (0005, 0006), and what each is keyed and summed by. */
const FIGURES = [
  'created_tickets',
  'answers',
  'first_answers',
  'incoming_messages',
  'next_answers',
  'calls',
  'missed_calls',
  'incoming_calls',
  'finished_calls',
  'chats',
  'missed_chats',
  'incoming_chats',
  'finished_chats',
  'chat_messages',
  'chat_pickups',
  'resolved_tickets',
  'reopened_tickets',
  'transfers_in',
  'transfers_out',
  'positive_ratings',
  'negative_ratings',
  'not_rated',
  'first_answer_seconds',
  'next_answer_seconds',
  'call_seconds',
  'chat_pickup_seconds',
  'chat_seconds',
];
const GRAINS = ['15m', 'day', 'month'] as const;
const FULL = ['bucket', 'department_id', 'agent_id', 'channel'];
const DEPARTMENT = ['bucket', 'department_id'];

interface Table {
  name: string;
  keys: string[];
  /** Sums of the facts, or a count of the binned samples. */
  source: 'facts' | 'samples';
}

const TABLES = GRAINS.flatMap((grain) =>
  (
    [
      { name: `report_counters_${grain}`, keys: FULL, source: 'facts' },
      { name: `report_department_counters_${grain}`, keys: DEPARTMENT, source: 'facts' },
      { name: `report_histograms_${grain}`, keys: [...FULL, 'metric', 'bin'], source: 'samples' },
      {
        name: `report_department_histograms_${grain}`,
        keys: [...DEPARTMENT, 'metric', 'bin'],
        source: 'samples',
      },
      {
        name: `report_department_coarse_histograms_${grain}`,
        keys: [...DEPARTMENT, 'metric', 'coarse_bin'],
        source: 'samples',
      },
    ] satisfies Table[]
  ).map((table) => ({ ...table, grain })),
);

const list = (names: readonly string[]) => names.join(', ');

/** Fresh rows for `table` from the facts or binned samples of the events in `new_events`. */
function insertFrom(table: Table & { grain: (typeof GRAINS)[number] }) {
  const keys = table.keys.map((k) =>
    k === 'bucket'
      ? table.grain === '15m'
        ? 'bucket'
        : `date_trunc('${table.grain}', bucket, 'UTC')`
      : k === 'coarse_bin'
        ? 'bin >> 5'
        : k,
  );
  const values = table.source === 'facts' ? FIGURES : ['n'];
  const sums = table.source === 'facts' ? FIGURES.map((v) => `sum(${v})`) : ['count(*)'];
  return `insert into ${table.name} (${list(table.keys)}, fresh, ${list(values)})
    select ${list(keys)}, true, ${list(sums)}
    from ${table.source}
    group by ${list(keys)}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;
const SAMPLE_ARGS = `e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

/** The facts and samples of the events in `new_events`, appended to every report table. */
function countingStatement(): { ctes: string[]; last: string } {
  const inserts = TABLES.map(insertFrom);
  return {
    ctes: [
      `facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`,
      `samples as materialized (
        select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in ('message_added', 'chat_recorded')
      )`,
      ...inserts.slice(0, -1).map((s, i) => `w${i} as (${s})`),
    ],
    last: inserts[inserts.length - 1]!,
  };
}

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table report_pending_events (event_id bigint primary key)`.execute(db);

  const { ctes, last } = countingStatement();
  await sql
    .raw(`
    create function report_count_pending(max_events integer default null) returns integer
    language plpgsql
    -- JIT compiling costs more than these statements take.
    set jit = off
    as $fn$
    declare
      counted integer;
    begin
      -- Nothing noted (or only what another caller has counted and committed): nothing to wait
      -- for. Rows another caller is still counting are still seen here, so this caller waits.
      if not exists (select 1 from report_pending_events) then
        return 0;
      end if;
      perform pg_advisory_xact_lock(hashtext('deskroute.report_pending'));
      with pending as (
        delete from report_pending_events
        where event_id in (select event_id from report_pending_events order by event_id limit max_events)
        returning event_id
      ),
      new_events as materialized (
        select e.* from ticket_events e where e.id in (select event_id from pending)
      ),
      ${ctes.join(',\n      ')},
      w_last as (${last})
      select count(*) into counted from pending;
      return counted;
    end
    $fn$`)
    .execute(db);

  await sql
    .raw(`
    create or replace function report_count_events() returns trigger
    language plpgsql
    as $fn$
    begin
      insert into report_pending_events (event_id)
        select e.id from new_events e where report_event_counts(e.type, e.data);
      return null;
    end
    $fn$`)
    .execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  // Count what is noted, then put 0006's trigger function back.
  await sql`select report_count_pending()`.execute(db);
  const { ctes, last } = countingStatement();
  await sql
    .raw(`
    create or replace function report_count_events() returns trigger
    language plpgsql
    set jit = off
    as $fn$
    begin
      if not exists (select 1 from new_events e where report_event_counts(e.type, e.data)) then
        return null;
      end if;
      with ${ctes.join(',\n      ')}
      ${last};
      return null;
    end
    $fn$`)
    .execute(db);
  await sql`drop function report_count_pending(integer)`.execute(db);
  await sql`drop table report_pending_events`.execute(db);
}
