// The naive reading of BRIEF.md's semantics, for the property tests: ask Temporal for the wall
// clock of each minute and look the weekly intervals and holidays up directly. Slow on purpose and
// shares no code with src/business-time beyond the types. Valid at minute-aligned instants in
// zones whose offsets are whole minutes (all modern IANA zones).

import { Temporal } from 'temporal-polyfill';
import type { CalendarDefinition } from '../../src/business-time/index.ts';

export const MINUTE = 60_000;
const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** Whether the calendar is open during the minute starting at `at` (epoch ms, minute aligned). */
export function referenceIsOpen(def: CalendarDefinition, at: number): boolean {
  const wall = Temporal.Instant.fromEpochMilliseconds(at).toZonedDateTimeISO(def.time_zone);
  const now = wall.hour * 60 + wall.minute;
  const today = DAYS[wall.dayOfWeek - 1];
  const yesterday = DAYS[(wall.dayOfWeek + 5) % 7];
  const date = wall.toPlainDate().toString();
  for (const holiday of def.holidays) {
    const sameDay = holiday.yearly ? holiday.date.slice(5) === date.slice(5) : holiday.date === date;
    if (!sameDay) continue;
    if (holiday.start === null || holiday.end === null) return false;
    if (minutes(holiday.start) <= now && now < minutes(holiday.end)) return false;
  }
  for (const interval of def.intervals) {
    const start = minutes(interval.start);
    const end = minutes(interval.end); // '24:00' reads as 1440
    const overnight = end <= start;
    if (interval.day === today && start <= now && (overnight || now < end)) return true;
    if (interval.day === yesterday && overnight && now < end) return true;
  }
  return false;
}

/** The open state of each minute of [from, from + count minutes). */
export function referenceMinutes(def: CalendarDefinition, from: number, count: number): boolean[] {
  return Array.from({ length: count }, (_, i) => referenceIsOpen(def, from + i * MINUTE));
}
