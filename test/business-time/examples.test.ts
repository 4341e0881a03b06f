// Named cases of business time, each checked against instants written out in the local zone:
// DST days in both directions, intervals inside the gap and across the fold, the weekend and a
// holiday in the way of an SLA, zones with odd offsets, Feb 29, calendars that never open.

import t from 'tap';
import { Temporal } from 'temporal-polyfill';
import {
  ALWAYS_OPEN,
  type CalendarDefinition,
  compileCalendar,
  HORIZON_DAYS,
  type Holiday,
  WEEKDAYS,
  type WeeklyInterval,
} from '../../src/business-time/index.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Epoch ms of a local date-time with its offset spelled out, e.g. '2026-10-25T02:30+02:00[Europe/Prague]'. */
const at = (zoned: string) => Temporal.ZonedDateTime.from(zoned).epochMilliseconds;
const utc = (iso: string) => Date.parse(iso);
const local = (ms: number | null, zone: string) =>
  ms === null ? null : Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone).toString();

const everyDay = (start: string, end: string): WeeklyInterval[] =>
  WEEKDAYS.map((day) => ({ day, start, end }));
const weekdays = (start: string, end: string): WeeklyInterval[] =>
  WEEKDAYS.slice(0, 5).map((day) => ({ day, start, end }));
const calendar = (time_zone: string, intervals: WeeklyInterval[], holidays: Holiday[] = []) =>
  compileCalendar({ time_zone, intervals, holidays });
const dayOff = (date: string, yearly = false): Holiday => ({
  name: 'Holiday',
  date,
  yearly,
  start: null,
  end: null,
});

t.test('Europe/Prague spring forward (2026-03-29): the day loses the hour 02:00-03:00', async (t) => {
  const zone = 'Europe/Prague';
  const cal = calendar(zone, [{ day: 'sunday', start: '01:00', end: '04:00' }]);
  const dayStart = at('2026-03-29T00:00+01:00[Europe/Prague]');
  const dayEnd = at('2026-03-30T00:00+02:00[Europe/Prague]');
  t.equal(cal.businessMinutesBetween(dayStart, dayEnd), 120, 'three wall-clock hours, two of them real');
  t.equal(
    local(cal.addBusinessMinutes(at('2026-03-29T01:30+01:00[Europe/Prague]'), 60), zone),
    '2026-03-29T03:30:00+02:00[Europe/Prague]',
    '01:30 + 60 business minutes is 03:30 summer time',
  );
  t.equal(cal.nextChange(dayStart), at('2026-03-29T01:00+01:00[Europe/Prague]'), 'opens at 01:00');
  t.equal(
    cal.nextChange(dayStart + HOUR),
    at('2026-03-29T04:00+02:00[Europe/Prague]'),
    'no change in the gap',
  );
  t.equal(
    cal.businessMinutesBetween(dayStart - 7 * 24 * HOUR, dayEnd - 7 * 24 * HOUR),
    180,
    'a week before: 3 h',
  );
});

t.test('Europe/Prague fall back (2026-10-25): the hour 02:00-03:00 happens twice', async (t) => {
  const zone = 'Europe/Prague';
  const cal = calendar(zone, [{ day: 'sunday', start: '01:00', end: '04:00' }]);
  const dayStart = at('2026-10-25T00:00+02:00[Europe/Prague]');
  const dayEnd = at('2026-10-26T00:00+01:00[Europe/Prague]');
  t.equal(cal.businessMinutesBetween(dayStart, dayEnd), 240, 'three wall-clock hours, four real');
  t.equal(
    local(cal.addBusinessMinutes(at('2026-10-25T01:30+02:00[Europe/Prague]'), 120), zone),
    '2026-10-25T02:30:00+01:00[Europe/Prague]',
    '01:30 summer time + 2 h is the second 02:30',
  );
  t.equal(
    cal.nextChange(at('2026-10-25T01:30+02:00[Europe/Prague]')),
    at('2026-10-25T04:00+01:00[Europe/Prague]'),
  );
});

t.test('America/New_York spring forward (2026-03-08) and fall back (2026-11-01)', async (t) => {
  const zone = 'America/New_York';
  const cal = calendar(zone, everyDay('00:00', '24:00'), []);
  // Round the clock is one open stretch: no change at midnight or at the transition.
  t.equal(cal.nextChange(at('2026-03-08T01:00-05:00[America/New_York]')), null, 'never closes');
  const day = calendar(zone, [
    { day: 'sunday', start: '00:00', end: '24:00' },
    { day: 'saturday', start: '09:00', end: '10:00' },
  ]);
  const march8 = at('2026-03-08T00:00-05:00[America/New_York]');
  const march9 = at('2026-03-09T00:00-04:00[America/New_York]');
  t.equal(day.businessMinutesBetween(march8, march9), 23 * 60, 'a 23-hour Sunday');
  const nov1 = at('2026-11-01T00:00-04:00[America/New_York]');
  const nov2 = at('2026-11-02T00:00-05:00[America/New_York]');
  t.equal(day.businessMinutesBetween(nov1, nov2), 25 * 60, 'a 25-hour Sunday');
  t.equal(
    local(day.addBusinessMinutes(nov1, 24 * 60), zone),
    '2026-11-01T23:00:00-05:00[America/New_York]',
    '24 business hours from midnight end at 23:00 on the long day',
  );
  t.equal(
    local(day.addBusinessMinutes(march8, 23 * 60 + 30), zone),
    '2026-03-14T09:30:00-04:00[America/New_York]',
    'a full short Sunday used up, the rest starts on Saturday morning',
  );
  const gap = calendar(zone, [{ day: 'sunday', start: '02:00', end: '03:00' }]);
  t.equal(gap.businessMinutesBetween(march8, march9), 0, '02:00-03:00 never happens on 2026-03-08');
  const fold = calendar(zone, [{ day: 'sunday', start: '01:00', end: '02:00' }]);
  t.equal(fold.businessMinutesBetween(nov1, nov2), 120, '01:00-02:00 happens twice on 2026-11-01');
});

t.test('an interval inside the gap is closed that day and open on other Sundays', async (t) => {
  const zone = 'Europe/Prague';
  const cal = calendar(zone, [{ day: 'sunday', start: '02:15', end: '02:45' }]);
  t.equal(cal.isOpen(utc('2026-03-29T01:30:00Z')), false, '03:30 summer time, right after the gap');
  t.equal(
    local(cal.nextChange(at('2026-03-28T12:00+01:00[Europe/Prague]')), zone),
    '2026-04-05T02:15:00+02:00[Europe/Prague]',
    'the next opening is a week later',
  );
  t.equal(
    local(cal.addBusinessMinutes(at('2026-03-28T12:00+01:00[Europe/Prague]'), 10), zone),
    '2026-04-05T02:25:00+02:00[Europe/Prague]',
  );
  t.equal(
    cal.businessMinutesBetween(
      at('2026-03-22T00:00+01:00[Europe/Prague]'),
      at('2026-04-06T00:00+02:00[Europe/Prague]'),
    ),
    60,
    'three Sundays, one of them without the interval',
  );
});

t.test('an interval across the fold is open twice', async (t) => {
  const zone = 'Europe/Prague';
  const cal = calendar(zone, [{ day: 'sunday', start: '02:30', end: '02:45' }]);
  const first = at('2026-10-25T02:30+02:00[Europe/Prague]');
  const second = at('2026-10-25T02:30+01:00[Europe/Prague]');
  t.equal(second - first, HOUR);
  t.equal(cal.isOpen(first + 5 * MINUTE), true, 'first 02:35');
  t.equal(cal.isOpen(first + 30 * MINUTE), false, 'between the two');
  t.equal(cal.isOpen(second + 5 * MINUTE), true, 'second 02:35');
  t.equal(cal.nextChange(first), first + 15 * MINUTE);
  t.equal(cal.nextChange(first + 15 * MINUTE), second);
  t.equal(
    cal.addBusinessMinutes(first + 10 * MINUTE, 10),
    second + 5 * MINUTE,
    'carries over to the second 02:30',
  );
  t.equal(cal.businessMinutesBetween(first - HOUR, second + HOUR), 30);
  const across = calendar(zone, [{ day: 'sunday', start: '01:30', end: '03:30' }]);
  t.equal(
    across.businessMinutesBetween(
      at('2026-10-25T00:00+02:00[Europe/Prague]'),
      at('2026-10-26T00:00+01:00[Europe/Prague]'),
    ),
    180,
    'two wall-clock hours across the fold are three real hours',
  );
});

t.test('Friday 17:55, Mon-Fri 08:00-18:00, 60 business minutes', async (t) => {
  const zone = 'Europe/Prague';
  const friday = at('2026-12-04T17:55+01:00[Europe/Prague]');
  const cal = calendar(zone, weekdays('08:00', '18:00'));
  t.equal(
    local(cal.addBusinessMinutes(friday, 60), zone),
    '2026-12-07T08:55:00+01:00[Europe/Prague]',
    'Monday 08:55',
  );
  t.equal(cal.businessMinutesBetween(friday, at('2026-12-07T08:55+01:00[Europe/Prague]')), 60);
  t.equal(cal.nextChange(friday), at('2026-12-04T18:00+01:00[Europe/Prague]'), 'closes at 18:00');
  t.equal(
    cal.nextChange(at('2026-12-04T18:00+01:00[Europe/Prague]')),
    at('2026-12-07T08:00+01:00[Europe/Prague]'),
  );
  t.equal(
    cal.addBusinessMinutes(friday, 5),
    at('2026-12-04T18:00+01:00[Europe/Prague]'),
    'exactly at closing',
  );
  const withHoliday = calendar(zone, weekdays('08:00', '18:00'), [dayOff('2026-12-07')]);
  t.equal(
    local(withHoliday.addBusinessMinutes(friday, 60), zone),
    '2026-12-08T08:55:00+01:00[Europe/Prague]',
    'a holiday on Monday moves it to Tuesday 08:55',
  );
  const halfDay = calendar(zone, weekdays('08:00', '18:00'), [
    { name: 'Staff meeting', date: '2026-12-07', yearly: false, start: '08:00', end: '12:00' },
  ]);
  t.equal(local(halfDay.addBusinessMinutes(friday, 60), zone), '2026-12-07T12:55:00+01:00[Europe/Prague]');
});

t.test('split shifts and overnight intervals', async (t) => {
  const zone = 'Europe/Prague';
  const split = calendar(zone, [
    ...weekdays('08:00', '12:00'),
    ...weekdays('13:00', '18:00'),
    { day: 'saturday', start: '09:00', end: '13:00' },
  ]);
  const monday = at('2026-12-07T11:30+01:00[Europe/Prague]');
  t.equal(
    split.addBusinessMinutes(monday, 60),
    at('2026-12-07T13:30+01:00[Europe/Prague]'),
    'skips the lunch break',
  );
  t.equal(
    split.businessMinutesBetween(
      at('2026-12-07T00:00+01:00[Europe/Prague]'),
      at('2026-12-14T00:00+01:00[Europe/Prague]'),
    ),
    5 * 540 + 240,
  );
  const night = calendar(zone, [{ day: 'friday', start: '22:00', end: '06:00' }], [dayOff('2026-12-12')]);
  t.equal(
    night.isOpen(at('2026-12-05T03:00+01:00[Europe/Prague]')),
    true,
    "Saturday 03:00 is Friday's shift",
  );
  t.equal(night.isOpen(at('2026-12-05T06:00+01:00[Europe/Prague]')), false, 'closed at 06:00');
  t.equal(
    night.isOpen(at('2026-12-12T03:00+01:00[Europe/Prague]')),
    false,
    'a holiday on Saturday closes the tail',
  );
  t.equal(
    night.nextChange(at('2026-12-11T23:00+01:00[Europe/Prague]')),
    at('2026-12-12T00:00+01:00[Europe/Prague]'),
  );
  const sunday = calendar(zone, [
    { day: 'sunday', start: '20:00', end: '02:00' },
    { day: 'monday', start: '02:00', end: '04:00' },
  ]);
  t.equal(
    sunday.nextChange(at('2026-12-06T21:00+01:00[Europe/Prague]')),
    at('2026-12-07T04:00+01:00[Europe/Prague]'),
    "Sunday's night shift runs on into Monday's without a change",
  );
  const endsAtMidnight = calendar(zone, [{ day: 'monday', start: '20:00', end: '00:00' }]);
  t.equal(
    endsAtMidnight.businessMinutesBetween(
      at('2026-12-07T00:00+01:00[Europe/Prague]'),
      at('2026-12-09T00:00+01:00[Europe/Prague]'),
    ),
    240,
    "end '00:00' is midnight",
  );
});

t.test('Asia/Kathmandu (+05:45) and America/St_Johns (-03:30)', async (t) => {
  const kathmandu = calendar('Asia/Kathmandu', weekdays('09:00', '17:00'));
  t.equal(kathmandu.isOpen(utc('2026-12-07T03:15:00Z')), true, '09:00 local is 03:15 UTC');
  t.equal(kathmandu.isOpen(utc('2026-12-07T03:14:59.999Z')), false);
  t.equal(kathmandu.nextChange(utc('2026-12-07T00:00:00Z')), utc('2026-12-07T03:15:00Z'));
  t.equal(
    local(kathmandu.addBusinessMinutes(at('2026-12-04T16:30+05:45[Asia/Kathmandu]'), 60), 'Asia/Kathmandu'),
    '2026-12-07T09:30:00+05:45[Asia/Kathmandu]',
  );
  const stJohns = calendar('America/St_Johns', weekdays('09:00', '17:00'));
  t.equal(
    stJohns.nextChange(utc('2026-12-02T12:00:00Z')),
    utc('2026-12-02T12:30:00Z'),
    '09:00 NST is 12:30 UTC',
  );
  t.equal(
    stJohns.nextChange(utc('2026-07-01T12:00:00Z')),
    utc('2026-07-01T19:30:00Z'),
    '17:00 NDT is 19:30 UTC',
  );
  t.equal(stJohns.isOpen(utc('2026-07-01T11:29:00Z')), false, '08:59 NDT');
  t.equal(stJohns.isOpen(utc('2026-07-01T11:30:00Z')), true, '09:00 NDT');
});

t.test('Australia/Lord_Howe moves its clock by 30 minutes', async (t) => {
  const zone = 'Australia/Lord_Howe';
  const cal = calendar(zone, [{ day: 'sunday', start: '01:00', end: '03:00' }]);
  // DST starts on the first Sunday of October: 02:00 becomes 02:30.
  const start = at('2026-10-04T00:00+10:30[Australia/Lord_Howe]');
  t.equal(cal.businessMinutesBetween(start, start + 24 * HOUR), 90);
  // DST ends on the first Sunday of April: 02:00 goes back to 01:30.
  const end = at('2026-04-05T00:00+11:00[Australia/Lord_Howe]');
  t.equal(cal.businessMinutesBetween(end, end + 24 * HOUR), 150);
});

t.test('a yearly holiday on Feb 29 closes only leap years', async (t) => {
  const cal = calendar('UTC', everyDay('00:00', '24:00'), [dayOff('2024-02-29', true)]);
  const minutes = (from: string, to: string) => cal.businessMinutesBetween(utc(from), utc(to));
  t.equal(minutes('2027-02-27T00:00Z', '2027-03-03T00:00Z'), 4 * 1440, '2027 has no Feb 29');
  t.equal(minutes('2028-02-27T00:00Z', '2028-03-03T00:00Z'), 4 * 1440, '2028: five days, one closed');
  t.equal(cal.isOpen(utc('2028-02-29T12:00Z')), false);
  t.equal(cal.nextChange(utc('2028-02-28T12:00Z')), utc('2028-02-29T00:00Z'));
  t.equal(cal.nextChange(utc('2028-02-29T00:00Z')), utc('2028-03-01T00:00Z'));
  const yearly = calendar('Europe/Prague', everyDay('08:00', '16:00'), [dayOff('2020-12-24', true)]);
  t.equal(yearly.isOpen(at('2031-12-24T10:00+01:00[Europe/Prague]')), false, 'a yearly holiday repeats');
  t.equal(yearly.isOpen(at('2031-12-23T10:00+01:00[Europe/Prague]')), true);
});

t.test('a calendar that never opens', async (t) => {
  const empty = calendar('Europe/Prague', []);
  const now = utc('2026-12-04T10:00Z');
  t.equal(empty.isOpen(now), false);
  t.equal(empty.nextChange(now), null);
  t.equal(empty.addBusinessMinutes(now, 60), null);
  t.equal(empty.addBusinessMinutes(now, 0), now, '0 minutes returns from');
  t.equal(empty.businessMinutesBetween(now, now + 365 * 24 * HOUR), 0);
  // Every date of the year a yearly holiday: intervals, yet never open.
  const holidays: Holiday[] = [];
  for (let d = Temporal.PlainDate.from('2024-01-01'); d.year === 2024; d = d.add({ days: 1 })) {
    holidays.push(dayOff(d.toString(), true));
  }
  const closed = calendar('Europe/Prague', weekdays('08:00', '18:00'), holidays);
  const started = performance.now();
  t.equal(closed.isOpen(now), false);
  t.equal(closed.nextChange(now), null, 'no change within the horizon');
  t.equal(closed.addBusinessMinutes(now, 1), null, 'never reached');
  t.ok(performance.now() - started < 5000, 'the search stops at the horizon');
  // Open once a year is beyond reach for a long target, within reach for a short one.
  const rare = calendar('UTC', [{ day: 'monday', start: '10:00', end: '11:00' }], []);
  t.equal(rare.addBusinessMinutes(now, 60 * 104), utc('2028-11-27T11:00Z'), 'within the horizon');
  t.equal(rare.addBusinessMinutes(now, 60 * 110), null, `beyond ${HORIZON_DAYS} days`);
});

t.test('ALWAYS_OPEN is open at every instant', async (t) => {
  const now = utc('2026-03-29T01:30Z');
  t.equal(ALWAYS_OPEN.isOpen(now), true);
  t.equal(ALWAYS_OPEN.nextChange(now), null);
  t.equal(ALWAYS_OPEN.addBusinessMinutes(now, 90), now + 90 * MINUTE);
  t.equal(ALWAYS_OPEN.businessMinutesBetween(now, now + 90 * MINUTE + 30_000), 90.5);
  t.equal(ALWAYS_OPEN.businessMinutesBetween(now, now - 1), 0);
});

t.test('calendars refuse instants that are not numbers', async (t) => {
  const cal = calendar('UTC', everyDay('08:00', '16:00'));
  t.throws(() => cal.isOpen(Number.NaN), RangeError);
  t.throws(() => cal.addBusinessMinutes(0, -1), RangeError);
  t.throws(() => ALWAYS_OPEN.addBusinessMinutes(0, Number.NaN), RangeError);
  const def: CalendarDefinition = { time_zone: 'europe/prague', intervals: [], holidays: [] };
  t.equal(compileCalendar(def).timeZone, 'Europe/Prague', 'the zone name is canonical');
});
