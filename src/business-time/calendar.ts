// Compiled working-hours calendars: when a help desk is open, and business-minute arithmetic.
//
// The calendar is open at instant t when the wall clock of t in the zone falls inside a weekly
// interval and outside a holiday of that local date. Within a stretch of the time line where the
// zone's UTC offset is constant, the wall clock is t + offset, so the open instants there are
// the open local ranges shifted back by the offset: exact across DST gaps (a local hour that
// never happens) and folds (a local hour that happens twice). Temporal gives the offsets and the
// transitions; nothing here computes an offset by hand.
//
// Open spans are computed once per UTC day, as epoch ms, and cached in the compiled calendar, so
// adding or measuring business time over days is a loop of cheap lookups.

import { Temporal } from 'temporal-polyfill';
import {
  type CalendarDefinition,
  type CalendarProblem,
  canonicalTimeZone,
  checkCalendar,
  parseDate,
  parseEndTime,
  parseTime,
  WEEKDAYS,
} from './definition.ts';

export interface BusinessCalendar {
  readonly timeZone: string;
  isOpen(at: number /* epoch ms */): boolean;
  /** The next instant after `at` where isOpen changes, or null when it never changes within the search horizon (~2 years). */
  nextChange(at: number): number | null;
  /** The instant reached after `minutes` business minutes from `from`; null when the calendar never opens enough within the horizon. 0 minutes returns `from`. */
  addBusinessMinutes(from: number, minutes: number): number | null;
  /** Business minutes in [from, to) (fractional when not minute aligned); 0 when to <= from. */
  businessMinutesBetween(from: number, to: number): number;
}

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;
/** How far nextChange and addBusinessMinutes look ahead: two years and a leap day. */
export const HORIZON_DAYS = 731;
// A calendar queried at instants spread over decades must not grow without bound.
const MAX_CACHED_DAYS = 20_000;

/** Thrown by compileCalendar on a definition checkCalendar refuses. */
export class CalendarDefinitionError extends Error {
  readonly problems: CalendarProblem[];
  constructor(problems: CalendarProblem[]) {
    super(`invalid calendar: ${problems.map((p) => `${p.pointer} ${p.message}`).join('; ')}`);
    this.name = 'CalendarDefinitionError';
    this.problems = problems;
  }
}

/** Open spans of one UTC day: [start0, end0, start1, end1, ...] in epoch ms, sorted, disjoint. */
interface DaySpans {
  spans: number[];
  /** Sum of the spans' lengths in ms. */
  total: number;
}

type Range = [number, number];

function requireInstant(value: number, name: string): void {
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be a finite epoch ms, got ${value}`);
}

/** Removes `cuts` from sorted disjoint `ranges`. */
function subtract(ranges: Range[], cuts: Range[]): Range[] {
  if (cuts.length === 0) return ranges;
  let out = ranges;
  for (const [cs, ce] of cuts) {
    const next: Range[] = [];
    for (const [s, e] of out) {
      if (ce <= s || e <= cs) next.push([s, e]);
      else {
        if (s < cs) next.push([s, cs]);
        if (ce < e) next.push([ce, e]);
      }
    }
    out = next;
  }
  return out;
}

class CompiledCalendar implements BusinessCalendar {
  readonly timeZone: string;
  /** Per weekday (Monday = 0): [start, end) in minutes after local midnight; end may pass 1440. */
  readonly #week: Range[][];
  /** Holidays in minutes after local midnight, by days since 1970-01-01 and by month * 100 + day. */
  readonly #onceHolidays = new Map<number, Range[]>();
  readonly #yearlyHolidays = new Map<number, Range[]>();
  readonly #days = new Map<number, DaySpans>();
  readonly #neverOpen: boolean;

  constructor(def: CalendarDefinition) {
    this.timeZone = canonicalTimeZone(def.time_zone)!;
    this.#week = WEEKDAYS.map(() => []);
    for (const interval of def.intervals) {
      const start = parseTime(interval.start)!;
      const end = parseEndTime(interval.end)!;
      this.#week[WEEKDAYS.indexOf(interval.day)]!.push([start, end > start ? end : end + 1440]);
    }
    for (const day of this.#week) day.sort((a, b) => a[0] - b[0]);
    for (const holiday of def.holidays) {
      const date = parseDate(holiday.date)!;
      const range: Range =
        holiday.start === null ? [0, 1440] : [parseTime(holiday.start)!, parseEndTime(holiday.end)!];
      const [map, key] = holiday.yearly
        ? [this.#yearlyHolidays, date.month * 100 + date.day]
        : [this.#onceHolidays, date.epochDay];
      const list = map.get(key) ?? [];
      list.push(range);
      map.set(key, list);
    }
    this.#neverOpen = def.intervals.length === 0;
  }

  /** Holiday ranges of one local date, in local ms. */
  #holidayCuts(localDay: number, out: Range[]): void {
    const base = localDay * DAY_MS;
    const once = this.#onceHolidays.get(localDay);
    const date = new Date(base);
    const yearly = this.#yearlyHolidays.get((date.getUTCMonth() + 1) * 100 + date.getUTCDate());
    for (const list of [once, yearly]) {
      if (list) for (const [s, e] of list) out.push([base + s * MINUTE_MS, base + e * MINUTE_MS]);
    }
  }

  /**
   * Open ranges of wall-clock time within [from, to), as "local ms": the wall clock read as if
   * it were UTC. Pure calendar arithmetic on dates; no time zone involved.
   */
  #localOpen(from: number, to: number): Range[] {
    const firstDay = Math.floor(from / DAY_MS);
    const lastDay = Math.floor((to - 1) / DAY_MS);
    let ranges: Range[] = [];
    // The day before contributes the tails of its intervals that run past midnight.
    for (let day = firstDay - 1; day <= lastDay; day++) {
      const weekday = (((day + 3) % 7) + 7) % 7; // 1970-01-01 was a Thursday
      const base = day * DAY_MS;
      for (const [s, e] of this.#week[weekday]!) {
        const start = Math.max(base + s * MINUTE_MS, from);
        const end = Math.min(base + e * MINUTE_MS, to);
        if (start < end) ranges.push([start, end]);
      }
    }
    const cuts: Range[] = [];
    for (let day = firstDay; day <= lastDay; day++) this.#holidayCuts(day, cuts);
    ranges = subtract(ranges, cuts);
    return ranges;
  }

  #computeDay(day: number): DaySpans {
    const dayStart = day * DAY_MS;
    const dayEnd = dayStart + DAY_MS;
    const spans: number[] = [];
    let total = 0;
    const push = (s: number, e: number) => {
      total += e - s;
      // Spans that meet (at local midnight, at an offset change) are one open stretch: nextChange
      // must not see a change there.
      if (spans.length > 0 && spans[spans.length - 1] === s) spans[spans.length - 1] = e;
      else spans.push(s, e);
    };
    if (!this.#neverOpen) {
      let zoned = Temporal.Instant.fromEpochMilliseconds(dayStart).toZonedDateTimeISO(this.timeZone);
      let segmentStart = dayStart;
      while (segmentStart < dayEnd) {
        const offset = zoned.offsetNanoseconds / 1e6;
        const transition = zoned.getTimeZoneTransition('next');
        const segmentEnd = transition ? Math.min(transition.epochMilliseconds, dayEnd) : dayEnd;
        for (const [s, e] of this.#localOpen(segmentStart + offset, segmentEnd + offset)) {
          push(s - offset, e - offset);
        }
        if (!transition) break;
        zoned = transition;
        segmentStart = segmentEnd;
      }
    }
    return { spans, total };
  }

  #day(day: number): DaySpans {
    let spans = this.#days.get(day);
    if (spans === undefined) {
      if (this.#days.size >= MAX_CACHED_DAYS) this.#days.clear();
      spans = this.#computeDay(day);
      this.#days.set(day, spans);
    }
    return spans;
  }

  isOpen(at: number): boolean {
    requireInstant(at, 'at');
    const { spans } = this.#day(Math.floor(at / DAY_MS));
    for (let i = 0; i < spans.length; i += 2) {
      if (at < spans[i]!) return false;
      if (at < spans[i + 1]!) return true;
    }
    return false;
  }

  nextChange(at: number): number | null {
    requireInstant(at, 'at');
    if (this.#neverOpen) return null;
    const firstDay = Math.floor(at / DAY_MS);
    const open = this.isOpen(at);
    for (let day = firstDay; day <= firstDay + HORIZON_DAYS; day++) {
      const dayStart = day * DAY_MS;
      const { spans } = this.#day(day);
      if (open) {
        // The first end of an open stretch after `at`, unless it runs on into the next day.
        if (day > firstDay && (spans.length === 0 || spans[0]! > dayStart)) return dayStart;
        for (let i = 1; i < spans.length; i += 2) {
          const end = spans[i]!;
          if (end > at && end < dayStart + DAY_MS) return end;
        }
      } else {
        for (let i = 0; i < spans.length; i += 2) {
          if (spans[i]! > at) return spans[i]!;
        }
      }
    }
    return null;
  }

  addBusinessMinutes(from: number, minutes: number): number | null {
    requireInstant(from, 'from');
    if (!(minutes >= 0) || minutes === Number.POSITIVE_INFINITY) {
      throw new RangeError(`minutes must be a finite number >= 0, got ${minutes}`);
    }
    if (minutes === 0) return from;
    if (this.#neverOpen) return null;
    let left = minutes * MINUTE_MS;
    const firstDay = Math.floor(from / DAY_MS);
    for (let day = firstDay; day <= firstDay + HORIZON_DAYS; day++) {
      const { spans, total } = this.#day(day);
      if (day > firstDay && total < left) {
        left -= total;
        continue;
      }
      for (let i = 0; i < spans.length; i += 2) {
        const start = Math.max(spans[i]!, from);
        const end = spans[i + 1]!;
        if (end <= start) continue;
        if (end - start >= left) {
          const reached = start + left;
          return reached - from > HORIZON_DAYS * DAY_MS ? null : reached;
        }
        left -= end - start;
      }
    }
    return null;
  }

  businessMinutesBetween(from: number, to: number): number {
    requireInstant(from, 'from');
    requireInstant(to, 'to');
    if (to <= from || this.#neverOpen) return 0;
    const firstDay = Math.floor(from / DAY_MS);
    const lastDay = Math.floor(to / DAY_MS);
    let ms = 0;
    for (let day = firstDay; day <= lastDay; day++) {
      const { spans, total } = this.#day(day);
      if (day > firstDay && day < lastDay) {
        ms += total;
        continue;
      }
      for (let i = 0; i < spans.length; i += 2) {
        const start = Math.max(spans[i]!, from);
        const end = Math.min(spans[i + 1]!, to);
        if (start < end) ms += end - start;
      }
    }
    return ms / MINUTE_MS;
  }
}

/** Throws on a definition checkCalendar refuses. Compiled calendars cache per-day spans; keep one per (schedule id, version). */
export function compileCalendar(def: CalendarDefinition): BusinessCalendar {
  const problems = checkCalendar(def);
  if (problems.length > 0) throw new CalendarDefinitionError(problems);
  return new CompiledCalendar(def);
}

/** Open at every instant: what a help desk without any schedule uses. */
export const ALWAYS_OPEN: BusinessCalendar = Object.freeze({
  timeZone: 'UTC',
  isOpen(at: number): boolean {
    requireInstant(at, 'at');
    return true;
  },
  nextChange(at: number): number | null {
    requireInstant(at, 'at');
    return null;
  },
  addBusinessMinutes(from: number, minutes: number): number | null {
    requireInstant(from, 'from');
    if (!(minutes >= 0) || minutes === Number.POSITIVE_INFINITY) {
      throw new RangeError(`minutes must be a finite number >= 0, got ${minutes}`);
    }
    return from + minutes * MINUTE_MS;
  },
  businessMinutesBetween(from: number, to: number): number {
    requireInstant(from, 'from');
    requireInstant(to, 'to');
    return to <= from ? 0 : (to - from) / MINUTE_MS;
  },
});
