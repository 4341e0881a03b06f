import { type Kysely, sql } from 'kysely';

// Reports by tag over every department (issue 16): the tag counters summed over departments,
// at the three grains. A report by tag without a department filter (owners and admins) read
// every department's row of each tag and bucket and summed them on every read: at a million
// tickets a year by month by tag in America/New_York, whose months end five hours off the UTC
// ones, read 58,491 counter rows (50,679 of them 15-minute rows) for 372 report rows.
//
// - report_tag_total_counters_<grain> (bucket, tag, the figures): only compacted sums. The
//   compactor (src/domains/reports/counters.ts, compactReportTables) adds the fresh tag
//   counter rows it folds to these in the statement that folds them, so a reader sees a row's
//   figures either fresh in the tag table or in both compacted tables, never twice or not at
//   all. A report reads these plus the fresh rows of the tag table.
// - The rebuild recomputes them from the tag tables.
// - Filled here from the compacted tag counters. Frozen once run.

const GRAINS = ['15m', 'day', 'month'] as const;

export async function up(db: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ column_name: string; data_type: string }>`
    select column_name, data_type from information_schema.columns
    where table_schema = current_schema() and table_name = 'report_tag_counters_15m'
      and column_name not in ('bucket', 'tag', 'department_id', 'fresh')
    order by ordinal_position`.execute(db);
  const figures = rows.map((c) => c.column_name);
  for (const grain of GRAINS) {
    const name = `report_tag_total_counters_${grain}`;
    await sql
      .raw(`create table ${name} (
        bucket timestamptz not null,
        tag text,
        ${rows.map((c) => `${c.column_name} ${c.data_type} not null default 0`).join(',\n        ')}
      )`)
      .execute(db);
    // One row per bucket and tag (no tag: null, one row too); reports read a range of buckets.
    await sql.raw(`create unique index ${name}_key on ${name} (bucket, tag) nulls not distinct`).execute(db);
    await sql
      .raw(`insert into ${name} (bucket, tag, ${figures.join(', ')})
        select bucket, tag, ${figures.map((f) => `sum(${f})`).join(', ')}
        from report_tag_counters_${grain} where not fresh
        group by bucket, tag`)
      .execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const grain of GRAINS) await sql.raw(`drop table report_tag_total_counters_${grain}`).execute(db);
}
