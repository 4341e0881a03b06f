import { sql } from 'kysely';
import t from 'tap';
import { seedDemo } from '../scripts/seed-demo.ts';
import { SAMPLE_METRICS } from '../src/domains/reports/figures.ts';
import { METRICS } from '../src/domains/reports/metrics.ts';
import {
  CHANNELS,
  countPendingEvents,
  type ReportSpec,
  rebuildReportCounters,
} from '../src/domains/reports/repository.ts';
import { compactReports } from '../src/domains/reports/service.ts';
import { buildTestApp } from './helpers/app.ts';
import { departmentSpec, reportRows } from './helpers/reports.ts';

// Reports by department find percentiles in two steps, coarse histograms then the fine rows of
// one coarse bin (migrations/0006). The same report filtered on every channel reads the tables
// by agent and channel in one pass over the fine rows: both must agree to the last bit, over
// fresh rows, compacted ones, and rebuilt ones.

const QUARTER = 15 * 60 * 1000;

t.test('percentiles by department in two steps equal those of one pass over the fine bins', async (t) => {
  const ctx = await buildTestApp(t);
  const now = new Date();
  await seedDemo(ctx.db, { tickets: 300, months: 3, seed: 23, now });
  const from = new Date(Math.floor((now.getTime() - 100 * 86_400_000) / QUARTER) * QUARTER);
  const to = new Date(Math.ceil((now.getTime() + 86_400_000) / QUARTER) * QUARTER);
  const base = departmentSpec(
    from,
    to,
    METRICS.filter((m) => 'percentile' in m.formula),
  );
  const run = (spec: ReportSpec) => reportRows(ctx.db, spec);
  const shapes: [string, Partial<ReportSpec>][] = [
    ['by department', {}],
    // Whole UTC months, once compacted, read the bins kept for them (migrations/0008).
    ['by month and department, UTC', { interval: 'month', groupBy: ['time', 'department'] }],
    [
      'by month and department, Europe/Prague',
      { interval: 'month', groupBy: ['time', 'department'], timezone: 'Europe/Prague' },
    ],
    ['by day, Asia/Kathmandu', { interval: 'day', groupBy: ['time'], timezone: 'Asia/Kathmandu' }],
    ['by week and department', { interval: 'week', groupBy: ['time', 'department'] }],
    ['totals', { groupBy: [] }],
  ];
  const check = async (when: string) => {
    for (const [name, shape] of shapes) {
      const spec = { ...base, ...shape };
      const rows = await run(spec);
      t.ok(
        rows.some((r) => Object.values(r.values).some((v) => v !== null)),
        `${name}: has percentiles (${when})`,
      );
      t.same(rows, await run({ ...spec, channels: [...CHANNELS] }), `${name} (${when})`);
    }
  };
  t.ok((await countPendingEvents(ctx.db)) > 0, 'the seed left events to count');
  await check('fresh rows');
  t.ok((await compactReports(ctx.db))! > 0, 'the seed left fresh rows to compact');
  await check('compacted');
  // Totals merge every department: compacted months come summed over departments
  // (report_total_histograms_month, and its coarse sums). Altered, the totals show it; refreshed,
  // as before. The alteration must move a percentile whatever the seed drew: a million first
  // answers of ~10^13 ms planted in each summed month put the median there. (Adding to every bin
  // left the median in the same fine bin whenever that bin was the first of its coarse bin.)
  const totals = { ...base, groupBy: [] };
  const before = await run(totals);
  const planted = await sql`
    insert into report_total_histograms_month (bucket, metric, bin, n)
    select distinct bucket, ${SAMPLE_METRICS.first_answer}::smallint, 3000, 1000000
    from report_total_histograms_month`.execute(ctx.db);
  await sql`
    insert into report_total_coarse_histograms_month (bucket, metric, coarse_bin, n)
    select distinct bucket, ${SAMPLE_METRICS.first_answer}::smallint, 3000 >> 5, 1000000
    from report_total_coarse_histograms_month`.execute(ctx.db);
  t.ok(Number(planted.numAffectedRows) > 0, 'compacted months are summed over departments');
  const altered = await run(totals);
  t.ok((altered[0]?.values.median_first_answer_time ?? 0) > 1e9, 'the totals read the sums over departments');
  await sql`select report_refresh_month_quantiles(null, null)`.execute(ctx.db);
  t.same(await run(totals), before, 'refreshed: as before');
  await ctx.db.transaction().execute((trx) => rebuildReportCounters(trx));
  await check('rebuilt');
});
