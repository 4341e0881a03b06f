import { type RawBuilder, sql } from 'kysely';
import { overPieces } from './counters.ts';
import { SAMPLE_METRICS, type SampleMetric } from './figures.ts';
import type { Goal } from './metrics.ts';
import {
  byTag,
  DIMENSION_COLUMN,
  entityDims,
  filters,
  fullDetail,
  groupKeys,
  id,
  keyColumns,
  NONE,
  neededSamples,
  type ReportSpec,
} from './spec.ts';

// Percentiles: the median and 90th percentile of each group's durations, from the merged log
// histograms (migrations/0005, 0006, 0008). docs/metrics.md, "How the figures are kept", says why.

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
export function histogramAgg(spec: ReportSpec, metrics: SampleMetric[]): RawBuilder<unknown> {
  const where = filters(spec, { department: 'h.department_id', agent: 'h.agent_id', channel: 'h.channel' });
  const codes = metrics.map((m) => SAMPLE_METRICS[m]);
  const keyNames = ['period_start', ...entityDims(spec).map((d) => DIMENSION_COLUMN[d])];
  const keysOf = (alias: string) => sql.join(keyNames.map((k) => id(`${alias}.${k}`)));
  const partition = sql`partition by ${keysOf('r')}, r.metric`;
  // By tag, each group's rows are its tag's in every department (and every piece): summed per
  // bin first, the running count sorts a twentieth of them (a year by month by tag at a million
  // tickets: 2.15 million month rows). By agent or channel a group holds few rows: no need.
  // The sum stays an int4, as n is: the ranks below are integer arithmetic on the running sums.
  const merged = byTag(spec);
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
          select ${keyColumns(spec, 'h')} h.metric, h.bin, ${merged ? sql`sum(h.n * h.sign)::int4` : sql`h.n * h.sign`} as n
          from (${overPieces(spec, 'histograms')}) h
          where ${where} and h.metric in (${sql.join(codes.map((c) => sql`${c}::smallint`))})
          ${merged ? sql`group by ${sql.join(groupKeys(spec, 'h'))}, h.metric, h.bin` : sql``}
        ) r
      ) w
      where w.total > 0
      group by ${keysOf('w')}, w.metric
    ) x
    group by ${keysOf('x')}`;
}

/** Whether a report's percentiles come from the coarse histograms by department. */
export const twoStep = (spec: ReportSpec) =>
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
export function twoStepHistogramAgg(spec: ReportSpec, metrics: SampleMetric[]): RawBuilder<unknown> {
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

/**
 * Per group, the samples of the goal's kind (`total`) and those whose bin lies at or below
 * the goal's bin edge (`met`): exact counts of the histograms, signed pieces and all. By
 * department, the coarse rows give the total and every coarse bin below the goal's, and only
 * the fine rows of the goal's own coarse bin are read, by index, one look-up per coarse row
 * that has samples there (as the percentiles' second step does); by agent or channel, and
 * from the events, the fine rows of the one metric.
 */
export function goalAgg(spec: ReportSpec, goal: Goal): RawBuilder<unknown> {
  const where = filters(spec, { department: 'h.department_id', agent: 'h.agent_id', channel: 'h.channel' });
  const code = sql`${SAMPLE_METRICS[goal.sample]}::smallint`;
  const bin = sql.lit(goal.bin);
  if (spec.source === 'events' || fullDetail(spec)) {
    return sql`
      select ${keyColumns(spec, 'h')} sum(h.n * h.sign)::float8 as total,
        coalesce(sum(h.n * h.sign) filter (where h.bin <= ${bin}), 0)::float8 as met
      from (${overPieces(spec, 'histograms')}) h
      where ${where} and h.metric = ${code}
      group by ${sql.join(groupKeys(spec, 'h'))}
      having sum(h.n * h.sign) <> 0`;
  }
  const keyNames = ['period_start', ...entityDims(spec).map((d) => DIMENSION_COLUMN[d])];
  const keysOf = (alias: string) => sql.join(keyNames.map((k) => id(`${alias}.${k}`)));
  const coarseBin = Math.floor(goal.bin / COARSE_WIDTH);
  const lookUps = (['month', 'day', '15m'] as const).map(
    (grain) => sql`
      select ${keysOf('l')}, 0::int8 as total, f.n * l.sign as met
      from (
        select distinct ${keysOf('c')}, c.sign, c.piece, c.piece_grain, c.bucket, c.row_department_id
        from goal_coarse c where c.coarse_bin = ${sql.lit(coarseBin)}
      ) l
      cross join lateral (
        select f.n from ${sql.table(`report_department_histograms_${grain}`)} f
        where f.bucket = l.bucket
          and coalesce(f.department_id, ${sql.lit(NONE)}::uuid) = coalesce(l.row_department_id, ${sql.lit(NONE)}::uuid)
          and f.metric = ${code}
          and f.bin between ${sql.lit(coarseBin * COARSE_WIDTH)} and ${bin}
        offset 0
      ) f
      where l.piece_grain = ${grain}`,
  );
  return sql`
    with goal_coarse as materialized (
      select ${keyColumns(spec, 'h')} h.coarse_bin, h.n * h.sign as n, h.sign, h.piece, h.piece_grain, h.bucket,
        h.department_id as row_department_id
      from (${overPieces(spec, 'coarse_histograms')}) h
      where ${where} and h.metric = ${code}
    )
    select ${keysOf('g')}, sum(g.total)::float8 as total, sum(g.met)::float8 as met
    from (
      select ${keysOf('c')}, c.n as total, case when c.coarse_bin < ${sql.lit(coarseBin)} then c.n else 0 end as met
      from goal_coarse c
      union all ${sql.join(lookUps, sql` union all `)}
    ) g
    group by ${keysOf('g')}
    having sum(g.total) <> 0`;
}
