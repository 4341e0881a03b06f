import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { KEPT_FOR, takeKeepingLock } from './cache.ts';
import { CURRENT_STATUSES, FIGURES, SAMPLE_EVENT_TYPES } from './figures.ts';
import {
  at,
  byTag,
  entityDims,
  filters,
  fullDetail,
  groupKeys,
  id,
  keyColumns,
  keyExpr,
  type ReportSpec,
} from './spec.ts';

// Counters: the report tables (what migrations/0005-0009 made), reading them over a report's
// pieces, and their upkeep (counting pending events, compacting fresh rows, rebuilding).

type Executor = Kysely<Database>;

type ReportTableKind = 'counters' | 'histograms';
const GRAINS = ['15m', 'day', 'month'] as const;
type Grain = (typeof GRAINS)[number];

/** A report table the trigger appends fresh rows to and the compactor folds, by its columns. */
export interface ReportTable {
  name: string;
  kind: ReportTableKind;
  grain: Grain;
  keys: string[];
  /** Summed when rows are folded: every figure in the counter tables, the count n elsewhere. */
  values: readonly string[];
}

/**
 * Every report table (migrations/0005_report_sketches.ts, 0006_report_coarse_histograms.ts):
 * counters, histograms and, by department, coarse histograms, by grain. Besides their keys and
 * values they have `fresh` (appended, not folded yet).
 */
export const REPORT_TABLES: ReportTable[] = GRAINS.flatMap((grain): ReportTable[] => {
  const full = ['bucket', 'department_id', 'agent_id', 'channel'];
  const department = ['bucket', 'department_id'];
  const tag = ['bucket', 'tag', 'department_id'];
  return [
    { name: `report_counters_${grain}`, kind: 'counters', grain, keys: full, values: FIGURES },
    {
      name: `report_department_counters_${grain}`,
      kind: 'counters',
      grain,
      keys: department,
      values: FIGURES,
    },
    {
      name: `report_histograms_${grain}`,
      kind: 'histograms',
      grain,
      keys: [...full, 'metric', 'bin'],
      values: ['n'],
    },
    {
      name: `report_department_histograms_${grain}`,
      kind: 'histograms',
      grain,
      keys: [...department, 'metric', 'bin'],
      values: ['n'],
    },
    {
      name: `report_department_coarse_histograms_${grain}`,
      kind: 'histograms',
      grain,
      keys: [...department, 'metric', 'coarse_bin'],
      values: ['n'],
    },
    // By tag (migrations/0038): the tags the ticket had right after the event.
    { name: `report_tag_counters_${grain}`, kind: 'counters', grain, keys: tag, values: FIGURES },
    {
      name: `report_tag_histograms_${grain}`,
      kind: 'histograms',
      grain,
      keys: [...tag, 'metric', 'bin'],
      values: ['n'],
    },
  ];
});

/**
 * The tag counters summed over departments (migrations/0043), by grain: compacted sums only,
 * kept by statement triggers on the tag counters (the fold and the rebuild write compacted
 * rows; the triggers add them). A report by tag over every department reads these and the tag
 * counters' fresh rows.
 */
export const TAG_TOTAL_TABLES = Object.fromEntries(
  GRAINS.map((grain) => [`report_tag_counters_${grain}`, `report_tag_total_counters_${grain}`]),
) as Record<string, string>;

const refs = (names: readonly string[]) => sql.join(names.map((n) => id(n)));

/** Tickets by status right now, kept by triggers on tickets (migrations/0009). */
export const CURRENT_COUNTS = {
  name: 'report_current_counts',
  keys: ['department_id', 'agent_id', 'channel', 'status'],
  values: ['n'],
} as const;

/**
 * The tables whose fresh rows make kept percentiles stale (cache.ts). Kept counts are deleted
 * by triggers on the counter tables when their fresh rows are folded (migrations/0053).
 */
const KEEPS_WATCH = ['report_histograms_15m', 'report_tag_histograms_15m'];
const KEPT_TABLES = ['report_percentile_cache', 'report_count_cache'];

/** The table report_department_quantiles_month summarises (migrations/0008). */
const QUANTILES_SOURCE = 'report_department_histograms_month';

/** Only events of these types have samples: the others need not go through the function. */
const withSamples = sql`e.type in (${sql.join(SAMPLE_EVENT_TYPES.map((t) => sql.lit(t)))})`;

/** Each event's tags right after it as rows (migrations/0038); an untagged ticket's: one null. */
const EVENT_TAG_ROWS = sql`cross join lateral unnest(coalesce(nullif(report_event_tags(e.ticket_id, e.id), '{}'), array[null::text])) tg(tag)`;

const EVENT_ARGS = sql`e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

/**
 * Reports by tag from the events: one row per tag, the tags the ticket had right after the
 * event (as the counters keep them), or with attribution=current the tags it has now.
 */
function eventTags(spec: ReportSpec): RawBuilder<unknown> {
  if (!byTag(spec)) return sql``;
  const tags = spec.attribution === 'current' ? sql`t.tags` : sql`report_event_tags(e.ticket_id, e.id)`;
  return sql`cross join lateral unnest(coalesce(nullif(${tags}, '{}'), array[null::text])) tg(tag)`;
}
const tagColumn = (spec: ReportSpec) => (byTag(spec) ? sql`tg.tag,` : sql``);

// The events a report (or a chunk of one: query.ts, chunkable) counts from: every figure is
// counted at or before its event's time, in the 15-minute bucket of it.
const eventsFrom = (spec: ReportSpec) => spec.chunk?.from ?? spec.from;
const eventsTo = (spec: ReportSpec) => spec.chunk?.to ?? spec.to;

/** Facts computed from the events themselves, shaped like a 15-minute counter table. */
function eventFacts(spec: ReportSpec): RawBuilder<unknown> {
  const current = spec.attribution === 'current';
  return sql`(
    select f.bucket, ${current ? sql`t.department_id` : sql`f.department_id`} as department_id,
      f.agent_id, f.channel, ${tagColumn(spec)} ${sql.join(FIGURES.map((f) => id(`f.${f}`)))}
    from ticket_events e
    ${current ? sql`join tickets t on t.id = e.ticket_id` : sql``}
    cross join lateral report_event_facts(${EVENT_ARGS}) f
    ${eventTags(spec)}
    -- a rating after the range may still take back a not_rated inside it, and a breach
    -- recorded after it counts at its due, which may lie inside it (migrations/0022)
    where e.occurred_at >= ${at(eventsFrom(spec))}
      and (e.occurred_at < ${at(eventsTo(spec))} or e.type in ('rated', 'sla.breached'))
      and report_event_counts(e.type, e.data)
  )`;
}

/** Durations binned from the events themselves, shaped like a 15-minute histogram table. */
function eventHistogram(spec: ReportSpec): RawBuilder<unknown> {
  const current = spec.attribution === 'current';
  return sql`(
    select s.bucket, ${current ? sql`t.department_id` : sql`s.department_id`} as department_id,
      s.agent_id, s.channel, ${tagColumn(spec)} s.metric, report_duration_bin(s.seconds) as bin, 1 as n
    from ticket_events e
    ${current ? sql`join tickets t on t.id = e.ticket_id` : sql``}
    cross join lateral report_event_samples(e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at) s
    ${eventTags(spec)}
    where e.occurred_at >= ${at(eventsFrom(spec))} and e.occurred_at < ${at(eventsTo(spec))} and ${withSamples}
  )`;
}

/** Rows of the tables of one kind over the signed pieces, with the period, the piece and its sign. */
export function overPieces(
  spec: ReportSpec,
  kind: 'counters' | 'histograms' | 'coarse_histograms',
  pieces: RawBuilder<unknown> = sql`pieces`,
): RawBuilder<unknown> {
  if (spec.source === 'events') {
    const rows = kind === 'counters' ? eventFacts(spec) : eventHistogram(spec);
    return sql`select p.period_start, p.sign, p.piece, p.grain as piece_grain, c.* from pieces p join ${rows} c on c.bucket >= p.lo and c.bucket < p.hi`;
  }
  const prefix = byTag(spec)
    ? `report_tag_${kind}`
    : fullDetail(spec)
      ? `report_${kind}`
      : `report_department_${kind}`;
  const grains = ['month', 'day', '15m'] as const;
  const where = filters(spec, { department: 'c.department_id', agent: 'c.agent_id', channel: 'c.channel' });
  // By tag over every department, not grouped by department: the sums over departments, and
  // the rows not folded into them yet (migrations/0043), a twentieth of the rows at 20
  // departments.
  const totals =
    kind === 'counters' &&
    byTag(spec) &&
    spec.departments === null &&
    !entityDims(spec).includes('department');
  const rows = (grain: (typeof grains)[number]) => {
    const table = `${prefix}_${grain}`;
    if (!totals) {
      return sql`select * from ${sql.table(table)} c where c.bucket >= p.lo and c.bucket < p.hi and ${where}`;
    }
    const figures = refs(FIGURES);
    return sql`
      select c.bucket, c.tag, null::uuid as department_id, ${figures}
      from ${sql.table(TAG_TOTAL_TABLES[table]!)} c where c.bucket >= p.lo and c.bucket < p.hi
      union all
      select c.bucket, c.tag, c.department_id, ${figures}
      from ${sql.table(table)} c where c.fresh and c.bucket >= p.lo and c.bucket < p.hi`;
  };
  // One index range scan per piece (OFFSET 0 keeps the planner from flattening it into a
  // join): its row estimates for the pieces are guesses, and a wrong guess made it compare
  // every piece with every row of the range.
  return sql.join(
    grains.map(
      (grain) => sql`
        select p.period_start, p.sign, p.piece, p.grain as piece_grain, c.*
        from ${pieces} p
        cross join lateral (${rows(grain)} offset 0) c
        where p.grain = ${grain}`,
    ),
    sql` union all `,
  );
}

/** The counts of each group: signed sums of the figures over the pieces of its period. */
export function countsAgg(spec: ReportSpec): RawBuilder<unknown> {
  const sums = sql.join(FIGURES.map((f) => sql`sum(${id(`c.${f}`)} * c.sign)::float8 as ${id(f)}`));
  const where = filters(spec, { department: 'c.department_id', agent: 'c.agent_id', channel: 'c.channel' });
  return sql`
    select ${keyColumns(spec, 'c')} ${sums}
    from (${overPieces(spec, 'counters')}) c
    where ${where}
    group by ${sql.join(groupKeys(spec, 'c'))}`;
}

/**
 * The groups (the period and the one entity) that have counted events, without their figures:
 * every event that gives a sample or a goal's count is counted too (report_event_samples and
 * report_event_facts), so these hold every group the percentiles or the goal could find, and
 * reading them costs a count, not a percentile.
 */
export function seenAgg(spec: ReportSpec): RawBuilder<unknown> {
  const where = filters(spec, { department: 'c.department_id', agent: 'c.agent_id', channel: 'c.channel' });
  return sql`
    select distinct ${keyColumns(spec, 'c')} true as seen
    from (${overPieces(spec, 'counters')}) c
    where ${where}`;
}

/** Tickets by status right now, by their current department, assignee and channel. */
export function currentAgg(spec: ReportSpec): RawBuilder<unknown> {
  if (byTag(spec)) return currentByTag(spec);
  // Kept by triggers on tickets (migrations/0009): sums of +1/−1 per key, fresh or compacted.
  const t = sql`report_current_counts t`;
  const where = filters(spec, { department: 't.department_id', agent: 't.agent_id', channel: 't.channel' });
  const keys = entityDims(spec).map((d) => keyExpr('t', d));
  const counts = sql.join(
    CURRENT_STATUSES.map(
      (s) => sql`coalesce(sum(t.n) filter (where t.status = ${s}), 0)::float8 as ${id(`current_${s}`)}`,
    ),
  );
  return sql`
    select ${keyColumns(spec, 't', false)} ${counts}
    from ${t}
    where ${where}
    ${keys.length > 0 ? sql`group by ${sql.join(keys)}` : sql``}`;
}

/**
 * Tickets by status right now, by their tags now (and current department, assignee, channel):
 * the counts kept by triggers have no tag, so this reads the unfinished tickets themselves
 * (the status index of migrations/0009 finds them).
 */
function currentByTag(spec: ReportSpec): RawBuilder<unknown> {
  const where = filters(spec, {
    department: 't.department_id',
    agent: 't.assignee_id',
    channel: 't.channel',
  });
  const rows = sql`(
    select t.department_id, t.assignee_id as agent_id, t.channel, t.status, 1 as n, tg.tag
    from tickets t
    cross join lateral unnest(coalesce(nullif(t.tags, '{}'), array[null::text])) tg(tag)
    where t.status in (${sql.join(CURRENT_STATUSES.map((s) => sql.lit(s)))}) and ${where}
  ) t`;
  const keys = entityDims(spec).map((d) => keyExpr('t', d));
  const counts = sql.join(
    CURRENT_STATUSES.map(
      (s) => sql`coalesce(sum(t.n) filter (where t.status = ${s}), 0)::float8 as ${id(`current_${s}`)}`,
    ),
  );
  return sql`
    select ${keyColumns(spec, 't', false)} ${counts}
    from ${rows}
    ${keys.length > 0 ? sql`group by ${sql.join(keys)}` : sql``}`;
}

/**
 * Folds the fresh rows counting appended into the one compacted row of each key, table by
 * table, in the caller's transaction, and keeps the ranks' bins of the (month, department)
 * pairs whose histograms changed (migrations/0008). Each statement removes fresh rows and adds their sums to
 * the compacted rows at once, so a report reads the same figures before and after. Rows that
 * uncommitted transactions are appending stay fresh for the next run. Returns the number of
 * fresh rows folded.
 */
export async function compactReportTables(trx: Transaction<Database>): Promise<number> {
  // A keeper's statement in flight is waited for (cache.ts): it must not compute across a fold.
  await takeKeepingLock.execute(trx);
  for (const kept of KEPT_TABLES) {
    await sql`delete from ${sql.table(kept)} where created_at <= now() - ${KEPT_FOR}`.execute(trx);
  }
  let folded = 0;
  for (const table of [...REPORT_TABLES, CURRENT_COUNTS]) {
    const keys = refs(table.keys);
    const values = refs(table.values);
    const { rows } = await sql<{
      folded: string | number;
      buckets: Date[] | null;
      departments: string[] | null;
    }>`
      with gone as (delete from ${sql.table(table.name)} where fresh returning *),
      ${
        // Kept percentiles (cache.ts) of the periods these rows lie in are stale once they are
        // folded: deleted by the statement that folds them, so none is missed.
        KEEPS_WATCH.includes(table.name)
          ? sql`stale as (
              delete from report_percentile_cache k
              where exists (select 1 from (select distinct bucket from gone) g where g.bucket >= k.lo and g.bucket < k.hi)
            ),`
          : sql``
      }
      added as (
        insert into ${sql.table(table.name)} as t (${keys}, fresh, ${values})
        select ${keys}, false, ${sql.join(table.values.map((v) => sql`sum(${id(v)})`))}
        from gone
        group by ${keys}
        on conflict (${keys}) where not fresh do update set
          ${sql.join(
            table.values.map((v) => sql`${id(v)} = ${id(`t.${v}`)} + ${id(`excluded.${v}`)}`),
            sql`, `,
          )}
      )
      ${
        table.name === QUANTILES_SOURCE
          ? sql`select (select count(*) from gone) as folded, k.buckets, k.departments
            from (
              select array_agg(d.bucket) as buckets, array_agg(d.department_id) as departments
              from (select distinct bucket, department_id from gone) d
            ) k`
          : sql`select count(*) as folded, null as buckets, null as departments from gone`
      }`.execute(trx);
    folded += Number(rows[0]?.folded ?? 0);
    const { buckets, departments } = rows[0] ?? {};
    // The months whose histograms changed get their ranks' bins again (migrations/0008).
    if (buckets && departments) {
      await sql`select report_refresh_month_quantiles(${buckets}::timestamptz[], ${departments}::uuid[])`.execute(
        trx,
      );
    }
  }
  return folded;
}

/**
 * Counts the events the trigger noted as pending (migrations/0007): appends their facts and
 * samples to the report tables as fresh rows. Without `batch`, every pending event: after it
 * returns, the counters include every event committed before it was called. With `batch`, at
 * most that many, oldest first. Returns how many events it counted.
 */
export async function countPendingEvents(db: Executor, batch?: number): Promise<number> {
  const { rows } = await sql<{ counted: number }>`
    select report_count_pending(${batch ?? null}::integer) as counted`.execute(db);
  return Number(rows[0]?.counted ?? 0);
}

/**
 * Takes the compaction lock for the rest of the transaction, if no other instance holds it:
 * one compactor at a time, the others skip their turn.
 */
export async function tryReportCompactionLock(trx: Transaction<Database>): Promise<boolean> {
  const { rows } = await sql<{ locked: boolean }>`
    select pg_try_advisory_xact_lock(hashtext('deskroute.report_compaction')) as locked`.execute(trx);
  return rows[0]?.locked === true;
}

/**
 * Recomputes every counter and histogram from ticket_events: after a bulk import that bypassed
 * the trigger, or to repair. Runs in the caller's transaction; takes an exclusive lock on the
 * report tables so no event is counted twice meanwhile. Everything comes out compacted.
 */
export async function rebuildReportCounters(db: Executor): Promise<void> {
  // Nothing is kept meanwhile (cache.ts keeps under this lock): no kept entry survives.
  await takeKeepingLock.execute(db);
  for (const kept of KEPT_TABLES) await sql`delete from ${sql.table(kept)}`.execute(db);
  await sql`lock table ticket_events in share mode`.execute(db);
  await sql`truncate report_pending_events, ${sql.join(
    [...REPORT_TABLES.map((t) => t.name), ...Object.values(TAG_TOTAL_TABLES)].map((t) => sql.table(t)),
  )}`.execute(db);
  const table = (kind: ReportTableKind, full: boolean, grain: Grain) =>
    REPORT_TABLES.find(
      (t) =>
        t.kind === kind &&
        t.grain === grain &&
        t.keys.includes('agent_id') === full &&
        !t.keys.includes('coarse_bin'),
    )!;
  const bucketOf = (grain: Grain) =>
    grain === '15m' ? sql`bucket` : sql`date_trunc(${sql.lit(grain)}, bucket, 'UTC')`;
  const insert = (
    target: ReportTable,
    from: RawBuilder<unknown>,
    aggregate: (v: string) => RawBuilder<unknown>,
  ) => {
    const keys = target.keys.map((k) =>
      k === 'bucket' ? bucketOf(target.grain) : k === 'coarse_bin' ? sql`bin >> 5` : id(k),
    );
    return sql`
      insert into ${sql.table(target.name)} (${refs(target.keys)}, fresh, ${refs(target.values)})
      select ${sql.join(keys)}, false, ${sql.join(target.values.map(aggregate))}
      from ${from} group by ${sql.join(keys)}`.execute(db);
  };
  await insert(
    table('counters', true, '15m'),
    sql`(select f.* from ticket_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
      where report_event_counts(e.type, e.data)) facts`,
    (v) => sql`sum(${id(v)})`,
  );
  await insert(
    table('histograms', true, '15m'),
    sql`(select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
      from ticket_events e
      cross join lateral report_event_samples(e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at) s
      where ${withSamples}) samples`,
    () => sql`count(*)`,
  );
  const sum = (v: string) => sql`sum(${id(v)})`;
  for (const kind of ['counters', 'histograms'] as const) {
    await insert(table(kind, true, 'day'), sql.table(table(kind, true, '15m').name), sum);
    await insert(table(kind, true, 'month'), sql.table(table(kind, true, 'day').name), sum);
    for (const grain of GRAINS)
      await insert(table(kind, false, grain), sql.table(table(kind, true, grain).name), sum);
  }
  for (const grain of GRAINS) {
    const coarse = REPORT_TABLES.find((t) => t.grain === grain && t.keys.includes('coarse_bin'))!;
    await insert(coarse, sql.table(table('histograms', false, grain).name), sum);
  }
  // By tag (migrations/0038): each event once per tag the ticket had right after it.
  const tagTable = (kind: ReportTableKind, grain: Grain) =>
    REPORT_TABLES.find((t) => t.kind === kind && t.grain === grain && t.keys.includes('tag'))!;
  await insert(
    tagTable('counters', '15m'),
    sql`(select tg.tag, f.* from ticket_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
      ${EVENT_TAG_ROWS} where report_event_counts(e.type, e.data)) facts`,
    sum,
  );
  await insert(
    tagTable('histograms', '15m'),
    sql`(select tg.tag, s.bucket, s.department_id, s.metric, report_duration_bin(s.seconds) as bin
      from ticket_events e
      cross join lateral report_event_samples(e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at) s
      ${EVENT_TAG_ROWS} where ${withSamples}) samples`,
    () => sql`count(*)`,
  );
  for (const kind of ['counters', 'histograms'] as const) {
    await insert(tagTable(kind, 'day'), sql.table(tagTable(kind, '15m').name), sum);
    await insert(tagTable(kind, 'month'), sql.table(tagTable(kind, 'day').name), sum);
  }
  await sql`select report_refresh_month_quantiles(null, null)`.execute(db);
  // The current_* counts come from the tickets as they are (migrations/0009).
  await sql`lock table tickets in share mode`.execute(db);
  await sql`truncate report_current_counts`.execute(db);
  await sql`
    insert into report_current_counts (department_id, agent_id, channel, status, fresh, n)
    select department_id, assignee_id, channel, status, false, count(*)
    from tickets where status in (${sql.join(CURRENT_STATUSES.map((s) => sql.lit(s)))})
    group by department_id, assignee_id, channel, status`.execute(db);
}
