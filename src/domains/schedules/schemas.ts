import { type Static, Type } from 'typebox';
import { MAX_HOLIDAYS, MAX_INTERVALS, WEEKDAYS } from '../../business-time/index.ts';
import { DisplayName, ref, Timestamp, Uuid } from '../../contract.ts';

// Shapes only: the meaning (a real zone, real times and dates, no overlaps) is checked by
// business-time's checkCalendar and refused with 422 and JSON pointers, not 400.

export { MAX_HOLIDAYS, MAX_INTERVALS };

const Clock = (description: string) =>
  Type.String({ minLength: 1, maxLength: 5, description: `${description} Local wall-clock time HH:MM.` });

export const WeeklyIntervalSchema = Type.Object(
  {
    day: Type.Enum(WEEKDAYS, { description: 'The local weekday the interval starts on.' }),
    start: Clock('Opens.'),
    end: Clock('Closes; an end at or before the start runs past midnight into the next day.'),
  },
  {
    $id: 'WeeklyInterval',
    additionalProperties: false,
    examples: [{ day: 'monday', start: '08:00', end: '18:00' }],
  },
);

export const HolidaySchema = Type.Object(
  {
    name: Type.String({ maxLength: 200 }),
    date: Type.String({ minLength: 1, maxLength: 10, description: 'Local date YYYY-MM-DD.' }),
    yearly: Type.Boolean({ description: 'Repeats every year on that month and day.' }),
    start: Type.Union([Clock('Closed from (a partial day).'), Type.Null()]),
    end: Type.Union([Clock('Closed until (a partial day).'), Type.Null()]),
  },
  {
    $id: 'Holiday',
    additionalProperties: false,
    description: 'A local date closed whole (start and end null) or between two local times.',
  },
);

const HolidayInput = Type.Object(
  {
    name: Type.String({ maxLength: 200 }),
    date: Type.String({ minLength: 1, maxLength: 10, description: 'Local date YYYY-MM-DD.' }),
    yearly: Type.Optional(Type.Boolean({ default: false })),
    start: Type.Optional(Type.Union([Clock('Closed from (a partial day).'), Type.Null()])),
    end: Type.Optional(Type.Union([Clock('Closed until (a partial day).'), Type.Null()])),
  },
  { additionalProperties: false },
);

export const ScheduleSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String({ description: 'Unique, case-insensitive.' }),
    time_zone: Type.String({ description: 'IANA time zone the intervals and holidays are read in.' }),
    intervals: Type.Array(ref(WeeklyIntervalSchema)),
    holidays: Type.Array(ref(HolidaySchema)),
    is_default: Type.Boolean({
      description: 'The help desk’s default: departments without a schedule of their own follow it.',
    }),
    version: Type.Integer({ minimum: 1, description: 'Grows by one with every change.' }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'Schedule', additionalProperties: false },
);
export type Schedule = Static<typeof ScheduleSchema>;

const TimeZone = Type.String({
  minLength: 1,
  maxLength: 64,
  description: 'IANA time zone, e.g. Europe/Berlin.',
});
const Intervals = Type.Array(WeeklyIntervalSchema, { maxItems: MAX_INTERVALS });
const Holidays = Type.Array(HolidayInput, { maxItems: MAX_HOLIDAYS });

const example = {
  name: 'Berlin office',
  time_zone: 'Europe/Berlin',
  intervals: [
    { day: 'monday', start: '08:00', end: '12:00' },
    { day: 'monday', start: '13:00', end: '18:00' },
    { day: 'friday', start: '22:00', end: '06:00' },
  ],
  holidays: [
    { name: 'New Year', date: '2027-01-01', yearly: true },
    { name: 'Christmas Eve', date: '2026-12-24', yearly: true, start: '12:00', end: '18:00' },
  ],
  is_default: true,
};

export const CreateScheduleBody = Type.Object(
  {
    name: DisplayName('Schedule name, unique regardless of case; stored trimmed.'),
    time_zone: TimeZone,
    intervals: Type.Optional(Intervals),
    holidays: Type.Optional(Holidays),
    is_default: Type.Optional(Type.Boolean({ default: false })),
  },
  { additionalProperties: false, examples: [example] },
);
export type CreateScheduleInput = Static<typeof CreateScheduleBody>;

export const UpdateScheduleBody = Type.Object(
  {
    name: Type.Optional(DisplayName('Schedule name, unique regardless of case; stored trimmed.')),
    time_zone: Type.Optional(TimeZone),
    intervals: Type.Optional(Intervals),
    holidays: Type.Optional(Holidays),
    is_default: Type.Optional(
      Type.Boolean({ description: 'true moves the default here; false on the default leaves none.' }),
    ),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ holidays: [] }] },
);
export type UpdateScheduleInput = Static<typeof UpdateScheduleBody>;

export const ScheduleListQuery = {
  is_default: Type.Optional(Type.Boolean()),
};

export const ImportModeQuery = {
  mode: Type.Optional(
    Type.Union([Type.Literal('merge'), Type.Literal('replace')], {
      default: 'merge',
      description: 'merge adds the calendar’s holidays to those kept; replace keeps only the calendar’s.',
    }),
  ),
};

export const HolidayImportResultSchema = Type.Object(
  {
    schedule: ref(ScheduleSchema),
    added: Type.Integer({ minimum: 0, description: 'Holidays added from the calendar.' }),
    skipped: Type.Integer({
      minimum: 0,
      description: 'Holidays of the calendar the schedule already had (or that repeated one another).',
    }),
  },
  { $id: 'HolidayImportResult', additionalProperties: false },
);
export type HolidayImportResult = Static<typeof HolidayImportResultSchema>;
