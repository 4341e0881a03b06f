import type { Principal } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { withContacts } from '../tickets/repository.ts';
import type { Ticket } from '../tickets/schemas.ts';
import { agentActor } from '../tickets/service.ts';
import { writeTicket } from '../tickets/write.ts';
import { lockAgentHandOut, lockNextUnassignedTicket, lockOwnQueuedTicket } from './repository.ts';

/**
 * Hands the agent the next ticket of their to-solve queue and assigns it to them, recording an
 * `assigned` event with the agent as actor; null when the queue has nothing for them.
 *
 * One agent, one hand-out at a time: while a queued ticket (new or open) is assigned to the
 * agent, asking again hands that ticket back (the first of them in queue order) until they
 * answer, postpone, resolve or transfer it, so a client that lost the response can simply retry.
 * One agent's calls take turns, so concurrent calls of the same agent (a double click, two tabs,
 * two instances) all receive the one ticket the first of them assigned, never one ticket each.
 */
export async function takeNextTicket(db: Db, principal: Principal): Promise<Ticket | null> {
  const record = await db.transaction().execute(async (trx) => {
    await lockAgentHandOut(trx, principal.agentId);
    const own = await lockOwnQueuedTicket(trx, principal.agentId);
    if (own) return own;
    const next = await lockNextUnassignedTicket(trx, principal.agentId);
    if (!next) return null;
    // The queue's own query decided that the agent may take it.
    const taken = await writeTicket(trx, {
      kind: 'change',
      target: { locked: next.ticket, sla: next.sla },
      access: null,
      decide: () => ({
        steps: [{ patch: { assignee_id: principal.agentId }, actor: agentActor(principal) }],
        triggers: ['ticket.updated' as const],
        result: null,
      }),
    });
    return taken.ticket;
  });
  if (!record) return null;
  const [ticket] = await withContacts(db, [record]);
  return ticket!;
}
