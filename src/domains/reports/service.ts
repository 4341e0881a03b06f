import { isAdmin, type Principal } from '../../access/policy.ts';
import { canonicalTimeZone } from '../../business-time/index.ts';
import type { Db } from '../../db/database.ts';
import { outsideRequest } from '../../db/deadline.ts';
import { type FieldError, forbidden, invalid, notFound } from '../../errors.ts';
import { decodeCursor, encodeCursor } from '../../plugins/pagination.ts';
import {
  chartTypes,
  findMetric,
  GOAL_CLOCKS,
  GOAL_KEYS,
  GOAL_KINDS,
  type Goal,
  type GoalClock,
  type GoalKind,
  goalMetrics,
  METRIC_KEYS,
  METRICS,
  type Metric,
} from './metrics.ts';
import {
  CHANNELS,
  cellReader,
  compactReportTables,
  countPendingEvents,
  type Dimension,
  departmentIdsOf,
  type EntityDimension,
  findReportPage,
  findReportRows,
  findReportTotals,
  type Interval,
  keepCounts,
  keepPercentiles,
  knownEntityIds,
  knownTimeZones,
  type RangeInstants,
  type ReportSpec,
  rangeInstants,
  rowJsonWriter,
  type SortValue,
  sortKeyCount,
  sortKeyReader,
  streamReportRows,
  tryReportCompactionLock,
} from './repository.ts';
import { DIMENSIONS, type PRESETS, type ReportQueryType, ReportRowSchema, WEEK_DAYS } from './schemas.ts';

export type ReportKind = 'departments' | 'agents' | 'channels' | 'tags';

export type Preset = (typeof PRESETS)[number];

const DEFAULT_DIMENSION: Record<ReportKind, EntityDimension> = {
  departments: 'department',
  agents: 'agent',
  channels: 'channel',
  tags: 'tag',
};

/** The row fields each dimension adds, with the labels that head CSV columns. */
export const DIMENSION_FIELDS: Record<Dimension, { key: string; label: string; description: string }[]> = {
  time: [
    {
      key: 'period_start',
      label: 'Period start',
      description: 'Start of the period: local time in the report’s time zone, with its UTC offset.',
    },
    { key: 'period_end', label: 'Period end', description: 'End of the period (exclusive), same form.' },
  ],
  department: [
    { key: 'department_id', label: 'Department ID', description: 'Null: tickets in no department.' },
    {
      key: 'department_name',
      label: 'Department',
      description:
        'Null: tickets in no department. A deleted department keeps the name it had when it was deleted.',
    },
  ],
  agent: [
    { key: 'agent_id', label: 'Agent ID', description: 'Null: no agent (e.g. unassigned tickets).' },
    {
      key: 'agent_name',
      label: 'Agent',
      description: 'Null: no agent. A deleted agent keeps the name they had when they were deleted.',
    },
  ],
  channel: [{ key: 'channel', label: 'Channel', description: 'The channel the figure came from.' }],
  tag: [
    {
      key: 'tag',
      label: 'Tag',
      description:
        'A tag the ticket had right after the event (attribution=current: has now); null: no tag. A ticket with two tags counts in both rows.',
    },
  ],
};

// Counters are kept per 15 minutes: a range must start and end on a quarter hour to be exact.
const QUARTER_HOUR_MS = 15 * 60 * 1000;
const MAX_PERIODS = 50_000;
const APPROX_PERIOD_HOURS: Record<Exclude<Interval, 'none'>, number> = {
  hour: 1,
  day: 24,
  week: 168,
  month: 28 * 24,
  year: 365 * 24,
};
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Goals from a minute to 90 days: under a minute no help-desk target is set; the bound keeps
// the figure a number a person reads (2160h, not 99999999d), far inside the histograms' bins.
const GOAL_MIN_SECONDS = 60;
const GOAL_MAX_SECONDS = 90 * 86_400;
const GOAL_UNIT_SECONDS = { m: 60, h: 3600, d: 86_400 } as const;
const GOAL_PATTERN = `^(${GOAL_KINDS.join('|')}):([1-9][0-9]{0,6})(m|h|d)(?::(${GOAL_CLOCKS.join('|')}))?$`;
/** γ of the duration histograms (migrations/0005, report_duration_bin): bin i holds (γ^(i−1), γ^i]. */
const GAMMA = 1.005 / 0.995;

/**
 * `resolution:24h` as a goal: its samples' kind, its bound, and the bin edge the histograms
 * can count against (the largest γ^i at or below the bound: less than 1 % below it).
 */
function parseGoal(value: string | undefined): Goal | null {
  if (value === undefined) return null;
  const match = new RegExp(GOAL_PATTERN).exec(value);
  const field = 'querystring/goal';
  if (!match) {
    throw invalid('invalid_goal', `Goal ${value.slice(0, 100)} is not KIND:DURATION.`, [
      {
        field,
        message: `like resolution:24h or resolution:8h:business: one of ${GOAL_KINDS.join(', ')}, a colon, a number and m, h or d, optionally :calendar or :business`,
      },
    ]);
  }
  const seconds = Number(match[2]) * GOAL_UNIT_SECONDS[match[3] as keyof typeof GOAL_UNIT_SECONDS];
  if (seconds < GOAL_MIN_SECONDS || seconds > GOAL_MAX_SECONDS) {
    throw invalid('invalid_goal', 'A goal lies between 1 minute and 90 days.', [
      { field, message: 'must be from 1m to 90d' },
    ]);
  }
  const bin = Math.floor(Math.log(seconds) / Math.log(GAMMA));
  const kind = match[1] as GoalKind;
  const clock = (match[4] ?? 'calendar') as GoalClock;
  return {
    kind,
    clock,
    sample: clock === 'business' ? `${kind}_business` : kind,
    within: `${match[2]}${match[3]}`,
    seconds,
    bin,
    // Floored to the millisecond: the metadata never states a bound above the one counted.
    countedWithinSeconds: Math.floor(GAMMA ** bin * 1000) / 1000,
  };
}

/** Splits repeated and comma-separated list parameters into one clean list. */
function listParam(values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined;
  return [...new Set(values.flatMap((v) => v.split(',')).map((v) => v.trim()))].filter(Boolean);
}

export interface ResolvedReport {
  kind: ReportKind;
  spec: ReportSpec;
  preset: Preset | null;
  /** Local calendar dates of the range ends, for file names. */
  localFrom: string;
  localTo: string;
  list: string;
  limit: number;
  after: SortValue[] | undefined;
}

async function resolveRange(db: Db, timezone: string, query: ReportQueryType) {
  const errors: FieldError[] = [];
  if (query.preset !== undefined && (query.from !== undefined || query.to !== undefined)) {
    throw invalid('preset_or_range', 'Give a preset or from and to, not both.', [
      { field: 'querystring/preset', message: 'not allowed with from/to' },
    ]);
  }
  if ((query.from === undefined) !== (query.to === undefined)) {
    const missing = query.from === undefined ? 'from' : 'to';
    throw invalid('range_incomplete', 'Give both from and to (or a preset).', [
      { field: `querystring/${missing}`, message: 'is required with the other end of the range' },
    ]);
  }
  const preset: Preset | null = query.from === undefined ? (query.preset ?? 'last_30_days') : null;
  let row: RangeInstants;
  try {
    row = await rangeInstants(db, timezone, preset ? { preset } : { from: query.from!, to: query.to! });
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('22')) {
      throw invalid('invalid_range', 'from and to must be dates (YYYY-MM-DD) or ISO 8601 date-times.', [
        { field: 'querystring/from', message: 'is not a date or date-time' },
      ]);
    }
    throw error;
  }
  const from = new Date(row.from);
  const to = new Date(row.to);
  for (const [name, value] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (value.getTime() % QUARTER_HOUR_MS !== 0) {
      errors.push({
        field: `querystring/${name}`,
        message: 'must fall on a quarter hour (:00, :15, :30, :45)',
      });
    }
  }
  if (errors.length > 0) {
    throw invalid('range_not_aligned', 'Report ranges start and end on a quarter hour.', errors);
  }
  if (from >= to) {
    throw invalid('invalid_range', 'from must be before to (to is exclusive).', [
      { field: 'querystring/to', message: 'must be after from' },
    ]);
  }
  return { from, to, preset, localFrom: row.local_from, localTo: row.local_to };
}

function parseIds(values: string[] | undefined, field: string): (string | null)[] | null {
  const list = listParam(values);
  if (list === undefined) return null;
  const bad = list.filter((v) => v !== 'none' && !UUID.test(v));
  if (bad.length > 0) {
    throw invalid('validation_failed', `${field} takes ids or none.`, [
      { field: `querystring/${field}`, message: `not an id: ${bad.join(', ')}` },
    ]);
  }
  return list.map((v) => (v === 'none' ? null : v.toLowerCase()));
}

/**
 * A filter on a department or agent that never existed answers 404 (department_not_found,
 * agent_not_found) like every other route, rather than an empty report that looks like "no
 * figures". Deleted ones are fine: their past figures stay.
 */
async function assertKnown(db: Db, dim: 'department' | 'agent', ids: (string | null)[] | null) {
  const wanted = (ids ?? []).filter((id): id is string => id !== null);
  const known = await knownEntityIds(db, dim, wanted);
  const unknown = wanted.filter((id) => !known.has(id));
  if (unknown.length > 0) {
    const error = notFound(dim);
    error.errors = [{ field: `querystring/${dim}_id`, message: `no such ${dim}: ${unknown.join(', ')}` }];
    throw error;
  }
}

/** Turns the query string into a checked report spec, applying the caller's visibility. */
export async function resolveReport(
  db: Db,
  principal: Principal,
  kind: ReportKind,
  query: ReportQueryType,
  defaults: { timezone: string },
): Promise<ResolvedReport> {
  const zoneAsked = query.timezone ?? defaults.timezone;
  // Schedules' check (business-time: Temporal's IANA names, any case, kept in IANA spelling),
  // and PostgreSQL must know the zone too, since it buckets the periods. pg_timezone_names alone
  // also lists localtime, posixrules, Factory and the posix/ and right/ copies, which schedules
  // refuse: localtime is the server's own zone, whatever it is, and right/ counts leap seconds.
  const timezone = canonicalTimeZone(zoneAsked);
  if (timezone === null || !(await knownTimeZones(db)).has(timezone)) {
    throw invalid(
      'unknown_timezone',
      `Unknown time zone ${zoneAsked}; use an IANA name such as Europe/Prague.`,
      [{ field: 'querystring/timezone', message: 'is not an IANA time zone name' }],
    );
  }
  const range = await resolveRange(db, timezone, query);
  const interval = query.interval ?? 'none';
  if (interval !== 'none') {
    const periods = (range.to.getTime() - range.from.getTime()) / 3_600_000 / APPROX_PERIOD_HOURS[interval];
    if (periods > MAX_PERIODS) {
      throw invalid(
        'too_many_periods',
        `The range holds more than ${MAX_PERIODS} periods; pick a longer interval.`,
        [{ field: 'querystring/interval', message: 'too fine for the range' }],
      );
    }
  }

  const requested = listParam(query.group_by);
  const unknownDims = (requested ?? []).filter((d) => !(DIMENSIONS as readonly string[]).includes(d));
  if (unknownDims.length > 0) {
    throw invalid('unknown_group_by', `Unknown group_by: ${unknownDims.join(', ')}.`, [
      { field: 'querystring/group_by', message: `one or more of ${DIMENSIONS.join(', ')}` },
    ]);
  }
  let groupBy = (requested ?? [DEFAULT_DIMENSION[kind]]) as Dimension[];
  if (groupBy.length === 0) groupBy = [DEFAULT_DIMENSION[kind]];
  // An interval means a series over time: time is always the first dimension then.
  if (interval !== 'none' || groupBy.includes('time'))
    groupBy = ['time', ...groupBy.filter((d) => d !== 'time')];

  const goal = parseGoal(query.goal);
  const goalColumns = new Map(goalMetrics(goal).map((m) => [m.key, m]));
  const asked = listParam(query.columns);
  // A goal adds its three columns after the others, unless columns names some of them: then
  // those, where named. Goal columns without a goal measure nothing.
  const columnKeys =
    goal && !asked?.some((c) => goalColumns.has(c))
      ? [...(asked ?? METRIC_KEYS), ...GOAL_KEYS]
      : (asked ?? METRIC_KEYS);
  const unknownColumns = columnKeys.filter((c) => !findMetric(c) && !goalColumns.has(c));
  if (unknownColumns.length > 0 || columnKeys.length === 0) {
    throw invalid('unknown_column', `Unknown column: ${unknownColumns.join(', ') || '(none given)'}.`, [
      { field: 'querystring/columns', message: 'GET /v1/reports/columns lists the keys' },
    ]);
  }
  if (!goal && columnKeys.some((c) => goalColumns.has(c))) {
    throw invalid(
      'goal_required',
      'The goal_* columns measure a goal: name it with goal= (e.g. resolution:24h).',
      [{ field: 'querystring/goal', message: 'is required with the goal_* columns' }],
    );
  }
  const metrics = columnKeys.map((c) => findMetric(c) ?? goalColumns.get(c)!);

  let sort: ReportSpec['sort'] = [];
  if (query.sort !== undefined) {
    const direction = query.sort.startsWith('-') ? 'desc' : 'asc';
    const key = query.sort.replace(/^[-+]/, '');
    if (!columnKeys.includes(key) && !groupBy.includes(key as Dimension)) {
      throw invalid(
        'unknown_sort',
        `Cannot sort by ${key}: sort by a requested column or a grouped dimension.`,
        [{ field: 'querystring/sort', message: 'is not a requested column or grouped dimension' }],
      );
    }
    sort = [{ key, direction }];
  }

  let departments = parseIds(query.department_id, 'department_id');
  const agents = parseIds(query.agent_id, 'agent_id');
  await assertKnown(db, 'department', departments);
  await assertKnown(db, 'agent', agents);
  if (!isAdmin(principal)) {
    // Agents report on their own departments (any role) and on tickets in no department,
    // which every agent sees (src/access/tickets.ts).
    const mine = await departmentIdsOf(db, principal.agentId);
    if (departments) {
      const outside = departments.filter((d) => d !== null && !mine.includes(d));
      if (outside.length > 0) {
        throw forbidden('You may only report on departments you belong to.', 'department_not_visible');
      }
    } else {
      departments = [...mine, null];
    }
  }
  const channels = listParam(query.channel) ?? null;
  const badChannels = (channels ?? []).filter((c) => !(CHANNELS as readonly string[]).includes(c));
  if (badChannels.length > 0) {
    throw invalid('validation_failed', `Unknown channel: ${badChannels.join(', ')}.`, [
      { field: 'querystring/channel', message: `one or more of ${CHANNELS.join(', ')}` },
    ]);
  }

  const attribution = query.attribution ?? 'event';
  const spec: ReportSpec = {
    from: range.from,
    to: range.to,
    timezone,
    interval,
    weekShift: WEEK_DAYS.indexOf(query.week_start ?? 'monday'),
    groupBy,
    departments,
    agents,
    channels,
    attribution,
    // The tables by tag have departments only (migrations/0038): with agents or channels as
    // well, reports by tag are computed from the events.
    source:
      attribution === 'current' ||
      (groupBy.includes('tag') &&
        (groupBy.includes('agent') || groupBy.includes('channel') || agents !== null || channels !== null))
        ? 'events'
        : 'counters',
    metrics,
    goal,
    sort,
  };
  const list = JSON.stringify([
    'report',
    kind,
    spec.from,
    spec.to,
    timezone,
    interval,
    spec.weekShift,
    groupBy,
    departments,
    spec.agents,
    channels,
    attribution,
    columnKeys,
    sort,
    ...(goal ? [goal.kind, goal.seconds, goal.clock] : []),
  ]);
  const after = query.cursor ? decodeCursor(list, query.cursor, sortKeyCount(spec)) : undefined;
  return {
    kind,
    spec,
    preset: range.preset,
    localFrom: range.localFrom,
    localTo: range.localTo,
    list,
    limit: query.limit ?? 1000,
    after,
  };
}

/** The row fields of a report, dimensions first, in the order CSV columns follow. */
export function reportFields(spec: ReportSpec) {
  return [
    ...spec.groupBy.flatMap((d) =>
      DIMENSION_FIELDS[d].map((f) => ({
        ...f,
        unit: null as string | null,
        type: 'text' as 'text' | 'number',
      })),
    ),
    ...spec.metrics.map((m) => ({
      key: m.key,
      label: m.label,
      description: m.description,
      unit: m.unit,
      type: 'number' as 'text' | 'number',
    })),
  ];
}

/** The row schema's fields in its order: the order its serializer writes them in. */
const ROW_FIELD_ORDER = Object.keys(ReportRowSchema.properties);

/** The fields of a report's rows as the API shows them, in the row schema's order. */
export function rowFields(spec: ReportSpec): string[] {
  const present = new Set<string>();
  for (const d of spec.groupBy) {
    for (const f of DIMENSION_FIELDS[d]) present.add(f.key);
    if (d === 'department') present.add('department_deleted');
    if (d === 'agent') present.add('agent_deleted');
  }
  for (const m of spec.metrics) present.add(m.key);
  return ROW_FIELD_ORDER.filter((key) => present.has(key));
}

function columnMeta(metric: Metric) {
  return {
    key: metric.key,
    label: metric.label,
    unit: metric.unit,
    kind: metric.kind,
    description: metric.description,
    chart_types: chartTypes(metric),
  };
}

function goalMeta(spec: ReportSpec) {
  const { goal } = spec;
  if (!goal) return null;
  return {
    kind: goal.kind,
    clock: goal.clock,
    within: goal.within,
    seconds: goal.seconds,
    counted_within_seconds: goal.countedWithinSeconds,
    columns: spec.metrics.filter((m) => 'goal' in m.formula).map((m) => m.key),
  };
}

function rangeMeta(resolved: ResolvedReport) {
  const { spec } = resolved;
  return {
    from: spec.from.toISOString(),
    to: spec.to.toISOString(),
    timezone: spec.timezone,
    interval: spec.interval,
    week_start: WEEK_DAYS[spec.weekShift]!,
    preset: resolved.preset,
  };
}

/** Reports' percentiles kept by one keeper are not kept again by it for this long. */
const KEPT_RECENTLY_MS = 60_000;
/** Reports waiting to have their figures kept; more are not queued (the next read asks again). */
const KEEP_QUEUE = 16;

/**
 * Keeps the percentiles and the counts of the reports served (repository.ts, keepPercentiles
 * and keepCounts; cache.ts says why), in the background after the response, one report at a
 * time: the next read of the same periods finds them. A report whose figures were kept in the
 * last minute is not asked again. A failure is logged and changes nothing: the report is computed in full next time.
 * On the embedded database (PGlite) it keeps nothing: its one connection serves every request,
 * which would all wait behind the keeper, and an embedded help desk is small enough for the
 * two steps.
 */
export class ReportKeeper {
  readonly #db: Db;
  readonly #log: { warn: (obj: object, msg: string) => void };
  readonly #queue = new Map<string, ReportSpec>();
  readonly #recent = new Map<string, number>();
  #running: Promise<void> | null = null;

  constructor(db: Db, log: { warn: (obj: object, msg: string) => void }) {
    this.#db = db;
    this.#log = log;
  }

  keep(spec: ReportSpec) {
    if (spec.source !== 'counters' || !this.#db.getExecutor().adapter.supportsMultipleConnections) return;
    const key = JSON.stringify([
      spec.from,
      spec.to,
      spec.timezone,
      spec.interval,
      spec.weekShift,
      spec.groupBy,
      spec.departments,
      spec.agents,
      spec.channels,
      spec.metrics.map((m) => m.key),
    ]);
    const now = Date.now();
    if ((this.#recent.get(key) ?? 0) > now - KEPT_RECENTLY_MS || this.#queue.has(key)) return;
    if (this.#queue.size >= KEEP_QUEUE) return;
    this.#queue.set(key, spec);
    // After the response, and as long as it takes: not bound by the request's deadline.
    this.#running ??= outsideRequest(() => this.#drain());
  }

  /** Resolves once nothing is being kept (app close waits for it). */
  async settled() {
    while (this.#running) await this.#running;
  }

  async #drain() {
    try {
      for (const [key, spec] of this.#queue) {
        this.#queue.delete(key);
        try {
          await keepPercentiles(this.#db, spec);
          await keepCounts(this.#db, spec);
          this.#recent.set(key, Date.now());
        } catch (error) {
          this.#log.warn({ err: error }, 'report figures not kept');
        }
      }
      for (const [key, at] of this.#recent) if (at <= Date.now() - KEPT_RECENTLY_MS) this.#recent.delete(key);
    } finally {
      this.#running = null;
    }
  }
}

/**
 * A report as JSON: the envelope (metadata, totals over the whole range, chart-ready metadata)
 * with no rows, and the rows of the page as the JSON text of each (rowJsonWriter), for the
 * route to put in its data array.
 */
export async function jsonReport(db: Db, resolved: ResolvedReport, keeper?: ReportKeeper) {
  const { spec } = resolved;
  await countedUpToNow(db, spec);
  const [raws, totals] = await Promise.all([
    findReportPage(db, spec, { after: resolved.after, limit: resolved.limit, arrays: true }),
    findReportTotals(db, spec),
  ]);
  keeper?.keep(spec);
  keeper?.keep({ ...spec, groupBy: [], sort: [] });
  const more = raws.length > resolved.limit;
  const kept = more ? raws.slice(0, resolved.limit) : raws;
  const last = kept[kept.length - 1];
  const entityNames = spec.groupBy
    .filter((d): d is EntityDimension => d !== 'time')
    .map((d) => (d === 'channel' || d === 'tag' ? d : `${d}_name`));
  const envelope = {
    report: resolved.kind,
    range: rangeMeta(resolved),
    attribution: spec.attribution,
    group_by: spec.groupBy,
    dimensions: spec.groupBy.flatMap((d) => DIMENSION_FIELDS[d]),
    columns: spec.metrics.map(columnMeta),
    goal: goalMeta(spec),
    chart: {
      x: spec.groupBy.includes('time') ? 'period_start' : (entityNames[0] ?? null),
      series: spec.groupBy.includes('time') ? entityNames : entityNames.slice(1),
    },
    data: [] as never[],
    totals,
    overlapping_groups: spec.groupBy.includes('tag'),
    next_cursor: more && last ? encodeCursor(resolved.list, sortKeyReader(spec)(last)) : null,
  };
  return { envelope, rows: kept.map(rowJsonWriter(spec, rowFields(spec))) };
}

export function csvFileName(resolved: ResolvedReport): string {
  const by = resolved.spec.interval === 'none' ? '' : `-by-${resolved.spec.interval}`;
  return `deskroute-${resolved.kind}-${resolved.localFrom}--${resolved.localTo}${by}.csv`;
}

/**
 * Every row of a report, in order, batch by batch, chunk by chunk where the report allows
 * (see streamReportRows); `onStarted` once its first statement has answered.
 */
export async function streamReport(
  db: Db,
  resolved: ResolvedReport,
  options: {
    signal: AbortSignal;
    onStarted: () => void;
    onRows: (rows: (string | number)[][]) => Promise<void>;
    /** Keeps the report's percentiles once it is read out (cache.ts). */
    keeper?: ReportKeeper | undefined;
  },
) {
  const cells = cellReader(reportFields(resolved.spec).map((f) => f.key));
  await countedUpToNow(db, resolved.spec);
  await streamReportRows(db, resolved.spec, {
    batch: 500,
    signal: options.signal,
    onStarted: options.onStarted,
    onRows: (rows) => options.onRows(rows.map(cells)),
  });
  options.keeper?.keep(resolved.spec);
}

export interface LeaderboardQuery {
  department_id?: string | undefined;
  preset?: Preset | undefined;
  from?: string | undefined;
  to?: string | undefined;
  timezone?: string | undefined;
  limit?: number | undefined;
}

const LEADERBOARD_COLUMNS = ['answers', 'resolved_tickets', 'positive_ratings'] as const;

/** Agents ranked by answers, then resolved tickets, then positive ratings; ties share a rank. */
export async function leaderboard(
  db: Db,
  principal: Principal,
  query: LeaderboardQuery,
  defaults: { timezone: string },
) {
  const resolved = await resolveReport(
    db,
    principal,
    'agents',
    {
      ...(query.preset !== undefined && { preset: query.preset }),
      ...(query.from !== undefined && { from: query.from }),
      ...(query.to !== undefined && { to: query.to }),
      ...(query.timezone !== undefined && { timezone: query.timezone }),
      ...(query.department_id !== undefined && { department_id: [query.department_id] }),
      group_by: ['agent'],
      columns: [...LEADERBOARD_COLUMNS],
    },
    defaults,
  );
  const spec: ReportSpec = {
    ...resolved.spec,
    sort: LEADERBOARD_COLUMNS.map((key) => ({ key, direction: 'desc' as const })),
  };
  const limit = query.limit ?? 50;
  await countedUpToNow(db, spec);
  // The "no agent" row is no one's place on the board.
  const rows = (await findReportRows(db, spec, { limit: limit + 1 })).filter((r) => r.agent_id !== null);
  let rank = 0;
  let previous = '';
  const data = rows.slice(0, limit).map((r, i) => {
    const figures = LEADERBOARD_COLUMNS.map((c) => r.values[c] ?? 0);
    const signature = figures.join('/');
    if (signature !== previous) rank = i + 1;
    previous = signature;
    return {
      rank,
      agent_id: r.agent_id!,
      agent_name: r.agent_name ?? '',
      answers: figures[0]!,
      resolved_tickets: figures[1]!,
      positive_ratings: figures[2]!,
    };
  });
  return {
    range: rangeMeta({ ...resolved, spec }),
    department_id: query.department_id ?? null,
    columns: LEADERBOARD_COLUMNS.map((c) => columnMeta(findMetric(c)!)),
    data,
  };
}

/** Every column a report can have, for clients that build column pickers. */
export function columnCatalogue() {
  return [...METRICS, ...goalMetrics(null)].map(columnMeta);
}

/**
 * Reports read the counter tables: first the events still pending are counted into them, so a
 * report includes every event committed before it (the events source needs nothing).
 */
async function countedUpToNow(db: Db, spec: ReportSpec) {
  if (spec.source === 'counters') await countPendingEvents(db);
}

/** Pending events counted per statement by the scheduler: a bulk load's backlog goes in bites. */
const COUNTING_BATCH = 100_000;

/**
 * Counts the pending events (countPendingEvents), batch by batch, then folds the fresh rows
 * into compacted rows (see compactReportTables), unless another instance is at it. Returns
 * the rows folded, or null when it skipped its turn.
 */
export async function compactReports(db: Db): Promise<number | null> {
  while ((await countPendingEvents(db, COUNTING_BATCH)) === COUNTING_BATCH) {}
  return db
    .transaction()
    .execute(async (trx) => ((await tryReportCompactionLock(trx)) ? compactReportTables(trx) : null));
}
