import { type Kysely, sql } from 'kysely';

// The current_* report columns from kept counts instead of a scan of the unfinished tickets.
// Frozen once run anywhere; docs/metrics.md explains it.
//
// current_new/open/answered/postponed counted the tickets in those statuses right now with an
// index-only scan of 0004's tickets_report_current_idx: on the benchmark's million tickets,
// 200,000 entries, 25-40 ms of every report's totals (with two parallel workers, that on two
// cores also slowed the rows statement beside it). Now three statement-level triggers on
// tickets append what each statement changed to report_current_counts: +1 for the (department,
// assignee, channel, status) a ticket enters, −1 for the one it leaves, summed per key, nothing
// when nothing relevant changed. Like the event counters (0005) the rows are appended `fresh`
// in the writer's own transaction (no row another writer waits for) and folded into one
// compacted row per key by the scheduler; a report sums them all, so it sees exactly the
// tickets committed before it.

const KEPT = `('new', 'open', 'answered', 'postponed')`;

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table report_current_counts (
      department_id uuid,
      agent_id uuid,
      channel text not null,
      status text not null,
      fresh boolean not null default true,
      n integer not null
    )`.execute(db);
  await sql`
    create unique index report_current_counts_key
      on report_current_counts (department_id, agent_id, channel, status) nulls not distinct where not fresh`.execute(
    db,
  );
  await sql`create index report_current_counts_fresh_idx on report_current_counts (status) where fresh`.execute(
    db,
  );

  // One function for the three triggers: each passes the transition tables it has.
  const delta = (rows: string, sign: '1' | '-1') =>
    `select department_id, assignee_id, channel, status, ${sign} as d from ${rows} where status in ${KEPT}`;
  for (const [event, parts] of [
    ['insert', [delta('new_rows', '1')]],
    ['update', [delta('new_rows', '1'), delta('old_rows', '-1')]],
    ['delete', [delta('old_rows', '-1')]],
  ] as const) {
    await sql
      .raw(`
      create function report_count_current_${event}() returns trigger
      language plpgsql
      as $fn$
      begin
        insert into report_current_counts (department_id, agent_id, channel, status, n)
        select department_id, assignee_id, channel, status, sum(d)::int
        from (${parts.join(' union all ')}) x
        group by department_id, assignee_id, channel, status
        having sum(d) <> 0;
        return null;
      end
      $fn$`)
      .execute(db);
    const referencing =
      event === 'insert'
        ? 'new table as new_rows'
        : event === 'delete'
          ? 'old table as old_rows'
          : 'old table as old_rows new table as new_rows';
    await sql
      .raw(`
      create trigger report_count_current_${event} after ${event} on tickets
      referencing ${referencing}
      for each statement execute function report_count_current_${event}()`)
      .execute(db);
  }

  // What the tickets are now, compacted; writers wait meanwhile, so nothing is counted twice.
  await sql`lock table tickets in share mode`.execute(db);
  await sql
    .raw(`
    insert into report_current_counts (department_id, agent_id, channel, status, fresh, n)
    select department_id, assignee_id, channel, status, false, count(*)
    from tickets where status in ${KEPT}
    group by department_id, assignee_id, channel, status`)
    .execute(db);
  await sql`analyze report_current_counts`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const event of ['insert', 'update', 'delete']) {
    await sql.raw(`drop trigger report_count_current_${event} on tickets`).execute(db);
    await sql.raw(`drop function report_count_current_${event}()`).execute(db);
  }
  await sql`drop table report_current_counts`.execute(db);
}
