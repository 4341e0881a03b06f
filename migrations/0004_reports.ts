import { type Kysely, sql } from 'kysely';

// Report counters, kept up to date with ticket_events in the same transaction. Frozen once run
// anywhere; docs/metrics.md defines every metric and explains the layout.
//
// - report_event_facts() turns one event into the additive figures it contributes, credited to
//   a 15-minute UTC bucket, a department, an agent and a channel. Every real time zone's offset
//   is a multiple of 15 minutes, so any local hour, day, week, month or year is a union of these
//   buckets: the counters stay exact in every time zone.
// - report_event_samples() gives the durations behind the time metrics (exact percentiles need
//   the values themselves).
// - A statement-level trigger on ticket_events aggregates a whole insert batch at once into four
//   counter tables (15-minute and UTC-day grain; by department, agent and channel, and by
//   department alone) and appends the samples.
// The queries that read these tables live in src/domains/reports/repository.ts.

/** The additive figures, in the order of report_event_facts()'s columns after the four keys. */
const COUNTS = [
  'created_tickets',
  'answers',
  'first_answers',
  'incoming_messages',
  'next_answers',
  'calls',
  'missed_calls',
  'incoming_calls',
  'finished_calls',
  'chats',
  'missed_chats',
  'incoming_chats',
  'finished_chats',
  'chat_messages',
  'chat_pickups',
  'resolved_tickets',
  'reopened_tickets',
  'transfers_in',
  'transfers_out',
  'positive_ratings',
  'negative_ratings',
  'not_rated',
];
const SUMS = [
  'first_answer_seconds',
  'next_answer_seconds',
  'call_seconds',
  'chat_pickup_seconds',
  'chat_seconds',
];
const FIGURES = [...COUNTS, ...SUMS];

const COUNTER_TABLES = [
  { name: 'report_counters_15m', grain: '15m', keys: ['bucket', 'department_id', 'agent_id', 'channel'] },
  { name: 'report_counters_day', grain: 'day', keys: ['bucket', 'department_id', 'agent_id', 'channel'] },
  { name: 'report_department_counters_15m', grain: '15m', keys: ['bucket', 'department_id'] },
  { name: 'report_department_counters_day', grain: 'day', keys: ['bucket', 'department_id'] },
] as const;

// Concurrent transactions of one department hit the same counter rows (the department's day
// above all) and would wait for each other's commit. Each connection adds to its own of SHARDS
// rows per key instead; reports sum them like any other rows.
const SHARDS = 4;

const list = (names: readonly string[], prefix = '') => names.map((n) => `${prefix}${n}`).join(', ');

/** One upsert that adds the facts in `source` to a counter table (a CTE of the trigger). */
function upsert(table: (typeof COUNTER_TABLES)[number], source: string) {
  const bucket = table.grain === 'day' ? `date_trunc('day', bucket, 'UTC')` : 'bucket';
  const groupKeys = table.keys.map((k) => (k === 'bucket' ? bucket : k));
  return `insert into ${table.name} as c (${list(table.keys)}, shard, ${list(FIGURES)})
    select ${groupKeys.join(', ')}, pg_backend_pid() % ${SHARDS}, ${FIGURES.map((f) => `sum(${f})`).join(', ')}
    from ${source}
    group by ${groupKeys.join(', ')}
    order by ${groupKeys.join(', ')}
    on conflict (${list(table.keys)}, shard) do update set
      ${FIGURES.map((f) => `${f} = c.${f} + excluded.${f}`).join(',\n      ')}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

export async function up(db: Kysely<any>): Promise<void> {
  for (const table of COUNTER_TABLES) {
    const dims = (table.keys as readonly string[]).includes('agent_id')
      ? 'department_id uuid, agent_id uuid, channel text not null,'
      : 'department_id uuid,';
    await sql
      .raw(
        `create table ${table.name} (
          bucket timestamptz not null,
          ${dims}
          shard smallint not null default 0,
          ${COUNTS.map((c) => `${c} integer not null default 0`).join(',\n          ')},
          ${SUMS.map((s) => `${s} double precision not null default 0`).join(',\n          ')}
        )`,
      )
      .execute(db);
    // NULLS NOT DISTINCT: "no department" and "no agent" are keys like any other (PostgreSQL 15+).
    await sql
      .raw(
        `create unique index ${table.name}_key on ${table.name} (${list(table.keys)}, shard) nulls not distinct`,
      )
      .execute(db);
    await sql
      .raw(`create index ${table.name}_department_idx on ${table.name} (department_id, bucket)`)
      .execute(db);
  }

  await sql`
    create table report_samples (
      bucket timestamptz not null,
      department_id uuid,
      agent_id uuid,
      channel text not null,
      metric smallint not null,
      seconds double precision not null
    )`.execute(db);
  await sql`create index report_samples_bucket_idx on report_samples (bucket)`.execute(db);
  await sql`create index report_samples_department_idx on report_samples (department_id, bucket)`.execute(db);

  // For the not_rated lookups: a ticket's resolves and ratings in time order.
  await sql`create index ticket_events_rating_idx on ticket_events (ticket_id, occurred_at, id)
    where type = 'rated' or (type = 'status_changed' and data->>'to' = 'resolved')`.execute(db);

  // The current_* columns count tickets by status right now: an index-only scan of the
  // unfinished tickets instead of a pass over all of them.
  await sql`create index tickets_report_current_idx on tickets (status, department_id, assignee_id, channel)
    where status in ('new', 'open', 'answered', 'postponed')`.execute(db);

  // Whether an event counts for anything: tags, priorities, assignments, notes and most status
  // changes do not, and are skipped before any counting (and locking) happens.
  await sql`
    create function report_event_counts(p_type text, p_data jsonb) returns boolean
    language sql immutable parallel safe
    return p_type in ('created', 'call_recorded', 'chat_recorded', 'transferred', 'rated')
      or (p_type = 'message_added' and p_data->>'kind' in ('agent', 'customer'))
      or (p_type = 'status_changed' and (p_data->>'to' = 'resolved' or p_data->>'reopened' = 'true'))`.execute(
    db,
  );

  await sql`
    create function report_bucket(at timestamptz) returns timestamptz
    language sql immutable parallel safe
    return date_bin('15 minutes', at, timestamptz '2000-01-01 00:00:00+00')`.execute(db);

  // A conversation ends at each resolve. A rating rates the ticket's latest resolve before it
  // (before the first resolve: the conversation in progress). not_rated is +1 at every resolve,
  // except a first resolve that was rated in advance, and -1 (at that resolve's bucket and
  // credit) for the first rating a resolved conversation gets.
  await sql
    .raw(`
    create function report_event_facts(
      p_id bigint, p_ticket_id uuid, p_type text, p_actor_agent_id uuid, p_department_id uuid,
      p_agent_id uuid, p_channel text, p_data jsonb, p_occurred_at timestamptz)
    returns table (
      bucket timestamptz, department_id uuid, agent_id uuid, channel text,
      ${COUNTS.map((c) => `${c} integer`).join(', ')},
      ${SUMS.map((s) => `${s} double precision`).join(', ')})
    language sql stable parallel safe
    as $$
      select
        report_bucket(p_occurred_at),
        p_department_id,
        case
          when p_type = 'message_added' and p_data->>'kind' = 'agent' then coalesce(p_actor_agent_id, p_agent_id)
          when p_type in ('call_recorded', 'chat_recorded') then coalesce((p_data->>'agent_id')::uuid, p_agent_id)
          when p_type = 'rated' then (p_data->>'rated_agent_id')::uuid
          else p_agent_id
        end,
        case p_type when 'call_recorded' then 'call' when 'chat_recorded' then 'chat' else p_channel end,
        -- created_tickets
        ((p_type = 'created') is true)::int,
        -- answers
        ((p_type = 'message_added' and p_data->>'kind' = 'agent') is true)::int,
        -- first_answers
        ((p_type = 'message_added' and p_data->>'kind' = 'agent' and coalesce((p_data->>'first_answer')::boolean, false)
          and jsonb_typeof(p_data->'wait_seconds') = 'number') is true)::int,
        -- incoming_messages
        case
          when p_type = 'message_added' and p_data->>'kind' = 'customer' then 1
          when p_type = 'chat_recorded' then coalesce((p_data->>'customer_messages')::int, 0)
          else 0
        end,
        -- next_answers
        ((p_type = 'message_added' and p_data->>'kind' = 'agent' and not coalesce((p_data->>'first_answer')::boolean, false)
          and jsonb_typeof(p_data->'wait_seconds') = 'number') is true)::int,
        -- calls, missed_calls, incoming_calls, finished_calls
        ((p_type = 'call_recorded' and p_data->>'outcome' = 'answered') is true)::int,
        ((p_type = 'call_recorded' and p_data->>'outcome' = 'missed' and p_data->>'direction' = 'inbound') is true)::int,
        ((p_type = 'call_recorded' and p_data->>'direction' = 'inbound') is true)::int,
        ((p_type = 'call_recorded' and p_data->>'outcome' = 'answered'
          and coalesce((p_data->>'duration_seconds')::float8, 0) > 0) is true)::int,
        -- chats, missed_chats, incoming_chats, finished_chats
        ((p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)) is true)::int,
        ((p_type = 'chat_recorded' and coalesce((p_data->>'missed')::boolean, false)) is true)::int,
        ((p_type = 'chat_recorded') is true)::int,
        ((p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
          and jsonb_typeof(p_data->'duration_seconds') = 'number') is true)::int,
        -- chat_messages
        case when p_type = 'chat_recorded' then coalesce((p_data->>'agent_messages')::int, 0) else 0 end,
        -- chat_pickups
        ((p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
          and jsonb_typeof(p_data->'pickup_seconds') = 'number') is true)::int,
        -- resolved_tickets, reopened_tickets
        ((p_type = 'status_changed' and p_data->>'to' = 'resolved') is true)::int,
        ((p_type = 'status_changed' and coalesce((p_data->>'reopened')::boolean, false)) is true)::int,
        -- transfers_in, transfers_out (out: the row below)
        ((p_type = 'transferred') is true)::int,
        0,
        -- positive_ratings, negative_ratings
        ((p_type = 'rated' and p_data->>'value' = 'positive') is true)::int,
        ((p_type = 'rated' and p_data->>'value' = 'negative') is true)::int,
        -- not_rated: +1 at a resolve, unless it is the ticket's first and a rating came before it
        case
          when p_type = 'status_changed' and p_data->>'to' = 'resolved' then
            case when exists (
                select 1 from ticket_events x
                where x.ticket_id = p_ticket_id and x.type = 'rated'
                  and (x.occurred_at, x.id) < (p_occurred_at, p_id))
              and not exists (
                select 1 from ticket_events y
                where y.ticket_id = p_ticket_id and y.type = 'status_changed' and y.data->>'to' = 'resolved'
                  and (y.occurred_at, y.id) < (p_occurred_at, p_id))
            then 0 else 1 end
          else 0
        end,
        -- first_answer_seconds, next_answer_seconds
        case when p_type = 'message_added' and p_data->>'kind' = 'agent' and coalesce((p_data->>'first_answer')::boolean, false)
          and jsonb_typeof(p_data->'wait_seconds') = 'number' then (p_data->>'wait_seconds')::float8 else 0 end,
        case when p_type = 'message_added' and p_data->>'kind' = 'agent' and not coalesce((p_data->>'first_answer')::boolean, false)
          and jsonb_typeof(p_data->'wait_seconds') = 'number' then (p_data->>'wait_seconds')::float8 else 0 end,
        -- call_seconds
        case when p_type = 'call_recorded' and p_data->>'outcome' = 'answered'
          then coalesce((p_data->>'duration_seconds')::float8, 0) else 0 end,
        -- chat_pickup_seconds, chat_seconds
        case when p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
          and jsonb_typeof(p_data->'pickup_seconds') = 'number' then (p_data->>'pickup_seconds')::float8 else 0 end,
        case when p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
          and jsonb_typeof(p_data->'duration_seconds') = 'number' then (p_data->>'duration_seconds')::float8 else 0 end
      union all
      -- transfers_out: credited to the department the ticket left, and to the agent who moved it
      select report_bucket(p_occurred_at), (p_data->>'from_department_id')::uuid, p_actor_agent_id, p_channel,
        ${COUNTS.map((c) => (c === 'transfers_out' ? '1' : '0')).join(', ')},
        ${SUMS.map(() => '0').join(', ')}
      where p_type = 'transferred'
      union all
      -- not_rated -1: the first rating of a resolved conversation, at that resolve
      select report_bucket(r.occurred_at), r.department_id, r.agent_id, r.channel,
        ${COUNTS.map((c) => (c === 'not_rated' ? '-1' : '0')).join(', ')},
        ${SUMS.map(() => '0').join(', ')}
      from (
        select r.id, r.occurred_at, r.department_id, r.agent_id, r.channel
        from ticket_events r
        where p_type = 'rated' and r.ticket_id = p_ticket_id and r.type = 'status_changed' and r.data->>'to' = 'resolved'
          and (r.occurred_at, r.id) < (p_occurred_at, p_id)
        order by r.occurred_at desc, r.id desc
        limit 1
      ) r
      where not exists (
        select 1 from ticket_events x
        where x.ticket_id = p_ticket_id and x.type = 'rated'
          and (x.occurred_at, x.id) < (p_occurred_at, p_id)
          and ((x.occurred_at, x.id) > (r.occurred_at, r.id)
            or not exists (
              select 1 from ticket_events y
              where y.ticket_id = p_ticket_id and y.type = 'status_changed' and y.data->>'to' = 'resolved'
                and (y.occurred_at, y.id) < (r.occurred_at, r.id))))
    $$`)
    .execute(db);

  // The durations behind the time metrics. Metric codes: 1 first answer, 2 next answer,
  // 3 chat pickup, 4 chat duration.
  await sql`
    create function report_event_samples(
      p_type text, p_actor_agent_id uuid, p_department_id uuid, p_agent_id uuid, p_channel text,
      p_data jsonb, p_occurred_at timestamptz)
    returns table (bucket timestamptz, department_id uuid, agent_id uuid, channel text, metric smallint, seconds double precision)
    language sql immutable parallel safe
    as $$
      select report_bucket(p_occurred_at), p_department_id, coalesce(p_actor_agent_id, p_agent_id), p_channel,
        (case when coalesce((p_data->>'first_answer')::boolean, false) then 1 else 2 end)::smallint,
        (p_data->>'wait_seconds')::float8
      where p_type = 'message_added' and p_data->>'kind' = 'agent' and jsonb_typeof(p_data->'wait_seconds') = 'number'
      union all
      select report_bucket(p_occurred_at), p_department_id, coalesce((p_data->>'agent_id')::uuid, p_agent_id), 'chat',
        3::smallint, (p_data->>'pickup_seconds')::float8
      where p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
        and jsonb_typeof(p_data->'pickup_seconds') = 'number'
      union all
      select report_bucket(p_occurred_at), p_department_id, coalesce((p_data->>'agent_id')::uuid, p_agent_id), 'chat',
        4::smallint, (p_data->>'duration_seconds')::float8
      where p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
        and jsonb_typeof(p_data->'duration_seconds') = 'number'
    $$`.execute(db);

  // One statement: the batch's facts once, then every counter table from them.
  const upserts = COUNTER_TABLES.map(
    (t, i) =>
      `${i < COUNTER_TABLES.length - 1 ? `u${i} as (` : ''}${upsert(t, 'facts')}${i < COUNTER_TABLES.length - 1 ? ')' : ''}`,
  );
  await sql
    .raw(`
    create function report_count_events() returns trigger
    language plpgsql
    -- JIT compiling costs more than these statements take (2.2 s instead of 0.4 s for a batch
    -- of 20,000 events), and nothing for the API's few events at a time.
    set jit = off
    as $fn$
    begin
      if not exists (select 1 from new_events e where report_event_counts(e.type, e.data)) then
        return null;
      end if;
      with facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      ),
      ${upserts.slice(0, -1).join(',\n      ')}
      ${upserts[upserts.length - 1]};
      insert into report_samples (bucket, department_id, agent_id, channel, metric, seconds)
        select s.* from new_events e
        cross join lateral report_event_samples(e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at) s;
      return null;
    end
    $fn$`)
    .execute(db);
  await sql`
    create trigger report_count_events after insert on ticket_events
    referencing new table as new_events
    for each statement execute function report_count_events()`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop trigger report_count_events on ticket_events`.execute(db);
  await sql`drop function report_count_events()`.execute(db);
  await sql`drop function report_event_samples(text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(db);
  await sql`drop function report_event_facts(bigint, uuid, text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(
    db,
  );
  await sql`drop function report_bucket(timestamptz)`.execute(db);
  await sql`drop function report_event_counts(text, jsonb)`.execute(db);
  await sql`drop index ticket_events_rating_idx`.execute(db);
  await sql`drop index tickets_report_current_idx`.execute(db);
  await sql`drop table report_samples`.execute(db);
  for (const table of COUNTER_TABLES) await sql.raw(`drop table ${table.name}`).execute(db);
}
