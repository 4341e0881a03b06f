import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { Database } from '../../db/types.ts';
import { at, byTime, type Interval, type ReportSpec } from './spec.ts';

// Time: the periods of a report in its time zone, the signed pieces of UTC months, days and
// 15-minute buckets that cover them, and the ranges and zones a query may name.

type Executor = Kysely<Database>;

const STEP: Record<Exclude<Interval, 'none' | 'hour'>, string> = {
  day: '1 day',
  week: '7 days',
  month: '1 month',
  year: '1 year',
};

/**
 * The periods of the report: local hours, days, weeks, months or years, or the whole range.
 * For a chunk (spec.chunk), the periods around it, from its start: the same periods as the
 * whole range has there, to be cut to the chunk (query.ts, `clipped`). A chunk's start is a
 * period's start (or the range's), which the series below starts on again: days, weeks, months
 * and years are truncated from it in local time, and a local hour starts on its own quarter.
 */
export function periods(spec: ReportSpec): RawBuilder<unknown> {
  const { to: rangeTo, timezone: tz, chunk } = spec;
  const from = chunk?.from ?? spec.from;
  if (!byTime(spec) || spec.interval === 'none') {
    return sql`select ${at(spec.from)} as period_start, ${at(rangeTo)} as period_end`;
  }
  if (spec.interval === 'hour') {
    // A local hour starts where the local clock shows :00; offsets are whole quarter hours, so
    // stepping through the range by 15 minutes meets every hour start exactly once, DST included.
    // An hour start comes from a quarter at most 45 minutes after it, so a chunk steps up to
    // two hours past its end: its last hour then ends where the whole range's does.
    const to = chunk ? sql`least(${at(rangeTo)}, ${at(chunk.to)} + interval '2 hours')` : at(rangeTo);
    return sql`
      select h as period_start, coalesce(lead(h) over (order by h), h + interval '1 hour') as period_end
      from (
        select distinct g - make_interval(mins => extract(minute from g at time zone ${tz})::int) as h
        from generate_series(${at(from)}, ${to} - interval '15 minutes', interval '15 minutes') g
      ) hours`;
  }
  const step = STEP[spec.interval];
  const shift = `${spec.interval === 'week' ? spec.weekShift : 0} days`;
  // Local calendar arithmetic on timestamps without time zone, then back to instants: local
  // midnights, whatever the offset on each side of a DST change.
  return sql`
    select l at time zone ${tz} as period_start, (l + ${step}::interval) at time zone ${tz} as period_end
    from generate_series(
      date_trunc(${spec.interval}, (${at(from)} at time zone ${tz}) - ${shift}::interval) + ${shift}::interval,
      ${at(chunk?.to ?? rangeTo)} at time zone ${tz},
      ${step}::interval
    ) l`;
}

// A month boundary near an instant (the UTC month it is in, or the next when past mid-month):
// any month boundary keeps the pieces exact; a near one keeps the differences short.
const nearMonth = (t: string) =>
  sql.raw(`date_trunc('month', (${t} at time zone 'UTC') + interval '15 days') at time zone 'UTC'`);
const nearDay = (t: string) =>
  sql.raw(`date_bin('1 day', ${t} + interval '12 hours', timestamptz '2000-01-01 00:00:00+00')`);

// Whether [s, e) is better read as the coarse [cs, ce) corrected at both ends: when the
// corrections are shorter than the interval itself.
const worthIt = (s: string, e: string, cs: string, ce: string) =>
  sql.raw(`(${cs} < ${ce} and abs(extract(epoch from ${s} - ${cs})) + abs(extract(epoch from ${e} - ${ce}))
    < extract(epoch from ${e} - ${s}))`);

/**
 * Each period as signed pieces the counter tables answer: whole UTC months (sign +1) from the
 * monthly tables, the differences to the period's own ends as whole UTC days added or taken
 * away (sign +1 or −1), and what remains of those as 15-minute buckets, again signed. Every
 * figure is a count or a sum, so the signed sum of the pieces is exactly the period's. With
 * `coarse` off (figures computed from the events) each period is one 15-minute piece.
 * A Europe/Prague month, say, is the UTC month, plus the hour before it, minus its last hour.
 */
export function pieces(coarse: boolean): RawBuilder<unknown> {
  if (!coarse) return sql`select period_start, s as lo, e as hi, '15m' as grain, 1 as sign from clipped`;
  return sql`
    select r.period_start, v.lo, v.hi, v.grain, v.sign
    from (
      select m.period_start, v.lo, v.hi, v.grain, v.sign
      from (select period_start, s, e, ${nearMonth('s')} as ms, ${nearMonth('e')} as me from clipped) m
      cross join lateral (
        select * from (values
          (m.ms, m.me, 'month', 1),
          (least(m.s, m.ms), greatest(m.s, m.ms), 'rest', case when m.s < m.ms then 1 else -1 end),
          (least(m.e, m.me), greatest(m.e, m.me), 'rest', case when m.me < m.e then 1 else -1 end)
        ) v(lo, hi, grain, sign) where ${worthIt('m.s', 'm.e', 'm.ms', 'm.me')}
        union all
        select m.s, m.e, 'rest', 1 where not ${worthIt('m.s', 'm.e', 'm.ms', 'm.me')}
      ) v
    ) r
    cross join lateral (
      select * from (values
        (r.lo, r.hi, r.grain, r.sign)
      ) v(lo, hi, grain, sign) where r.grain = 'month'
      union all
      select v.lo, v.hi, v.grain, v.sign * r.sign
      from (select ${nearDay('r.lo')} as dl, ${nearDay('r.hi')} as dh) d
      cross join lateral (
        select * from (values
          (d.dl, d.dh, 'day', 1),
          (least(r.lo, d.dl), greatest(r.lo, d.dl), '15m', case when r.lo < d.dl then 1 else -1 end),
          (least(r.hi, d.dh), greatest(r.hi, d.dh), '15m', case when d.dh < r.hi then 1 else -1 end)
        ) v(lo, hi, grain, sign) where ${worthIt('r.lo', 'r.hi', 'd.dl', 'd.dh')}
        union all
        select r.lo, r.hi, '15m', 1 where not ${worthIt('r.lo', 'r.hi', 'd.dl', 'd.dh')}
      ) v
      where r.grain = 'rest'
    ) v
    where v.lo < v.hi`;
}

export type RangePreset =
  | 'today'
  | 'yesterday'
  | 'last_7_days'
  | 'last_30_days'
  | 'this_month'
  | 'last_month'
  | 'this_year';

export interface RangeInstants {
  from: Date;
  to: Date;
  /** Local calendar dates of both ends. */
  local_from: string;
  local_to: string;
}

/**
 * A preset or a custom range as instants. Dates and local date-times are read in the time zone
 * (local midnight, DST included); date-times with an offset are taken as they are.
 */
export async function rangeInstants(
  db: Executor,
  timezone: string,
  range: { preset: RangePreset } | { from: string; to: string },
): Promise<RangeInstants> {
  const end = (value: string) =>
    /(Z|[+-]\d{2}:?\d{2})$/i.test(value)
      ? sql`${value}::timestamptz`
      : sql`${value}::timestamp at time zone ${timezone}`;
  const today = sql`date_trunc('day', now() at time zone ${timezone})`;
  const month = sql`date_trunc('month', now() at time zone ${timezone})`;
  const year = sql`date_trunc('year', now() at time zone ${timezone})`;
  const presets: Record<RangePreset, [RawBuilder<unknown>, RawBuilder<unknown>]> = {
    today: [today, sql`${today} + interval '1 day'`],
    yesterday: [sql`${today} - interval '1 day'`, today],
    last_7_days: [sql`${today} - interval '6 days'`, sql`${today} + interval '1 day'`],
    last_30_days: [sql`${today} - interval '29 days'`, sql`${today} + interval '1 day'`],
    this_month: [month, sql`${month} + interval '1 month'`],
    last_month: [sql`${month} - interval '1 month'`, month],
    this_year: [year, sql`${year} + interval '1 year'`],
  };
  const [from, to] =
    'preset' in range
      ? presets[range.preset].map((local) => sql`(${local}) at time zone ${timezone}`)
      : [end(range.from), end(range.to)];
  const { rows } = await sql<RangeInstants>`
    select f as "from", t as "to",
      to_char(f at time zone ${timezone}, 'YYYY-MM-DD') as local_from,
      to_char(t at time zone ${timezone}, 'YYYY-MM-DD') as local_to
    from (select ${from} as f, ${to} as t) r`.execute(db);
  const row = rows[0]!;
  return { ...row, from: new Date(row.from), to: new Date(row.to) };
}

let timeZones: Promise<Set<string>> | undefined;

/** The IANA time zone names the database knows (read once per process). */
export async function knownTimeZones(db: Executor): Promise<Set<string>> {
  timeZones ??= sql<{ name: string }>`select name from pg_timezone_names`
    .execute(db)
    .then((r) => new Set(r.rows.map((row) => row.name)))
    .catch((error: unknown) => {
      timeZones = undefined;
      throw error;
    });
  return timeZones;
}
