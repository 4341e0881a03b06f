import { sql, type Transaction } from 'kysely';
import type { Database, DepartmentRole } from '../../db/types.ts';
import {
  SLA_READ_COLUMNS,
  type SlaRead,
  splitSlaRead,
  TICKET_COLUMNS,
  type TicketRecord,
} from '../tickets/repository.ts';

/** Department roles that work tickets; readers only read, so the queue never feeds them. */
const SOLVING_ROLES: DepartmentRole[] = ['solver', 'supervisor', 'manager'];

/**
 * Makes the agent's hand-outs take turns until the transaction ends. SKIP LOCKED alone would let
 * two concurrent calls of one agent lock two different tickets and assign both; serialised, the
 * second call sees the first one's committed assignment and receives that same ticket back.
 * A transaction-scoped advisory lock rather than a row lock on the agent: it blocks nothing else
 * (agent updates, foreign-key checks of tickets being assigned to them).
 */
export async function lockAgentHandOut(trx: Transaction<Database>, agentId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtext(${`queue:${agentId}`}))`.execute(trx);
}

/**
 * The queued tickets an agent may be handed: new or open, in one of their departments where they
 * solve and the to-solve queue is on (owners and admins are fed only from departments they are
 * members of), in queue order: earliest SLA due, priority, then waiting longest.
 */
function queuedTickets(trx: Transaction<Database>, agentId: string) {
  return (
    trx
      .selectFrom('tickets as t')
      .select(TICKET_COLUMNS)
      .select(SLA_READ_COLUMNS)
      .where('t.status', 'in', ['new', 'open'])
      .where('t.department_id', 'in', (eb) =>
        eb
          .selectFrom('department_members as m')
          .innerJoin('departments as d', 'd.id', 'm.department_id')
          .select('m.department_id')
          .where('m.agent_id', '=', agentId)
          .where('m.role', 'in', SOLVING_ROLES)
          .where('d.to_solve_enabled', '=', true),
      )
      // The most urgent SLA due first (tickets without one last: ascending puts nulls last),
      // then priority and waiting longest, following the queue's indexes (migrations/0029).
      .orderBy('t.sla_due_at', 'asc')
      .orderBy('t.priority_rank', 'desc')
      .orderBy('t.waiting_since', 'asc')
      .orderBy('t.id', 'asc')
      .limit(1)
  );
}

/**
 * Locks and returns the first queued ticket already assigned to the agent, their current
 * hand-out. Without SKIP LOCKED: another agent's scan may hold this row for a moment (a row
 * locked, then found to be assigned to someone else, stays locked until that scan's transaction
 * ends), and skipping it would hand the agent a second ticket. Waiting is brief.
 */
export async function lockOwnQueuedTicket(
  trx: Transaction<Database>,
  agentId: string,
): Promise<TicketRecord | undefined> {
  const row = await queuedTickets(trx, agentId)
    .where('t.assignee_id', '=', agentId)
    .forUpdate()
    .executeTakeFirst();
  return row && splitSlaRead(row).ticket;
}

/**
 * The first `perDepartment` unassigned queued tickets of each of the agent's queue departments,
 * in queue order: one short read of tickets_queue_unassigned_idx per department. The queue's
 * first ticket is among them unless `perDepartment` tickets before it in its department are
 * locked by other callers.
 */
function candidates(agentId: string, perDepartment: number) {
  return sql<string[]>`array(select c.id
    from department_members m
    join departments d on d.id = m.department_id
    cross join lateral (
      select q.id from tickets q
      where q.department_id = m.department_id and q.status in ('new', 'open') and q.assignee_id is null
      order by q.sla_due_at, q.priority_rank desc, q.waiting_since, q.id
      limit ${sql.lit(perDepartment)}
    ) c
    where m.agent_id = ${agentId} and m.role in (${sql.join(SOLVING_ROLES)}) and d.to_solve_enabled)`;
}

/** How many candidates per department each attempt reads; after them, the whole queue. */
const CANDIDATE_ROUNDS = [8, 128];

/**
 * Locks and returns the first unassigned queued ticket, or undefined when there is none.
 * SKIP LOCKED passes over tickets another caller's transaction holds, so concurrent callers
 * neither wait for each other nor receive the same ticket; a ticket assigned by a transaction
 * that committed meanwhile is re-checked against the conditions and passed over too.
 *
 * The best of a few candidates per department first (sorting every unassigned ticket of the
 * agent's departments cost 100 ms a hand-out at 100,000 open tickets); only when every candidate
 * is taken or locked, more of them, and at last the whole queue, so a free ticket is always found.
 */
export async function lockNextUnassignedTicket(
  trx: Transaction<Database>,
  agentId: string,
): Promise<{ ticket: TicketRecord; sla: SlaRead } | undefined> {
  const next = queuedTickets(trx, agentId).where('t.assignee_id', 'is', null).forUpdate().skipLocked();
  for (const perDepartment of CANDIDATE_ROUNDS) {
    const row = await next
      .where(sql<boolean>`t.id = any(${candidates(agentId, perDepartment)})`)
      .executeTakeFirst();
    if (row) return splitSlaRead(row);
  }
  const row = await next.executeTakeFirst();
  return row && splitSlaRead(row);
}
