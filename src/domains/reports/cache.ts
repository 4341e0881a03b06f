import { createHash } from 'node:crypto';
import { type RawBuilder, sql } from 'kysely';
import { FIGURES, type SampleMetric } from './figures.ts';
import { byTag, DIMENSION_COLUMN, entityDims, needsCounts, type ReportSpec } from './spec.ts';

// Kept percentiles (migrations/0039): the medians and 90th percentiles a report computed for a
// period, kept per report scope and exact period, and read instead of the histograms while no
// event was counted into that period since. What the two-step way costs for periods that are
// not whole UTC months (a month in Europe/Prague, a week, a year in Asia/Kathmandu) is then
// paid once per period, not on every read. The figures are the same to the bit: an entry holds
// the rows the report query itself computed.
//
// - Read: an entry of the report's scope whose [lo, hi) is exactly a clipped period, while no
//   fresh histogram row lies in it (counting appends fresh rows; an entry with any under it is
//   ignored until the compactor folds them and deletes it).
// - Written: after a report, for its periods that ended and had no entry, computed and written
//   in one statement under the keeping lock (repository.ts, keepPercentiles), which the
//   compactor waits for before it folds anything (counters.ts): no fold runs
//   between the computing and the writing, so a fold never misses an entry it should delete.
// - Deleted: by the compactor, for the entries its folded buckets overlap, and those a week old
//   (counters.ts, compactReportTables); all of them by the rebuild.
//
// Kept counts (migrations/0053) are the same for the counts and sums of a period (the `counts`
// CTE, query.ts), in report_count_cache, by the same rules: read while no fresh counter row
// lies in the period (an event with no duration, a ticket created say, adds counter rows and
// no histogram row); deleted by triggers on the 15-minute counters when the fold deletes their
// fresh rows (so a fold by an older release, which knows nothing of them, deletes them too),
// and emptied when the rebuild truncates them. A period that is not made of whole UTC days (a
// month in America/New_York reads 36 quarter hours of rows at its ends) then costs what a UTC
// month does.

/** The histograms whose fresh rows say that an entry's period got events since it was computed. */
const freshHistograms = (spec: ReportSpec) =>
  sql.table(byTag(spec) ? 'report_tag_histograms_15m' : 'report_histograms_15m');

/**
 * Held (for the rest of the transaction) by whatever keeps percentiles, folds fresh rows or
 * rebuilds the tables: the compactor waits for a keeper's statement instead of skipping its
 * turn, and a keeper never computes across a fold.
 */
export const takeKeepingLock = sql`select pg_advisory_xact_lock(hashtext('deskroute.report_percentiles'))`;

/** How long an entry is read: the compactor deletes older ones, so the table stays small. */
export const KEPT_FOR = sql`interval '7 days'`;

const byCode = (a: string | null, b: string | null) =>
  a === b ? 0 : a === null || (b !== null && a < b) ? -1 : 1;
const sorted = (list: (string | null)[] | null) => list && [...list].sort(byCode);

/**
 * The key of what a report's percentiles depend on besides the period: its groups, filters and
 * duration metrics, hashed (an agent's filter may list many departments; a btree key may not
 * be that long). Null when they are not kept: computed from the events, or with no percentile
 * column. `v` names how they are computed: a change to the percentile statements, to the
 * histogram bins, or a migration writing compacted histogram rows directly must bump it (or
 * empty report_percentile_cache), so no entry of the old way is read.
 */
export function cacheScope(spec: ReportSpec, samples: SampleMetric[]): string | null {
  if (spec.source !== 'counters' || samples.length === 0) return null;
  const key = JSON.stringify({
    v: 1,
    by: [...entityDims(spec)].sort(),
    departments: sorted(spec.departments),
    agents: sorted(spec.agents),
    channels: sorted(spec.channels),
    samples: [...samples].sort(),
  });
  return createHash('sha256').update(key).digest('hex');
}

/** No histogram row counted into [s, e) waits to be folded. */
export function settled(spec: ReportSpec, s: RawBuilder<unknown>, e: RawBuilder<unknown>) {
  return sql`not exists (select 1 from ${freshHistograms(spec)} f where f.fresh and f.bucket >= ${s} and f.bucket < ${e})`;
}

/**
 * The counters whose fresh rows say that a kept count's period got events since: counting
 * appends fresh rows to every counter table at once (report_count_pending), the 15-minute ones
 * included, so those by agent and channel (or by tag) speak for the department's too.
 */
const freshCounters = (spec: ReportSpec) =>
  sql.table(byTag(spec) ? 'report_tag_counters_15m' : 'report_counters_15m');

/** No counter row counted into [s, e) waits to be folded. */
export function settledCounts(spec: ReportSpec, s: RawBuilder<unknown>, e: RawBuilder<unknown>) {
  return sql`not exists (select 1 from ${freshCounters(spec)} f where f.fresh and f.bucket >= ${s} and f.bucket < ${e})`;
}

/**
 * The key of what a report's counts depend on besides the period: its groups and filters (every
 * count and sum is computed whatever the columns), hashed, with the list of figures (a
 * migration adding one leaves the entries without it unread). Null when they are not kept:
 * computed from the events, or not read. `v` names how they are computed: a migration writing
 * compacted counter rows directly (not through fresh rows and the fold) must bump it or empty
 * report_count_cache.
 */
export function countScope(spec: ReportSpec): string | null {
  if (spec.source !== 'counters' || !needsCounts(spec)) return null;
  const key = JSON.stringify({
    v: 1,
    counts: FIGURES,
    by: [...entityDims(spec)].sort(),
    departments: sorted(spec.departments),
    agents: sorted(spec.agents),
    channels: sorted(spec.channels),
  });
  return createHash('sha256').update(key).digest('hex');
}

/**
 * Whether the counts of [s, e) are worth keeping: an end of it lies inside a UTC day, so its
 * pieces read 15-minute rows (a month in New York: 36 quarter hours of rows at its ends). Those
 * of a period of whole UTC days come from month and day rows, which cost less to read than
 * their kept rows do (the last 30 days by day by tag: its counts took 5.5 ms from the day rows
 * and 8.6 ms from the kept ones).
 */
export function offUtcDays(s: RawBuilder<unknown>, e: RawBuilder<unknown>) {
  return sql`(${s} <> date_trunc('day', ${s}, 'UTC') or ${e} <> date_trunc('day', ${e}, 'UTC'))`;
}

/** The clipped periods whose counts are kept and hold: period_start, rows. */
export function keptCounts(spec: ReportSpec, scope: string): RawBuilder<unknown> {
  return sql`
    select p.period_start, k.rows
    from clipped p
    join report_count_cache k on k.scope = ${scope} and k.lo = p.s and k.hi = p.e
    where ${offUtcDays(sql`p.s`, sql`p.e`)} and k.created_at > now() - ${KEPT_FOR}
      and ${settledCounts(spec, sql`p.s`, sql`p.e`)}`;
}

/** The columns of a kept count row, as countsAgg (counters.ts) gives them. */
export function countColumns(spec: ReportSpec): RawBuilder<unknown> {
  return sql.raw([...entityColumns(spec), ...FIGURES.map((f) => `${f} float8`)].join(', '));
}

const ENTITY_TYPE = { department_id: 'uuid', agent_id: 'uuid', channel: 'text', tag: 'text' } as const;
const entityColumns = (spec: ReportSpec) =>
  entityDims(spec).map((d) => `${DIMENSION_COLUMN[d]} ${ENTITY_TYPE[DIMENSION_COLUMN[d]]}`);

/** The clipped periods (query.ts) whose percentiles are kept and hold: period_start, rows. */
export function keptPercentiles(spec: ReportSpec, scope: string): RawBuilder<unknown> {
  return sql`
    select p.period_start, k.rows
    from clipped p
    join report_percentile_cache k on k.scope = ${scope} and k.lo = p.s and k.hi = p.e
    where k.created_at > now() - ${KEPT_FOR} and ${settled(spec, sql`p.s`, sql`p.e`)}`;
}

/** The columns of a kept row, as the percentile queries (percentiles.ts) give them. */
export function percentileColumns(spec: ReportSpec, samples: SampleMetric[]): RawBuilder<unknown> {
  return sql.raw([...entityColumns(spec), ...samples.map((m) => `${m}_q float8[]`)].join(', '));
}
