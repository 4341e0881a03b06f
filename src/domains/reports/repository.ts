import { CompiledQuery, type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { CHANNELS } from '../tickets/schemas.ts';
import {
  DECIMALS,
  FIGURES,
  type Formula,
  type Metric,
  SAMPLE_METRICS,
  type SampleMetric,
} from './metrics.ts';

type Executor = Kysely<Database>;

export type Dimension = 'time' | 'department' | 'agent' | 'channel';
export type EntityDimension = Exclude<Dimension, 'time'>;
export type Interval = 'none' | 'hour' | 'day' | 'week' | 'month' | 'year';

/** A report query, resolved and checked by the service: the repository trusts it. */
export interface ReportSpec {
  from: Date;
  to: Date;
  timezone: string;
  interval: Interval;
  /** Days after Monday that weeks start on: 0 Monday ... 6 Sunday. */
  weekShift: number;
  /** Grouping dimensions in output order; `time` groups by the interval's periods. */
  groupBy: Dimension[];
  /** Departments to count (null in the list: tickets without one); null: every department. */
  departments: (string | null)[] | null;
  agents: (string | null)[] | null;
  channels: string[] | null;
  attribution: 'event' | 'current';
  /** counters: the pre-aggregated tables; events: computed from ticket_events on the fly. */
  source: 'counters' | 'events';
  metrics: readonly Metric[];
  sort: { key: string; direction: 'asc' | 'desc' }[];
}

export type SortValue = string | number | boolean | null;

/** One row of a report: the group it describes, its figures, and its sort key for cursors. */
export interface ReportRow {
  period_start: string | null;
  period_end: string | null;
  department_id: string | null;
  department_name: string | null;
  /** The department was deleted; department_name is the name it had then. */
  department_deleted: boolean;
  agent_id: string | null;
  agent_name: string | null;
  agent_deleted: boolean;
  channel: string | null;
  values: Record<string, number | null>;
  sortKey: SortValue[];
}

// "No department" and "no agent" as a key that joins and groups like any other.
const NONE = '00000000-0000-0000-0000-000000000000';

const DIMENSION_COLUMN: Record<EntityDimension, 'department_id' | 'agent_id' | 'channel'> = {
  department: 'department_id',
  agent: 'agent_id',
  channel: 'channel',
};

// The tickets' own list: a channel added there is reported without a second edit.
export { CHANNELS };

const STEP: Record<Exclude<Interval, 'none' | 'hour'>, string> = {
  day: '1 day',
  week: '7 days',
  month: '1 month',
  year: '1 year',
};

const id = (name: string) => sql.ref(name);
const at = (instant: Date) => sql`${instant.toISOString()}::timestamptz`;
const entityDims = (spec: ReportSpec) => spec.groupBy.filter((d): d is EntityDimension => d !== 'time');
const byTime = (spec: ReportSpec) => spec.groupBy.includes('time');

/** Keys as they are grouped and joined: uuids with NONE for null. */
function keyExpr(alias: string, dim: EntityDimension): RawBuilder<unknown> {
  const column = id(`${alias}.${DIMENSION_COLUMN[dim]}`);
  return dim === 'channel' ? sql`${column}` : sql`coalesce(${column}, ${sql.lit(NONE)}::uuid)`;
}

function inList(column: RawBuilder<unknown>, values: (string | null)[], cast: 'uuid' | 'text') {
  const ids = values.filter((v): v is string => v !== null);
  const parts: RawBuilder<unknown>[] = [];
  if (ids.length > 0)
    parts.push(sql`${column} in (${sql.join(ids.map((v) => sql`${v}::${sql.raw(cast)}`))})`);
  if (values.includes(null)) parts.push(sql`${column} is null`);
  return parts.length > 0 ? sql`(${sql.join(parts, sql` or `)})` : sql`false`;
}

/** The department, agent and channel filters, on columns named like the counter tables'. */
function filters(spec: ReportSpec, columns: { department: string; agent: string; channel: string }) {
  const conditions: RawBuilder<unknown>[] = [sql`true`];
  if (spec.departments) conditions.push(inList(sql`${id(columns.department)}`, spec.departments, 'uuid'));
  if (spec.agents) conditions.push(inList(sql`${id(columns.agent)}`, spec.agents, 'uuid'));
  if (spec.channels) conditions.push(inList(sql`${id(columns.channel)}`, spec.channels, 'text'));
  return sql.join(conditions, sql` and `);
}

/** The periods of the report: local hours, days, weeks, months or years, or the whole range. */
function periods(spec: ReportSpec): RawBuilder<unknown> {
  const { from, to, timezone: tz } = spec;
  if (!byTime(spec) || spec.interval === 'none') {
    return sql`select ${at(from)} as period_start, ${at(to)} as period_end`;
  }
  if (spec.interval === 'hour') {
    // A local hour starts where the local clock shows :00; offsets are whole quarter hours, so
    // stepping through the range by 15 minutes meets every hour start exactly once, DST included.
    return sql`
      select h as period_start, coalesce(lead(h) over (order by h), h + interval '1 hour') as period_end
      from (
        select distinct g - make_interval(mins => extract(minute from g at time zone ${tz})::int) as h
        from generate_series(${at(from)}, ${at(to)} - interval '15 minutes', interval '15 minutes') g
      ) hours`;
  }
  const step = STEP[spec.interval];
  const shift = `${spec.interval === 'week' ? spec.weekShift : 0} days`;
  // Local calendar arithmetic on timestamps without time zone, then back to instants: local
  // midnights, whatever the offset on each side of a DST change.
  return sql`
    select l at time zone ${tz} as period_start, (l + ${step}::interval) at time zone ${tz} as period_end
    from generate_series(
      date_trunc(${spec.interval}, (${at(from)} at time zone ${tz}) - ${shift}::interval) + ${shift}::interval,
      ${at(to)} at time zone ${tz},
      ${step}::interval
    ) l`;
}

// A month boundary near an instant (the UTC month it is in, or the next when past mid-month):
// any month boundary keeps the pieces exact; a near one keeps the differences short.
const nearMonth = (t: string) =>
  sql.raw(`date_trunc('month', (${t} at time zone 'UTC') + interval '15 days') at time zone 'UTC'`);
const nearDay = (t: string) =>
  sql.raw(`date_bin('1 day', ${t} + interval '12 hours', timestamptz '2000-01-01 00:00:00+00')`);

// Whether [s, e) is better read as the coarse [cs, ce) corrected at both ends: when the
// corrections are shorter than the interval itself.
const worthIt = (s: string, e: string, cs: string, ce: string) =>
  sql.raw(`(${cs} < ${ce} and abs(extract(epoch from ${s} - ${cs})) + abs(extract(epoch from ${e} - ${ce}))
    < extract(epoch from ${e} - ${s}))`);

/**
 * Each period as signed pieces the counter tables answer: whole UTC months (sign +1) from the
 * monthly tables, the differences to the period's own ends as whole UTC days added or taken
 * away (sign +1 or −1), and what remains of those as 15-minute buckets, again signed. Every
 * figure is a count or a sum, so the signed sum of the pieces is exactly the period's. With
 * `coarse` off (figures computed from the events) each period is one 15-minute piece.
 * A Europe/Prague month, say, is the UTC month, plus the hour before it, minus its last hour.
 */
function pieces(coarse: boolean): RawBuilder<unknown> {
  if (!coarse) return sql`select period_start, s as lo, e as hi, '15m' as grain, 1 as sign from clipped`;
  return sql`
    select r.period_start, v.lo, v.hi, v.grain, v.sign
    from (
      select m.period_start, v.lo, v.hi, v.grain, v.sign
      from (select period_start, s, e, ${nearMonth('s')} as ms, ${nearMonth('e')} as me from clipped) m
      cross join lateral (
        select * from (values
          (m.ms, m.me, 'month', 1),
          (least(m.s, m.ms), greatest(m.s, m.ms), 'rest', case when m.s < m.ms then 1 else -1 end),
          (least(m.e, m.me), greatest(m.e, m.me), 'rest', case when m.me < m.e then 1 else -1 end)
        ) v(lo, hi, grain, sign) where ${worthIt('m.s', 'm.e', 'm.ms', 'm.me')}
        union all
        select m.s, m.e, 'rest', 1 where not ${worthIt('m.s', 'm.e', 'm.ms', 'm.me')}
      ) v
    ) r
    cross join lateral (
      select * from (values
        (r.lo, r.hi, r.grain, r.sign)
      ) v(lo, hi, grain, sign) where r.grain = 'month'
      union all
      select v.lo, v.hi, v.grain, v.sign * r.sign
      from (select ${nearDay('r.lo')} as dl, ${nearDay('r.hi')} as dh) d
      cross join lateral (
        select * from (values
          (d.dl, d.dh, 'day', 1),
          (least(r.lo, d.dl), greatest(r.lo, d.dl), '15m', case when r.lo < d.dl then 1 else -1 end),
          (least(r.hi, d.dh), greatest(r.hi, d.dh), '15m', case when d.dh < r.hi then 1 else -1 end)
        ) v(lo, hi, grain, sign) where ${worthIt('r.lo', 'r.hi', 'd.dl', 'd.dh')}
        union all
        select r.lo, r.hi, '15m', 1 where not ${worthIt('r.lo', 'r.hi', 'd.dl', 'd.dh')}
      ) v
      where r.grain = 'rest'
    ) v
    where v.lo < v.hi`;
}

const EVENT_ARGS = sql`e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

/** Facts computed from the events themselves, shaped like a 15-minute counter table. */
function eventFacts(spec: ReportSpec): RawBuilder<unknown> {
  const current = spec.attribution === 'current';
  return sql`(
    select f.bucket, ${current ? sql`t.department_id` : sql`f.department_id`} as department_id,
      f.agent_id, f.channel, ${sql.join(FIGURES.map((f) => id(`f.${f}`)))}
    from ticket_events e
    ${current ? sql`join tickets t on t.id = e.ticket_id` : sql``}
    cross join lateral report_event_facts(${EVENT_ARGS}) f
    -- a rating after the range may still take back a not_rated inside it
    where e.occurred_at >= ${at(spec.from)} and (e.occurred_at < ${at(spec.to)} or e.type = 'rated')
      and report_event_counts(e.type, e.data)
  )`;
}

/** Durations binned from the events themselves, shaped like a 15-minute histogram table. */
function eventHistogram(spec: ReportSpec): RawBuilder<unknown> {
  const current = spec.attribution === 'current';
  return sql`(
    select s.bucket, ${current ? sql`t.department_id` : sql`s.department_id`} as department_id,
      s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin, 1 as n
    from ticket_events e
    ${current ? sql`join tickets t on t.id = e.ticket_id` : sql``}
    cross join lateral report_event_samples(e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at) s
    where e.occurred_at >= ${at(spec.from)} and e.occurred_at < ${at(spec.to)} and e.type in ('message_added', 'chat_recorded')
  )`;
}

const needsFigures = (spec: ReportSpec) =>
  spec.metrics.some((m) => !('percentile' in m.formula) && !('current' in m.formula));
const neededSamples = (spec: ReportSpec): SampleMetric[] => [
  ...new Set(spec.metrics.flatMap((m) => ('percentile' in m.formula ? [m.formula.percentile] : []))),
];
const needsCurrent = (spec: ReportSpec) => spec.metrics.some((m) => 'current' in m.formula);

function groupKeys(spec: ReportSpec, alias: string, withPeriod = true): RawBuilder<unknown>[] {
  return [
    ...(withPeriod ? [id(`${alias}.period_start`)] : []),
    ...entityDims(spec).map((d) => keyExpr(alias, d)),
  ];
}

function keyColumns(spec: ReportSpec, alias: string, withPeriod = true): RawBuilder<unknown> {
  const columns = [
    ...(withPeriod ? [sql`${id(`${alias}.period_start`)} as period_start`] : []),
    ...entityDims(spec).map((d) => sql`${keyExpr(alias, d)} as ${id(DIMENSION_COLUMN[d])}`),
  ];
  return columns.length > 0 ? sql`${sql.join(columns)},` : sql``;
}

/** Whether a report needs the tables by agent and channel, or those by department suffice. */
const fullDetail = (spec: ReportSpec) =>
  entityDims(spec).some((d) => d !== 'department') || spec.agents !== null || spec.channels !== null;

/** Rows of the tables of one kind over the signed pieces, with the period, the piece and its sign. */
function overPieces(
  spec: ReportSpec,
  kind: 'counters' | 'histograms' | 'coarse_histograms',
  pieces: RawBuilder<unknown> = sql`pieces`,
): RawBuilder<unknown> {
  if (spec.source === 'events') {
    const rows = kind === 'counters' ? eventFacts(spec) : eventHistogram(spec);
    return sql`select p.period_start, p.sign, p.piece, p.grain as piece_grain, c.* from pieces p join ${rows} c on c.bucket >= p.lo and c.bucket < p.hi`;
  }
  const prefix = fullDetail(spec) ? `report_${kind}` : `report_department_${kind}`;
  const grains = ['month', 'day', '15m'] as const;
  const where = filters(spec, { department: 'c.department_id', agent: 'c.agent_id', channel: 'c.channel' });
  // One index range scan per piece (OFFSET 0 keeps the planner from flattening it into a
  // join): its row estimates for the pieces are guesses, and a wrong guess made it compare
  // every piece with every row of the range.
  return sql.join(
    grains.map(
      (grain) => sql`
        select p.period_start, p.sign, p.piece, p.grain as piece_grain, c.*
        from ${pieces} p
        cross join lateral (
          select * from ${sql.table(`${prefix}_${grain}`)} c
          where c.bucket >= p.lo and c.bucket < p.hi and ${where}
          offset 0
        ) c
        where p.grain = ${grain}`,
    ),
    sql` union all `,
  );
}

/** The counts of each group: signed sums of the figures over the pieces of its period. */
function countsAgg(spec: ReportSpec): RawBuilder<unknown> {
  const sums = sql.join(FIGURES.map((f) => sql`sum(${id(`c.${f}`)} * c.sign)::float8 as ${id(f)}`));
  const where = filters(spec, { department: 'c.department_id', agent: 'c.agent_id', channel: 'c.channel' });
  return sql`
    select ${keyColumns(spec, 'c')} ${sums}
    from (${overPieces(spec, 'counters')}) c
    where ${where}
    group by ${sql.join(groupKeys(spec, 'c'))}`;
}

/** The quantiles reports show, 0.5 and 0.9, as fractions num/den: ranks stay integer arithmetic. */
const QUANTILES = [
  { num: 1, den: 2 },
  { num: 9, den: 10 },
] as const;

/**
 * Median and 90th percentile of each group's durations, per duration metric, from the merged
 * histograms: percentile_cont's definition (rank h = 1 + q·(n − 1), linear interpolation
 * between the k-th and (k+1)-th smallest, k = ⌊h⌋) where the k-th smallest is the value of the
 * bin at which the running count reaches k, so within 0.5 % of the exact value. The ranks are
 * integer arithmetic. Rows are not summed per bin first: the running count over rows ordered
 * by bin, peers included, is already the merged histogram's, signed pieces and all.
 */
function histogramAgg(spec: ReportSpec, metrics: SampleMetric[]): RawBuilder<unknown> {
  const where = filters(spec, { department: 'h.department_id', agent: 'h.agent_id', channel: 'h.channel' });
  const codes = metrics.map((m) => SAMPLE_METRICS[m]);
  const keyNames = ['period_start', ...entityDims(spec).map((d) => DIMENSION_COLUMN[d])];
  const keysOf = (alias: string) => sql.join(keyNames.map((k) => id(`${alias}.${k}`)));
  const partition = sql`partition by ${keysOf('r')}, r.metric`;
  const quantile = ({ num, den }: (typeof QUANTILES)[number]) => {
    const k = sql`(1 + ${sql.lit(num)} * (w.total - 1) / ${sql.lit(den)})`;
    const frac = sql`((${sql.lit(num)} * (min(w.total) - 1)) % ${sql.lit(den)})::float8 / ${sql.lit(den)}`;
    const kth = sql`report_bin_value(min(w.bin) filter (where w.upto >= ${k}))`;
    const next = sql`report_bin_value(min(w.bin) filter (where w.upto >= ${k} + 1))`;
    return sql`${kth} + ${frac} * (coalesce(${next}, ${kth}) - ${kth})`;
  };
  const perMetric = sql.join(
    metrics.map(
      (m) =>
        sql`max(array[x.q50, x.q90]) filter (where x.metric = ${SAMPLE_METRICS[m]}::smallint) as ${id(`${m}_q`)}`,
    ),
  );
  return sql`
    select ${keysOf('x')}, ${perMetric}
    from (
      select ${keysOf('w')}, w.metric, ${quantile(QUANTILES[0])} as q50, ${quantile(QUANTILES[1])} as q90
      from (
        select ${keysOf('r')}, r.metric, r.bin,
          sum(r.n) over (${partition} order by r.bin) as upto,
          sum(r.n) over (${partition}) as total
        from (
          select ${keyColumns(spec, 'h')} h.metric, h.bin, h.n * h.sign as n
          from (${overPieces(spec, 'histograms')}) h
          where ${where} and h.metric in (${sql.join(codes.map((c) => sql`${c}::smallint`))})
        ) r
      ) w
      where w.total > 0
      group by ${keysOf('w')}, w.metric
    ) x
    group by ${keysOf('x')}`;
}

/** Whether a report's percentiles come from the coarse histograms by department. */
const twoStep = (spec: ReportSpec) =>
  spec.source === 'counters' && !fullDetail(spec) && neededSamples(spec).length > 0;

/**
 * Whether a UTC month's histograms by department are all compacted: then what the compactor
 * keeps for it (migrations/0008: ranks' bins, sums over departments) is current.
 */
const settledMonth = (bucket: RawBuilder<unknown>) =>
  sql`not exists (select 1 from report_department_histograms_month f where f.fresh and f.bucket = ${bucket})`;

/** Fine bins per coarse bin of the coarse histograms (migrations/0006): coarse bin = bin >> 5. */
const COARSE_WIDTH = 32;

/**
 * The same percentiles as histogramAgg, bit for bit, from the tables by department in two
 * steps. (1) The coarse running count of each group and metric gives, for each rank needed
 * (k and k + 1 of each quantile), the coarse bin where it reaches the rank and the count
 * before that bin. (2) Only the fine rows of those coarse bins are read, by index, one look-up
 * per coarse row (so per piece and department); within a coarse bin the running count plus the
 * count before it is the merged histogram's running count, so the first fine bin where it
 * reaches the rank is the one histogramAgg finds. A year by month by department reads ~17
 * coarse rows per metric and department-month instead of ~340 fine ones, and ~30 fine rows
 * per coarse bin looked into.
 */
function twoStepHistogramAgg(spec: ReportSpec, metrics: SampleMetric[]): RawBuilder<unknown> {
  const where = filters(spec, { department: 'h.department_id', agent: 'h.agent_id', channel: 'h.channel' });
  const codes = metrics.map((m) => SAMPLE_METRICS[m]);
  const keyNames = ['period_start', ...entityDims(spec).map((d) => DIMENSION_COLUMN[d])];
  const keysOf = (alias: string) => sql.join(keyNames.map((k) => id(`${alias}.${k}`)));
  const sameKeys = (a: string, b: string) =>
    sql.join(
      keyNames.map((k) => sql`${id(`${a}.${k}`)} = ${id(`${b}.${k}`)}`),
      sql` and `,
    );
  // Ranks k and k + 1 of each quantile: r0, r1 (median), r2, r3 (90th percentile).
  const rankOf = (total: RawBuilder<unknown>, i: number) => {
    const { num, den } = QUANTILES[i >> 1]!;
    return sql`(1 + ${sql.lit(num)} * (${total} - 1) / ${sql.lit(den)} + ${sql.lit(i & 1)})`;
  };
  const RANKS = [0, 1, 2, 3];
  const quantile = (i: number) => {
    const { num, den } = QUANTILES[i]!;
    const frac = sql`((${sql.lit(num)} * (r.total - 1)) % ${sql.lit(den)})::float8 / ${sql.lit(den)}`;
    const kth = sql`report_bin_value(${id(`r.bin${2 * i}`)})`;
    const next = sql`report_bin_value(${id(`r.bin${2 * i + 1}`)})`;
    return sql`${kth} + ${frac} * (coalesce(${next}, ${kth}) - ${kth})`;
  };
  // Groups by department of a period that is one whole UTC month, compacted: their ranks' bins
  // are kept (migrations/0008) and read as they are; the other periods go the two steps.
  const summarised = keyNames.length === 2 && keyNames[1] === DIMENSION_COLUMN.department;
  const wholeMonths = sql`
    whole_months as materialized (
      select p.period_start, p.lo as bucket
      from pieces p
      where p.grain = 'month' and p.sign = 1
        and p.hi = (p.lo at time zone 'UTC' + interval '1 month') at time zone 'UTC'
        and not exists (select 1 from pieces x where x.period_start = p.period_start and x.piece <> p.piece)
        and ${settledMonth(sql`p.lo`)}
    ),`;
  const summaryRows = sql`
      select w.period_start, coalesce(q.department_id, ${sql.lit(NONE)}::uuid) as ${id(DIMENSION_COLUMN.department)},
        q.metric, q.total, q.bin0, q.bin1, q.bin2, q.bin3
      from whole_months w
      join report_department_quantiles_month q on q.bucket = w.bucket
      where ${filters(spec, { department: 'q.department_id', agent: 'q.agent_id', channel: 'q.channel' })}
        and q.metric in (${sql.join(codes.map((c) => sql`${c}::smallint`))})`;
  const twoStepPieces = summarised
    ? sql`(select * from pieces where period_start not in (select period_start from whole_months))`
    : sql`pieces`;
  const perMetric = sql.join(
    metrics.map(
      (m) =>
        sql`max(array[x.q50, x.q90]) filter (where x.metric = ${SAMPLE_METRICS[m]}::smallint) as ${id(`${m}_q`)}`,
    ),
  );
  const inCoarseBin = sql`f.bin between l.coarse_bin * ${sql.lit(COARSE_WIDTH)} and l.coarse_bin * ${sql.lit(COARSE_WIDTH)} + ${sql.lit(COARSE_WIDTH - 1)}`;
  const fineIndex = (source: LookUpSource) =>
    source.total
      ? sql`
        from report_total_histograms_month f
        where f.bucket = l.bucket and f.metric = l.metric and ${inCoarseBin}`
      : sql`
        from ${sql.table(`report_department_histograms_${source.grain}`)} f
        where f.bucket = l.bucket
          and coalesce(f.department_id, ${sql.lit(NONE)}::uuid) = coalesce(l.row_department_id, ${sql.lit(NONE)}::uuid)
          and f.metric = l.metric
          and ${inCoarseBin}`;
  // Without a department to group by, each group merges the coarse rows of every department:
  // summed per coarse bin first, the running count has far fewer rows to go through.
  const merge = entityDims(spec).length === 0;
  // Merging every department, a compacted month's fine rows come summed over departments
  // (migrations/0008): one look-up per month instead of one per department and month.
  const totals = merge && spec.departments === null;
  type LookUpSource = { grain: 'month' | 'day' | '15m'; total: boolean };
  const sources: LookUpSource[] = [
    { grain: 'month', total: false },
    ...(totals ? [{ grain: 'month' as const, total: true }] : []),
    { grain: 'day', total: false },
    { grain: '15m', total: false },
  ];
  const fromSource = (source: LookUpSource) =>
    sql`l.piece_grain = ${source.grain} and l.settled = ${sql.lit(source.total)}`;
  // Coarse bins of several pieces: their fine rows merged, then one running count.
  const lookUps = sources.map(
    (source) => sql`
      select l.target, l.coarse_bin, f.bin, f.n * l.sign as n
      from looked_up l
      cross join lateral (select f.bin, f.n ${fineIndex(source)} offset 0) f
      where ${fromSource(source)} and l.pieces > 1`,
  );
  // A coarse bin of one piece (the usual case: a whole UTC month): its fine rows come in bin
  // order from the index, so the running count and the bins it reaches are found right there,
  // without sorting them with every other coarse bin's.
  const singleLookUps = sources.map(
    (source) => sql`
      select l.target, b.*
      from looked_up l
      cross join lateral (
        select ${sql.join(
          RANKS.map((i) => sql`min(u.bin) filter (where u.upto >= ${id(`l.need${i}`)}) as ${id(`bin${i}`)}`),
        )}
        from (select f.bin, sum(f.n * l.sign) over (order by f.bin) as upto ${fineIndex(source)}) u
      ) b
      where ${fromSource(source)} and l.pieces = 1`,
  );
  // Merging every department: the UTC months of the month pieces, and whether each is settled
  // (no fresh rows: its sums over departments, coarse and fine, are current).
  const monthBuckets = sql`
    month_buckets as materialized (
      select m.piece, m.bucket,
        ${settledMonth(sql`m.bucket`)} as settled
      from (
        select p.piece, g at time zone 'UTC' as bucket
        from pieces p
        cross join generate_series(p.lo at time zone 'UTC', (p.hi at time zone 'UTC') - interval '1 day', interval '1 month') g
        where p.grain = 'month'
      ) m
    ),`;
  // The pieces read by department: all of them, or, merging every department, the unsettled
  // months of the month pieces (as pieces of a month each) and the other pieces.
  const departmentPieces = totals
    ? sql`(
        select p.period_start, p.piece, p.grain, p.sign, p.lo, p.hi from pieces p where p.grain <> 'month'
        union all
        select p.period_start, p.piece, p.grain, p.sign, m.bucket as lo,
          (m.bucket at time zone 'UTC' + interval '1 month') at time zone 'UTC' as hi
        from pieces p join month_buckets m on m.piece = p.piece and not m.settled
      )`
    : twoStepPieces;
  const coarseRows = totals
    ? sql`
        select p.period_start, p.sign, p.piece, p.grain as piece_grain, c.bucket, null::uuid as department_id,
          c.metric, c.coarse_bin, c.n, true as settled
        from pieces p
        join month_buckets m on m.piece = p.piece and m.settled
        cross join lateral (
          select c.bucket, c.metric, c.coarse_bin, c.n from report_total_coarse_histograms_month c
          where c.bucket = m.bucket offset 0
        ) c
        union all
        select h.period_start, h.sign, h.piece, h.piece_grain, h.bucket, h.department_id, h.metric, h.coarse_bin,
          h.n, false
        from (${overPieces(spec, 'coarse_histograms', departmentPieces)}) h`
    : sql`select h.*, false as settled from (${overPieces(spec, 'coarse_histograms', departmentPieces)}) h`;
  return sql`
    with ${summarised ? wholeMonths : sql``} ${totals ? monthBuckets : sql``} coarse as materialized (
      select ${keyColumns(spec, 'h')} h.metric, h.coarse_bin, h.n * h.sign as n,
        h.sign, h.piece, h.piece_grain, h.bucket, h.department_id as row_department_id, h.settled
      from (${coarseRows}) h
      where ${where} and h.metric in (${sql.join(codes.map((c) => sql`${c}::smallint`))})
    ),
    -- One row per group and metric: its total, and for each rank the coarse bin that holds it
    -- and the count before that bin (the running count only grows: every bin's count is >= 0).
    targets as materialized (
      select row_number() over () as target, ${keysOf('w')}, w.metric, w.total,
        ${sql.join(
          RANKS.map(
            (i) => sql`
              min(w.coarse_bin) filter (where w.upto >= ${id(`w.rank${i}`)}) as ${id(`coarse${i}`)},
              coalesce(max(w.upto) filter (where w.upto < ${id(`w.rank${i}`)}), 0) as ${id(`before${i}`)}`,
          ),
        )}
      from (
        select w.*, ${sql.join(RANKS.map((i) => sql`${rankOf(sql`w.total`, i)} as ${id(`rank${i}`)}`))}
        from (
          select ${keysOf('c')}, c.metric, c.coarse_bin,
            (sum(c.n) over (partition by ${keysOf('c')}, c.metric order by c.coarse_bin))::int8 as upto,
            (sum(c.n) over (partition by ${keysOf('c')}, c.metric))::int8 as total
          from ${merge ? sql`(select ${keysOf('c')}, c.metric, c.coarse_bin, sum(c.n)::int8 as n from coarse c group by ${keysOf('c')}, c.metric, c.coarse_bin)` : sql`coarse`} c
        ) w
      ) w
      where w.total > 0
      group by ${keysOf('w')}, w.metric, w.total
    ),
    -- Once per piece and key: a key may have a compacted row and fresh ones.
    looked_up as materialized (
      select l.*, count(*) over (partition by l.target, l.coarse_bin) as pieces,
        -- What the fine running count of this coarse bin must reach for each rank it holds.
        ${sql.join(
          RANKS.map(
            (i) => sql`case when l.coarse_bin = ${id(`l.coarse${i}`)}
              then ${rankOf(sql`l.total`, i)} - ${id(`l.before${i}`)} end as ${id(`need${i}`)}`,
          ),
        )}
      from (
        select distinct t.target, c.coarse_bin, c.metric, c.sign, c.piece, c.piece_grain, c.bucket,
          c.row_department_id, c.settled, t.total, t.coarse0, t.coarse1, t.coarse2, t.coarse3,
          t.before0, t.before1, t.before2, t.before3
        from coarse c
        join targets t on ${sameKeys('t', 'c')} and t.metric = c.metric
          and c.coarse_bin in (t.coarse0, t.coarse1, t.coarse2, t.coarse3)
      ) l
    ),
    merged_bins as (
      select f.target,
        ${sql.join(
          RANKS.map(
            (i) => sql`min(f.bin) filter (where f.coarse_bin = ${id(`t.coarse${i}`)}
              and ${id(`t.before${i}`)} + f.upto >= ${rankOf(sql`t.total`, i)}) as ${id(`bin${i}`)}`,
          ),
        )}
      from (
        select f.target, f.coarse_bin, f.bin,
          (sum(sum(f.n)) over (partition by f.target, f.coarse_bin order by f.bin))::int8 as upto
        from (${sql.join(lookUps, sql` union all `)}) f
        group by f.target, f.coarse_bin, f.bin
      ) f
      join targets t on t.target = f.target
      group by f.target
    ),
    -- Each rank's bin comes from one coarse bin: of one piece or of several.
    bins as (
      select b.target, ${sql.join(RANKS.map((i) => sql`min(${id(`b.bin${i}`)}) as ${id(`bin${i}`)}`))}
      from (
        select * from merged_bins
        union all ${sql.join(singleLookUps, sql` union all `)}
      ) b
      group by b.target
    )
    select ${keysOf('x')}, ${perMetric}
    from (
      select ${keysOf('r')}, r.metric, ${quantile(0)} as q50, ${quantile(1)} as q90
      from (
        select ${keysOf('t')}, t.metric, t.total, b.bin0, b.bin1, b.bin2, b.bin3
        from targets t join bins b on b.target = t.target
        ${summarised ? sql`union all ${summaryRows}` : sql``}
      ) r
    ) x
    group by ${keysOf('x')}`;
}

/** Tickets by status right now, by their current department, assignee and channel. */
function currentAgg(spec: ReportSpec): RawBuilder<unknown> {
  // Kept by triggers on tickets (migrations/0009): sums of +1/−1 per key, fresh or compacted.
  const t = sql`report_current_counts t`;
  const where = filters(spec, { department: 't.department_id', agent: 't.agent_id', channel: 't.channel' });
  const keys = entityDims(spec).map((d) => keyExpr('t', d));
  const counts = sql.join(
    (['new', 'open', 'answered', 'postponed'] as const).map(
      (s) => sql`coalesce(sum(t.n) filter (where t.status = ${s}), 0)::float8 as ${id(`current_${s}`)}`,
    ),
  );
  return sql`
    select ${keyColumns(spec, 't', false)} ${counts}
    from ${t}
    where ${where}
    ${keys.length > 0 ? sql`group by ${sql.join(keys)}` : sql``}`;
}

/** Every department, agent or channel in scope, so a one-dimension report lists idle ones too. */
function allEntities(spec: ReportSpec, dim: EntityDimension): RawBuilder<unknown> {
  if (dim === 'department') {
    const where = spec.departments ? inList(sql`d.id`, spec.departments, 'uuid') : sql`true`;
    return sql`select d.id as department_id from departments d where ${where}`;
  }
  if (dim === 'agent') {
    const agents = spec.agents ? inList(sql`a.id`, spec.agents, 'uuid') : sql`true`;
    const departments = spec.departments?.filter((d): d is string => d !== null);
    const member = departments
      ? departments.length > 0
        ? sql`exists (select 1 from department_members m where m.agent_id = a.id
            and m.department_id in (${sql.join(departments.map((d) => sql`${d}::uuid`))}))`
        : sql`false`
      : sql`true`;
    return sql`select a.id as agent_id from agents a where a.status = 'active' and ${agents} and ${member}`;
  }
  const channels = CHANNELS.filter((c) => !spec.channels || spec.channels.includes(c));
  return sql`select unnest(array[${sql.join(channels.map((c) => sql`${c}::text`))}]) as channel`;
}

function roundTo(value: RawBuilder<unknown>, decimals: number) {
  return sql`round((${value})::numeric, ${sql.lit(decimals)})::float8`;
}

function metricExpr(spec: ReportSpec, metric: Metric): RawBuilder<unknown> {
  const f: Formula = metric.formula;
  const a = (figure: string) => sql`coalesce(${id(`a.${figure}`)}, 0)`;
  const decimals = DECIMALS[metric.unit];
  if ('count' in f) return a(f.count);
  if ('total' in f) return roundTo(sql`${a(f.total)} / ${sql.lit(f.divideBy)}`, decimals);
  if ('average' in f) {
    return sql`case when ${a(f.over)} > 0 then ${roundTo(sql`${a(f.average)} / ${a(f.over)}`, decimals)} end`;
  }
  if ('percentile' in f) {
    return roundTo(sql`${id(`s.${f.percentile}_q`)}[${sql.lit(f.quantile === 0.5 ? 1 : 2)}]`, decimals);
  }
  if ('share' in f) {
    const total = sql.join(
      f.of.map((o) => a(o)),
      sql` + `,
    );
    return sql`case when ${total} > 0 then ${roundTo(sql`100 * ${a(f.share)} / (${total})`, decimals)} end`;
  }
  return byTime(spec) ? sql`null::float8` : sql`coalesce(${id(`cur.current_${f.current}`)}, 0)`;
}

/**
 * The name of the grouped department or agent: the live one, else the name it had when it was
 * deleted (migrations/0012), so past figures of a deleted one are not shown as "no department".
 */
function entityName(dim: 'department' | 'agent'): RawBuilder<unknown> {
  return dim === 'department' ? sql`coalesce(d.name, dd.name)` : sql`coalesce(ag.name, dag.name)`;
}

interface SortKey {
  expr: RawBuilder<unknown>;
  type: 'timestamptz' | 'text' | 'float8' | 'boolean';
  direction: 'asc' | 'desc';
}

function dimensionKeys(dim: Dimension, direction: 'asc' | 'desc'): SortKey[] {
  if (dim === 'time') return [{ expr: sql`g.period_start`, type: 'timestamptz', direction }];
  if (dim === 'channel') return [{ expr: sql`g.channel`, type: 'text', direction }];
  const key = dim === 'department' ? 'department_id' : 'agent_id';
  return [
    { expr: sql`coalesce(${entityName(dim)}, '')`, type: 'text', direction },
    { expr: sql`${id(`g.${key}`)}::text`, type: 'text', direction },
  ];
}

/** How many values a cursor of this report carries. */
export function sortKeyCount(spec: ReportSpec): number {
  return sortKeys(spec).length;
}

function sortKeys(spec: ReportSpec): SortKey[] {
  const keys: SortKey[] = [];
  const used = new Set<string>();
  for (const { key, direction } of spec.sort) {
    const metric = spec.metrics.find((m) => m.key === key);
    if (metric) {
      const expr = metricExpr(spec, metric);
      // Nulls (no data for an average) last whichever the direction.
      keys.push({ expr: sql`(${expr}) is null`, type: 'boolean', direction: 'asc' });
      keys.push({ expr: sql`coalesce(${expr}, 0)`, type: 'float8', direction });
    } else if (spec.groupBy.includes(key as Dimension)) {
      keys.push(...dimensionKeys(key as Dimension, direction));
      used.add(key);
    }
  }
  for (const dim of spec.groupBy) if (!used.has(dim)) keys.push(...dimensionKeys(dim, 'asc'));
  return keys;
}

/** Rows strictly after the cursor's, in the sort order (each key may have its own direction). */
function afterKey(keys: SortKey[], values: SortValue[]): RawBuilder<unknown> {
  const ors = keys.map((key, i) => {
    const equal = keys.slice(0, i).map((k, j) => sql`${id(`r.k${j}`)} = ${values[j]}::${sql.raw(k.type)}`);
    const op = key.direction === 'asc' ? sql`>` : sql`<`;
    return sql.join([...equal, sql`${id(`r.k${i}`)} ${op} ${values[i]}::${sql.raw(key.type)}`], sql` and `);
  });
  return ors.length > 0 ? sql`(${sql.join(ors, sql` or `)})` : sql`false`;
}

/**
 * The whole report as one statement: periods, counts, percentiles and current figures per
 * group, the groups made dense (every period for each group; every department, agent or
 * channel in scope for a one-dimension report), names, sort keys, and the page.
 */
export function reportQuery(
  spec: ReportSpec,
  page: { after?: SortValue[] | undefined; limit?: number | undefined } = {},
): RawBuilder<Record<string, unknown>> {
  const dims = entityDims(spec);
  const time = byTime(spec);
  const samples = neededSamples(spec);
  const withCurrent = needsCurrent(spec) && !time;
  const keys = sortKeys(spec);
  const coarse = spec.source === 'counters';

  const ctes: RawBuilder<unknown>[] = [
    sql`periods as (${periods(spec)})`,
    sql`clipped as (
      select period_start, period_end, greatest(period_start, ${at(spec.from)}) as s,
        least(period_end, ${at(spec.to)}) as e
      from periods where greatest(period_start, ${at(spec.from)}) < least(period_end, ${at(spec.to)}))`,
  ];
  const sources: string[] = [];
  const withCounts = needsFigures(spec) || !(samples.length > 0 || withCurrent);
  if (withCounts || samples.length > 0) {
    ctes.push(sql`pieces as (select row_number() over () as piece, q.* from (${pieces(coarse)}) q)`);
  }
  if (withCounts) {
    ctes.push(sql`counts as (${countsAgg(spec)})`);
    sources.push('counts');
  }
  if (samples.length > 0) {
    const agg = twoStep(spec) ? twoStepHistogramAgg : histogramAgg;
    ctes.push(sql`samples as (${agg(spec, samples)})`);
    sources.push('samples');
  }
  if (withCurrent) {
    ctes.push(sql`current_figures as (${currentAgg(spec)})`);
    sources.push('current_figures');
  }

  const dimCols = dims.map((d) => id(DIMENSION_COLUMN[d]));
  if (dims.length >= 2) {
    // Several dimensions: only the combinations (and periods) that have figures; a dense grid
    // of every period for every combination would be mostly zeros.
    // A combination has figures when one of its counts or sums is not 0: the signed pieces of a
    // period may bring in a combination only to take all of its figures away again.
    const hasFigures = sql.join(
      FIGURES.map((f) => sql`${id(f)} <> 0`),
      sql` or `,
    );
    const known = sources.map((s) =>
      s === 'current_figures'
        ? sql`select (select period_start from clipped) as period_start, ${sql.join(dimCols)} from current_figures`
        : s === 'counts'
          ? sql`select period_start, ${sql.join(dimCols)} from counts where ${hasFigures}`
          : sql`select period_start, ${sql.join(dimCols)} from ${sql.table(s)}`,
    );
    ctes.push(sql`groups as (
      select c.period_start, c.period_end, k.${sql.join(dimCols, sql`, k.`)}
      from (${sql.join(known, sql` union `)}) k join clipped c on c.period_start = k.period_start)`);
  } else {
    // One dimension (or none): every period for every department, agent or channel in scope,
    // so series have no holes and idle ones show up with zeros.
    if (dims.length === 1) {
      const known = sources.map((s) => sql`select ${sql.join(dimCols)} from ${sql.table(s)}`);
      known.push(allEntities(spec, dims[0]!));
      ctes.push(sql`entities as (${sql.join(known, sql` union `)})`);
    } else {
      ctes.push(sql`entities as (select 1 as one)`);
    }
    ctes.push(sql`groups as (select p.period_start, p.period_end, e.* from clipped p cross join entities e)`);
  }

  const joinOn = (alias: string, withPeriod: boolean) => {
    const on = [
      ...(withPeriod ? [sql`${id(`${alias}.period_start`)} = g.period_start`] : []),
      ...dims.map((d) => sql`${id(`${alias}.${DIMENSION_COLUMN[d]}`)} = ${id(`g.${DIMENSION_COLUMN[d]}`)}`),
    ];
    return on.length > 0 ? sql.join(on, sql` and `) : sql`true`;
  };
  const joins: RawBuilder<unknown>[] = [];
  if (sources.includes('counts')) joins.push(sql`left join counts a on ${joinOn('a', true)}`);
  if (sources.includes('samples')) joins.push(sql`left join samples s on ${joinOn('s', true)}`);
  if (withCurrent) joins.push(sql`left join current_figures cur on ${joinOn('cur', false)}`);
  if (dims.includes('department')) {
    joins.push(sql`left join departments d on d.id = g.department_id`);
    joins.push(sql`left join deleted_departments dd on d.id is null and dd.id = g.department_id`);
  }
  if (dims.includes('agent')) {
    joins.push(sql`left join agents ag on ag.id = g.agent_id`);
    joins.push(sql`left join deleted_agents dag on ag.id is null and dag.id = g.agent_id`);
  }

  const local = (column: string) => sql`
    to_char(${id(`g.${column}`)} at time zone ${spec.timezone}, 'YYYY-MM-DD"T"HH24:MI:SS') as ${id(`${column}_local`)},
    extract(epoch from (${id(`g.${column}`)} at time zone ${spec.timezone}) - (${id(`g.${column}`)} at time zone 'UTC'))::int as ${id(`${column}_offset`)}`;
  const columns: RawBuilder<unknown>[] = [
    local('period_start'),
    local('period_end'),
    dims.includes('department')
      ? sql`nullif(g.department_id, ${sql.lit(NONE)}::uuid) as department_id, ${entityName('department')} as department_name,
          dd.id is not null as department_deleted`
      : sql`null::uuid as department_id, null::text as department_name, false as department_deleted`,
    dims.includes('agent')
      ? sql`nullif(g.agent_id, ${sql.lit(NONE)}::uuid) as agent_id, ${entityName('agent')} as agent_name,
          dag.id is not null as agent_deleted`
      : sql`null::uuid as agent_id, null::text as agent_name, false as agent_deleted`,
    dims.includes('channel') ? sql`g.channel` : sql`null::text as channel`,
    ...spec.metrics.map((m) => sql`${metricExpr(spec, m)} as ${id(`m_${m.key}`)}`),
    ...keys.map((k, i) => sql`${k.expr} as ${id(`k${i}`)}`),
  ];
  const order = keys.map((k, i) => sql`${id(`r.k${i}`)} ${sql.raw(k.direction)}`);

  return sql<Record<string, unknown>>`
    with ${sql.join(ctes)},
    report_rows as (
      select ${sql.join(columns)}
      from groups g
      ${sql.join(joins, sql` `)}
    )
    select * from report_rows r
    ${page.after ? sql`where ${afterKey(keys, page.after)}` : sql``}
    ${order.length > 0 ? sql`order by ${sql.join(order)}` : sql``}
    ${page.limit !== undefined ? sql`limit ${page.limit}` : sql``}`;
}

function localTime(local: unknown, offsetSeconds: unknown): string | null {
  if (typeof local !== 'string') return null;
  const offset = Number(offsetSeconds);
  const sign = offset < 0 ? '-' : '+';
  const minutes = Math.abs(offset) / 60;
  const hh = String(Math.floor(minutes / 60)).padStart(2, '0');
  const mm = String(minutes % 60).padStart(2, '0');
  return `${local}${sign}${hh}:${mm}`;
}

/**
 * Reads the given row fields of raw report rows straight into cells (an export's hot path:
 * one array per row, no intermediate objects). Null becomes ''.
 */
export function cellReader(fields: string[]): (raw: Record<string, unknown>) => (string | number)[] {
  const readers = fields.map((field): ((raw: Record<string, unknown>) => string | number) => {
    if (field === 'period_start' || field === 'period_end') {
      return (raw) => localTime(raw[`${field}_local`], raw[`${field}_offset`]) ?? '';
    }
    const column = ['department_id', 'department_name', 'agent_id', 'agent_name', 'channel'].includes(field)
      ? field
      : `m_${field}`;
    return (raw) => (raw[column] ?? '') as string | number;
  });
  return (raw) => readers.map((read) => read(raw));
}

export function toReportRow(spec: ReportSpec, raw: Record<string, unknown>): ReportRow {
  const time = byTime(spec);
  const values: Record<string, number | null> = {};
  for (const m of spec.metrics) {
    const v = raw[`m_${m.key}`];
    values[m.key] = v === null || v === undefined ? null : Number(v);
  }
  const sortKey: SortValue[] = [];
  for (let i = 0; `k${i}` in raw; i++) {
    const v = raw[`k${i}`];
    sortKey.push(v instanceof Date ? v.toISOString() : (v as SortValue));
  }
  return {
    period_start: time ? localTime(raw.period_start_local, raw.period_start_offset) : null,
    period_end: time ? localTime(raw.period_end_local, raw.period_end_offset) : null,
    department_id: (raw.department_id as string | null) ?? null,
    department_name: (raw.department_name as string | null) ?? null,
    department_deleted: raw.department_deleted === true,
    agent_id: (raw.agent_id as string | null) ?? null,
    agent_name: (raw.agent_name as string | null) ?? null,
    agent_deleted: raw.agent_deleted === true,
    channel: (raw.channel as string | null) ?? null,
    values,
    sortKey,
  };
}

/**
 * Report statements run in a read-only transaction of their own, without JIT (whose compiling
 * costs several times what these queries take: their row estimates are pessimistic), with
 * room to sort and hash in memory, and with random page reads costed as what they are for
 * report tables that stay cached: at the default 4 the planner read a whole day of every
 * department's counter rows in bucket order (1,500 rows a day, filtered) rather than the 77 of
 * the one department asked for through its index.
 */
async function inReportTransaction<T>(
  db: Executor,
  spec: ReportSpec,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  // The two-step percentiles join a few thousand rows on estimates a hundred times too high,
  // which makes merge joins (each sorting its inputs) look cheaper than hashing: measured, the
  // hash joins take a third of the time.
  const mergeJoins = twoStep(spec) ? 'off' : 'on';
  return db.transaction().execute(async (trx) => {
    await sql`set transaction read only`.execute(trx);
    await sql`select set_config('jit', 'off', true), set_config('work_mem', '64MB', true),
      set_config('enable_mergejoin', ${mergeJoins}, true), set_config('random_page_cost', '1.1', true)`.execute(
      trx,
    );
    return fn(trx);
  });
}

/** One page of a report (limit + 1 rows fetched: the extra one says whether more follow). */
export async function findReportRows(
  db: Executor,
  spec: ReportSpec,
  page: { after?: SortValue[] | undefined; limit: number },
): Promise<ReportRow[]> {
  const result = await inReportTransaction(db, spec, (trx) =>
    reportQuery(spec, { after: page.after, limit: page.limit + 1 }).execute(trx),
  );
  return result.rows.map((r) => toReportRow(spec, r));
}

export async function findReportTotals(
  db: Executor,
  spec: ReportSpec,
): Promise<Record<string, number | null>> {
  const totals: ReportSpec = { ...spec, groupBy: [], sort: [] };
  const result = await inReportTransaction(db, totals, (trx) => reportQuery(totals).execute(trx));
  return toReportRow(totals, result.rows[0] ?? {}).values;
}

/**
 * Streams every row of a report through a server-side cursor, `batch` rows at a time, inside
 * a read-only transaction: memory stays flat however long the report is. `onRows` resolves
 * when the consumer wants more (backpressure). `signal` stops between fetches and, where the
 * database has more than one connection, also cancels a fetch that is running.
 */
export async function streamReportRows(
  db: Executor,
  spec: ReportSpec,
  options: { batch: number; signal: AbortSignal; onRows: (rows: Record<string, unknown>[]) => Promise<void> },
): Promise<void> {
  // PGlite has one connection, busy with this very transaction: nothing to cancel from.
  const cancellable = db.getExecutor().adapter.supportsMultipleConnections;
  await inReportTransaction(db, spec, async (trx) => {
    const pid = cancellable
      ? Number((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]?.pid)
      : null;
    let fetching = false;
    // The cancel travels on another connection and lands on whatever this backend runs then. It
    // must have been sent before this transaction ends and its connection goes back to the pool:
    // late, it would cancel the next request's statement there. (A cancel that finds the backend
    // idle, reading its next command, is ignored by PostgreSQL.)
    let cancelling: Promise<unknown> | null = null;
    const onAbort = () => {
      if (pid !== null && fetching)
        cancelling = sql`select pg_cancel_backend(${pid})`.execute(db).catch(() => {});
    };
    options.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const query = reportQuery(spec).compile(trx);
      await trx.executeQuery(
        CompiledQuery.raw(`declare report_rows no scroll cursor for ${query.sql}`, [...query.parameters]),
      );
      const fetch = CompiledQuery.raw(`fetch ${options.batch} from report_rows`);
      for (;;) {
        options.signal.throwIfAborted();
        fetching = true;
        const { rows } = await trx.executeQuery<Record<string, unknown>>(fetch).finally(() => {
          fetching = false;
        });
        options.signal.throwIfAborted();
        if (rows.length > 0) await options.onRows(rows);
        if (rows.length < options.batch) break;
      }
    } finally {
      options.signal.removeEventListener('abort', onAbort);
      await cancelling;
    }
  });
}

/**
 * Which of the ids name a department (or agent) that exists or existed: a deleted one keeps its
 * figures, so filtering on it is a fair question; an id never seen is a mistake.
 */
export async function knownEntityIds(
  db: Executor,
  dim: 'department' | 'agent',
  ids: string[],
): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const [live, deleted] =
    dim === 'department'
      ? (['departments', 'deleted_departments'] as const)
      : (['agents', 'deleted_agents'] as const);
  const rows = await db
    .selectFrom(live)
    .select('id')
    .where('id', 'in', ids)
    .union(db.selectFrom(deleted).select('id').where('id', 'in', ids))
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** The departments an agent belongs to (any role). */
export async function departmentIdsOf(db: Executor, agentId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('department_members')
    .select('department_id')
    .where('agent_id', '=', agentId)
    .execute();
  return rows.map((r) => r.department_id);
}

export type RangePreset =
  | 'today'
  | 'yesterday'
  | 'last_7_days'
  | 'last_30_days'
  | 'this_month'
  | 'last_month'
  | 'this_year';

export interface RangeInstants {
  from: Date;
  to: Date;
  /** Local calendar dates of both ends. */
  local_from: string;
  local_to: string;
}

/**
 * A preset or a custom range as instants. Dates and local date-times are read in the time zone
 * (local midnight, DST included); date-times with an offset are taken as they are.
 */
export async function rangeInstants(
  db: Executor,
  timezone: string,
  range: { preset: RangePreset } | { from: string; to: string },
): Promise<RangeInstants> {
  const end = (value: string) =>
    /(Z|[+-]\d{2}:?\d{2})$/i.test(value)
      ? sql`${value}::timestamptz`
      : sql`${value}::timestamp at time zone ${timezone}`;
  const today = sql`date_trunc('day', now() at time zone ${timezone})`;
  const month = sql`date_trunc('month', now() at time zone ${timezone})`;
  const year = sql`date_trunc('year', now() at time zone ${timezone})`;
  const presets: Record<RangePreset, [RawBuilder<unknown>, RawBuilder<unknown>]> = {
    today: [today, sql`${today} + interval '1 day'`],
    yesterday: [sql`${today} - interval '1 day'`, today],
    last_7_days: [sql`${today} - interval '6 days'`, sql`${today} + interval '1 day'`],
    last_30_days: [sql`${today} - interval '29 days'`, sql`${today} + interval '1 day'`],
    this_month: [month, sql`${month} + interval '1 month'`],
    last_month: [sql`${month} - interval '1 month'`, month],
    this_year: [year, sql`${year} + interval '1 year'`],
  };
  const [from, to] =
    'preset' in range
      ? presets[range.preset].map((local) => sql`(${local}) at time zone ${timezone}`)
      : [end(range.from), end(range.to)];
  const { rows } = await sql<RangeInstants>`
    select f as "from", t as "to",
      to_char(f at time zone ${timezone}, 'YYYY-MM-DD') as local_from,
      to_char(t at time zone ${timezone}, 'YYYY-MM-DD') as local_to
    from (select ${from} as f, ${to} as t) r`.execute(db);
  const row = rows[0]!;
  return { ...row, from: new Date(row.from), to: new Date(row.to) };
}

let timeZones: Promise<Set<string>> | undefined;

/** The IANA time zone names the database knows (read once per process). */
export async function knownTimeZones(db: Executor): Promise<Set<string>> {
  timeZones ??= sql<{ name: string }>`select name from pg_timezone_names`
    .execute(db)
    .then((r) => new Set(r.rows.map((row) => row.name)))
    .catch((error: unknown) => {
      timeZones = undefined;
      throw error;
    });
  return timeZones;
}

type ReportTableKind = 'counters' | 'histograms';
const GRAINS = ['15m', 'day', 'month'] as const;
type Grain = (typeof GRAINS)[number];

interface ReportTable {
  name: string;
  kind: ReportTableKind;
  grain: Grain;
  keys: string[];
  values: readonly string[];
}

/**
 * Every report table (migrations/0005_report_sketches.ts, 0006_report_coarse_histograms.ts):
 * counters, histograms and, by department, coarse histograms, by grain.
 */
const REPORT_TABLES: ReportTable[] = GRAINS.flatMap((grain): ReportTable[] => {
  const full = ['bucket', 'department_id', 'agent_id', 'channel'];
  const department = ['bucket', 'department_id'];
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
  ];
});

const refs = (names: readonly string[]) => sql.join(names.map((n) => id(n)));

/** Tickets by status right now, kept by triggers on tickets (migrations/0009). */
const CURRENT_COUNTS = {
  name: 'report_current_counts',
  keys: ['department_id', 'agent_id', 'channel', 'status'],
  values: ['n'],
} as const;

/** The table report_department_quantiles_month summarises (migrations/0008). */
const QUANTILES_SOURCE = 'report_department_histograms_month';

/**
 * Folds the fresh rows counting appended into the one compacted row of each key, table by
 * table, in the caller's transaction, and keeps the ranks' bins of the (month, department)
 * pairs whose histograms changed (migrations/0008). Each statement removes fresh rows and adds their sums to
 * the compacted rows at once, so a report reads the same figures before and after. Rows that
 * uncommitted transactions are appending stay fresh for the next run. Returns the number of
 * fresh rows folded.
 */
export async function compactReportTables(trx: Transaction<Database>): Promise<number> {
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
  await sql`lock table ticket_events in share mode`.execute(db);
  await sql`truncate report_pending_events, ${sql.join(REPORT_TABLES.map((t) => sql.table(t.name)))}`.execute(
    db,
  );
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
      where e.type in ('message_added', 'chat_recorded')) samples`,
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
  await sql`select report_refresh_month_quantiles(null, null)`.execute(db);
  // The current_* counts come from the tickets as they are (migrations/0009).
  await sql`lock table tickets in share mode`.execute(db);
  await sql`truncate report_current_counts`.execute(db);
  await sql`
    insert into report_current_counts (department_id, agent_id, channel, status, fresh, n)
    select department_id, assignee_id, channel, status, false, count(*)
    from tickets where status in ('new', 'open', 'answered', 'postponed')
    group by department_id, assignee_id, channel, status`.execute(db);
}
