import type { Principal } from '../../access/policy.ts';
import { requireAdmin } from '../../access/policy.ts';
import { loadTicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { invalid } from '../../errors.ts';
import { EVENT_TYPES, type EventType, SETTINGS_EVENT_TYPES, type SettingsEventType } from './catalogue.ts';
import { readAuditLog, readFeed } from './repository.ts';

/** A comma-separated list of event types; an unknown one is a client mistake, named in the 400. */
export function parseTypes<T extends string>(
  text: string | undefined,
  allowed: readonly T[],
  field = 'querystring/types',
): T[] | undefined {
  if (text === undefined) return undefined;
  const known: ReadonlySet<string> = new Set(allowed);
  const types = [
    ...new Set(
      text
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== ''),
    ),
  ];
  const unknown = types.filter((t) => !known.has(t));
  if (unknown.length > 0) {
    throw invalid('unknown_event_type', `Unknown event type: ${unknown.slice(0, 5).join(', ')}.`, [
      { field, message: `must be a comma-separated list of: ${allowed.join(', ')}` },
    ]);
  }
  return types.length > 0 ? (types as T[]) : undefined;
}

export async function listEvents(
  db: Db,
  principal: Principal,
  q: {
    after?: string | undefined;
    types?: string | undefined;
    department_id?: string | undefined;
    limit: number;
  },
) {
  const types = parseTypes<EventType>(q.types, EVENT_TYPES);
  const viewer = await loadTicketAccess(db, principal);
  const { rows, next } = await readFeed(db, {
    after: q.after,
    limit: q.limit,
    types,
    departmentId: q.department_id,
    viewer,
    cursorField: 'querystring/after',
  });
  return { data: rows.map((r) => r.event), next_cursor: next };
}

export async function listAuditLog(
  db: Db,
  principal: Principal,
  q: {
    actor_agent_id?: string | undefined;
    from?: string | undefined;
    to?: string | undefined;
    types?: string | undefined;
    cursor?: string | undefined;
    limit: number;
  },
) {
  requireAdmin(principal);
  if (q.from && q.to && Date.parse(q.from) > Date.parse(q.to)) {
    throw invalid('invalid_range', '`from` must not be after `to`.', [
      { field: 'querystring/from', message: 'must not be after to' },
    ]);
  }
  return readAuditLog(db, {
    actorAgentId: q.actor_agent_id,
    from: q.from,
    to: q.to,
    types: parseTypes<SettingsEventType>(q.types, SETTINGS_EVENT_TYPES),
    limit: q.limit,
    cursor: q.cursor,
  });
}
