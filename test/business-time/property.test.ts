// Random calendars in zones with awkward offsets and DST rules: every method of the compiled
// calendar must agree with the minute-by-minute reference in ./reference.ts over a window of
// days (often straddling a DST transition), and adding then measuring must give back the minutes.

import fc from 'fast-check';
import t from 'tap';
import { Temporal } from 'temporal-polyfill';
import {
  type CalendarDefinition,
  checkCalendar,
  compileCalendar,
  type Holiday,
  WEEKDAYS,
  type WeeklyInterval,
} from '../../src/business-time/index.ts';
import { checkProperty } from '../helpers/property.ts';
import { MINUTE, referenceMinutes } from './reference.ts';

/** Inside a property a failed check must throw, so fast-check can shrink and report. */
function expectSame(actual: unknown, expected: unknown, what: string): void {
  if (!Object.is(actual, expected)) {
    throw new Error(`${what}: got ${String(actual)}, expected ${String(expected)}`);
  }
}

const ZONES = [
  'Europe/Prague',
  'America/New_York',
  'Asia/Kathmandu',
  'America/St_Johns',
  'Australia/Lord_Howe',
  'UTC',
] as const;
const WINDOW_MINUTES = 6 * 1440;
const FIRST = Date.UTC(2024, 0, 1) / MINUTE;
const LAST = Date.UTC(2028, 11, 31) / MINUTE;

const hhmm = (m: number) =>
  m === 1440 ? '24:00' : `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

/** An end in minutes after the start day's midnight; midnight is spelled '00:00' or '24:00'. */
const endTime = (end: number, midnightAsZero: boolean) =>
  end === 1440 ? (midnightAsZero ? '00:00' : '24:00') : hhmm(end % 1440);

// Local times near the hours DST moves (01:00-03:00) and the usual office hours, mixed with any minute.
const minuteOfDay = fc.oneof(
  fc.integer({ min: 0, max: 1439 }),
  fc.constantFrom(0, 60, 90, 120, 135, 150, 180, 480, 720, 780, 1020, 1080, 1380),
);

const intervalSeeds = fc.array(
  fc.record({
    day: fc.constantFrom(...WEEKDAYS),
    start: minuteOfDay,
    length: fc.oneof(fc.integer({ min: 1, max: 1439 }), fc.constantFrom(30, 60, 240, 300, 540, 600)),
  }),
  { maxLength: 14 },
);

const holidaySeeds = fc.array(
  fc.record({
    dayOffset: fc.integer({ min: 0, max: 6 }),
    yearly: fc.boolean(),
    yearsBack: fc.integer({ min: 0, max: 3 }),
    partial: fc.boolean(),
    start: minuteOfDay,
    length: fc.integer({ min: 1, max: 600 }),
  }),
  { maxLength: 4 },
);

const windowSeed = fc.record({
  zone: fc.constantFrom(...ZONES),
  minute: fc.integer({ min: FIRST, max: LAST }),
  nearTransition: fc.boolean(),
  beforeTransition: fc.integer({ min: 0, max: 5 * 1440 }),
});

const querySeeds = fc.array(
  fc.record({
    k: fc.integer({ min: 0, max: WINDOW_MINUTES - 1 }),
    jitter: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MINUTE - 1 })),
    n: fc.oneof(fc.integer({ min: 0, max: 120 }), fc.integer({ min: 0, max: 4000 })),
    k2: fc.integer({ min: 0, max: WINDOW_MINUTES - 1 }),
    jitter2: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MINUTE - 1 })),
  }),
  { minLength: 25, maxLength: 25 },
);

type Seeds = {
  window: typeof windowSeed extends fc.Arbitrary<infer T> ? T : never;
  intervals: typeof intervalSeeds extends fc.Arbitrary<infer T> ? T : never;
  holidays: typeof holidaySeeds extends fc.Arbitrary<infer T> ? T : never;
};

/** Keeps each generated interval and holiday that checkCalendar accepts next to the ones kept so far. */
function build(seeds: Seeds): { def: CalendarDefinition; start: number } {
  const { zone, minute, nearTransition, beforeTransition } = seeds.window;
  let start = minute * MINUTE;
  if (nearTransition) {
    const next = Temporal.Instant.fromEpochMilliseconds(start)
      .toZonedDateTimeISO(zone)
      .getTimeZoneTransition('next');
    if (next) start = next.epochMilliseconds - beforeTransition * MINUTE;
  }
  const def: CalendarDefinition = { time_zone: zone, intervals: [], holidays: [] };
  for (const seed of seeds.intervals) {
    const interval: WeeklyInterval = {
      day: seed.day,
      start: hhmm(seed.start),
      end: endTime(seed.start + seed.length, seed.start % 2 === 0),
    };
    if (checkCalendar({ ...def, intervals: [...def.intervals, interval] }).length === 0)
      def.intervals.push(interval);
  }
  const firstLocalDate = Temporal.Instant.fromEpochMilliseconds(start).toZonedDateTimeISO(zone).toPlainDate();
  for (const [i, seed] of seeds.holidays.entries()) {
    let date = firstLocalDate.add({ days: seed.dayOffset });
    if (seed.yearly && !(date.month === 2 && date.day === 29))
      date = date.subtract({ years: seed.yearsBack });
    const holiday: Holiday = {
      name: `Holiday ${i}`,
      date: date.toString(),
      yearly: seed.yearly,
      start: seed.partial ? hhmm(seed.start) : null,
      end: seed.partial ? hhmm(Math.min(seed.start + seed.length, 1440)) : null,
    };
    if (checkCalendar({ ...def, holidays: [...def.holidays, holiday] }).length === 0)
      def.holidays.push(holiday);
  }
  return { def, start };
}

t.test('compiled calendars agree with the minute-by-minute reference', async (t) => {
  checkProperty(
    t,
    'isOpen, nextChange, addBusinessMinutes, businessMinutesBetween, round trip',
    fc.property(
      windowSeed,
      intervalSeeds,
      holidaySeeds,
      querySeeds,
      (window, intervals, holidays, queries) => {
        const { def, start } = build({ window, intervals, holidays });
        const calendar = compileCalendar(def);
        const open = referenceMinutes(def, start, WINDOW_MINUTES);
        const end = start + WINDOW_MINUTES * MINUTE;
        for (const { k, jitter, n, k2, jitter2 } of queries) {
          const from = start + k * MINUTE + jitter;
          expectSame(calendar.isOpen(from), open[k], `isOpen(${new Date(from).toISOString()})`);

          let change = k + 1;
          while (change < WINDOW_MINUTES && open[change] === open[k]) change++;
          const next = calendar.nextChange(from);
          if (change < WINDOW_MINUTES) {
            expectSame(next, start + change * MINUTE, `nextChange(${new Date(from).toISOString()})`);
          } else if (next !== null && next < end) {
            throw new Error(
              `nextChange(${new Date(from).toISOString()}) = ${next}, reference sees no change`,
            );
          }

          let expected: number | null = null;
          let left = n * MINUTE;
          if (n === 0) expected = from;
          for (let j = k; expected === null && j < WINDOW_MINUTES; j++) {
            if (!open[j]) continue;
            const begin = j === k ? from : start + j * MINUTE;
            const available = start + (j + 1) * MINUTE - begin;
            if (available >= left) expected = begin + left;
            else left -= available;
          }
          const reached = calendar.addBusinessMinutes(from, n);
          if (expected !== null)
            expectSame(reached, expected, `addBusinessMinutes(${new Date(from).toISOString()}, ${n})`);
          else if (reached !== null && reached < end) {
            throw new Error(
              `addBusinessMinutes(${from}, ${n}) = ${reached}, reference needs more than the window`,
            );
          }
          if (reached !== null) {
            expectSame(calendar.businessMinutesBetween(from, reached), n, `round trip from ${from} by ${n}`);
          }

          const to = start + k2 * MINUTE + jitter2;
          let ms = 0;
          for (let j = Math.min(k, k2); j <= Math.max(k, k2); j++) {
            if (!open[j]) continue;
            const overlap = Math.min(start + (j + 1) * MINUTE, to) - Math.max(start + j * MINUTE, from);
            if (overlap > 0) ms += overlap;
          }
          expectSame(calendar.businessMinutesBetween(from, to), ms / MINUTE, `between(${from}, ${to})`);
        }
      },
    ),
    { numRuns: 80 },
  );
});

t.test('adding then measuring gives back the minutes, over years and long durations', async (t) => {
  checkProperty(
    t,
    'between(from, add(from, n)) == n and add is monotonic in n',
    fc.property(
      windowSeed,
      intervalSeeds,
      holidaySeeds,
      fc.integer({ min: 0, max: 5 * 600 }),
      fc.integer({ min: 0, max: 5 * 600 }),
      (window, intervals, holidays, a, b) => {
        const { def, start } = build({ window, intervals, holidays });
        const calendar = compileCalendar(def);
        const [small, large] = a <= b ? [a, b] : [b, a];
        const first = calendar.addBusinessMinutes(start, small);
        const second = calendar.addBusinessMinutes(start, large);
        if (first === null) {
          expectSame(second, null, 'a longer duration cannot be reachable when a shorter is not');
          return;
        }
        expectSame(calendar.businessMinutesBetween(start, first), small, `round trip ${small}`);
        if (second !== null) {
          expectSame(calendar.businessMinutesBetween(start, second), large, `round trip ${large}`);
          expectSame(second >= first, true, 'monotonic');
          expectSame(calendar.businessMinutesBetween(first, second), large - small, 'difference');
        }
        // The instant reached is open just before it: business time was spent to get there.
        if (small > 0) expectSame(calendar.isOpen(first - 1), true, 'open just before the instant reached');
      },
    ),
    { numRuns: 300 },
  );
});
