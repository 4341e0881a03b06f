import { type Kysely, sql } from 'kysely';

// Reports by tag (issue 16). Frozen once run anywhere; docs/metrics.md ("Tags") defines the
// figures.
//
// - A figure counts for the tags its ticket had right after its event (the same moment as the
//   department an event carries): report_event_tags(ticket, event) replays the ticket's tag
//   history up to and including the event (the `created` event's `tags`, then each
//   `tags_changed`'s `added` and `removed`), through the (ticket_id, id) index of ticket_events.
//   A ticket tagged later does not move its past figures; an event of a ticket with no tag
//   counts for "no tag" (tag null), so the rows cover every figure once per tag.
// - Tables by (bucket, tag, department): counters and fine histograms at the three grains,
//   kept like the department tables (fresh rows appended by report_count_pending(), folded by
//   the compactor, recomputed by the rebuild). The department is there for visibility and the
//   department filter; reports by tag with agents or channels read the events instead.
// - report_count_pending() (0007 as 0022 left it) appends to them too: the tags are looked up
//   once per counted event, in the counting statement, never in the writer's transaction.
//   The trigger on ticket_events is not touched.
// - Existing events are counted into the new tables here.

const GRAINS = ['15m', 'day', 'month'] as const;
const FULL = ['bucket', 'department_id', 'agent_id', 'channel'];
const DEPARTMENT = ['bucket', 'department_id'];
const TAG = ['bucket', 'tag', 'department_id'];
const SAMPLE_TYPES = ['message_added', 'chat_recorded', 'status_changed'];

interface Table {
  name: string;
  keys: string[];
  source: 'facts' | 'samples' | 'tag_facts' | 'tag_samples';
  grain: (typeof GRAINS)[number];
}

/** The tables counting appended to before (0007's list), then this migration's. */
const EARLIER: Table[] = GRAINS.flatMap((grain) =>
  (
    [
      { name: `report_counters_${grain}`, keys: FULL, source: 'facts' },
      { name: `report_department_counters_${grain}`, keys: DEPARTMENT, source: 'facts' },
      { name: `report_histograms_${grain}`, keys: [...FULL, 'metric', 'bin'], source: 'samples' },
      {
        name: `report_department_histograms_${grain}`,
        keys: [...DEPARTMENT, 'metric', 'bin'],
        source: 'samples',
      },
      {
        name: `report_department_coarse_histograms_${grain}`,
        keys: [...DEPARTMENT, 'metric', 'coarse_bin'],
        source: 'samples',
      },
    ] as const
  ).map((t) => ({ ...t, keys: [...t.keys], grain })),
);
const TAGGED: Table[] = GRAINS.flatMap((grain) => [
  { name: `report_tag_counters_${grain}`, keys: TAG, source: 'tag_facts' as const, grain },
  {
    name: `report_tag_histograms_${grain}`,
    keys: [...TAG, 'metric', 'bin'],
    source: 'tag_samples' as const,
    grain,
  },
]);

const list = (names: readonly string[]) => names.join(', ');

/** The figures of the counter tables as the schema has them now (0004 to 0022), in order. */
async function figures(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ column_name: string }>`
    select column_name from information_schema.columns
    where table_schema = current_schema() and table_name = 'report_department_counters_15m'
      and column_name not in ('bucket', 'department_id', 'fresh')
    order by ordinal_position`.execute(db);
  return rows.map((r) => r.column_name);
}

function insertFrom(table: Table, figures: readonly string[]) {
  const keys = table.keys.map((k) =>
    k === 'bucket'
      ? table.grain === '15m'
        ? 'bucket'
        : `date_trunc('${table.grain}', bucket, 'UTC')`
      : k === 'coarse_bin'
        ? 'bin >> 5'
        : k,
  );
  const counters = table.source === 'facts' || table.source === 'tag_facts';
  const values = counters ? figures : ['n'];
  const sums = counters ? figures.map((v) => `sum(${v})`) : ['count(*)'];
  return `insert into ${table.name} (${list(table.keys)}, fresh, ${list(values)})
    select ${list(keys)}, true, ${list(sums)}
    from ${table.source}
    group by ${list(keys)}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;
const SAMPLE_ARGS = `e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

/** Each event's tags as rows, one null row for an event of an untagged ticket. */
const EVENT_TAG_ROWS = `cross join lateral unnest(coalesce(nullif(report_event_tags(e.ticket_id, e.id), '{}'), array[null::text])) tg(tag)`;

/** report_count_pending() over `tables` (0007's statement; with the tag tables, their CTEs). */
async function replaceCounting(db: Kysely<any>, tables: Table[], figures: readonly string[]) {
  const tagged = tables.some((t) => t.source.startsWith('tag_'));
  const inserts = tables.map((t) => insertFrom(t, figures));
  const ctes = [
    `facts as materialized (
        select e.id as event_id, f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`,
    `samples as materialized (
        select e.id as event_id, s.bucket, s.department_id, s.agent_id, s.channel, s.metric,
          report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in (${SAMPLE_TYPES.map((t) => `'${t}'`).join(', ')})
      )`,
    ...(tagged
      ? [
          `event_tags as materialized (
        select e.id as event_id, tg.tag from new_events e ${EVENT_TAG_ROWS}
        where e.id in (select event_id from facts union select event_id from samples)
      )`,
          `tag_facts as (select t.tag, f.* from facts f join event_tags t using (event_id))`,
          `tag_samples as (select t.tag, s.* from samples s join event_tags t using (event_id))`,
        ]
      : []),
    ...inserts.slice(0, -1).map((s, i) => `w${i} as (${s})`),
  ];
  await sql
    .raw(`
    create or replace function report_count_pending(max_events integer default null) returns integer
    language plpgsql
    -- JIT compiling costs more than these statements take.
    set jit = off
    as $fn$
    declare
      counted integer;
    begin
      -- Nothing noted (or only what another caller has counted and committed): nothing to wait
      -- for. Rows another caller is still counting are still seen here, so this caller waits.
      if not exists (select 1 from report_pending_events) then
        return 0;
      end if;
      perform pg_advisory_xact_lock(hashtext('deskroute.report_pending'));
      with pending as (
        delete from report_pending_events
        where event_id in (select event_id from report_pending_events order by event_id limit max_events)
        returning event_id
      ),
      new_events as materialized (
        select e.* from ticket_events e where e.id in (select event_id from pending)
      ),
      ${ctes.join(',\n      ')},
      w_last as (${inserts[inserts.length - 1]})
      select count(*) into counted from pending;
      return counted;
    end
    $fn$`)
    .execute(db);
}

export async function up(db: Kysely<any>): Promise<void> {
  const all = await figures(db);
  // The tags a ticket had right after an event: its tag history replayed up to the event.
  await sql`
    create function report_event_tags(p_ticket_id uuid, p_id bigint) returns text[]
    language sql stable parallel safe
    as $$
      select coalesce(array_agg(s.tag order by s.tag) filter (where s.present), '{}')
      from (
        select distinct on (m.tag) m.tag, m.present
        from ticket_events x
        cross join lateral (
          select jsonb_array_elements_text(case
              when jsonb_typeof(x.data->(case when x.type = 'created' then 'tags' else 'added' end)) = 'array'
              then x.data->(case when x.type = 'created' then 'tags' else 'added' end)
              else '[]'::jsonb end) as tag, true as present
          union all
          select jsonb_array_elements_text(case when jsonb_typeof(x.data->'removed') = 'array'
              then x.data->'removed' else '[]'::jsonb end), false
          where x.type = 'tags_changed'
        ) m
        where x.ticket_id = p_ticket_id and x.id <= p_id and x.type in ('created', 'tags_changed')
        order by m.tag, x.id desc, m.present
      ) s
    $$`.execute(db);
  for (const table of TAGGED) {
    const counters = table.source === 'tag_facts';
    const values = counters
      ? (
          await sql<{ column_name: string; data_type: string }>`
            select column_name, data_type from information_schema.columns
            where table_schema = current_schema() and table_name = 'report_department_counters_15m'
              and column_name not in ('bucket', 'department_id', 'fresh')
            order by ordinal_position`.execute(db)
        ).rows.map((c) => `${c.column_name} ${c.data_type} not null default 0`)
      : ['metric smallint not null', 'bin integer not null', 'n integer not null'];
    await sql
      .raw(`create table ${table.name} (
        bucket timestamptz not null,
        tag text,
        department_id uuid,
        fresh boolean not null default true,
        ${values.join(',\n        ')}
      )`)
      .execute(db);
    await sql
      .raw(
        `create unique index ${table.name}_key on ${table.name} (${list(table.keys)}) nulls not distinct where not fresh`,
      )
      .execute(db);
    // Reports read a range of buckets; the tag key of the unique index does not serve that.
    await sql
      .raw(
        `create index ${table.name}_bucket_idx on ${table.name} (bucket) include (tag, department_id${counters ? '' : ', metric, bin, n'})`,
      )
      .execute(db);
    // Agents always report with a department filter (their departments and none).
    await sql
      .raw(`create index ${table.name}_department_idx on ${table.name} (department_id, bucket)`)
      .execute(db);
    await sql.raw(`create index ${table.name}_fresh_idx on ${table.name} (bucket) where fresh`).execute(db);
  }
  await replaceCounting(db, [...EARLIER, ...TAGGED], all);
  // Events counted before this migration: into the tag tables, compacted.
  await sql
    .raw(`
    insert into report_tag_counters_15m (${list(TAG)}, fresh, ${list(all)})
    select bucket, tag, department_id, false, ${list(all.map((f) => `sum(${f})`))}
    from (select tg.tag, f.* from ticket_events e
      cross join lateral report_event_facts(${EVENT_ARGS}) f ${EVENT_TAG_ROWS}
      where report_event_counts(e.type, e.data)
        and not exists (select 1 from report_pending_events p where p.event_id = e.id)) c
    group by bucket, tag, department_id`)
    .execute(db);
  await sql
    .raw(`
    insert into report_tag_histograms_15m (${list(TAG)}, metric, bin, fresh, n)
    select bucket, tag, department_id, metric, bin, false, count(*)
    from (select tg.tag, s.bucket, s.department_id, s.metric, report_duration_bin(s.seconds) as bin
      from ticket_events e
      cross join lateral report_event_samples(${SAMPLE_ARGS}) s ${EVENT_TAG_ROWS}
      where e.type in (${SAMPLE_TYPES.map((t) => `'${t}'`).join(', ')})
        and not exists (select 1 from report_pending_events p where p.event_id = e.id)) c
    group by bucket, tag, department_id, metric, bin`)
    .execute(db);
  for (const kind of ['counters', 'histograms'] as const) {
    const keys = kind === 'counters' ? TAG : [...TAG, 'metric', 'bin'];
    const values = kind === 'counters' ? all : ['n'];
    for (const [grain, from] of [
      ['day', '15m'],
      ['month', 'day'],
    ] as const) {
      await sql
        .raw(`
        insert into report_tag_${kind}_${grain} (${list(keys)}, fresh, ${list(values)})
        select ${list(keys.map((k) => (k === 'bucket' ? `date_trunc('${grain}', bucket, 'UTC')` : k)))}, false,
          ${list(values.map((v) => `sum(${v})`))}
        from report_tag_${kind}_${from}
        group by ${list(keys.map((k) => (k === 'bucket' ? `date_trunc('${grain}', bucket, 'UTC')` : k)))}`)
        .execute(db);
    }
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await replaceCounting(db, EARLIER, await figures(db));
  for (const table of TAGGED) await sql.raw(`drop table ${table.name}`).execute(db);
  await sql`drop function report_event_tags(uuid, bigint)`.execute(db);
}
