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

/** A ticket the queue may hand out, with what orders the queue. */
interface Candidate {
  id: string;
  department_id: string;
  sla_due_at: Date | null;
  priority_rank: number;
  waiting_since: Date | null;
}

/**
 * The first `perDepartment` unassigned queued tickets of each of the agent's queue departments,
 * in queue order: one short read of tickets_queue_unassigned_idx per department. PostgreSQL cannot
 * merge one index's per-department order across the agent's departments; read whole, every
 * unassigned ticket of them was sorted for each hand-out (100 ms at 100,000 open tickets).
 */
async function readCandidates(
  trx: Transaction<Database>,
  agentId: string,
  perDepartment: number,
): Promise<Candidate[]> {
  const { rows } =
    await sql<Candidate>`select c.id, c.department_id, c.sla_due_at, c.priority_rank, c.waiting_since
    from department_members m
    join departments d on d.id = m.department_id
    cross join lateral (
      select q.id, q.department_id, q.sla_due_at, q.priority_rank, q.waiting_since from tickets q
      where q.department_id = m.department_id and q.status in ('new', 'open') and q.assignee_id is null
      order by q.sla_due_at, q.priority_rank desc, q.waiting_since, q.id
      limit ${sql.lit(perDepartment)}
    ) c
    where m.agent_id = ${agentId} and m.role in (${sql.join(SOLVING_ROLES)}) and d.to_solve_enabled`.execute(
      trx,
    );
  return rows;
}

const instant = (d: Date | null) => (d === null ? Number.POSITIVE_INFINITY : d.getTime());

/** Whether `a` comes before `b` in queue order (the order of queuedTickets). */
function precedes(a: Candidate, b: Candidate): boolean {
  if (instant(a.sla_due_at) !== instant(b.sla_due_at)) return instant(a.sla_due_at) < instant(b.sla_due_at);
  if (a.priority_rank !== b.priority_rank) return a.priority_rank > b.priority_rank;
  if (instant(a.waiting_since) !== instant(b.waiting_since))
    return instant(a.waiting_since) < instant(b.waiting_since);
  return a.id < b.id;
}

/** How many candidates per department each attempt reads; after them, the whole queue. */
const CANDIDATE_ROUNDS = [8, 128];

/**
 * Locks and returns the first unassigned queued ticket, or undefined when there is none.
 * SKIP LOCKED passes over tickets another caller's transaction holds, so concurrent callers
 * neither wait for each other nor receive the same ticket; a ticket assigned by a transaction
 * that committed meanwhile is re-checked against the conditions and passed over too.
 *
 * A few candidates per department first. Only those that come before the last candidate of
 * every department that may hold more are eligible: the best free one of them is the queue's
 * first free ticket. Locking only eligible ones, a call never holds a ticket it then passes
 * over (which made a colleague's call find the queue empty). When none of them is free, more
 * candidates, and at last the whole queue: a free ticket is always found, in queue order.
 */
export async function lockNextUnassignedTicket(
  trx: Transaction<Database>,
  agentId: string,
): Promise<{ ticket: TicketRecord; sla: SlaRead } | undefined> {
  const next = queuedTickets(trx, agentId).where('t.assignee_id', 'is', null).forUpdate().skipLocked();
  for (const perDepartment of CANDIDATE_ROUNDS) {
    const candidates = await readCandidates(trx, agentId, perDepartment);
    if (candidates.length === 0) return undefined;
    const byDepartment = new Map<string, Candidate[]>();
    for (const c of candidates) {
      const list = byDepartment.get(c.department_id);
      if (list) list.push(c);
      else byDepartment.set(c.department_id, [c]);
    }
    // The last candidate of each department that may have more unassigned tickets (the join
    // promises no order, so the last in queue order, not in the rows).
    const cutOff = [...byDepartment.values()]
      .filter((list) => list.length === perDepartment)
      .map((list) => list.reduce((last, c) => (precedes(last, c) ? c : last)));
    const eligible = candidates.filter((c) => !cutOff.some((last) => precedes(last, c)));
    const row = await next
      .where(
        't.id',
        'in',
        eligible.map((c) => c.id),
      )
      .executeTakeFirst();
    if (row) return splitSlaRead(row);
    // Every unassigned ticket of their departments was eligible, and none is free.
    if (cutOff.length === 0) return undefined;
  }
  const row = await next.executeTakeFirst();
  return row && splitSlaRead(row);
}
