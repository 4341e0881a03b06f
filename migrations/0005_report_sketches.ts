import { type Kysely, sql } from 'kysely';

// Report tables, second layout. Frozen once run anywhere; docs/metrics.md explains it.
//
// - Append-only: the trigger on ticket_events only INSERTs rows marked `fresh`, so request
//   transactions never lock rows another transaction needs (0004's upserts could deadlock two
//   transactions that each wrote events in two statements, and made writers of one department
//   queue on its counter rows). A compactor (src/domains/reports/repository.ts,
//   compactReportTables, run by the scheduler) folds fresh rows into one compacted row per key.
//   Reads sum every row, fresh or not, so compaction never changes a figure.
// - Percentiles come from mergeable log histograms instead of raw samples: a duration v > 0
//   falls in bin ceil(ln v / ln γ), γ = (1 + α) / (1 − α), α = 0.005, whose representative
//   2γ^i / (γ + 1) is within 0.5 % of every value in the bin; 0 has a bin of its own.
// - A UTC-month grain besides 15 minutes and UTC days, for counters and histograms, by
//   department, agent and channel and by department alone. Every figure is a count or a sum,
//   so a report period reads whole months and subtracts or adds the differences at its edges.
// Report tables are derived from ticket_events: this migration drops 0004's and rebuilds the
// new ones from the events. report_event_facts(), report_event_samples(), report_event_counts()
// and report_bucket() of 0004 stay as they are.

/** The additive figures, in the order of report_event_facts()'s columns after the four keys. */
const COUNTS = [
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
];
const SUMS = [
  'first_answer_seconds',
  'next_answer_seconds',
  'call_seconds',
  'chat_pickup_seconds',
  'chat_seconds',
];
const FIGURES = [...COUNTS, ...SUMS];

const GRAINS = ['15m', 'day', 'month'] as const;
type Grain = (typeof GRAINS)[number];

interface Table {
  name: string;
  grain: Grain;
  keys: string[];
  values: string[];
  kind: 'counters' | 'histograms';
}

const FULL = ['bucket', 'department_id', 'agent_id', 'channel'];
const DEPARTMENT = ['bucket', 'department_id'];
const TABLES: Table[] = GRAINS.flatMap((grain): Table[] => [
  { name: `report_counters_${grain}`, grain, keys: FULL, values: FIGURES, kind: 'counters' },
  { name: `report_department_counters_${grain}`, grain, keys: DEPARTMENT, values: FIGURES, kind: 'counters' },
  {
    name: `report_histograms_${grain}`,
    grain,
    keys: [...FULL, 'metric', 'bin'],
    values: ['n'],
    kind: 'histograms',
  },
  {
    name: `report_department_histograms_${grain}`,
    grain,
    keys: [...DEPARTMENT, 'metric', 'bin'],
    values: ['n'],
    kind: 'histograms',
  },
]);

const OLD_TABLES = [
  'report_counters_15m',
  'report_counters_day',
  'report_department_counters_15m',
  'report_department_counters_day',
  'report_samples',
];

const list = (names: readonly string[]) => names.join(', ');

function bucketOf(grain: Grain) {
  return grain === '15m' ? 'bucket' : `date_trunc('${grain}', bucket, 'UTC')`;
}

/** Rows for `table` from a source of 15-minute facts or binned samples, grouped by its keys. */
function insertFrom(table: Table, source: string, fresh: boolean) {
  const keys = table.keys.map((k) => (k === 'bucket' ? bucketOf(table.grain) : k));
  const values = table.kind === 'counters' ? table.values.map((v) => `sum(${v})`) : ['count(*)'];
  return `insert into ${table.name} (${list(table.keys)}, fresh, ${list(table.values)})
    select ${list(keys)}, ${fresh}, ${list(values)}
    from ${source}
    group by ${list(keys)}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;
const SAMPLE_ARGS = `e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

export async function up(db: Kysely<any>): Promise<void> {
  await sql`drop trigger report_count_events on ticket_events`.execute(db);
  await sql`drop function report_count_events()`.execute(db);
  await sql.raw(`drop table ${list(OLD_TABLES)}`).execute(db);

  // α = 0.005: ln γ = ln(1.005 / 0.995). Values below 0 never occur (durations are checked
  // on input); were one written by hand it would be binned as 0.
  await sql`
    create function report_duration_bin(seconds double precision) returns integer
    language sql immutable parallel safe
    return case when seconds > 0 then ceil(ln(seconds) / ln(1.005::float8 / 0.995::float8))::int else -1000000 end`.execute(
    db,
  );
  await sql`
    create function report_bin_value(bin integer) returns double precision
    language sql immutable parallel safe
    return case when bin = -1000000 then 0::float8
      else 2 * power(1.005::float8 / 0.995::float8, bin) / (1.005::float8 / 0.995::float8 + 1) end`.execute(
    db,
  );

  for (const table of TABLES) {
    const dims = table.keys.includes('agent_id')
      ? 'department_id uuid, agent_id uuid, channel text not null,'
      : 'department_id uuid,';
    const values =
      table.kind === 'counters'
        ? [
            ...COUNTS.map((c) => `${c} integer not null default 0`),
            ...SUMS.map((s) => `${s} double precision not null default 0`),
          ]
        : ['metric smallint not null', 'bin integer not null', 'n integer not null'];
    await sql
      .raw(
        `create table ${table.name} (
          bucket timestamptz not null,
          ${dims}
          fresh boolean not null default true,
          ${values.join(',\n          ')}
        )`,
      )
      .execute(db);
    // One compacted row per key; fresh rows are any number. NULLS NOT DISTINCT: "no
    // department" and "no agent" are keys like any other (PostgreSQL 15+).
    await sql
      .raw(
        `create unique index ${table.name}_key on ${table.name} (${list(table.keys)}) nulls not distinct where not fresh`,
      )
      .execute(db);
    await sql.raw(`create index ${table.name}_bucket_idx on ${table.name} (bucket)`).execute(db);
    await sql
      .raw(`create index ${table.name}_department_idx on ${table.name} (department_id, bucket)`)
      .execute(db);
    // The compactor looks for fresh rows: few, and found without reading the rest.
    await sql.raw(`create index ${table.name}_fresh_idx on ${table.name} (bucket) where fresh`).execute(db);
  }

  // One statement per insert batch: the batch's facts and binned durations once, then every
  // table from them. Only inserts: no row of an earlier transaction is locked or waited for.
  const facts = `facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`;
  const samples = `samples as materialized (
        select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in ('message_added', 'chat_recorded')
      )`;
  const inserts = TABLES.map((t) => insertFrom(t, t.kind === 'counters' ? 'facts' : 'samples', true));
  const ctes = [facts, samples, ...inserts.slice(0, -1).map((s, i) => `w${i} as (${s})`)];
  await sql
    .raw(`
    create function report_count_events() returns trigger
    language plpgsql
    -- JIT compiling costs more than these statements take.
    set jit = off
    as $fn$
    begin
      if not exists (select 1 from new_events e where report_event_counts(e.type, e.data)) then
        return null;
      end if;
      with ${ctes.join(',\n      ')}
      ${inserts[inserts.length - 1]};
      return null;
    end
    $fn$`)
    .execute(db);
  await sql`
    create trigger report_count_events after insert on ticket_events
    referencing new table as new_events
    for each statement execute function report_count_events()`.execute(db);

  // Rebuild from the events, compacted from the start; the coarser grains from the finer.
  const byGrain = (kind: Table['kind'], scope: 'full' | 'department', grain: Grain) =>
    TABLES.find(
      (t) => t.kind === kind && t.grain === grain && t.keys.includes('agent_id') === (scope === 'full'),
    )!;
  await sql
    .raw(
      insertFrom(
        byGrain('counters', 'full', '15m'),
        `(select f.* from ticket_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
          where report_event_counts(e.type, e.data)) facts`,
        false,
      ),
    )
    .execute(db);
  await sql
    .raw(
      insertFrom(
        byGrain('histograms', 'full', '15m'),
        `(select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
          from ticket_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
          where e.type in ('message_added', 'chat_recorded')) samples`,
        false,
      ),
    )
    .execute(db);
  for (const kind of ['counters', 'histograms'] as const) {
    const values = kind === 'counters' ? FIGURES : ['n'];
    const rollUp = (target: Table, source: Table) => {
      const keys = target.keys.map((k) => (k === 'bucket' ? bucketOf(target.grain) : k));
      return `insert into ${target.name} (${list(target.keys)}, fresh, ${list(values)})
        select ${list(keys)}, false, ${list(values.map((v) => `sum(${v})`))}
        from ${source.name} group by ${list(keys)}`;
    };
    await sql.raw(rollUp(byGrain(kind, 'full', 'day'), byGrain(kind, 'full', '15m'))).execute(db);
    await sql.raw(rollUp(byGrain(kind, 'full', 'month'), byGrain(kind, 'full', 'day'))).execute(db);
    for (const grain of GRAINS) {
      await sql.raw(rollUp(byGrain(kind, 'department', grain), byGrain(kind, 'full', grain))).execute(db);
    }
  }
  for (const table of TABLES) await sql.raw(`analyze ${table.name}`).execute(db);
}

export async function down(): Promise<void> {
  // 0004's tables held the same figures in a layout with raw samples that these no longer
  // keep; going back means re-running 0004's up on a copy restored from before this migration.
  throw new Error('0005_report_sketches cannot be undone: restore a backup taken before it');
}
