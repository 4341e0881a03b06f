import type { Transaction } from 'kysely';
import { type Principal, requireAdmin } from '../../access/policy.ts';
import {
  type CalendarDefinition,
  canonicalTimeZone,
  checkCalendar,
  type Holiday,
  MAX_HOLIDAYS,
  type WeeklyInterval,
} from '../../business-time/index.ts';
import type { Db } from '../../db/database.ts';
import type { Database } from '../../db/types.ts';
import { DomainError, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { departmentsUsingSchedule } from '../departments/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { replanForCalendars } from '../sla-policies/repository.ts';
import { parseHolidayCalendar } from './ics.ts';
import * as repo from './repository.ts';
import type { CreateScheduleInput, HolidayImportResult, Schedule, UpdateScheduleInput } from './schemas.ts';

type Trx = Transaction<Database>;
type HolidayInput = NonNullable<CreateScheduleInput['holidays']>[number];

const MAX_LISTED_ERRORS = 20;
const MAX_LISTED_DEPARTMENTS = 10;

function holidayOf(input: HolidayInput): Holiday {
  return {
    name: input.name,
    date: input.date,
    yearly: input.yearly ?? false,
    start: input.start ?? null,
    end: input.end ?? null,
  };
}

/** Temporal reads zone names in any case; the schedule keeps the IANA spelling (the check refuses unknown ones). */
const zoneOf = (name: string) => canonicalTimeZone(name) ?? name;

const intervalOf = (i: WeeklyInterval): WeeklyInterval => ({ day: i.day, start: i.start, end: i.end });

/** Refuses a definition business-time cannot use: 422, each problem pointing into the body. */
function assertUsable(def: CalendarDefinition, code = 'invalid_schedule') {
  const problems = checkCalendar(def);
  if (problems.length === 0) return;
  const first = problems[0]!;
  const more = problems.length - 1;
  const error = new DomainError(
    'unprocessable',
    code,
    `The schedule is not valid: body${first.pointer} ${first.message}${more > 0 ? ` (and ${more} more)` : ''}.`,
  );
  error.errors = problems
    .slice(0, MAX_LISTED_ERRORS)
    .map((p) => ({ field: `body${p.pointer}`, message: p.message }));
  throw error;
}

export async function getSchedule(db: Db, id: string): Promise<Schedule> {
  const schedule = await repo.findSchedule(db, id);
  if (!schedule) throw notFound('schedule');
  return schedule;
}

/** Clears the previous default (if another) so `id` may become it: one default at most. */
async function takeDefault(trx: Trx, principal: Principal, id: string | null) {
  await repo.lockDefaultSwitch(trx);
  const previous = await repo.lockOtherDefault(trx, id);
  if (!previous) return;
  await repo.clearDefault(trx, previous.id);
  const after = (await repo.findSchedule(trx, previous.id))!;
  await recordSettingsChange(
    trx,
    principal,
    'schedule.updated',
    { subjectId: previous.id },
    { schedule: after, changes: changesBetween(previous, after), reason: 'default_moved' },
  );
}

export async function createSchedule(
  db: Db,
  principal: Principal,
  input: CreateScheduleInput,
): Promise<Schedule> {
  requireAdmin(principal);
  const values: repo.ScheduleValues = {
    name: input.name.trim(),
    time_zone: zoneOf(input.time_zone),
    intervals: (input.intervals ?? []).map(intervalOf),
    holidays: (input.holidays ?? []).map(holidayOf),
    is_default: input.is_default ?? false,
  };
  assertUsable(values);
  return db.transaction().execute(async (trx) => {
    if (values.is_default) await takeDefault(trx, principal, null);
    const { id } = await repo.insertSchedule(trx, values);
    // A new default: the departments without a schedule of their own now follow it.
    if (values.is_default) await replanForCalendars(trx);
    const schedule = (await repo.findSchedule(trx, id))!;
    await recordSettingsChange(trx, principal, 'schedule.created', { subjectId: id }, { schedule });
    return schedule;
  });
}

/** What business time reads of a schedule: a change to one of them moves running SLA dues. */
const CALENDAR_FIELDS = ['time_zone', 'intervals', 'holidays', 'is_default'] as const;

/** Writes the schedule's new values under its lock and records what changed. */
async function rewrite(
  trx: Trx,
  principal: Principal,
  current: Schedule,
  values: repo.ScheduleValues,
  reason?: 'holidays_imported',
): Promise<Schedule> {
  if (values.is_default && !current.is_default) await takeDefault(trx, principal, current.id);
  const changes = changesBetween(current, { ...current, ...values });
  if (Object.keys(changes).length === 0) return current;
  await repo.updateSchedule(trx, current.id, values);
  if (CALENDAR_FIELDS.some((field) => field in changes)) await replanForCalendars(trx);
  const schedule = (await repo.findSchedule(trx, current.id))!;
  await recordSettingsChange(
    trx,
    principal,
    'schedule.updated',
    { subjectId: current.id },
    { schedule, changes, ...(reason && { reason }) },
  );
  return schedule;
}

const valuesOf = (s: Schedule): repo.ScheduleValues => ({
  name: s.name,
  time_zone: s.time_zone,
  intervals: s.intervals,
  holidays: s.holidays,
  is_default: s.is_default,
});

export async function updateSchedule(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: UpdateScheduleInput,
): Promise<Schedule> {
  requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    const current = await repo.lockSchedule(trx, id);
    if (!current) throw notFound('schedule');
    assertIfMatch(preconditions.ifMatch, current);
    const values: repo.ScheduleValues = {
      ...valuesOf(current),
      ...(patch.name !== undefined && { name: patch.name.trim() }),
      ...(patch.time_zone !== undefined && { time_zone: zoneOf(patch.time_zone) }),
      ...(patch.intervals !== undefined && { intervals: patch.intervals.map(intervalOf) }),
      ...(patch.holidays !== undefined && { holidays: patch.holidays.map(holidayOf) }),
      ...(patch.is_default !== undefined && { is_default: patch.is_default }),
    };
    assertUsable(values);
    return rewrite(trx, principal, current, values);
  });
}

/**
 * Deletes a schedule no department names (409 listing them otherwise). The default may go:
 * departments without a schedule of their own are then always open, as before any schedule.
 */
export async function deleteSchedule(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
): Promise<void> {
  requireAdmin(principal);
  await db.transaction().execute(async (trx) => {
    // FOR UPDATE conflicts with the key-share lock a department's foreign key check takes, so no
    // department can start naming the schedule between the count and the delete.
    const current = await repo.lockSchedule(trx, id);
    if (!current) throw notFound('schedule');
    assertIfMatch(preconditions.ifMatch, current);
    const users = await departmentsUsingSchedule(trx, id, MAX_LISTED_DEPARTMENTS);
    if (users.count > 0) {
      const listed = users.names.map((n) => `"${n}"`).join(', ');
      const error = new DomainError(
        'conflict',
        'schedule_in_use',
        `${users.count} department(s) follow this schedule (${listed}${users.count > users.names.length ? ', ...' : ''}). Give them another schedule first.`,
      );
      error.blockers = [
        { kind: 'departments', count: users.count, detail: `Departments using the schedule: ${listed}.` },
      ];
      throw error;
    }
    await repo.deleteScheduleRow(trx, id);
    // The default gone, departments without a schedule of their own are always open.
    if (current.is_default) await replanForCalendars(trx);
    await recordSettingsChange(trx, principal, 'schedule.deleted', { subjectId: id }, { schedule: current });
  });
}

/** Where a holiday sits as business time keys it: one-offs by date, yearly ones by month and day. */
const holidayKey = (h: Holiday) => (h.yearly ? `y|${h.date.slice(5)}` : `o|${h.date}`);
const minutes = (time: string) => Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
const rangeOf = (h: Holiday): [number, number] =>
  h.start === null || h.end === null ? [0, 1440] : [minutes(h.start), minutes(h.end)];

/** The closed hours kept per key, so overlapping holidays (which business time refuses) are skipped. */
class HolidayIndex {
  #ranges = new Map<string, [number, number][]>();
  add(h: Holiday) {
    const key = holidayKey(h);
    const list = this.#ranges.get(key) ?? [];
    list.push(rangeOf(h));
    this.#ranges.set(key, list);
  }
  overlaps(h: Holiday): boolean {
    const [from, to] = rangeOf(h);
    return (this.#ranges.get(holidayKey(h)) ?? []).some(([a, b]) => a < to && from < b);
  }
}

/**
 * Adds the holidays of an iCalendar file to a schedule (or replaces them with it). A holiday whose
 * hours the schedule already closes on that date (one-offs) or month and day (yearly ones) is
 * skipped, whatever its name, and so are repeats within the file: the import never makes
 * overlapping holidays, which business time would refuse.
 */
export async function importHolidays(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  text: string,
  mode: 'merge' | 'replace',
  now: Date = new Date(),
): Promise<HolidayImportResult> {
  requireAdmin(principal);
  const existing = await getSchedule(db, id);
  const imported = parseHolidayCalendar(text, existing.time_zone, now);
  return db.transaction().execute(async (trx) => {
    const current = await repo.lockSchedule(trx, id);
    if (!current) throw notFound('schedule');
    assertIfMatch(preconditions.ifMatch, current);
    const kept = mode === 'replace' ? [] : current.holidays;
    const index = new HolidayIndex();
    for (const holiday of kept) index.add(holiday);
    const holidays = [...kept];
    let added = 0;
    let skipped = 0;
    for (const holiday of imported) {
      if (index.overlaps(holiday)) {
        skipped++;
        continue;
      }
      index.add(holiday);
      holidays.push(holiday);
      added++;
    }
    holidays.sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
    const values = { ...valuesOf(current), holidays };
    if (holidays.length > MAX_HOLIDAYS) {
      throw new DomainError(
        'unprocessable',
        'too_many_holidays',
        `The schedule would have ${holidays.length} holidays; at most ${MAX_HOLIDAYS} are kept. Import fewer, or use mode=replace.`,
      );
    }
    assertUsable(values, 'invalid_calendar');
    const schedule = await rewrite(trx, principal, current, values, 'holidays_imported');
    return { schedule, added, skipped };
  });
}
