import { type Kysely, sql } from 'kysely';

// Percentiles of settled periods, kept (issue 16: reports as fast in the help desk's own time
// zone as in UTC). Frozen once run anywhere; docs/metrics.md ("How the figures are kept") and
// src/domains/reports/cache.ts explain it.
//
// The medians and 90th percentiles of a period that is not one whole UTC month (a month in
// Europe/Prague, a week, a year in Asia/Kathmandu) go the two-step way over the histograms,
// about 200 ms for a year by month by department, and they do not change once no more events
// land in the period. report_percentile_cache keeps, per report scope (a hash of its groups,
// filters and duration metrics) and exact period [lo, hi), the percentile rows the report query
// computed.
//
// An entry holds while nothing was counted into its period since it was computed. Counting
// appends fresh rows (report_count_pending), so a report reads an entry only while no fresh
// histogram row lies in [lo, hi); the compactor, folding fresh rows, deletes the entries their
// buckets overlap in the same transaction. Entries are computed and written in one statement
// under an advisory lock the compactor waits for before folding, so no fold runs between the
// two. The rebuild takes it too and empties the table.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table report_percentile_cache (
      scope text not null,
      lo timestamptz not null,
      hi timestamptz not null,
      rows jsonb not null,
      created_at timestamptz not null default now(),
      primary key (scope, lo, hi)
    )`.execute(db);
  // The compactor looks for the entries a folded bucket overlaps.
  await sql`create index report_percentile_cache_range_idx on report_percentile_cache (lo, hi)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table report_percentile_cache`.execute(db);
}
