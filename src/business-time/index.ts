// Business time: working-hours calendars in a time zone and business-minute arithmetic.
// Pure (no fastify, kysely, pino, no clock); everything about SLAs and availability builds on it.

export {
  ALWAYS_OPEN,
  type BusinessCalendar,
  CalendarDefinitionError,
  compileCalendar,
  HORIZON_DAYS,
} from './calendar.ts';
export {
  type CalendarDefinition,
  type CalendarProblem,
  canonicalTimeZone,
  checkCalendar,
  type Holiday,
  MAX_HOLIDAY_NAME,
  MAX_HOLIDAY_YEAR,
  MAX_HOLIDAYS,
  MAX_INTERVALS,
  MIN_HOLIDAY_YEAR,
  WEEKDAYS,
  type Weekday,
  type WeeklyInterval,
} from './definition.ts';
