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
//
// Its entries are deleted by the database itself, not by the compactor's code: an instance of
// the release before this one (a rolling upgrade, README) folds fresh counter rows knowing
// nothing of this table, and an entry it left would be read as settled. So statement triggers
// on the 15-minute counters (by agent and channel, and by tag: counting writes both with every
// other counter table, report_count_pending) delete the entries whose period holds a bucket of
// deleted rows (the fold deletes the fresh rows it folds), and empty the table on truncate (the
// rebuild).

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
  // The triggers look for the entries a folded bucket overlaps.
  await sql`create index report_count_cache_range_idx on report_count_cache (lo, hi)`.execute(db);
  await sql`
    create function report_count_cache_stale() returns trigger language plpgsql as $fn$
    begin
      delete from report_count_cache k
      where exists (select 1 from (select distinct bucket from old_rows) g where g.bucket >= k.lo and g.bucket < k.hi);
      return null;
    end
    $fn$`.execute(db);
  await sql`
    create function report_count_cache_emptied() returns trigger language plpgsql as $fn$
    begin
      delete from report_count_cache;
      return null;
    end
    $fn$`.execute(db);
  for (const table of WATCHED) {
    await sql
      .raw(`create trigger ${table}_kept_counts_stale after delete on ${table}
        referencing old table as old_rows for each statement execute function report_count_cache_stale()`)
      .execute(db);
    await sql
      .raw(`create trigger ${table}_kept_counts_emptied after truncate on ${table}
        for each statement execute function report_count_cache_emptied()`)
      .execute(db);
  }
}

const WATCHED = ['report_counters_15m', 'report_tag_counters_15m'];

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of WATCHED) {
    await sql.raw(`drop trigger ${table}_kept_counts_stale on ${table}`).execute(db);
    await sql.raw(`drop trigger ${table}_kept_counts_emptied on ${table}`).execute(db);
  }
  await sql`drop function report_count_cache_stale()`.execute(db);
  await sql`drop function report_count_cache_emptied()`.execute(db);
  await sql`drop table report_count_cache`.execute(db);
}
