import { type Kysely, sql } from 'kysely';

// Counts of settled periods, kept (issue 16: reports as fast in the help desk's own time zone
// as in UTC). Frozen once run anywhere; src/domains/reports/cache.ts explains it.
//
// A period that is not made of whole UTC days (a month in America/New_York or Asia/Kathmandu)
// reads the 15-minute counter rows of its ends: 36-46 buckets a month, every tag or department
// in each, which made most of a year by month by tag (31 of its 65 ms of statement at
// 1,000,000 tickets). Its counts do not change once no more events land in the period, so
// report_count_cache keeps, per report scope (a hash of its groups and filters) and exact
// period [lo, hi), the count rows the report query computed: report_percentile_cache's twin
// (migrations/0039), with the same rules, watching the counter tables' fresh rows instead of
// the histograms'.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table report_count_cache (
      scope text not null,
      lo timestamptz not null,
      hi timestamptz not null,
      rows jsonb not null,
      created_at timestamptz not null default now(),
      primary key (scope, lo, hi)
    )`.execute(db);
  // The compactor looks for the entries a folded bucket overlaps.
  await sql`create index report_count_cache_range_idx on report_count_cache (lo, hi)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table report_count_cache`.execute(db);
}
