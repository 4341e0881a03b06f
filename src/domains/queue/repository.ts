import { sql, type Transaction } from 'kysely';
import type { Database, DepartmentRole } from '../../db/types.ts';
import { TICKET_COLUMNS, type TicketRecord } from '../tickets/repository.ts';

/** Department roles that work tickets; readers only read, so the queue never feeds them. */
const SOLVING_ROLES: DepartmentRole[] = ['solver', 'supervisor', 'manager'];

/**
 * Serialises one agent's own queue requests until the transaction ends. Without it, an agent's
 * retry that overlaps the first request (on this instance or another) skips the ticket the
 * first one holds and takes a second ticket, though a retry should hand back the same one.
 */
export async function lockAgentQueue(trx: Transaction<Database>, agentId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${`deskroute:queue:${agentId}`}))`.execute(trx);
}

/**
 * Locks and returns the ticket the agent should work on next, or undefined when there is none:
 * new or open, unassigned or already theirs, in one of their departments where they solve and
 * the to-solve queue is on. Owners and admins are fed only from departments they are members of.
 *
 * SKIP LOCKED passes over tickets another caller's transaction holds, so concurrent callers
 * neither wait for each other nor receive the same ticket; a ticket assigned by a transaction
 * that committed meanwhile is re-checked against the conditions and passed over too.
 */
export function lockNextQueuedTicket(
  trx: Transaction<Database>,
  agentId: string,
): Promise<TicketRecord | undefined> {
  return (
    trx
      .selectFrom('tickets as t')
      .select(TICKET_COLUMNS)
      .where('t.status', 'in', ['new', 'open'])
      .where((eb) => eb.or([eb('t.assignee_id', 'is', null), eb('t.assignee_id', '=', agentId)]))
      .where('t.department_id', 'in', (eb) =>
        eb
          .selectFrom('department_members as m')
          .innerJoin('departments as d', 'd.id', 'm.department_id')
          .select('m.department_id')
          .where('m.agent_id', '=', agentId)
          .where('m.role', 'in', SOLVING_ROLES)
          .where('d.to_solve_enabled', '=', true),
      )
      // Follows tickets_queue_idx. Once tickets carry an SLA due time, it joins the order here,
      // between priority and waiting_since (earliest due first, tickets without one last), and
      // the index gains the column in the same place.
      .orderBy('t.priority_rank', 'desc')
      .orderBy('t.waiting_since', 'asc')
      .orderBy('t.id', 'asc')
      .limit(1)
      .forUpdate()
      .skipLocked()
      .executeTakeFirst()
  );
}
