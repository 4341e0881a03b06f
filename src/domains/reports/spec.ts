import { type RawBuilder, sql } from 'kysely';
import type { SampleMetric } from './figures.ts';
import type { Goal, Metric } from './metrics.ts';

// The report spec and the SQL pieces every part of a report statement shares: how groups are
// keyed and filtered. Imports nothing else of the reports domain's queries, so periods.ts,
// counters.ts, percentiles.ts and query.ts can all build on it without a cycle.

export type Dimension = 'time' | 'department' | 'agent' | 'channel' | 'tag';
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
  /** The goal the goal_* columns measure; none without `goal=`. */
  goal?: Goal | null | undefined;
  sort: { key: string; direction: 'asc' | 'desc' }[];
  /**
   * Only the periods whose start (clipped to the range) lies in [from, to): one chunk of an
   * export computed a few periods at a time (exportChunks). The range stays the report's.
   * `entities`: a one-dimension report's entities over the whole range (query.ts,
   * reportEntitiesQuery), as text; each gets a row in every period of every chunk.
   */
  chunk?: { from: Date; to: Date; entities?: (string | null)[] | undefined } | undefined;
}

export type SortValue = string | number | boolean | null;

// "No department" and "no agent" as a key that joins and groups like any other.
export const NONE = '00000000-0000-0000-0000-000000000000';

export const DIMENSION_COLUMN: Record<EntityDimension, 'department_id' | 'agent_id' | 'channel' | 'tag'> = {
  department: 'department_id',
  agent: 'agent_id',
  channel: 'channel',
  tag: 'tag',
};

// "No tag" (an event of an untagged ticket) as a key that joins and groups like any other.
export const NO_TAG = '';

export const id = (name: string) => sql.ref(name);
export const at = (instant: Date) => sql`${instant.toISOString()}::timestamptz`;
export const entityDims = (spec: ReportSpec) =>
  spec.groupBy.filter((d): d is EntityDimension => d !== 'time');
export const byTime = (spec: ReportSpec) => spec.groupBy.includes('time');

/** Keys as they are grouped and joined: uuids with NONE for null. */
export function keyExpr(alias: string, dim: EntityDimension): RawBuilder<unknown> {
  const column = id(`${alias}.${DIMENSION_COLUMN[dim]}`);
  if (dim === 'tag') return sql`coalesce(${column}, ${sql.lit(NO_TAG)})`;
  return dim === 'channel' ? sql`${column}` : sql`coalesce(${column}, ${sql.lit(NONE)}::uuid)`;
}

export function inList(column: RawBuilder<unknown>, values: (string | null)[], cast: 'uuid' | 'text') {
  const ids = values.filter((v): v is string => v !== null);
  const parts: RawBuilder<unknown>[] = [];
  if (ids.length > 0)
    parts.push(sql`${column} in (${sql.join(ids.map((v) => sql`${v}::${sql.raw(cast)}`))})`);
  if (values.includes(null)) parts.push(sql`${column} is null`);
  return parts.length > 0 ? sql`(${sql.join(parts, sql` or `)})` : sql`false`;
}

/** The department, agent and channel filters, on columns named like the counter tables'. */
export function filters(spec: ReportSpec, columns: { department: string; agent: string; channel: string }) {
  const conditions: RawBuilder<unknown>[] = [sql`true`];
  if (spec.departments) conditions.push(inList(sql`${id(columns.department)}`, spec.departments, 'uuid'));
  if (spec.agents) conditions.push(inList(sql`${id(columns.agent)}`, spec.agents, 'uuid'));
  if (spec.channels) conditions.push(inList(sql`${id(columns.channel)}`, spec.channels, 'text'));
  return sql.join(conditions, sql` and `);
}

export const needsFigures = (spec: ReportSpec) =>
  spec.metrics.some(
    (m) =>
      'count' in m.formula ||
      'sum' in m.formula ||
      'total' in m.formula ||
      'average' in m.formula ||
      'share' in m.formula,
  );
/** The goal, when some requested column measures it. */
export const neededGoal = (spec: ReportSpec): Goal | null =>
  (spec.goal && spec.metrics.some((m) => 'goal' in m.formula) && spec.goal) || null;
export const neededSamples = (spec: ReportSpec): SampleMetric[] => [
  ...new Set(spec.metrics.flatMap((m) => ('percentile' in m.formula ? [m.formula.percentile] : []))),
];
export const needsCurrent = (spec: ReportSpec) => spec.metrics.some((m) => 'current' in m.formula);
/**
 * Whether the report reads the counts (the `counts` CTE, query.ts): for its count, sum, average
 * and share columns, and when nothing else would name its groups.
 */
export const needsCounts = (spec: ReportSpec) =>
  needsFigures(spec) ||
  !(neededSamples(spec).length > 0 || (needsCurrent(spec) && !byTime(spec)) || neededGoal(spec));

export function groupKeys(spec: ReportSpec, alias: string, withPeriod = true): RawBuilder<unknown>[] {
  return [
    ...(withPeriod ? [id(`${alias}.period_start`)] : []),
    ...entityDims(spec).map((d) => keyExpr(alias, d)),
  ];
}

export function keyColumns(spec: ReportSpec, alias: string, withPeriod = true): RawBuilder<unknown> {
  const columns = [
    ...(withPeriod ? [sql`${id(`${alias}.period_start`)} as period_start`] : []),
    ...entityDims(spec).map((d) => sql`${keyExpr(alias, d)} as ${id(DIMENSION_COLUMN[d])}`),
  ];
  return columns.length > 0 ? sql`${sql.join(columns)},` : sql``;
}

export const byTag = (spec: ReportSpec) => spec.groupBy.includes('tag');

/**
 * Whether a report needs the tables by agent and channel, or those by department suffice.
 * Reports by tag read the tables by tag (migrations/0038), which merge their histograms in one
 * pass like the full-detail ones.
 */
export const fullDetail = (spec: ReportSpec) =>
  entityDims(spec).some((d) => d !== 'department') || spec.agents !== null || spec.channels !== null;
