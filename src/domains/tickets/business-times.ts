import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';
import { departmentCalendar } from '../schedules/calendar.ts';
import { scheduleKeyFor } from '../schedules/repository.ts';
import type { ActorEvent } from './repository.ts';

// The business-hours twin of each report sample (docs/metrics.md), computed once, when the sample
// is recorded: the business minutes, in the calendar of the department the event carries (the
// ticket's department right after it; none: the default schedule; no schedule: always open),
// between the same two instants as the calendar value. Reports only sum and bin what is stored,
// so a later change to a schedule never rewrites history.

/**
 * Schedule keys already read in this change, by department (null: no department). The lock of
 * the ticket and the contact statement of a creation read the key of the ticket's department;
 * another department (a transfer in the same change) costs one small query, once.
 */
export type ScheduleKeys = Map<string | null, string | null>;

/** The events, with each `business` span's seconds put into `data` (and the spans dropped). */
export async function withBusinessTimes(
  db: Kysely<Database>,
  events: ActorEvent[],
  keys: ScheduleKeys,
): Promise<ActorEvent[]> {
  if (!events.some((e) => e.business && e.business.length > 0)) return events;
  const out: ActorEvent[] = [];
  for (const { business, ...event } of events) {
    if (!business || business.length === 0) {
      out.push(event);
      continue;
    }
    const department = event.ticket.department_id;
    let key = keys.get(department);
    if (key === undefined) {
      key = await scheduleKeyFor(db, department);
      keys.set(department, key);
    }
    const { calendar } = await departmentCalendar(db, department, key);
    const data = { ...event.data };
    for (const span of business) {
      const minutes = calendar.businessMinutesBetween(span.from.getTime(), span.to.getTime());
      // Instants are whole milliseconds: so is the business time.
      data[span.field] = Math.round(minutes * 60_000) / 1000;
    }
    out.push({ ...event, data });
  }
  return out;
}
