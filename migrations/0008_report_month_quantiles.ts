import { type Kysely, sql } from 'kysely';

// The ranks' bins of each department's compacted UTC month, kept beside its histograms. Frozen
// once run anywhere; docs/metrics.md explains it.
//
// A year by month by department found each median and 90th percentile in two steps over the
// histograms (0006): ~16,700 coarse rows through two running counts, then ~2,000 look-ups of
// fine rows, ~150 ms, for figures that only change while a month still gets events. A group that
// is one whole UTC month of one department reads the same thing every time: the bins where the
// running count of that month's compacted histogram reaches each rank. They are kept here, one
// row per (month, department, metric): the sample count and the bins of ranks k and k + 1 of
// the median (bin0, bin1) and of the 90th percentile (bin2, bin3), with the rank arithmetic of
// the report queries (src/domains/reports/repository.ts), so a report reads them instead and
// gets the same figures to the bit.
//
// Totals (and reports by time alone) merge every department's histograms instead: the year's
// merged the fine rows of ~2,000 (month, department) coarse rows, 57,000 rows to sort and run
// through. report_total_histograms_month keeps each compacted month's histogram summed over
// departments (one row per month, metric and bin), and report_total_coarse_histograms_month its
// coarse bins (bin >> 5, as 0006's), so a merge reads one month's rows instead of twenty
// departments'.
//
// Only compacted rows are summarised. report_refresh_month_quantiles(buckets, departments)
// recomputes the rows of the given (month, department) pairs and the sums of their months, or
// everything when both are null: the compactor calls it for the pairs it folded, in the same transaction; the rebuild for
// all. A report uses these rows only for periods that are exactly one UTC month whose histogram
// has no fresh rows left; the others go the two-step way.

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table report_department_quantiles_month (
      bucket timestamptz not null,
      department_id uuid,
      metric smallint not null,
      total bigint not null,
      bin0 integer,
      bin1 integer,
      bin2 integer,
      bin3 integer
    )`.execute(db);
  await sql`
    create unique index report_department_quantiles_month_key
      on report_department_quantiles_month (bucket, department_id, metric) nulls not distinct`.execute(db);

  await sql`
    create table report_total_histograms_month (
      bucket timestamptz not null,
      metric smallint not null,
      bin integer not null,
      n bigint not null
    )`.execute(db);
  await sql`
    create unique index report_total_histograms_month_key
      on report_total_histograms_month (bucket, metric, bin) include (n)`.execute(db);

  await sql`
    create table report_total_coarse_histograms_month (
      bucket timestamptz not null,
      metric smallint not null,
      coarse_bin integer not null,
      n bigint not null
    )`.execute(db);
  await sql`
    create unique index report_total_coarse_histograms_month_key
      on report_total_coarse_histograms_month (bucket, metric, coarse_bin) include (n)`.execute(db);

  // Ranks k and k + 1 of the median (1 + (n − 1)/2) and of the 90th percentile (1 + 9(n − 1)/10),
  // in integer arithmetic; a bin is the first whose running count reaches the rank.
  await sql`
    create function report_refresh_month_quantiles(p_buckets timestamptz[], p_departments uuid[])
    returns integer
    language plpgsql
    set jit = off
    as $fn$
    declare
      refreshed integer;
    begin
      if p_buckets is null then
        delete from report_department_quantiles_month;
        delete from report_total_histograms_month;
        delete from report_total_coarse_histograms_month;
      else
        delete from report_total_histograms_month where bucket = any(p_buckets);
        delete from report_total_coarse_histograms_month where bucket = any(p_buckets);
        delete from report_department_quantiles_month q
        using unnest(p_buckets, p_departments) k(bucket, department_id)
        where q.bucket = k.bucket and q.department_id is not distinct from k.department_id;
      end if;
      insert into report_department_quantiles_month (bucket, department_id, metric, total, bin0, bin1, bin2, bin3)
      select w.bucket, w.department_id, w.metric, w.total,
        min(w.bin) filter (where w.upto >= 1 + (w.total - 1) / 2),
        min(w.bin) filter (where w.upto >= 1 + (w.total - 1) / 2 + 1),
        min(w.bin) filter (where w.upto >= 1 + 9 * (w.total - 1) / 10),
        min(w.bin) filter (where w.upto >= 1 + 9 * (w.total - 1) / 10 + 1)
      from (
        select f.bucket, f.department_id, f.metric, f.bin,
          (sum(f.n) over (partition by f.bucket, f.department_id, f.metric order by f.bin))::int8 as upto,
          (sum(f.n) over (partition by f.bucket, f.department_id, f.metric))::int8 as total
        from report_department_histograms_month f
        where not f.fresh
          and (p_buckets is null
            -- the pairs given, through 0006's index on (bucket, coalesce(department_id, none), ...)
            or (f.bucket, coalesce(f.department_id, '00000000-0000-0000-0000-000000000000'::uuid)) in (
              select k.bucket, coalesce(k.department_id, '00000000-0000-0000-0000-000000000000'::uuid)
              from unnest(p_buckets, p_departments) k(bucket, department_id)))
      ) w
      where w.total > 0
      group by w.bucket, w.department_id, w.metric, w.total;
      get diagnostics refreshed = row_count;
      insert into report_total_histograms_month (bucket, metric, bin, n)
      select f.bucket, f.metric, f.bin, sum(f.n)
      from report_department_histograms_month f
      where not f.fresh and (p_buckets is null or f.bucket = any(p_buckets))
      group by f.bucket, f.metric, f.bin;
      insert into report_total_coarse_histograms_month (bucket, metric, coarse_bin, n)
      select t.bucket, t.metric, t.bin >> 5, sum(t.n)
      from report_total_histograms_month t
      where p_buckets is null or t.bucket = any(p_buckets)
      group by t.bucket, t.metric, t.bin >> 5;
      return refreshed;
    end
    $fn$`.execute(db);

  await sql`select report_refresh_month_quantiles(null, null)`.execute(db);
  await sql`analyze report_department_quantiles_month`.execute(db);
  await sql`analyze report_total_histograms_month`.execute(db);
  await sql`analyze report_total_coarse_histograms_month`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function report_refresh_month_quantiles(timestamptz[], uuid[])`.execute(db);
  await sql`drop table report_total_coarse_histograms_month`.execute(db);
  await sql`drop table report_total_histograms_month`.execute(db);
  await sql`drop table report_department_quantiles_month`.execute(db);
}
