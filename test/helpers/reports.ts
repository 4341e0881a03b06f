import type { Kysely } from 'kysely';
import type { Database } from '../../src/db/types.ts';
import type { Metric } from '../../src/domains/reports/metrics.ts';
import { type ReportSpec, reportQuery, toReportRow } from '../../src/domains/reports/repository.ts';

/** A report by department over [from, to) in UTC, from the counters, unsorted: tests vary it. */
export function departmentSpec(from: Date, to: Date, metrics: Metric[]): ReportSpec {
  return {
    from,
    to,
    timezone: 'UTC',
    interval: 'none',
    weekShift: 0,
    groupBy: ['department'],
    departments: null,
    agents: null,
    channels: null,
    attribution: 'event',
    source: 'counters',
    metrics,
    sort: [],
  };
}

/** A report's rows, run straight (not through the routes, which count pending events first). */
export async function reportRows(db: Kysely<Database>, spec: ReportSpec) {
  return (await reportQuery(spec).execute(db)).rows.map((r) => toReportRow(spec, r));
}
