import { type Kysely, sql } from 'kysely';

// Resolution time in reports: the time from a ticket's creation to its first resolve. Frozen
// once run anywhere; docs/metrics.md defines the figure.
//
// - The write path marks a ticket's first `status_changed` to `resolved` with
//   `first_resolution: true` and `resolution_seconds` (src/domains/tickets/changes.ts); the
//   ticket keeps `first_resolved_at` so that telling the first resolve from a later one (after
//   a reopen) needs no look into the history. Tickets resolved before this migration get it
//   from their history here, so their next resolve is not taken for a first one.
// - Two more figures, `first_resolutions` and `resolution_seconds`, in every counter table and
//   at the end of report_event_facts()'s columns, and a fifth duration metric (5: resolution)
//   in report_event_samples(), binned into the histograms like the others.
// - report_count_pending() (0007) counts the new figures and reads the samples of status
//   changes too.
// Events written before this migration carry no resolution_seconds: they are no samples, and
// both figures are 0 for them, which is what the new columns hold. Nothing needs recounting.

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
const ADDED = [
  { column: 'first_resolutions', type: 'integer' },
  { column: 'resolution_seconds', type: 'double precision' },
] as const;
const FIGURES = [...COUNTS, ...SUMS, ...ADDED.map((a) => a.column)];
const TYPES: Record<string, string> = Object.fromEntries([
  ...COUNTS.map((c) => [c, 'integer']),
  ...SUMS.map((s) => [s, 'double precision']),
  ...ADDED.map((a) => [a.column, a.type]),
]);

const GRAINS = ['15m', 'day', 'month'] as const;
const FULL = ['bucket', 'department_id', 'agent_id', 'channel'];
const DEPARTMENT = ['bucket', 'department_id'];

interface Table {
  name: string;
  keys: string[];
  source: 'facts' | 'samples';
}

// 0007's list: every table the counting appends to.
const TABLES = GRAINS.flatMap((grain) =>
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
    ] satisfies Table[]
  ).map((table) => ({ ...table, grain })),
);

const list = (names: readonly string[]) => names.join(', ');

/** A first resolve that carries its duration: the condition of both figures and the sample. */
const FIRST_RESOLUTION = `p_type = 'status_changed' and p_data->>'to' = 'resolved'
  and coalesce((p_data->>'first_resolution')::boolean, false)
  and jsonb_typeof(p_data->'resolution_seconds') = 'number'`;

/** Fresh rows for `table` from the facts or binned samples of the events in `new_events`. */
function insertFrom(table: Table & { grain: (typeof GRAINS)[number] }, figures: readonly string[]) {
  const keys = table.keys.map((k) =>
    k === 'bucket'
      ? table.grain === '15m'
        ? 'bucket'
        : `date_trunc('${table.grain}', bucket, 'UTC')`
      : k === 'coarse_bin'
        ? 'bin >> 5'
        : k,
  );
  const values = table.source === 'facts' ? figures : ['n'];
  const sums = table.source === 'facts' ? figures.map((v) => `sum(${v})`) : ['count(*)'];
  return `insert into ${table.name} (${list(table.keys)}, fresh, ${list(values)})
    select ${list(keys)}, true, ${list(sums)}
    from ${table.source}
    group by ${list(keys)}`;
}

const EVENT_ARGS = `e.id, e.ticket_id, e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;
const SAMPLE_ARGS = `e.type, e.actor_agent_id, e.department_id, e.agent_id, e.channel, e.data, e.occurred_at`;

/** 0007's report_count_pending() over the given figures and the event types that have samples. */
async function replaceCounting(db: Kysely<any>, figures: readonly string[], sampleTypes: readonly string[]) {
  const inserts = TABLES.map((t) => insertFrom(t, figures));
  const ctes = [
    `facts as materialized (
        select f.* from new_events e cross join lateral report_event_facts(${EVENT_ARGS}) f
        where report_event_counts(e.type, e.data)
      )`,
    `samples as materialized (
        select s.bucket, s.department_id, s.agent_id, s.channel, s.metric, report_duration_bin(s.seconds) as bin
        from new_events e cross join lateral report_event_samples(${SAMPLE_ARGS}) s
        where e.type in (${sampleTypes.map((t) => `'${t}'`).join(', ')})
      )`,
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

/**
 * report_event_facts() of 0004, with `extra` columns after its own. 0004's body is repeated
 * as it was (a function's result columns cannot be changed in place): only the two selects
 * gain the added columns.
 */
async function createFacts(db: Kysely<any>, extra: readonly string[]) {
  const zeros = extra.map(() => '0').join(', ');
  const extraOut = extra.map((c) => `${c} ${TYPES[c]}`).join(', ');
  const own = {
    first_resolutions: `((${FIRST_RESOLUTION}) is true)::int`,
    resolution_seconds: `case when ${FIRST_RESOLUTION} then (p_data->>'resolution_seconds')::float8 else 0 end`,
  } as Record<string, string>;
  await sql
    .raw(`
    create function report_event_facts(
      p_id bigint, p_ticket_id uuid, p_type text, p_actor_agent_id uuid, p_department_id uuid,
      p_agent_id uuid, p_channel text, p_data jsonb, p_occurred_at timestamptz)
    returns table (
      bucket timestamptz, department_id uuid, agent_id uuid, channel text,
      ${COUNTS.map((c) => `${c} integer`).join(', ')},
      ${SUMS.map((s) => `${s} double precision`).join(', ')}${extra.length > 0 ? `, ${extraOut}` : ''})
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
        ${extra.map((c) => `,\n        -- ${c}\n        ${own[c]}`).join('')}
      union all
      -- transfers_out: credited to the department the ticket left, and to the agent who moved it
      select report_bucket(p_occurred_at), (p_data->>'from_department_id')::uuid, p_actor_agent_id, p_channel,
        ${COUNTS.map((c) => (c === 'transfers_out' ? '1' : '0')).join(', ')},
        ${SUMS.map(() => '0').join(', ')}${extra.length > 0 ? `, ${zeros}` : ''}
      where p_type = 'transferred'
      union all
      -- not_rated -1: the first rating of a resolved conversation, at that resolve
      select report_bucket(r.occurred_at), r.department_id, r.agent_id, r.channel,
        ${COUNTS.map((c) => (c === 'not_rated' ? '-1' : '0')).join(', ')},
        ${SUMS.map(() => '0').join(', ')}${extra.length > 0 ? `, ${zeros}` : ''}
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
}

/** report_event_samples() of 0004, with the resolution (metric 5) when `resolution` is set. */
async function replaceSamples(db: Kysely<any>, resolution: boolean) {
  // Credited like the resolve itself: to the assignee the ticket had then (docs/metrics.md).
  const fifth = resolution
    ? `
      union all
      select report_bucket(p_occurred_at), p_department_id, p_agent_id, p_channel,
        5::smallint, (p_data->>'resolution_seconds')::float8
      where ${FIRST_RESOLUTION}`
    : '';
  await sql
    .raw(`
    create or replace function report_event_samples(
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
        and jsonb_typeof(p_data->'duration_seconds') = 'number'${fifth}
    $$`)
    .execute(db);
}

const COUNTER_TABLES = TABLES.filter((t) => t.source === 'facts');

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table tickets add column first_resolved_at timestamptz(3)`.execute(db);
  // From the history: the first resolve of every ticket resolved so far (0004's index on
  // resolves and ratings serves it).
  await sql`
    update tickets t set first_resolved_at = r.at
    from (
      select ticket_id, min(occurred_at) as at from ticket_events
      where type = 'status_changed' and data->>'to' = 'resolved'
      group by ticket_id
    ) r
    where r.ticket_id = t.id`.execute(db);

  for (const table of COUNTER_TABLES) {
    await sql
      .raw(
        `alter table ${table.name} ${ADDED.map((a) => `add column ${a.column} ${a.type} not null default 0`).join(', ')}`,
      )
      .execute(db);
  }
  // Events still noted as pending are counted by the new functions, which give them what the
  // old ones would have and 0 for the new figures: nothing of theirs is a first resolution.
  await sql`drop function report_event_facts(bigint, uuid, text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(
    db,
  );
  await createFacts(
    db,
    ADDED.map((a) => a.column),
  );
  await replaceSamples(db, true);
  await replaceCounting(db, FIGURES, ['message_added', 'chat_recorded', 'status_changed']);
}

export async function down(db: Kysely<any>): Promise<void> {
  const old = [...COUNTS, ...SUMS];
  await sql`drop function report_event_facts(bigint, uuid, text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(
    db,
  );
  await createFacts(db, []);
  await replaceSamples(db, false);
  await replaceCounting(db, old, ['message_added', 'chat_recorded']);
  // The resolution samples already binned stay in the histograms under metric 5, which nothing
  // reads once this is undone; a rebuild (rebuildReportCounters) clears them.
  for (const table of COUNTER_TABLES) {
    await sql
      .raw(`alter table ${table.name} ${ADDED.map((a) => `drop column ${a.column}`).join(', ')}`)
      .execute(db);
  }
  await sql`alter table tickets drop column first_resolved_at`.execute(db);
}
