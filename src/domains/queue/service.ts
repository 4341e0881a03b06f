import type { Principal } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { runRules } from '../automation-rules/runner.ts';
import { withContacts } from '../tickets/repository.ts';
import type { Ticket } from '../tickets/schemas.ts';
import { agentActor, applyChanges } from '../tickets/service.ts';
import { lockAgentQueue, lockNextQueuedTicket } from './repository.ts';

/**
 * Hands the agent the next ticket of their to-solve queue and assigns it to them, recording an
 * `assigned` event with the agent as actor; null when the queue has nothing for them.
 *
 * Tickets already assigned to the agent stay in the queue, in the same order as unassigned ones,
 * until the agent answers, postpones or resolves them: asking again hands back the same ticket,
 * so a client that lost the response can simply retry.
 */
export async function takeNextTicket(db: Db, principal: Principal): Promise<Ticket | null> {
  const record = await db.transaction().execute(async (trx) => {
    await lockAgentQueue(trx, principal.agentId);
    const next = await lockNextQueuedTicket(trx, principal.agentId);
    if (!next || next.assignee_id === principal.agentId) return next ?? null;
    const after = await applyChanges(trx, next, { assignee_id: principal.agentId }, agentActor(principal));
    return runRules(trx, after, ['ticket.updated'], { before: next });
  });
  if (!record) return null;
  const [ticket] = await withContacts(db, [record]);
  return ticket!;
}
