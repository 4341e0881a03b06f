import { type Kysely, sql } from 'kysely';

// Coarse histograms beside the fine ones, for percentiles by department. Frozen once run
// anywhere; docs/metrics.md explains it.
//
// A year by month by department merges ~340 fine bins per metric and department-month: some
// 330,000 rows to sort and run through, well over a second. A coarse bin is 32 fine bins
// (fine bin >> 5, so a factor of γ^32 ≈ 1.38 wide): ~15 per metric and department-month. A
// quantile is then found in two steps, with the same result as from the fine bins alone:
// the coarse running count says which coarse bin holds the k-th smallest value and how many
// come before it; the fine rows of that coarse bin alone, read by index, say which fine bin.
// Only the tables by department get coarse ones: the reports that merge many fine rows per
// group are the ones that read those; the tables by agent and channel have few per group.
//
// Same life as the fine tables of 0005: the trigger appends fresh rows to both in the same
// statement, the compactor folds both (the REPORT_TABLES list of
// src/domains/reports/repository.ts), reads sum fresh and compacted rows alike.

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
  /** What each key is computed from in the trigger's sources. */
  from: Record<string, string>;
  values: string[];
  source: 'facts' | 'samples';
}

const FULL = ['bucket', 'department_id', 'agent_id', 'channel'];
const DEPARTMENT = ['bucket', 'department_id'];
// 0005's tables, then the coarse ones: the trigger fills them all.
const TABLES: Table[] = GRAINS.flatMap((grain): Table[] => [
  { name: `report_counters_${grain}`, grain, keys: FULL, from: {}, values: FIGURES, source: 'facts' },
  {
    name: `report_department_counters_${grain}`,
    grain,
    keys: DEPARTMENT,
    from: {},
    values: FIGURES,
    source: 'facts',
  },
  {
    name: `report_histograms_${grain}`,
    grain,
    keys: [...FULL, 'metric', 'bin'],
    from: {},
    values: ['n'],
    source: 'samples',
  },
  {
    name: `report_department_histograms_${grain}`,
    grain,
    keys: [...DEPARTMENT, 'metric', 'bin'],
    from: {},
    values: ['n'],
    source: 'samples',
  },
  {
    name: `report_department_coarse_histograms_${grain}`,
    grain,
    keys: [...DEPARTMENT, 'metric', 'coarse_bin'],
    from: { coarse_bin: 'bin >> 5' },
    values: ['n'],
    source: 'samples',
  },
]);
const COARSE = TABLES.filter((t) => t.name.includes('_coarse_'));

const list = (names: readonly string[]) => names.join(', ');

function bucketOf(grain: Grain) {
  return grain === '15m' ? 'bucket' : `date_trunc('${grain}', bucket, 'UTC')`;
}

/** Rows for `table` from the trigger's facts or binned samples, grouped by its keys. */
function insertFrom(table: Table) {
  const keys = table.keys.map((k) => (k === 'bucket' ? bucketOf(table.grain) : (table.from[k] ?? k)));
  const values = table.source === 'facts' ? table.values.map((v) => `sum(${v})`) : ['count(*)'];
  return `insert into ${table.name} (${list(table.keys)}, fresh, ${list(table.values)})
    select ${list(keys)}, true, ${list(values)}
    from ${table.source}
    group by ${list(keys)}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;
const SAMPLE_ARGS = `e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

export async function up(db: Kysely<any>): Promise<void> {
  for (const table of COARSE) {
    await sql
      .raw(
        `create table ${table.name} (
          bucket timestamptz not null,
          department_id uuid,
          fresh boolean not null default true,
          metric smallint not null,
          coarse_bin integer not null,
          n integer not null
        )`,
      )
      .execute(db);
    await sql
      .raw(
        `create unique index ${table.name}_key on ${table.name} (${list(table.keys)}) nulls not distinct where not fresh`,
      )
      .execute(db);
    // Reports read every coarse row of a range: from the index alone.
    await sql
      .raw(
        `create index ${table.name}_bucket_idx on ${table.name} (bucket) include (department_id, metric, coarse_bin, fresh, n)`,
      )
      .execute(db);
    await sql
      .raw(`create index ${table.name}_department_idx on ${table.name} (department_id, bucket)`)
      .execute(db);
    await sql.raw(`create index ${table.name}_fresh_idx on ${table.name} (bucket) where fresh`).execute(db);

    // Built from the fine rows, compacted.
    const fine = table.name.replace('_coarse_', '_');
    await sql
      .raw(
        `insert into ${table.name} (bucket, department_id, fresh, metric, coarse_bin, n)
        select bucket, department_id, false, metric, bin >> 5, sum(n)
        from ${fine} group by bucket, department_id, metric, bin >> 5`,
      )
      .execute(db);
    // The second step's look-up: the fine rows of one coarse row (one key, a range of bins),
    // fresh or not, read from the index alone. The key index of 0005 covers compacted rows
    // only; the expression puts "no department" on the index as a key like any other (and
    // department_id must be on it too for PostgreSQL to skip the table).
    await sql
      .raw(
        `create index ${fine}_bin_idx on ${fine}
          (bucket, coalesce(department_id, '00000000-0000-0000-0000-000000000000'::uuid), metric, bin)
          include (department_id, n)`,
      )
      .execute(db);
    await sql.raw(`analyze ${table.name}`).execute(db);
    await sql.raw(`analyze ${fine}`).execute(db);
  }

  // 0005's trigger function, with the coarse tables among the tables it appends to.
  const facts = `facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`;
  const samples = `samples as materialized (
        select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in ('message_added', 'chat_recorded')
      )`;
  await replaceTrigger(db, [facts, samples], TABLES.map(insertFrom));
}

async function replaceTrigger(db: Kysely<any>, sources: string[], inserts: string[]) {
  const ctes = [...sources, ...inserts.slice(0, -1).map((s, i) => `w${i} as (${s})`)];
  await sql
    .raw(`
    create or replace function report_count_events() returns trigger
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
}

export async function down(db: Kysely<any>): Promise<void> {
  const facts = `facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`;
  const samples = `samples as materialized (
        select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in ('message_added', 'chat_recorded')
      )`;
  await replaceTrigger(db, [facts, samples], TABLES.filter((t) => !COARSE.includes(t)).map(insertFrom));
  for (const table of COARSE) {
    await sql.raw(`drop index ${table.name.replace('_coarse_', '_')}_bin_idx`).execute(db);
    await sql.raw(`drop table ${table.name}`).execute(db);
  }
}
