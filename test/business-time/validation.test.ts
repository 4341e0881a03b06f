// checkCalendar, table-driven: each broken definition names the JSON pointer of what is wrong,
// and compileCalendar refuses what checkCalendar refuses.

import t from 'tap';
import {
  type CalendarDefinition,
  CalendarDefinitionError,
  checkCalendar,
  compileCalendar,
  type Holiday,
  type WeeklyInterval,
} from '../../src/business-time/index.ts';

const base: CalendarDefinition = {
  time_zone: 'Europe/Prague',
  intervals: [{ day: 'monday', start: '08:00', end: '18:00' }],
  holidays: [],
};
const day = (date: string, extra: Partial<Holiday> = {}): Holiday => ({
  name: 'Holiday',
  date,
  yearly: false,
  start: null,
  end: null,
  ...extra,
});
const iv = (d: WeeklyInterval['day'], start: string, end: string): WeeklyInterval => ({ day: d, start, end });

type Row = [name: string, patch: Partial<CalendarDefinition>, pointers: string[]];

const rows: Row[] = [
  ['a plain calendar is fine', {}, []],
  ['UTC is fine', { time_zone: 'UTC' }, []],
  ['round the clock is fine', { intervals: [iv('monday', '00:00', '24:00')] }, []],
  ['overnight ending at midnight is fine', { intervals: [iv('monday', '20:00', '00:00')] }, []],
  [
    'touching intervals are fine',
    { intervals: [iv('monday', '08:00', '12:00'), iv('monday', '12:00', '18:00')] },
    [],
  ],
  ['no intervals is fine (never open)', { intervals: [] }, []],
  ['unknown zone', { time_zone: 'Mars/Olympus_Mons' }, ['/time_zone']],
  ['offset zone is not IANA', { time_zone: '+05:00' }, ['/time_zone']],
  ['empty zone', { time_zone: '' }, ['/time_zone']],
  ['a date-time with a zone is not a zone', { time_zone: '2026-01-01T00:00[Europe/Prague]' }, ['/time_zone']],
  ['a UTC date-time is not a zone', { time_zone: '2026-01-01T00:00Z' }, ['/time_zone']],
  ['a zone name in lower case is fine', { time_zone: 'europe/prague' }, []],
  ['Etc/GMT-5 is fine', { time_zone: 'Etc/GMT-5' }, []],
  ['huge zone string', { time_zone: 'A'.repeat(10_000) }, ['/time_zone']],
  [
    'unknown weekday',
    { intervals: [{ day: 'funday' as never, start: '08:00', end: '09:00' }] },
    ['/intervals/0/day'],
  ],
  ['hour 24 as start', { intervals: [iv('monday', '24:00', '01:00')] }, ['/intervals/0/start']],
  ['24:30 as end', { intervals: [iv('monday', '08:00', '24:30')] }, ['/intervals/0/end']],
  ['one-digit hour', { intervals: [iv('monday', '8:00', '18:00')] }, ['/intervals/0/start']],
  ['minute 60', { intervals: [iv('monday', '08:60', '18:00')] }, ['/intervals/0/start']],
  ['seconds', { intervals: [iv('monday', '08:00:00', '18:00')] }, ['/intervals/0/start']],
  ['start equals end', { intervals: [iv('monday', '08:00', '08:00')] }, ['/intervals/0/end']],
  ['00:00 to 00:00', { intervals: [iv('monday', '00:00', '00:00')] }, ['/intervals/0/end']],
  [
    'overlapping on one day',
    { intervals: [iv('monday', '08:00', '12:00'), iv('monday', '11:59', '13:00')] },
    ['/intervals/1'],
  ],
  [
    'the same interval twice',
    { intervals: [iv('friday', '08:00', '12:00'), iv('friday', '08:00', '12:00')] },
    ['/intervals/1'],
  ],
  [
    "an overnight tail overlapping the next day's interval",
    { intervals: [iv('monday', '22:00', '06:00'), iv('tuesday', '05:00', '09:00')] },
    ['/intervals/1'],
  ],
  [
    "Sunday's overnight tail overlapping Monday",
    { intervals: [iv('monday', '00:30', '09:00'), iv('sunday', '23:00', '01:00')] },
    ['/intervals/1'],
  ],
  [
    "Sunday's tail touching Monday is fine",
    { intervals: [iv('monday', '01:00', '09:00'), iv('sunday', '23:00', '01:00')] },
    [],
  ],
  [
    'too many intervals',
    { intervals: Array.from({ length: 101 }, () => iv('monday', '08:00', '09:00')) },
    ['/intervals'],
  ],
  ['intervals not an array', { intervals: 'monday' as never }, ['/intervals']],
  ['a whole-day holiday is fine', { holidays: [day('2026-12-24')] }, []],
  ['a partial holiday is fine', { holidays: [day('2026-12-24', { start: '12:00', end: '24:00' })] }, []],
  ['Feb 29 in a leap year is fine', { holidays: [day('2028-02-29')] }, []],
  ['Feb 29 in another year', { holidays: [day('2027-02-29')] }, ['/holidays/0/date']],
  ['April 31', { holidays: [day('2026-04-31')] }, ['/holidays/0/date']],
  ['month 13', { holidays: [day('2026-13-01')] }, ['/holidays/0/date']],
  ['not a date', { holidays: [day('24.12.2026')] }, ['/holidays/0/date']],
  ['year 0099', { holidays: [day('0099-12-24')] }, ['/holidays/0/date']],
  ['only a start', { holidays: [day('2026-12-24', { start: '12:00' })] }, ['/holidays/0/end']],
  ['only an end', { holidays: [day('2026-12-24', { end: '12:00' })] }, ['/holidays/0/start']],
  [
    'end before start',
    { holidays: [day('2026-12-24', { start: '12:00', end: '10:00' })] },
    ['/holidays/0/end'],
  ],
  [
    'start equals end',
    { holidays: [day('2026-12-24', { start: '12:00', end: '12:00' })] },
    ['/holidays/0/end'],
  ],
  [
    'a partial holiday past midnight',
    { holidays: [day('2026-12-24', { start: '22:00', end: '02:00' })] },
    ['/holidays/0/end'],
  ],
  ['an empty name', { holidays: [day('2026-12-24', { name: ' ' })] }, ['/holidays/0/name']],
  ['a huge name', { holidays: [day('2026-12-24', { name: 'x'.repeat(201) })] }, ['/holidays/0/name']],
  ['the same date twice', { holidays: [day('2026-12-24'), day('2026-12-24')] }, ['/holidays/1']],
  [
    'a yearly date twice, different years',
    { holidays: [day('2024-12-24', { yearly: true }), day('2025-12-24', { yearly: true })] },
    ['/holidays/1'],
  ],
  [
    'overlapping hours on one date',
    {
      holidays: [
        day('2026-12-24', { start: '08:00', end: '12:00' }),
        day('2026-12-24', { start: '11:00', end: '13:00' }),
      ],
    },
    ['/holidays/1'],
  ],
  [
    'separate hours on one date are fine',
    {
      holidays: [
        day('2026-12-24', { start: '08:00', end: '12:00' }),
        day('2026-12-24', { start: '12:00', end: '13:00' }),
      ],
    },
    [],
  ],
  [
    'a one-off and a yearly on the same day are fine',
    { holidays: [day('2026-12-24'), day('2020-12-24', { yearly: true })] },
    [],
  ],
  [
    'too many holidays',
    {
      holidays: Array.from({ length: 401 }, (_, i) =>
        day(new Date(Date.UTC(2026, 0, 1 + i)).toISOString().slice(0, 10)),
      ),
    },
    ['/holidays'],
  ],
  [
    '400 holidays is fine',
    {
      holidays: Array.from({ length: 400 }, (_, i) =>
        day(new Date(Date.UTC(2026, 0, 1 + i)).toISOString().slice(0, 10)),
      ),
    },
    [],
  ],
  [
    'every problem is reported',
    {
      time_zone: 'Nowhere',
      intervals: [iv('monday', '08:00', '08:00')],
      holidays: [day('2026-02-30')],
    },
    ['/time_zone', '/intervals/0/end', '/holidays/0/date'],
  ],
];

for (const [name, patch, pointers] of rows) {
  t.test(name, async (t) => {
    const def = { ...base, ...patch };
    const problems = checkCalendar(def);
    t.same(
      problems.map((p) => p.pointer),
      pointers,
      'pointers',
    );
    for (const problem of problems) t.ok(problem.message.length > 0, `a message for ${problem.pointer}`);
    if (pointers.length === 0) {
      t.doesNotThrow(() => compileCalendar(def), 'compiles');
    } else {
      t.throws(() => compileCalendar(def), CalendarDefinitionError, 'compileCalendar refuses it');
    }
  });
}

t.test('garbage instead of a definition', async (t) => {
  t.same(
    checkCalendar(null as never).map((p) => p.pointer),
    [''],
  );
  t.same(
    checkCalendar({ time_zone: 'UTC', intervals: [null], holidays: [42] } as never).map((p) => p.pointer),
    ['/intervals/0', '/holidays/0'],
  );
});
