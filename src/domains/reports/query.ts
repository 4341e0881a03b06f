import { type RawBuilder, sql } from 'kysely';
import { CHANNELS } from '../tickets/schemas.ts';
import {
  cacheScope,
  countColumns,
  countScope,
  keptCounts,
  keptPercentiles,
  percentileColumns,
} from './cache.ts';
import { countsAgg, currentAgg, seenAgg } from './counters.ts';
import { FIGURES, type SampleMetric } from './figures.ts';
import { DECIMALS, type Formula, type Metric, shareOf } from './metrics.ts';
import { goalAgg, histogramAgg, twoStep, twoStepHistogramAgg } from './percentiles.ts';
import { periods, pieces } from './periods.ts';
import {
  at,
  byTime,
  DIMENSION_COLUMN,
  type Dimension,
  type EntityDimension,
  entityDims,
  id,
  inList,
  NO_TAG,
  NONE,
  neededGoal,
  neededSamples,
  needsCounts,
  needsCurrent,
  type ReportSpec,
  type SortValue,
} from './spec.ts';

// The report statement: periods, counts, percentiles and current figures joined per group,
// the groups made dense, names, sort keys and the page.

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
  // Tags are listed where they have figures: there is no catalogue of tags to make dense.
  if (dim === 'tag') return sql`select ${sql.lit(NO_TAG)}::text as tag where false`;
  const channels = CHANNELS.filter((c) => !spec.channels || spec.channels.includes(c));
  // Typed: an empty filter (channel=,) leaves no channel, and PostgreSQL cannot type array[].
  return sql`select unnest(array[${sql.join(channels.map((c) => sql`${c}::text`))}]::text[]) as channel`;
}

function roundTo(value: RawBuilder<unknown>, decimals: number) {
  return sql`round((${value})::numeric, ${sql.lit(decimals)})::float8`;
}

function metricExpr(spec: ReportSpec, metric: Metric): RawBuilder<unknown> {
  const f: Formula = metric.formula;
  const a = (figure: string) => sql`coalesce(${id(`a.${figure}`)}, 0)`;
  const decimals = DECIMALS[metric.unit];
  if ('count' in f) return a(f.count);
  if ('sum' in f) return sql`(${sql.join(f.sum.map(a), sql` + `)})`;
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
    const share = sql.join(shareOf(f.share).map(a), sql` + `);
    return sql`case when ${total} > 0 then ${roundTo(sql`100 * (${share}) / (${total})`, decimals)} end`;
  }
  if ('goal' in f) {
    const met = sql`coalesce(gl.met, 0)`;
    const total = sql`coalesce(gl.total, 0)`;
    if (f.goal === 'met') return met;
    if (f.goal === 'missed') return sql`${total} - ${met}`;
    return sql`case when ${total} > 0 then ${roundTo(sql`100 * ${met} / ${total}`, decimals)} end`;
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
  if (dim === 'tag') return [{ expr: sql`g.tag`, type: 'text', direction }];
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

/** The periods cut to the range (s, e), and to the chunk's periods when there is one. */
function clipped(spec: ReportSpec): RawBuilder<unknown> {
  const s = sql`greatest(period_start, ${at(spec.from)})`;
  const inChunk = spec.chunk
    ? sql`and ${s} >= ${at(spec.chunk.from)} and ${s} < ${at(spec.chunk.to)}`
    : sql``;
  return sql`clipped as (
    select period_start, period_end, ${s} as s, least(period_end, ${at(spec.to)}) as e
    from periods where ${s} < least(period_end, ${at(spec.to)}) ${inChunk})`;
}

/** The starts of the report's periods cut to its range (what a chunk starts on), in order. */
export function periodStartsQuery(spec: ReportSpec): RawBuilder<{ s: Date | string }> {
  return sql<{
    s: Date | string;
  }>`with periods as (${periods(spec)}), ${clipped(spec)} select s from clipped order by s`;
}

/**
 * Whether a report can be computed a few whole periods at a time, each chunk one statement over
 * its periods, the chunks' rows in chunk order being exactly the whole statement's rows:
 * - its rows begin with the period (no sort, or by time ascending: sortKeys puts
 *   g.period_start first, as time is the first of groupBy whenever it is grouped);
 * - each period's groups depend on that period alone: with two dimensions or more (only the
 *   combinations with figures, period by period) or none; with one, every entity seen anywhere
 *   in the range gets a row in every period (`entities`), so the entities are read over the
 *   whole range first (reportEntitiesQuery) and given to each chunk (spec.chunk.entities).
 * Every other part is per period: the pieces and what is read over them. From the events, a
 * chunk reads the events from its own start: every figure is counted at or before its event's
 * time (a breach at its due, a rating's not_rated −1 at its earlier resolve), and the ratings and
 * breaches recorded after the chunk are read as they are after the range.
 */
export function chunkable(spec: ReportSpec): boolean {
  const first = spec.sort[0];
  return (
    byTime(spec) &&
    spec.interval !== 'none' &&
    (first === undefined || (first.key === 'time' && first.direction === 'asc'))
  );
}

/** The report's periods, and each clipped to the range (and chunk): [s, e). */
export function periodCtes(spec: ReportSpec): RawBuilder<unknown>[] {
  return [sql`periods as (${periods(spec)})`, clipped(spec)];
}

/** The signed pieces of the clipped periods (periods.ts), numbered. */
export const piecesCte = (coarse: boolean) =>
  sql`pieces as (select row_number() over () as piece, q.* from (${pieces(coarse)}) q)`;

/**
 * `counts`: each group's counts and sums, per period. From the counters, a period whose counts
 * are kept (cache.ts) is read from there, and only the others are computed.
 */
function countCtes(spec: ReportSpec): RawBuilder<unknown>[] {
  const scope = countScope(spec);
  if (scope === null) return [sql`counts as (${countsAgg(spec)})`];
  return [
    sql`kept_counts as materialized (${keptCounts(spec, scope)})`,
    sql`counts as (
      select k.period_start, x.*
      from kept_counts k
      cross join lateral jsonb_to_recordset(k.rows) as x(${countColumns(spec)})
      union all
      select * from (
        with pieces as (select * from pieces where period_start not in (select period_start from kept_counts))
        select * from (${countsAgg(spec)}) a
      ) computed
    )`,
  ];
}

/**
 * `samples`: each group's percentiles, per period. From the counters, a period whose
 * percentiles are kept (cache.ts) is read from there, and only the others are computed.
 */
function percentileCtes(spec: ReportSpec, samples: SampleMetric[]): RawBuilder<unknown>[] {
  const agg = (twoStep(spec) ? twoStepHistogramAgg : histogramAgg)(spec, samples);
  const scope = cacheScope(spec, samples);
  if (scope === null) return [sql`samples as (${agg})`];
  return [
    sql`kept_percentiles as materialized (${keptPercentiles(spec, scope)})`,
    sql`samples as (
      select k.period_start, x.*
      from kept_percentiles k
      cross join lateral jsonb_to_recordset(k.rows) as x(${percentileColumns(spec, samples)})
      union all
      select * from (
        with pieces as (select * from pieces where period_start not in (select period_start from kept_percentiles))
        select * from (${agg}) a
      ) computed
    )`,
  ];
}

/**
 * The statements a report's figures come from, as CTEs (periods, pieces, counts, samples,
 * goal_counts, current_figures), which of those figures it reads (`sources`), and which CTEs
 * name the entities of a one-dimension report (`entitySources`, with allEntities).
 *
 * The entities of a one-dimension report from the counters are those with counted events in
 * the range (or now, for the current figures), whichever columns are asked for: a report of
 * medians alone lists the same rows as one with counts. Without counts among its figures, the
 * `seen` groups (the counts' groups without their sums) name them: the percentiles' and the
 * goal's groups are among them, and a chunked export reads them first without computing a
 * percentile. From the events, those of the figures asked for.
 */
function figureCtes(spec: ReportSpec) {
  const time = byTime(spec);
  const samples = neededSamples(spec);
  const withCurrent = needsCurrent(spec) && !time;
  const coarse = spec.source === 'counters';

  const ctes: RawBuilder<unknown>[] = periodCtes(spec);
  const sources: string[] = [];
  const entitySources: string[] = [];
  const goal = neededGoal(spec);
  const withCounts = needsCounts(spec);
  if (withCounts || samples.length > 0 || goal) ctes.push(piecesCte(coarse));
  if (withCounts) {
    ctes.push(...countCtes(spec));
    sources.push('counts');
    entitySources.push('counts');
  } else if (spec.source === 'events') {
    // From the events, the counted groups cost far more than the samples (every counted
    // event's facts against the few events with a duration): the percentiles' and the goal's
    // own groups name the entities, in the JSON and in a chunked export alike.
    if (samples.length > 0) entitySources.push('samples');
    if (goal) entitySources.push('goal_counts');
  } else if ((samples.length > 0 || goal) && entityDims(spec).length === 1) {
    ctes.push(sql`seen as (${seenAgg(spec)})`);
    entitySources.push('seen');
  }
  if (samples.length > 0) {
    ctes.push(...percentileCtes(spec, samples));
    sources.push('samples');
  }
  if (goal) {
    ctes.push(sql`goal_counts as (${goalAgg(spec, goal)})`);
    sources.push('goal_counts');
  }
  if (withCurrent) {
    ctes.push(sql`current_figures as (${currentAgg(spec)})`);
    sources.push('current_figures');
    entitySources.push('current_figures');
  }
  return { ctes, sources, entitySources, goal, withCurrent };
}

/**
 * The department, agent, channel or tag of a one-dimension report: those with counted events
 * (`sources`: figureCtes's entitySources) and every one in scope (allEntities).
 */
function knownEntities(spec: ReportSpec, sources: string[], dim: EntityDimension): RawBuilder<unknown> {
  const column = id(DIMENSION_COLUMN[dim]);
  const known = sources.map((s) => sql`select ${column} from ${sql.table(s)}`);
  known.push(allEntities(spec, dim));
  return sql.join(known, sql` union `);
}

/**
 * Every entity a one-dimension report by time has a row for in each period, over its whole
 * range: a chunk of it (spec.chunk.entities) must have rows for those seen in later chunks too.
 * With counts, those of the counts are all there are: every event that gives a sample (an
 * answer's wait, a chat's pickup and duration, a first resolution) or a goal's count is also
 * counted, at the same time and with the same department, agent, channel and tags (the
 * migrations' report_event_samples and report_event_facts), and the counts keep every group
 * they read, zeros included. So the percentiles, the costliest part, are not computed here.
 */
export function reportEntitiesQuery(spec: ReportSpec): RawBuilder<{ entity: string }> {
  const [dim] = entityDims(spec);
  if (entityDims(spec).length !== 1 || dim === undefined) throw new Error('a report of one dimension only');
  const { ctes, entitySources } = figureCtes(spec);
  // The CTEs left unread (samples, goal_counts) are not run.
  return sql<{ entity: string }>`
    with ${sql.join(ctes)}
    select ${id(DIMENSION_COLUMN[dim])}::text as entity from (${knownEntities(spec, entitySources, dim)}) k`;
}

/**
 * The columns of a report statement's rows, in order (the order of a row read as an array,
 * prepared.ts arrayRows): each period's ends as local text and UTC offset, the dimensions, the
 * figures (m_<key>), the sort key (k0, k1, ...).
 */
export function reportColumns(spec: ReportSpec): string[] {
  return [
    'period_start_local',
    'period_start_offset',
    'period_end_local',
    'period_end_offset',
    'department_id',
    'department_name',
    'department_deleted',
    'agent_id',
    'agent_name',
    'agent_deleted',
    'channel',
    'tag',
    ...spec.metrics.map((m) => `m_${m.key}`),
    ...sortKeys(spec).map((_, i) => `k${i}`),
  ];
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
  const keys = sortKeys(spec);
  const { ctes, sources, entitySources, goal, withCurrent } = figureCtes(spec);

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
    const [dim] = dims;
    if (dim !== undefined && spec.chunk?.entities) {
      // A chunk: those of the whole range (reportEntitiesQuery), as text in a JSON array.
      const cast = dim === 'department' || dim === 'agent' ? sql`::uuid` : sql``;
      ctes.push(sql`entities as (
        select e${cast} as ${id(DIMENSION_COLUMN[dim])}
        from jsonb_array_elements_text(${JSON.stringify(spec.chunk.entities)}::jsonb) e)`);
    } else if (dim !== undefined) {
      ctes.push(sql`entities as (${knownEntities(spec, entitySources, dim)})`);
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
  if (goal) joins.push(sql`left join goal_counts gl on ${joinOn('gl', true)}`);
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
    dims.includes('tag') ? sql`nullif(g.tag, ${sql.lit(NO_TAG)}) as tag` : sql`null::text as tag`,
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
    select ${sql.join(reportColumns(spec).map((c) => id(`r.${c}`)))} from report_rows r
    ${page.after ? sql`where ${afterKey(keys, page.after)}` : sql``}
    ${order.length > 0 ? sql`order by ${sql.join(order)}` : sql``}
    ${page.limit !== undefined ? sql`limit ${page.limit}` : sql``}`;
}
