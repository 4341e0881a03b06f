import { createHash } from 'node:crypto';
import { type RawBuilder, sql } from 'kysely';
import type { SampleMetric } from './figures.ts';
import { byTag, DIMENSION_COLUMN, entityDims, type ReportSpec } from './spec.ts';

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
  const byCode = (a: string | null, b: string | null) =>
    a === b ? 0 : a === null || (b !== null && a < b) ? -1 : 1;
  const sorted = (list: (string | null)[] | null) => list && [...list].sort(byCode);
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
  const type = { department_id: 'uuid', agent_id: 'uuid', channel: 'text', tag: 'text' } as const;
  const columns = [
    ...entityDims(spec).map((d) => `${DIMENSION_COLUMN[d]} ${type[DIMENSION_COLUMN[d]]}`),
    ...samples.map((m) => `${m}_q float8[]`),
  ];
  return sql.raw(columns.join(', '));
}
