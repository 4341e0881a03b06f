import ICAL from 'ical.js';
import { Temporal } from 'temporal-polyfill';
import { type Holiday, MAX_HOLIDAYS } from '../../business-time/index.ts';
import { DomainError } from '../../errors.ts';

// iCalendar (.ics, RFC 5545) to holidays in a schedule's zone, with ical.js for the parsing and
// the recurrence rules and Temporal for the zones. Pure: the caller gives the instant "now".
//
// - An all-day event closes each of its dates whole (DTEND is exclusive, as RFC 5545 says).
// - A timed event closes its hours, cut at local midnights of the schedule's zone, so one
//   running overnight closes the end of one date and the start of the next.
// - FREQ=YEARLY on the event's own month and day (no other BY parts, no COUNT, UNTIL or
//   INTERVAL) becomes a yearly holiday; every other recurrence is expanded, and so are
//   EXDATEs honoured, from one year back (business time of recent tickets) to three years ahead.
// - Times carry the zone of their TZID: the file's own VTIMEZONE when it has one (Windows or
//   custom names included), else the IANA zone of that name; floating times are read in the
//   schedule's zone, UTC times as UTC.

const LOOK_BACK_YEARS = 1;
const LOOK_AHEAD_YEARS = 3;
/** Recurrences that reach the window late (FREQ=DAILY since 1601) stop here, not at the horizon. */
const MAX_STEPS_PER_EVENT = 20_000;
const MAX_STEPS = 50_000;
/**
 * The largest INTERVAL per frequency: more than the years read, so a longer one repeats nothing
 * within them. ical.js steps a daily or weekly rule one day at a time INTERVAL times per
 * occurrence, so "FREQ=DAILY;INTERVAL=99999999999" held the process for hours.
 */
const MAX_INTERVAL: Record<string, number> = { DAILY: 1_500, WEEKLY: 220, MONTHLY: 50, YEARLY: 4 };
/**
 * The CPU time a file's recurrences may take to expand. With INTERVAL capped one step takes a few
 * milliseconds at most, but rules such as "FREQ=MONTHLY;BYDAY=1MO" from 1601 take 0.15 ms a step
 * for thousands of steps (0.75 s an event here), and a file may hold many: past this, 422.
 * Counted in this thread's CPU time, not wall time: on a busy machine the same file must not be
 * refused only because other work shared the CPUs meanwhile.
 */
const MAX_EXPANSION_MS = 1_000;

/** This thread's CPU time so far, in milliseconds. */
function threadCpuMs(): number {
  const { user, system } = process.threadCpuUsage();
  return (user + system) / 1000;
}
/**
 * Closed days (or parts of days) an import may describe before repeats are dropped. A few
 * thousand is a generous calendar; each costs Temporal arithmetic, so a file of a few bytes (an
 * event spanning centuries, a daily repeat lasting years) must not keep the server busy for long.
 */
const MAX_PIECES = 20_000;
/**
 * Offset changes a file's own VTIMEZONE may list up to the years an import reads. ical.js expands
 * every observance from its DTSTART (often 1601) on first use, so "RRULE:FREQ=DAILY" in a
 * STANDARD block costs 160,000 steps, seconds; real zones change a few times a year.
 */
const MAX_ZONE_CHANGES = 10_000;
/** ical.js expands zones this many years past the year asked for (its EXTRA_COVERAGE). */
const ZONE_COVERAGE_YEARS = ICAL.Timezone.EXTRA_COVERAGE;
/** A yearly holiday closes at most every day of a year. */
const MAX_YEARLY_DAYS = 366;
const MAX_NAME = 200;

const tooSlow = () =>
  invalidCalendar(
    `its recurrences take more than ${MAX_EXPANSION_MS / 1000} s to expand; start them nearer to today`,
  );

function invalidCalendar(reason: string): DomainError {
  const error = new DomainError(
    'unprocessable',
    'invalid_calendar',
    `The calendar could not be read: ${reason}`,
  );
  error.errors = [{ field: 'body', message: reason }];
  return error;
}

// The date and time fields as written (jCal keeps the text): 2027-02-30, 2027-03-01T25:00:00Z.
const WRITTEN_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}))?/;
const DATED_PROPERTIES = ['dtstart', 'dtend', 'rdate', 'exdate'];

/**
 * ical.js rolls impossible fields over (20270230 reads as March 2, T250000 as 01:00 the next
 * day), so a typing error would close another day without a word. A written field must be the
 * field it reads as; the JSON holidays refuse 2027-02-30 too.
 */
function assertRealTimes(vevent: ICAL.Component, name: string) {
  for (const property of DATED_PROPERTIES.flatMap((p) => vevent.getAllProperties(p))) {
    const written = property.jCal.slice(3);
    const read = property.getValues();
    written.forEach((text, i) => {
      const fields = typeof text === 'string' ? WRITTEN_TIME.exec(text) : null;
      const time = read[i];
      if (!fields || !(time instanceof ICAL.Time)) return;
      const [, year, month, day, hour = '00', minute = '00', second = '00'] = fields;
      const as = [time.year, time.month, time.day, time.hour, time.minute, time.second];
      if ([year, month, day, hour, minute, second].some((f, k) => Number(f) !== as[k])) {
        const ics = `${property.name.toUpperCase()}:${text.replace(/[-:]/g, '')}`;
        throw invalidCalendar(`the event "${name}" has ${ics}, a date or time that does not exist`);
      }
    });
  }
}

const pad = (n: number) => String(n).padStart(2, '0');
const hhmm = (t: Temporal.PlainTime) => `${pad(t.hour)}:${pad(t.minute)}`;

function plainDateTimeOf(time: ICAL.Time): Temporal.PlainDateTime {
  return new Temporal.PlainDateTime(time.year, time.month, time.day, time.hour, time.minute, time.second);
}

// Temporal also reads offsets and date-time strings as zones; a TZID must be a zone's name.
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

const isIanaZone = (name: string) => {
  if (!ZONE_NAME.test(name)) return false;
  try {
    Temporal.Now.instant().toZonedDateTimeISO(name);
    return true;
  } catch {
    return false;
  }
};

interface Reader {
  /** The instant of a date-time value of this event. */
  instant(time: ICAL.Time): Temporal.Instant;
  /** Read in a VTIMEZONE of the file, which ical.js expands up to the year asked for. */
  ownZone: boolean;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** The parts RFC 5545 does not allow with each frequency (its BYxxx table). */
const NOT_WITH: Record<string, string[]> = {
  DAILY: ['BYWEEKNO', 'BYYEARDAY'],
  WEEKLY: ['BYWEEKNO', 'BYYEARDAY', 'BYMONTHDAY'],
  MONTHLY: ['BYWEEKNO', 'BYYEARDAY'],
};

/**
 * Refuses a recurrence ical.js could search forever for: its iterator steps a daily (or finer)
 * rule one day at a time until the BY parts match, with no limit, so "FREQ=DAILY;BYMONTH=4;
 * BYMONTHDAY=31" or "FREQ=DAILY;BYWEEKNO=20;BYMONTH=1" never returns. Holidays repeat daily at
 * most; BY parts must be ones RFC 5545 allows with the frequency, and months and month days
 * must meet.
 */
function assertSearchable(rule: ICAL.Recur, where: string) {
  const freq = String(rule.freq);
  if (!['YEARLY', 'MONTHLY', 'WEEKLY', 'DAILY'].includes(freq)) {
    throw invalidCalendar(`${where} repeats ${freq.toLowerCase()}; holidays repeat daily at most`);
  }
  const interval = Number(rule.interval ?? 1);
  if (!Number.isInteger(interval) || interval < 1 || interval > MAX_INTERVAL[freq]!) {
    throw invalidCalendar(
      `${where} repeats with INTERVAL=${String(rule.interval)}; with FREQ=${freq} it must be a whole number from 1 to ${MAX_INTERVAL[freq]} (the import reads ${LOOK_BACK_YEARS + LOOK_AHEAD_YEARS} years)`,
    );
  }
  const parts = (rule.parts ?? {}) as Record<string, unknown[]>;
  for (const part of NOT_WITH[freq] ?? []) {
    if (parts[part]?.length)
      throw invalidCalendar(`${where} uses ${part} with FREQ=${freq}, which RFC 5545 does not allow`);
  }
  // A weekday with a position ("1MO", the first Monday) means something only within a month or year.
  if ((freq === 'DAILY' || freq === 'WEEKLY') && parts.BYDAY?.some((day) => /\d/.test(String(day)))) {
    throw invalidCalendar(
      `${where} numbers weekdays (BYDAY) with FREQ=${freq}, which RFC 5545 does not allow`,
    );
  }
  const monthDays = parts.BYMONTHDAY?.map(Number) ?? [];
  if (monthDays.length > 0) {
    const months = parts.BYMONTH?.length
      ? parts.BYMONTH.map(Number)
      : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    const fits = months.some((m) =>
      monthDays.some((d) => d !== 0 && Math.abs(d) <= (DAYS_IN_MONTH[m - 1] ?? 0)),
    );
    if (!fits) throw invalidCalendar(`${where} names month days its months never have`);
  }
}

/**
 * How many offset changes a VTIMEZONE lists up to `untilYear` (counting stops past `budget`),
 * walked with the recurrence iterator ical.js's own expansion uses, one step per change.
 */
function countZoneChanges(
  vtimezone: ICAL.Component,
  untilYear: number,
  budget: number,
  deadline: number,
): number {
  let changes = 0;
  for (const observance of vtimezone.getAllSubcomponents()) {
    const dtstart = observance.getFirstPropertyValue('dtstart') as ICAL.Time | null;
    changes += observance.getAllProperties('rdate').length + 1;
    if (!dtstart) continue;
    for (const property of observance.getAllProperties('rrule')) {
      const rule = property.getFirstValue() as ICAL.Recur;
      assertSearchable(rule, `the time zone "${vtimezone.getFirstPropertyValue('tzid')}"`);
      const iterator = rule.iterator(dtstart);
      for (let next = iterator.next(); next && next.year <= untilYear; next = iterator.next()) {
        if (++changes > budget) return changes;
        if (threadCpuMs() > deadline) throw tooSlow();
      }
    }
  }
  return changes;
}

function readerFor(
  property: ICAL.Property | null,
  zones: ReadonlyMap<string, ICAL.Timezone>,
  scheduleZone: string,
): Reader {
  const tzid = property?.getFirstParameter('tzid') ?? null;
  const own = tzid ? zones.get(tzid) : undefined;
  const iana = tzid && !own && isIanaZone(tzid) ? tzid : null;
  if (tzid && !own && !iana) throw invalidCalendar(`unknown time zone "${tzid}" (no VTIMEZONE for it)`);
  return {
    ownZone: own !== undefined,
    instant(time) {
      const local = plainDateTimeOf(time);
      if (time.zone?.tzid === 'UTC') return local.toZonedDateTime('UTC').toInstant();
      if (own) {
        const offsetSeconds = own.utcOffset(time);
        return local.toZonedDateTime('UTC').toInstant().subtract({ seconds: offsetSeconds });
      }
      return local.toZonedDateTime(iana ?? scheduleZone, { disambiguation: 'compatible' }).toInstant();
    },
  };
}

function nameOf(event: ICAL.Event): string {
  const summary = typeof event.summary === 'string' ? event.summary.trim() : '';
  return (summary || 'Holiday').slice(0, MAX_NAME);
}

/** The local dates and hours an instant range covers in the zone, cut at local midnights. */
function closedHours(
  name: string,
  from: Temporal.Instant,
  to: Temporal.Instant,
  zone: string,
  yearly: boolean,
): Holiday[] {
  const out: Holiday[] = [];
  let cursor = from.toZonedDateTimeISO(zone);
  const end = to.toZonedDateTimeISO(zone);
  while (Temporal.ZonedDateTime.compare(cursor, end) < 0) {
    const date = cursor.toPlainDate();
    const nextDay = date.add({ days: 1 }).toZonedDateTime({ timeZone: zone });
    const pieceEnd = Temporal.ZonedDateTime.compare(end, nextDay) < 0 ? end : nextDay;
    const start = hhmm(cursor.toPlainTime());
    const stop = pieceEnd === nextDay ? '24:00' : hhmm(pieceEnd.toPlainTime());
    if (start === '00:00' && stop === '24:00') {
      out.push({ name, date: date.toString(), yearly, start: null, end: null });
    } else if (stop > start) {
      out.push({ name, date: date.toString(), yearly, start, end: stop });
    }
    cursor = pieceEnd;
  }
  return out;
}

function wholeDays(name: string, first: Temporal.PlainDate, days: number, yearly: boolean): Holiday[] {
  const out: Holiday[] = [];
  for (let i = 0; i < days; i++) {
    const date = first.add({ days: i });
    // A yearly 29 February would not exist most years; business time would refuse it anyway.
    out.push({ name, date: date.toString(), yearly, start: null, end: null });
  }
  return out;
}

/** Whether the event repeats every year on its own month and day, and nothing else. */
function simplyYearly(vevent: ICAL.Component, start: ICAL.Time): boolean {
  const rrules = vevent.getAllProperties('rrule');
  if (rrules.length !== 1 || vevent.hasProperty('rdate') || vevent.hasProperty('exdate')) return false;
  const rule = rrules[0]!.getFirstValue() as ICAL.Recur;
  if (rule.freq !== 'YEARLY' || (rule.interval ?? 1) !== 1 || rule.count || rule.until) return false;
  const parts = (rule.parts ?? {}) as Record<string, unknown[]>;
  for (const [key, values] of Object.entries(parts)) {
    if (key === 'BYMONTH' && values.length === 1 && Number(values[0]) === start.month) continue;
    if (key === 'BYMONTHDAY' && values.length === 1 && Number(values[0]) === start.day) continue;
    return false;
  }
  return true;
}

/**
 * The holidays an iCalendar text describes, in the schedule's zone (see the notes above), or a
 * 422 invalid_calendar with the parser's reason.
 */
export function parseHolidayCalendar(text: string, scheduleZone: string, now: Date): Holiday[] {
  let root: ICAL.Component;
  try {
    const parsed = ICAL.parse(text);
    const jcal = Array.isArray(parsed[0]) ? parsed[0] : parsed;
    root = new ICAL.Component(jcal as unknown[]);
  } catch (error) {
    throw invalidCalendar(error instanceof Error ? error.message : String(error));
  }
  // An empty text parses to no component at all, so there may be no name to show.
  if (root.name !== 'vcalendar')
    throw invalidCalendar(
      typeof root.name === 'string' && root.name !== ''
        ? `expected a VCALENDAR, found ${root.name.toUpperCase()}`
        : 'expected a VCALENDAR, found nothing',
    );

  const today = Temporal.Instant.fromEpochMilliseconds(now.getTime())
    .toZonedDateTimeISO(scheduleZone)
    .toPlainDate();
  const windowStart = today.subtract({ years: LOOK_BACK_YEARS });
  const windowEnd = today.add({ years: LOOK_AHEAD_YEARS });
  const inWindow = (d: Temporal.PlainDate) =>
    Temporal.PlainDate.compare(d, windowStart) >= 0 && Temporal.PlainDate.compare(d, windowEnd) < 0;
  // One-off closures are cut to the window before they are split into days (the dates outside
  // would be dropped anyway), so an event spanning centuries costs no more than one in it.
  const windowFrom = windowStart.toZonedDateTime({ timeZone: scheduleZone }).toInstant();
  const windowTo = windowEnd.toZonedDateTime({ timeZone: scheduleZone }).toInstant();
  const later = (a: Temporal.Instant, b: Temporal.Instant) => (Temporal.Instant.compare(a, b) >= 0 ? a : b);
  const earlier = (a: Temporal.Instant, b: Temporal.Instant) => (Temporal.Instant.compare(a, b) <= 0 ? a : b);

  const out: Holiday[] = [];
  try {
    const deadline = threadCpuMs() + MAX_EXPANSION_MS;
    const zones = new Map<string, ICAL.Timezone>();
    // Times are read in a file's zone only for dates up to the window's end (a day of slack).
    const lastZoneYear = windowEnd.year + 1;
    let zoneChanges = 0;
    for (const vtimezone of root.getAllSubcomponents('vtimezone')) {
      const zone = new ICAL.Timezone(vtimezone);
      zoneChanges += countZoneChanges(
        vtimezone,
        lastZoneYear + ZONE_COVERAGE_YEARS,
        MAX_ZONE_CHANGES - zoneChanges,
        deadline,
      );
      if (zoneChanges > MAX_ZONE_CHANGES) {
        throw invalidCalendar(
          `the time zone "${zone.tzid}" changes its offset more than ${MAX_ZONE_CHANGES} times up to ${lastZoneYear + ZONE_COVERAGE_YEARS}`,
        );
      }
      if (zone.tzid) zones.set(zone.tzid, zone);
    }
    let steps = 0;
    for (const vevent of root.getAllSubcomponents('vevent')) {
      // A changed occurrence of a series (RECURRENCE-ID) is left to its series.
      if (vevent.hasProperty('recurrence-id')) continue;
      const event = new ICAL.Event(vevent);
      const start = event.startDate;
      if (!start) throw invalidCalendar('a VEVENT has no DTSTART');
      const name = nameOf(event);
      assertRealTimes(vevent, name);
      const allDay = start.isDate;
      const reader = allDay ? null : readerFor(vevent.getFirstProperty('dtstart'), zones, scheduleZone);
      const endTime = event.endDate;
      const lengthSeconds = endTime ? Math.max(0, endTime.subtractDate(start).toSeconds()) : 0;
      const holidaysAt = (occurrence: ICAL.Time, yearly: boolean): Holiday[] => {
        const pieces = holidayPieces(occurrence, yearly);
        if (out.length + pieces.length > MAX_PIECES) {
          throw new DomainError(
            'unprocessable',
            'too_many_holidays',
            `The calendar closes more than ${MAX_PIECES} days within the imported years; at most ${MAX_HOLIDAYS} holidays are kept.`,
          );
        }
        return pieces;
      };
      const holidayPieces = (occurrence: ICAL.Time, yearly: boolean): Holiday[] => {
        if (allDay) {
          const first = new Temporal.PlainDate(occurrence.year, occurrence.month, occurrence.day);
          const days = Math.max(1, Math.round(lengthSeconds / 86_400));
          if (yearly) return wholeDays(name, first, Math.min(days, MAX_YEARLY_DAYS), true);
          const last = first.add({ days });
          if (Temporal.PlainDate.compare(last, windowStart) <= 0) return [];
          if (Temporal.PlainDate.compare(first, windowEnd) >= 0) return [];
          const from = Temporal.PlainDate.compare(first, windowStart) < 0 ? windowStart : first;
          const to = Temporal.PlainDate.compare(last, windowEnd) > 0 ? windowEnd : last;
          return wholeDays(name, from, from.until(to).days, false);
        }
        const from = reader!.instant(occurrence);
        const seconds = yearly ? Math.min(lengthSeconds, MAX_YEARLY_DAYS * 86_400) : lengthSeconds;
        const to = from.add({ seconds });
        // Zero-length timed events close nothing.
        if (yearly) return closedHours(name, from, to, scheduleZone, true);
        return closedHours(name, later(from, windowFrom), earlier(to, windowTo), scheduleZone, false);
      };
      if (!event.isRecurring()) {
        // Starting after the window, it closes nothing kept (and a file's zone is not read there).
        const startDate = new Temporal.PlainDate(start.year, start.month, start.day);
        if (Temporal.PlainDate.compare(startDate, windowEnd) >= 0) continue;
        for (const h of holidaysAt(start, false)) if (inWindow(Temporal.PlainDate.from(h.date))) out.push(h);
        continue;
      }
      if (simplyYearly(vevent, start)) {
        if (reader?.ownZone && start.year > lastZoneYear) {
          throw invalidCalendar(
            `a yearly event in the file's own time zone starts after ${lastZoneYear}; start it within the next three years`,
          );
        }
        out.push(...holidaysAt(start, true));
        continue;
      }
      for (const property of vevent.getAllProperties('rrule')) {
        assertSearchable(property.getFirstValue() as ICAL.Recur, `the event "${name}"`);
      }
      const iterator = event.iterator();
      for (let n = 0; n < MAX_STEPS_PER_EVENT && steps < MAX_STEPS; n++, steps++) {
        if (threadCpuMs() > deadline) throw tooSlow();
        const occurrence = iterator.next();
        if (!occurrence) break;
        const date = new Temporal.PlainDate(occurrence.year, occurrence.month, occurrence.day);
        if (Temporal.PlainDate.compare(date, windowEnd) >= 0) break;
        if (Temporal.PlainDate.compare(date.add({ days: 2 }), windowStart) < 0) continue;
        for (const h of holidaysAt(occurrence, false))
          if (inWindow(Temporal.PlainDate.from(h.date))) out.push(h);
      }
    }
  } catch (error) {
    if (error instanceof DomainError) throw error;
    throw invalidCalendar(error instanceof Error ? error.message : String(error));
  }
  return out;
}
