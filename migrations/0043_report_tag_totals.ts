import { type Kysely, sql } from 'kysely';

// Reports by tag over every department (issue 16): the tag counters summed over departments,
// at the three grains. A report by tag without a department filter (owners and admins) read
// every department's row of each tag and bucket and summed them on every read: at a million
// tickets a year by month by tag in America/New_York, whose months end five hours off the UTC
// ones, read 58,491 counter rows (50,679 of them 15-minute rows) for 372 report rows.
//
// - report_tag_total_counters_<grain> (bucket, tag, the figures): the compacted tag counter
//   rows summed over departments, nothing else. A report reads these plus the tag counters'
//   fresh rows (src/domains/reports/counters.ts, overPieces), so a figure counts once whether
//   it is still fresh or folded.
// - Kept by statement triggers on report_tag_counters_<grain>: whatever inserts, updates or
//   deletes compacted rows (the compactor's fold, the rebuild, an earlier version of either)
//   adds the difference in the same statement, and a truncate of the tag counters empties
//   their totals. Fresh rows, which counting appends, pass through. The lock below holds
//   because Kysely runs each migration in a transaction.
// - A migration that adds a figure must add it to these tables and their triggers' functions
//   (test/report-figures.test.ts checks both); one that writes compacted tag rows directly gets
//   the totals from the triggers.
// - Filled here from the compacted tag counters, with those tables locked against counting and
//   folding meanwhile. Frozen once run.

const GRAINS = ['15m', 'day', 'month'] as const;

export async function up(db: Kysely<any>): Promise<void> {
  await sql`lock table report_tag_counters_15m, report_tag_counters_day, report_tag_counters_month
    in share row exclusive mode`.execute(db);
  const { rows } = await sql<{ column_name: string; data_type: string }>`
    select column_name, data_type from information_schema.columns
    where table_schema = current_schema() and table_name = 'report_tag_counters_15m'
      and column_name not in ('bucket', 'tag', 'department_id', 'fresh')
    order by ordinal_position`.execute(db);
  const figures = rows.map((c) => c.column_name);
  const list = (f: (figure: string) => string) => figures.map(f).join(', ');
  for (const grain of GRAINS) {
    const name = `report_tag_total_counters_${grain}`;
    const source = `report_tag_counters_${grain}`;
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
      .raw(`insert into ${name} (bucket, tag, ${list((f) => f)})
        select bucket, tag, ${list((f) => `sum(${f})`)}
        from ${source} where not fresh
        group by bucket, tag`)
      .execute(db);
    // The compacted rows a statement added (new_rows) and took away (old_rows), summed per
    // bucket and tag, added to the totals.
    const add = (changes: string) => `
      insert into ${name} as t (bucket, tag, ${list((f) => f)})
      select bucket, tag, ${list((f) => `sum(${f})`)}
      from (${changes}) d
      group by bucket, tag
      on conflict (bucket, tag) do update set ${list((f) => `${f} = t.${f} + excluded.${f}`)}`;
    const added = `select bucket, tag, ${list((f) => f)} from new_rows where not fresh`;
    const removed = `select bucket, tag, ${list((f) => `-${f} as ${f}`)} from old_rows where not fresh`;
    await sql
      .raw(`create function ${name}_fold() returns trigger language plpgsql as $fn$
      begin
        if tg_op = 'INSERT' then
          ${add(added)};
        elsif tg_op = 'UPDATE' then
          ${add(`${added} union all ${removed}`)};
        else
          ${add(removed)};
        end if;
        return null;
      end
      $fn$`)
      .execute(db);
    await sql
      .raw(`create trigger ${name}_inserted after insert on ${source}
        referencing new table as new_rows for each statement execute function ${name}_fold()`)
      .execute(db);
    await sql
      .raw(`create trigger ${name}_updated after update on ${source}
        referencing old table as old_rows new table as new_rows for each statement execute function ${name}_fold()`)
      .execute(db);
    await sql
      .raw(`create trigger ${name}_deleted after delete on ${source}
        referencing old table as old_rows for each statement execute function ${name}_fold()`)
      .execute(db);
    // A truncate fires no row change: emptied tag counters empty their totals too (a rebuild
    // that truncates only the tag counters would otherwise add to stale totals).
    await sql
      .raw(`create function ${name}_emptied() returns trigger language plpgsql as $fn$
      begin
        delete from ${name};
        return null;
      end
      $fn$`)
      .execute(db);
    await sql
      .raw(`create trigger ${name}_truncated after truncate on ${source}
        for each statement execute function ${name}_emptied()`)
      .execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const grain of GRAINS) {
    const name = `report_tag_total_counters_${grain}`;
    for (const op of ['inserted', 'updated', 'deleted', 'truncated'])
      await sql.raw(`drop trigger ${name}_${op} on report_tag_counters_${grain}`).execute(db);
    await sql.raw(`drop function ${name}_fold()`).execute(db);
    await sql.raw(`drop function ${name}_emptied()`).execute(db);
    await sql.raw(`drop table ${name}`).execute(db);
  }
}
