import { type Static, Type } from 'typebox';
import { WEEKDAYS } from '../../business-time/index.ts';
import { ref, Uuid } from '../../contract.ts';
import { CONTRACT_ENUM } from '../../plugins/openapi.ts';
import { CHANNELS } from '../tickets/schemas.ts';
import { GOAL_CLOCKS, GOAL_KINDS, goalMetrics, METRICS, REPORT_COLUMN_KEYS } from './metrics.ts';

export const PRESETS = [
  'today',
  'yesterday',
  'last_7_days',
  'last_30_days',
  'this_month',
  'last_month',
  'this_year',
] as const;
/** Weekly periods start on one of the calendar's weekdays (ISO order, as working hours use). */
export const WEEK_DAYS = WEEKDAYS;
export const INTERVALS = ['none', 'hour', 'day', 'week', 'month', 'year'] as const;

const Preset = Type.Enum(PRESETS, {
  description:
    'A range in the report’s time zone: today, yesterday, last_7_days and last_30_days (both ending with today), this_month, last_month, this_year. The default when neither preset nor from/to is given: last_30_days.',
});

const RangeEnd = (description: string) =>
  Type.Optional(
    Type.String({
      minLength: 10,
      maxLength: 40,
      pattern: '^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:?\\d{2})?)?$',
      description: `${description} A date (YYYY-MM-DD: local midnight in the report’s time zone), a local date-time (2026-10-25T06:00), or an instant with an offset (2026-10-25T05:00:00Z). Must fall on a quarter hour.`,
    }),
  );

export const DIMENSIONS = ['time', 'department', 'agent', 'channel', 'tag'] as const;

/**
 * A list parameter: repeat it (?x=a&x=b) or separate values with commas (?x=a,b). With
 * `values`, the contract lists them (repeated form only: a comma-separated item is no value),
 * while the service checks them itself, so an unknown one keeps its own error code.
 */
const ListParam = (description: string, values?: readonly string[]) =>
  Type.Optional(
    Type.Array(
      Type.String({ minLength: 1, maxLength: 4000, ...(values ? { [CONTRACT_ENUM]: [...values] } : {}) }),
      { maxItems: 200, description },
    ),
  );

export const ReportQuery = Type.Object(
  {
    preset: Type.Optional(Preset),
    from: RangeEnd('Start of a custom range (inclusive); give to with it.'),
    to: RangeEnd('End of a custom range (exclusive).'),
    interval: Type.Optional(
      Type.Enum(INTERVALS, {
        default: 'none',
        description:
          'Period of the time series; anything but none groups by time first. Periods follow local midnights, weeks and months of the time zone, DST changes included.',
      }),
    ),
    timezone: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description:
          'IANA time zone name (Europe/Prague, Asia/Kathmandu), any case, as schedules take them; localtime, posixrules, Factory, posix/ and right/ names and offsets answer 400 unknown_timezone. Default: the help desk’s (DESKROUTE_TIMEZONE).',
      }),
    ),
    week_start: Type.Optional(
      Type.Enum(WEEK_DAYS, { default: 'monday', description: 'First day of weekly periods (ISO: monday).' }),
    ),
    group_by: ListParam(
      'Any of time, department, agent, channel, tag, in column order. Default: the report’s own dimension (time first when interval is set). By tag, a figure counts once for each tag its ticket had right after the event (null: no tag), so totals, which count each figure once, are not the sum of the rows (overlapping_groups says so). tag combined with agent or channel (as a dimension or a filter) is computed from the events: slower.',
      DIMENSIONS,
    ),
    department_id: ListParam('Only these departments; none means tickets in no department.'),
    agent_id: ListParam('Only these agents; none means figures credited to no agent.'),
    channel: ListParam('Only these channels.', CHANNELS),
    columns: ListParam(
      'Which columns, in order (keys from GET /v1/reports/columns). Default: all but the goal_* columns, which come with goal (after the others, unless columns names some of them: then those, where named).',
      REPORT_COLUMN_KEYS,
    ),
    goal: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 40,
        description: `A goal to measure: KIND:DURATION[:CLOCK], KIND one of ${GOAL_KINDS.join(', ')}, DURATION a whole number of minutes, hours or days (30m, 24h, 2d), from 1m to 90d, CLOCK calendar (the default: all elapsed time) or business (business minutes of the department's calendar: the *_business_time samples). Adds the columns goal_met_pct, goal_met and goal_missed: the share and counts of that kind's durations in the period that took at most DURATION (counted against the histogram bin edge at or below it, given as goal.counted_within_seconds; docs/metrics.md, "Goals"). A malformed goal answers 400 invalid_goal.`,
        examples: ['resolution:24h', 'first_answer:1h', 'resolution:8h:business'],
      }),
    ),
    sort: Type.Optional(
      Type.String({
        pattern: '^[-+]?[a-z0-9_]+$',
        maxLength: 64,
        description:
          'A requested column or a grouped dimension (time, department, agent, channel); a leading - sorts descending. Default: by the dimensions in order.',
      }),
    ),
    attribution: Type.Optional(
      Type.Enum(['event', 'current'] as const, {
        default: 'event',
        description:
          'event: each figure counts for the department the ticket was in when it happened. current: everything counts for the department tickets are in now (computed from the events, slower).',
      }),
    ),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10000,
        default: 1000,
        description: 'JSON page size; CSV is never paged.',
      }),
    ),
    cursor: Type.Optional(
      Type.String({ minLength: 1, maxLength: 4000, description: 'The `next_cursor` of the previous page.' }),
    ),
    unit_row: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'CSV only: a second row naming each column’s unit (count, seconds, minutes, percent).',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ReportQueryType = Static<typeof ReportQuery>;

// type: [x, 'null'] rather than anyOf: fast-json-stringify writes it directly, where anyOf would
// make it validate every value of every row to pick a branch.
const NullableNumber = (description: string) =>
  Type.Optional(Type.Unsafe<number | null>({ type: ['number', 'null'], description }));
const NullableString = (description?: string) =>
  Type.Optional(
    Type.Unsafe<string | null>({ type: ['string', 'null'], ...(description && { description }) }),
  );
const metricProperties = Object.fromEntries(
  [...METRICS, ...goalMetrics(null)].map((m) => [m.key, NullableNumber(m.description)]),
);

export const ReportRowSchema = Type.Object(
  {
    period_start: Type.Optional(
      Type.String({
        description: 'Local start of the period with its UTC offset, e.g. 2026-10-25T00:00:00+02:00.',
      }),
    ),
    period_end: Type.Optional(Type.String({ description: 'Local end of the period (exclusive).' })),
    department_id: NullableString('The department’s id; null: no department.'),
    department_name: NullableString(
      'The department’s name; null only with no department. A deleted department keeps the name it had when it was deleted.',
    ),
    department_deleted: Type.Optional(
      Type.Boolean({
        description: 'The department has been deleted since (its past figures stay, under its old name).',
      }),
    ),
    agent_id: NullableString('The agent’s id; null: no agent.'),
    agent_name: NullableString(
      'The agent’s name; null only with no agent. A deleted agent keeps the name they had when they were deleted.',
    ),
    agent_deleted: Type.Optional(
      Type.Boolean({
        description: 'The agent has been deleted since (their past figures stay, under their old name).',
      }),
    ),
    channel: NullableString(),
    tag: NullableString(
      'The tag; null: figures of tickets that had no tag. A ticket with two tags counts in both rows.',
    ),
    ...metricProperties,
  },
  {
    $id: 'ReportRow',
    additionalProperties: false,
    description:
      'One group: its dimensions, then the requested columns (null: no value, e.g. an average of nothing).',
  },
);

export const ReportTotalsSchema = Type.Object(metricProperties, {
  $id: 'ReportTotals',
  additionalProperties: false,
  description: 'The requested columns over the whole range and every group (not a sum of the rows).',
});

export const ReportColumnSchema = Type.Object(
  {
    key: Type.String(),
    label: Type.String({ description: 'Human label; heads the CSV column.' }),
    unit: Type.Enum(['count', 'seconds', 'minutes', 'percent'] as const),
    kind: Type.Enum(['count', 'duration', 'percentage', 'current'] as const, {
      description:
        'count columns add up across groups (stacked areas and pies make sense); the others do not.',
    }),
    description: Type.String(),
    chart_types: Type.Array(Type.String(), { description: 'Charts that suit the column.' }),
  },
  { $id: 'ReportColumn', additionalProperties: false },
);

const RangeSchema = Type.Object(
  {
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time', description: 'Exclusive.' }),
    timezone: Type.String(),
    interval: Type.Enum(INTERVALS),
    week_start: Type.Enum(WEEK_DAYS),
    preset: Type.Union([Preset, Type.Null()]),
  },
  { additionalProperties: false },
);

export const ReportSchema = Type.Object(
  {
    report: Type.Enum(['departments', 'agents', 'channels', 'tags'] as const),
    range: RangeSchema,
    attribution: Type.Enum(['event', 'current'] as const),
    group_by: Type.Array(Type.Enum(DIMENSIONS)),
    dimensions: Type.Array(
      Type.Object(
        { key: Type.String(), label: Type.String(), description: Type.String() },
        { additionalProperties: false },
      ),
      { description: 'The dimension fields of each row, in order.' },
    ),
    columns: Type.Array(ref(ReportColumnSchema)),
    goal: Type.Union(
      [
        Type.Object(
          {
            kind: Type.Enum(GOAL_KINDS),
            clock: Type.Enum(GOAL_CLOCKS, {
              description:
                'calendar: all elapsed time; business: only the business minutes of the department’s calendar.',
            }),
            within: Type.String({ description: 'The goal’s duration as given: 24h, 30m, 2d.' }),
            seconds: Type.Integer({ description: 'The same in seconds.' }),
            counted_within_seconds: Type.Number({
              description:
                'The bound samples were counted against: the duration histograms’ bin edge at or below the goal, less than 1 % below it (24h, 86,400 s, counts as 85,827.493 s). A duration between it and the goal counts as missed, so goal_met never exceeds the exact count.',
            }),
            columns: Type.Array(Type.String(), {
              description:
                'The report’s columns that measure this goal (of goal_met_pct, goal_met, goal_missed).',
            }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: 'The goal the goal_* columns measure (the goal parameter); null without one.' },
    ),
    chart: Type.Object(
      {
        x: Type.Union([Type.String(), Type.Null()], {
          description: 'The row field for the x axis (or pie slices).',
        }),
        series: Type.Array(Type.String(), { description: 'Row fields that split the data into series.' }),
      },
      { additionalProperties: false },
    ),
    data: Type.Array(ref(ReportRowSchema)),
    totals: ref(ReportTotalsSchema),
    overlapping_groups: Type.Boolean({
      description:
        'true when one figure may count in several rows (group_by tag: a ticket with two tags counts in both), so the rows do not add up to the totals; totals always count each figure once, over everything the report covers (tickets with no tag included).',
    }),
    next_cursor: Type.Union([Type.String(), Type.Null()], {
      description: 'Pass as `cursor` to get the next page; null when there is none.',
    }),
  },
  { $id: 'Report', additionalProperties: false },
);

export const ColumnCatalogueSchema = Type.Object(
  { data: Type.Array(ref(ReportColumnSchema)) },
  { $id: 'ReportColumnCatalogue', additionalProperties: false },
);

export const LeaderboardQuery = Type.Object(
  {
    department_id: Type.Optional(Uuid('Rank the agents of this department’s figures only.')),
    preset: Type.Optional(Preset),
    from: RangeEnd('Start of a custom range (inclusive).'),
    to: RangeEnd('End of a custom range (exclusive).'),
    timezone: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description: 'IANA time zone name, checked as the reports’ own. Default: DESKROUTE_TIMEZONE.',
      }),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
  },
  { additionalProperties: false },
);

export const LeaderboardSchema = Type.Object(
  {
    range: RangeSchema,
    department_id: Type.Union([Uuid(), Type.Null()]),
    columns: Type.Array(ref(ReportColumnSchema)),
    data: Type.Array(
      Type.Object(
        {
          rank: Type.Integer({ minimum: 1, description: 'Agents with the same three figures share a rank.' }),
          agent_id: Uuid(),
          agent_name: Type.String(),
          answers: Type.Number(),
          resolved_tickets: Type.Number(),
          positive_ratings: Type.Number(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { $id: 'AgentLeaderboard', additionalProperties: false },
);
