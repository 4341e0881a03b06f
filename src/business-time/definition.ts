// The shape of a working-hours calendar and the checks that make it usable. Pure: no clock, no I/O.

import { Temporal } from 'temporal-polyfill';

export const WEEKDAYS = [
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
  'sunday',
] as const;
export type Weekday = (typeof WEEKDAYS)[number];
/** Local wall-clock times 'HH:MM' in the calendar's zone. end <= start runs past midnight into the next day ('00:00' = midnight). */
export interface WeeklyInterval {
  day: Weekday;
  start: string;
  end: string;
}
/** A local date closed whole (start/end null) or between two local times; yearly repeats on that month and day. */
export interface Holiday {
  name: string;
  date: string /* YYYY-MM-DD */;
  yearly: boolean;
  start: string | null;
  end: string | null;
}
export interface CalendarDefinition {
  time_zone: string /* IANA */;
  intervals: WeeklyInterval[];
  holidays: Holiday[];
}
export interface CalendarProblem {
  pointer: string /* JSON pointer into the definition, e.g. /intervals/2/end */;
  message: string;
}

export const MAX_INTERVALS = 100;
export const MAX_HOLIDAYS = 400;
export const MAX_HOLIDAY_NAME = 200;
// Dates outside these years are typos, and Date.UTC maps years below 100 to the 1900s.
export const MIN_HOLIDAY_YEAR = 1900;
export const MAX_HOLIDAY_YEAR = 2999;

const MINUTES_PER_DAY = 1440;
const MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY;
const TIME = /^([01]\d|2[0-3]):([0-5]\d)$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Minutes since local midnight of 'HH:MM' (00:00 to 23:59), or null when malformed. */
export function parseTime(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const match = TIME.exec(value);
  return match ? Number(match[1]) * 60 + Number(match[2]) : null;
}

/** Like parseTime, but '24:00' (the end of the day) is allowed too. */
export function parseEndTime(value: unknown): number | null {
  return value === '24:00' ? MINUTES_PER_DAY : parseTime(value);
}

/** Days since 1970-01-01 of a real 'YYYY-MM-DD' date in the supported years, or null. */
export function parseDate(value: unknown): { epochDay: number; month: number; day: number } | null {
  if (typeof value !== 'string') return null;
  const match = DATE.exec(value);
  if (!match) return null;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (year < MIN_HOLIDAY_YEAR || year > MAX_HOLIDAY_YEAR || month < 1 || month > 12 || day < 1) return null;
  const ms = Date.UTC(year, month - 1, day);
  // Date.UTC rolls 02-30 over into March: a real date survives the round trip.
  if (new Date(ms).getUTCDate() !== day) return null;
  return { epochDay: ms / 86_400_000, month, day };
}

/** The canonical IANA name of a zone, or null when Temporal does not know it. */
export function canonicalTimeZone(value: unknown): string | null {
  // Offset zones ('+05:00') are valid to Temporal but are not IANA names; Etc/GMT-5 says the same.
  if (typeof value !== 'string' || value.length === 0 || value.length > 64 || /^[+\-\u2212]/.test(value)) {
    return null;
  }
  try {
    const id = Temporal.Instant.fromEpochMilliseconds(0).toZonedDateTimeISO(value).timeZoneId;
    // Temporal also takes a whole date-time string and keeps its zone ('2026-01-01T00:00Z' is UTC):
    // only the name itself, in any case, is a zone name.
    return id.toLowerCase() === value.toLowerCase() ? id : null;
  } catch {
    return null;
  }
}

/** Start and end of a weekly interval in minutes since Monday 00:00; end may pass the end of the week. */
export function weekRange(interval: WeeklyInterval): [number, number] | null {
  const day = WEEKDAYS.indexOf(interval.day);
  const start = parseTime(interval.start);
  const end = parseEndTime(interval.end);
  if (day < 0 || start === null || end === null || start === end) return null;
  const base = day * MINUTES_PER_DAY;
  return [base + start, base + (end > start ? end : end + MINUTES_PER_DAY)];
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function checkIntervals(intervals: unknown, problems: CalendarProblem[]): void {
  if (!Array.isArray(intervals)) {
    problems.push({ pointer: '/intervals', message: 'must be an array of weekly intervals' });
    return;
  }
  if (intervals.length > MAX_INTERVALS) {
    problems.push({ pointer: '/intervals', message: `at most ${MAX_INTERVALS} intervals` });
    return;
  }
  // Ranges on the circular week: a Sunday night interval wraps onto Monday morning.
  const ranges: { index: number; pieces: [number, number][] }[] = [];
  intervals.forEach((interval: unknown, index) => {
    const at = `/intervals/${index}`;
    if (!isRecord(interval)) {
      problems.push({ pointer: at, message: 'must be an object with day, start and end' });
      return;
    }
    let fine = true;
    if (!WEEKDAYS.includes(interval.day as Weekday)) {
      problems.push({ pointer: `${at}/day`, message: `must be one of ${WEEKDAYS.join(', ')}` });
      fine = false;
    }
    const start = parseTime(interval.start);
    const end = parseEndTime(interval.end);
    if (start === null) {
      problems.push({ pointer: `${at}/start`, message: "must be a local time 'HH:MM' from 00:00 to 23:59" });
      fine = false;
    }
    if (end === null) {
      problems.push({
        pointer: `${at}/end`,
        message: "must be a local time 'HH:MM' from 00:00 to 23:59, or 24:00",
      });
      fine = false;
    }
    if (start !== null && end !== null && start === end) {
      problems.push({
        pointer: `${at}/end`,
        message: 'must differ from start (an interval open round the clock ends at 24:00 from 00:00)',
      });
      fine = false;
    }
    if (!fine) return;
    const [from, to] = weekRange(interval as unknown as WeeklyInterval)!;
    const pieces: [number, number][] =
      to <= MINUTES_PER_WEEK
        ? [[from, to]]
        : [
            [from, MINUTES_PER_WEEK],
            [0, to - MINUTES_PER_WEEK],
          ];
    for (const earlier of ranges) {
      const overlaps = earlier.pieces.some(([a, b]) => pieces.some(([c, d]) => a < d && c < b));
      if (overlaps) {
        problems.push({
          pointer: at,
          message: `overlaps /intervals/${earlier.index} (intervals running past midnight count on the next day too)`,
        });
        return;
      }
    }
    ranges.push({ index, pieces });
  });
}

function checkHolidays(holidays: unknown, problems: CalendarProblem[]): void {
  if (!Array.isArray(holidays)) {
    problems.push({ pointer: '/holidays', message: 'must be an array of holidays' });
    return;
  }
  if (holidays.length > MAX_HOLIDAYS) {
    problems.push({ pointer: '/holidays', message: `at most ${MAX_HOLIDAYS} holidays` });
    return;
  }
  // One-off holidays key on the date, yearly ones on month and day; two on the same key clash
  // when their hours overlap (a whole day overlaps everything).
  const seen = new Map<string, { index: number; from: number; to: number }[]>();
  holidays.forEach((holiday: unknown, index) => {
    const at = `/holidays/${index}`;
    if (!isRecord(holiday)) {
      problems.push({ pointer: at, message: 'must be an object with name, date, yearly, start and end' });
      return;
    }
    let fine = true;
    if (
      typeof holiday.name !== 'string' ||
      holiday.name.trim() === '' ||
      holiday.name.length > MAX_HOLIDAY_NAME
    ) {
      problems.push({
        pointer: `${at}/name`,
        message: `must be a non-empty name of at most ${MAX_HOLIDAY_NAME} characters`,
      });
      fine = false;
    }
    if (typeof holiday.yearly !== 'boolean') {
      problems.push({ pointer: `${at}/yearly`, message: 'must be true or false' });
      fine = false;
    }
    const date = parseDate(holiday.date);
    if (date === null) {
      problems.push({
        pointer: `${at}/date`,
        message: `must be a real date 'YYYY-MM-DD' between ${MIN_HOLIDAY_YEAR} and ${MAX_HOLIDAY_YEAR}`,
      });
      fine = false;
    }
    let from = 0;
    let to = MINUTES_PER_DAY;
    if (holiday.start === null && holiday.end === null) {
      // closed the whole day
    } else if (holiday.start === null || holiday.end === null) {
      const missing = holiday.start === null ? 'start' : 'end';
      problems.push({
        pointer: `${at}/${missing}`,
        message: 'start and end are both null (closed all day) or both local times',
      });
      fine = false;
    } else {
      const start = parseTime(holiday.start);
      const end = parseEndTime(holiday.end);
      if (start === null) {
        problems.push({
          pointer: `${at}/start`,
          message: "must be a local time 'HH:MM' from 00:00 to 23:59, or null",
        });
        fine = false;
      }
      if (end === null) {
        problems.push({ pointer: `${at}/end`, message: "must be a local time 'HH:MM' up to 24:00, or null" });
        fine = false;
      }
      if (start !== null && end !== null) {
        if (end <= start) {
          problems.push({
            pointer: `${at}/end`,
            message:
              'must be after start: a holiday covers one local date (use 24:00 for the end of the day)',
          });
          fine = false;
        }
        from = start;
        to = end;
      }
    }
    if (!fine || date === null) return;
    const key = holiday.yearly
      ? `yearly ${String(date.month).padStart(2, '0')}-${String(date.day).padStart(2, '0')}`
      : `once ${date.epochDay}`;
    const others = seen.get(key) ?? [];
    const clash = others.find((other) => other.from < to && from < other.to);
    if (clash) {
      problems.push({
        pointer: at,
        message: `duplicates /holidays/${clash.index} (same date, overlapping hours)`,
      });
      return;
    }
    others.push({ index, from, to });
    seen.set(key, others);
  });
}

/** Problems that make a definition unusable: unknown zone, bad times, overlapping intervals, bad dates. [] when fine. */
export function checkCalendar(def: CalendarDefinition): CalendarProblem[] {
  const problems: CalendarProblem[] = [];
  if (!isRecord(def))
    return [{ pointer: '', message: 'must be an object with time_zone, intervals and holidays' }];
  if (canonicalTimeZone(def.time_zone) === null) {
    problems.push({ pointer: '/time_zone', message: 'must be a known IANA time zone such as Europe/Prague' });
  }
  checkIntervals(def.intervals, problems);
  checkHolidays(def.holidays, problems);
  return problems;
}
