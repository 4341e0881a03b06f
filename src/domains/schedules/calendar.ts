import type { Kysely } from 'kysely';
import { ALWAYS_OPEN, type BusinessCalendar, compileCalendar } from '../../business-time/index.ts';
import type { ChannelAvailability, Database } from '../../db/types.ts';
import { calendarDefinitionOf, scheduleKeyFor, scheduleKeys } from './repository.ts';

// The compiled calendar a department follows, for ticket creation, rules and availability.
// Compiling is the costly part (a calendar caches its per-day spans as it is used), so each
// process keeps compiled calendars by (schedule id, version): a change to a schedule moves its
// version, the next look-up misses and compiles the new one; nothing else is invalidated.

export interface DepartmentCalendar {
  /** The schedule in force, or null: no schedule of its own and no default, always open. */
  scheduleId: string | null;
  calendar: BusinessCalendar;
}

const cache = new Map<string, BusinessCalendar>();
const CACHE_SIZE = 64;

const keyOf = (id: string, version: number) => `${id}@${version}`;

/** The schedule version each compiled calendar was compiled from. */
const versions = new WeakMap<BusinessCalendar, string>();

/**
 * The schedule version ("id@version") a calendar of this module was compiled from; null for
 * ALWAYS_OPEN (no schedule). The SLA clock compares it with the one its dues were computed in.
 */
export function calendarVersion(calendar: BusinessCalendar): string | null {
  return versions.get(calendar) ?? null;
}

/**
 * The calendar of a department (null: a ticket in no department), following its own schedule,
 * else the help desk's default, else ALWAYS_OPEN. One small indexed query when cached.
 */
export async function departmentCalendar(
  db: Kysely<Database>,
  departmentId: string | null,
  /** The key when the caller read it already (scheduleKeySql in its own statement). */
  known?: string | null,
): Promise<DepartmentCalendar> {
  const key = known !== undefined ? known : await scheduleKeyFor(db, departmentId);
  if (key === null) return { scheduleId: null, calendar: ALWAYS_OPEN };
  const at = key.lastIndexOf('@');
  return calendarOf(db, { id: key.slice(0, at), version: Number(key.slice(at + 1)) });
}

async function calendarOf(
  db: Kysely<Database>,
  key: { id: string; version: number },
): Promise<DepartmentCalendar> {
  const hit = cache.get(keyOf(key.id, key.version));
  if (hit) {
    // Most recently used last, so the oldest goes first.
    cache.delete(keyOf(key.id, key.version));
    cache.set(keyOf(key.id, key.version), hit);
    return { scheduleId: key.id, calendar: hit };
  }
  const definition = await calendarDefinitionOf(db, key.id);
  // Deleted between the two reads (no department named it, or the delete would have waited):
  // the department has no schedule any more.
  if (!definition) return { scheduleId: null, calendar: ALWAYS_OPEN };
  const calendar = compileCalendar(definition);
  versions.set(calendar, keyOf(key.id, definition.version));
  cache.set(keyOf(key.id, definition.version), calendar);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!);
  return { scheduleId: key.id, calendar };
}

/** The calendars of many departments at once: one query for the keys, compiled ones cached. */
export async function departmentCalendars(
  db: Kysely<Database>,
  departments: readonly { id: string; schedule_id: string | null }[],
): Promise<Map<string, DepartmentCalendar>> {
  const named = [...new Set(departments.flatMap((d) => (d.schedule_id ? [d.schedule_id] : [])))];
  const keys = await scheduleKeys(db, named);
  const byId = new Map(keys.map((k) => [k.id, k]));
  const fallback = keys.find((k) => k.is_default);
  const out = new Map<string, DepartmentCalendar>();
  const bySchedule = new Map<string, DepartmentCalendar>();
  for (const d of departments) {
    const key = (d.schedule_id ? byId.get(d.schedule_id) : undefined) ?? fallback;
    if (!key) {
      out.set(d.id, { scheduleId: null, calendar: ALWAYS_OPEN });
      continue;
    }
    let calendar = bySchedule.get(key.id);
    if (!calendar) {
      calendar = await calendarOf(db, key);
      bySchedule.set(key.id, calendar);
    }
    out.set(d.id, calendar);
  }
  return out;
}

export type ChannelName = 'chat' | 'phone' | 'messaging';
export const CHANNEL_NAMES: readonly ChannelName[] = ['chat', 'phone', 'messaging'];

/** Whether a channel in this mode is available while the department is (or is not) open. */
export function channelAvailable(mode: ChannelAvailability, open: boolean): boolean {
  return mode === 'on' || (mode === 'schedule' && open);
}

/** Open or closed at `at`, the next change, and each channel's availability: pure. */
export function availabilityAt(
  calendar: BusinessCalendar,
  modes: Record<ChannelName, ChannelAvailability>,
  at: number,
) {
  const open = calendar.isOpen(at);
  const next = calendar.nextChange(at);
  const channels = Object.fromEntries(
    CHANNEL_NAMES.map((c) => [c, { mode: modes[c], available: channelAvailable(modes[c], open) }]),
  ) as Record<ChannelName, { mode: ChannelAvailability; available: boolean }>;
  return { open, next_change: next === null ? null : new Date(next).toISOString(), channels };
}
