import type { Transaction } from 'kysely';
import type { Database, MemberLevel, TicketStatus } from '../../db/types.ts';
import { type EscalationAction, escalationFor, SLA_ESCALATED, type SlaEvent } from '../../sla/index.ts';
import { leastBusyAgent, lockCapacity } from '../automation-rules/repository.ts';
import { memberStanding, SUPERVISING_ROLES, supervisorsOf } from '../departments/repository.ts';
import { activePolicies } from '../sla-policies/repository.ts';
import { changeEvents } from './changes.ts';
import type { ActorEvent, TicketRecord } from './repository.ts';
import * as repo from './repository.ts';
import { planTicketSla, type SlaSetting, SYSTEM } from './sla.ts';

// SLA escalations on the write path (docs/sla.md, "Escalation"): a warning or breach that a write
// fired hands the ticket on as its policy says, in the write's transaction, after its rules. The
// pure src/sla chooses the escalation; this finds the agent and writes the reassignment like any
// other change (an `assigned` event, the clock planned again), plus `sla.escalated`, which the
// notifications consumer turns into `sla_escalated` notifications for its recipients.

type Trx = Transaction<Database>;

/** Nobody needs to act on these any more: a write that fired a breach and resolved escalates nothing. */
const SETTLED: ReadonlySet<TicketStatus> = new Set(['resolved', 'spam', 'deleted']);
const TOP_LEVEL = 3;

interface Outcome {
  /** The new assignee; null when nobody available could take the ticket (it stays where it was). */
  to: string | null;
  /** The tier the ticket went to (next_level only). */
  level: MemberLevel | null;
  /** Who is told: whoever got it, and the supervisors when asked or when nobody got it. */
  recipients: string[];
}

/**
 * Applies the escalation the fired warnings and breaches call for, if any, to the ticket as the
 * write (and its rules) left it, and returns the ticket as it then stands. One statement more,
 * only when an escalation applies. The reassignment runs no rules (they ran for this write) and
 * its own clock events escalate nothing further.
 */
export async function escalate(
  trx: Trx,
  setting: SlaSetting,
  ticket: TicketRecord,
  fired: readonly SlaEvent[],
): Promise<TicketRecord> {
  if (fired.length === 0 || SETTLED.has(ticket.status)) return ticket;
  const choice = escalationFor(await activePolicies(trx, setting.key), fired);
  if (!choice) return ticket;
  const { policy, escalation, event, on } = choice;
  const outcome = await handOn(trx, ticket, escalation.action, escalation.notify_supervisors);
  const after = outcome.to === null ? ticket : { ...ticket, assignee_id: outcome.to };
  // The assignment says why, so the notifications consumer leaves it to sla.escalated to tell.
  const events: ActorEvent[] = changeEvents(ticket, after).map((e) => ({
    ...e,
    data: { ...e.data, reason: 'sla_escalated' },
    actor: SYSTEM,
    ticket: after,
  }));
  events.push({
    type: SLA_ESCALATED,
    actor: SYSTEM,
    ticket: after,
    data: {
      policy_id: policy.id,
      policy_version: policy.version,
      on,
      kind: event.kind,
      cycle: event.cycle,
      action: escalation.action,
      from: ticket.assignee_id,
      to: outcome.to,
      level: outcome.level,
      recipients: outcome.recipients,
    },
  });
  // A new assignee moves the clock like any assignment (a first assignment is met, late).
  const sla =
    outcome.to === null
      ? null
      : await planTicketSla(
          trx,
          setting,
          ticket.sla_state,
          ticket,
          after,
          { agent: false, customer: false },
          SYSTEM,
        );
  const written = await repo.writeTicketChanges(trx, ticket, {
    patch: outcome.to === null ? {} : { assignee_id: outcome.to, ...sla?.patch },
    touch: outcome.to !== null,
    events: [...events, ...(sla?.events ?? [])],
    messages: [],
  });
  return written.ticket;
}

/** Who takes the ticket and who is told. Picks are limited to agents online and under capacity. */
async function handOn(
  trx: Trx,
  ticket: TicketRecord,
  action: EscalationAction,
  notifySupervisors: boolean,
): Promise<Outcome> {
  const departmentId = ticket.department_id;
  if (departmentId === null) return { to: null, level: null, recipients: [] };
  const from = ticket.assignee_id;
  const standing = from === null ? undefined : await memberStanding(trx, departmentId, from);
  let to: string | null = null;
  let level: MemberLevel | null = null;
  if (action === 'next_level') {
    // The capacity lock alone, and last: see lockCapacity.
    await lockCapacity(trx);
    // Unassigned, or an assignee without a tier in the department: tier 1 had its chance.
    for (let l = (standing?.level ?? 1) + 1; l <= TOP_LEVEL && to === null; l++) {
      to = await leastBusyAgent(trx, departmentId, false, {
        level: l as MemberLevel,
        availableOnly: true,
        except: from,
      });
      if (to !== null) level = l as MemberLevel;
    }
  } else if (standing === undefined || !SUPERVISING_ROLES.includes(standing.role)) {
    // An assignee who supervises the department already has it where this escalation would put it.
    await lockCapacity(trx);
    to = await leastBusyAgent(trx, departmentId, false, {
      roles: SUPERVISING_ROLES,
      availableOnly: true,
      except: from,
    });
  }
  const supervisors = to === null || notifySupervisors ? await supervisorsOf(trx, departmentId) : [];
  return { to, level, recipients: [...new Set([...(to === null ? [] : [to]), ...supervisors])] };
}
