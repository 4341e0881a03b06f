import { type Kysely, sql } from 'kysely';

// SLA columns in reports: per target kind (first answer, next answer, first assignment,
// resolution), the targets met in time and the targets breached. Frozen once run anywhere;
// docs/metrics.md ("SLA") defines the figures.
//
// - The SLA clock already writes its verdicts as ticket events (docs/sla.md, "Events"):
//   `sla.fulfilled` with `late: false` is a target met in time, `sla.breached` a target whose
//   due passed. `sla.fulfilled` with `late: true` (met after its breach) and `sla.removed` count
//   for nothing: a target has at most one verdict, and a removed one has none.
// - Eight more figures at the end of report_event_facts()'s columns and in every counter table:
//   `sla_<kind>_achieved` and `sla_<kind>_breached`. Counts only: no histogram, no sample.
// - A breach is counted in the 15-minute bucket of its due instant (the event's `at`), not of
//   the write that noticed it (`occurred_at`, which may come much later: after downtime, or
//   while no timer fires it); `at` is never taken later than `occurred_at`. Every other figure
//   keeps the bucket of its event's time. Credit (department, assignee, channel) is the event's.
// - report_event_counts() takes these two event types in, so the trigger (0007) notes them; the
//   write path adds no statement for them (they are rows of the change's own insert).
// - report_count_pending() (0007, as 0019 left it) counts the new figures.
// SLA events written before this migration (0020 onwards) were never noted: they are noted now
// and counted by the next report or compaction.
//
// 0019's body of report_event_facts() is repeated here (a function's result columns cannot be
// changed in place), with the bucket of breaches and the new figures.

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
/** 0018's figures. */
const RESOLUTION = [
  { column: 'first_resolutions', type: 'integer' },
  { column: 'resolution_seconds', type: 'double precision' },
] as const;
/** 0019's, after 0018's. */
const BUSINESS = [
  { column: 'first_answers_business', type: 'integer' },
  { column: 'first_answer_business_seconds', type: 'double precision' },
  { column: 'next_answers_business', type: 'integer' },
  { column: 'next_answer_business_seconds', type: 'double precision' },
  { column: 'chat_pickups_business', type: 'integer' },
  { column: 'chat_pickup_business_seconds', type: 'double precision' },
  { column: 'first_resolutions_business', type: 'integer' },
  { column: 'resolution_business_seconds', type: 'double precision' },
] as const;
/** This migration's, after 0019's: per target kind, targets met in time and targets breached. */
const KINDS = ['first_answer', 'next_answer', 'first_assignment', 'resolution'] as const;
const ADDED = KINDS.flatMap((kind) => [
  { column: `sla_${kind}_achieved`, type: 'integer', kind, verdict: 'achieved' as const },
  { column: `sla_${kind}_breached`, type: 'integer', kind, verdict: 'breached' as const },
]);
const BEFORE = [...COUNTS, ...SUMS, ...RESOLUTION.map((a) => a.column), ...BUSINESS.map((a) => a.column)];
const FIGURES = [...BEFORE, ...ADDED.map((a) => a.column)];
const TYPES: Record<string, string> = Object.fromEntries([
  ...COUNTS.map((c) => [c, 'integer']),
  ...SUMS.map((s) => [s, 'double precision']),
  ...RESOLUTION.map((a) => [a.column, a.type]),
  ...BUSINESS.map((a) => [a.column, a.type]),
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

/** An agent answer with a business wait; `first` picks first answers, else later ones. */
const BUSINESS_ANSWER = (first: boolean) => `p_type = 'message_added' and p_data->>'kind' = 'agent'
  and ${first ? '' : 'not '}coalesce((p_data->>'first_answer')::boolean, false)
  and jsonb_typeof(p_data->'wait_business_seconds') = 'number'`;
const BUSINESS_PICKUP = `p_type = 'chat_recorded' and not coalesce((p_data->>'missed')::boolean, false)
  and jsonb_typeof(p_data->'pickup_business_seconds') = 'number'`;
const BUSINESS_RESOLUTION = `${FIRST_RESOLUTION}
  and jsonb_typeof(p_data->'resolution_business_seconds') = 'number'`;

/** The verdicts: a target met in time, a target breached (late fulfilments count for neither). */
const VERDICT = {
  achieved: `p_type = 'sla.fulfilled' and p_data->>'late' = 'false'`,
  breached: `p_type = 'sla.breached'`,
} as const;

/**
 * The instant an event counts at: its time, but a breach's due for a breach. `at` is the ISO
 * instant the clock wrote (toISOString); anything else, which no writer produces, falls back to
 * the event's time rather than failing the counting. A due is never after the write that found
 * it: the least of the two keeps a breach "at the change" (its due rounded to the millisecond)
 * from slipping past its own event.
 */
const BUCKET_TIME = `case
          when p_type = 'sla.breached' and p_data->>'at' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?Z$'
          then least((p_data->>'at')::timestamptz, p_occurred_at)
          else p_occurred_at
        end`;

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
 * report_event_facts() as 0019 made it, with `extra` columns after 0004's own. With
 * `slaBucket`, a breach is bucketed at its due (`at`) rather than at its event's time.
 */
async function createFacts(db: Kysely<any>, extra: readonly string[], slaBucket: boolean) {
  const zeros = extra.map(() => '0').join(', ');
  const extraOut = extra.map((c) => `${c} ${TYPES[c]}`).join(', ');
  const own = {
    first_resolutions: `((${FIRST_RESOLUTION}) is true)::int`,
    resolution_seconds: `case when ${FIRST_RESOLUTION} then (p_data->>'resolution_seconds')::float8 else 0 end`,
    first_answers_business: `((${BUSINESS_ANSWER(true)}) is true)::int`,
    first_answer_business_seconds: `case when ${BUSINESS_ANSWER(true)} then (p_data->>'wait_business_seconds')::float8 else 0 end`,
    next_answers_business: `((${BUSINESS_ANSWER(false)}) is true)::int`,
    next_answer_business_seconds: `case when ${BUSINESS_ANSWER(false)} then (p_data->>'wait_business_seconds')::float8 else 0 end`,
    chat_pickups_business: `((${BUSINESS_PICKUP}) is true)::int`,
    chat_pickup_business_seconds: `case when ${BUSINESS_PICKUP} then (p_data->>'pickup_business_seconds')::float8 else 0 end`,
    first_resolutions_business: `((${BUSINESS_RESOLUTION}) is true)::int`,
    resolution_business_seconds: `case when ${BUSINESS_RESOLUTION} then (p_data->>'resolution_business_seconds')::float8 else 0 end`,
    ...Object.fromEntries(
      ADDED.map((a) => [
        a.column,
        `((${VERDICT[a.verdict]} and p_data->>'kind' = '${a.kind}') is true)::int`,
      ]),
    ),
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
        report_bucket(${slaBucket ? BUCKET_TIME : 'p_occurred_at'}),
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

const COUNTER_TABLES = TABLES.filter((t) => t.source === 'facts');
const SAMPLE_TYPES = ['message_added', 'chat_recorded', 'status_changed'];
const EARLIER_COLUMNS = [...RESOLUTION, ...BUSINESS].map((a) => a.column);

/** The events 0004's report_event_counts() takes in, and with `sla` the SLA verdicts too. */
async function replaceEventCounts(db: Kysely<any>, sla: boolean) {
  await sql
    .raw(`
    create or replace function report_event_counts(p_type text, p_data jsonb) returns boolean
    language sql immutable parallel safe
    return p_type in ('created', 'call_recorded', 'chat_recorded', 'transferred', 'rated')
      or (p_type = 'message_added' and p_data->>'kind' in ('agent', 'customer'))
      or (p_type = 'status_changed' and (p_data->>'to' = 'resolved' or p_data->>'reopened' = 'true'))${
        sla
          ? `\n      or p_type = 'sla.breached'\n      or (p_type = 'sla.fulfilled' and p_data->>'late' = 'false')`
          : ''
      }`)
    .execute(db);
}

export async function up(db: Kysely<any>): Promise<void> {
  for (const table of COUNTER_TABLES) {
    await sql
      .raw(
        `alter table ${table.name} ${ADDED.map((a) => `add column ${a.column} ${a.type} not null default 0`).join(', ')}`,
      )
      .execute(db);
  }
  await sql`drop function report_event_facts(bigint, uuid, text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(
    db,
  );
  await createFacts(db, [...EARLIER_COLUMNS, ...ADDED.map((a) => a.column)], true);
  await replaceCounting(db, FIGURES, SAMPLE_TYPES);
  await replaceEventCounts(db, true);
  // The verdicts written since 0020 were never noted: the next counting counts them.
  await sql`
    insert into report_pending_events (event_id)
    select e.id from ticket_events e
    where e.type in ('sla.breached', 'sla.fulfilled') and report_event_counts(e.type, e.data)
    on conflict do nothing`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  // Verdicts noted and not counted yet would count for nothing once this is undone.
  await sql`
    delete from report_pending_events p using ticket_events e
    where e.id = p.event_id and e.type in ('sla.breached', 'sla.fulfilled')`.execute(db);
  await replaceEventCounts(db, false);
  await sql`drop function report_event_facts(bigint, uuid, text, uuid, uuid, uuid, text, jsonb, timestamptz)`.execute(
    db,
  );
  await createFacts(db, EARLIER_COLUMNS, false);
  await replaceCounting(db, BEFORE, SAMPLE_TYPES);
  for (const table of COUNTER_TABLES) {
    await sql
      .raw(`alter table ${table.name} ${ADDED.map((a) => `drop column ${a.column}`).join(', ')}`)
      .execute(db);
  }
}
