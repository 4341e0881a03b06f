import type { Principal } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import { DomainError, type FieldError, invalid } from '../../errors.ts';
import { statusPatch } from '../tickets/changes.ts';
import type { Actor, TicketPatch } from '../tickets/repository.ts';
import { agentActor, recordOnTicket } from '../tickets/service.ts';
import { agentExists, insertCall } from './repository.ts';

export interface RecordCallInput {
  ticket_id?: string | undefined;
  contact?:
    | {
        id?: string | undefined;
        name?: string | undefined;
        email?: string | undefined;
        phone?: string | undefined;
      }
    | undefined;
  subject?: string | undefined;
  department_id?: string | null | undefined;
  priority?: 'low' | 'normal' | 'high' | 'urgent' | undefined;
  external_id?: string | undefined;
  direction: 'inbound' | 'outbound';
  outcome: 'answered' | 'missed';
  agent_id?: string | undefined;
  from_number?: string | undefined;
  to_number?: string | undefined;
  started_at: string;
  answered_at?: string | undefined;
  ended_at?: string | undefined;
}

function checkTimes(input: RecordCallInput) {
  const started = new Date(input.started_at);
  const answered = input.answered_at ? new Date(input.answered_at) : null;
  const ended = input.ended_at ? new Date(input.ended_at) : null;
  const errors: FieldError[] = [];
  if (input.outcome === 'answered' && !answered)
    errors.push({ field: 'body/answered_at', message: 'is required for an answered call' });
  if (input.outcome === 'missed' && answered)
    errors.push({ field: 'body/answered_at', message: 'a missed call was not answered' });
  if (answered && answered < started)
    errors.push({ field: 'body/answered_at', message: 'is before started_at' });
  if (ended && ended < (answered ?? started))
    errors.push({ field: 'body/ended_at', message: 'is before the call began' });
  if (started.getTime() > Date.now() + 60_000)
    errors.push({ field: 'body/started_at', message: 'is in the future' });
  if (errors.length > 0) throw invalid('invalid_call_times', 'The call’s times do not add up.', errors);
  const duration = answered && ended ? Math.round((ended.getTime() - answered.getTime()) / 1000) : 0;
  return { started, answered, ended, duration };
}

/**
 * Records a call from a telephony system, on an existing ticket or a new call ticket. An
 * answered call counts as an answer to the customer; a missed inbound call reopens the ticket
 * like a customer message would.
 */
export async function recordCall(db: Db, principal: Principal, input: RecordCallInput) {
  const times = checkTimes(input);
  if (input.agent_id) {
    if (!(await agentExists(db, input.agent_id))) {
      const error = new DomainError('unprocessable', 'agent_not_found', 'The agent does not exist.');
      error.errors = [{ field: 'body/agent_id', message: 'no such agent' }];
      throw error;
    }
  }
  const customerNumber = input.direction === 'inbound' ? input.from_number : input.to_number;
  const subject = `${input.direction === 'inbound' ? 'Call from' : 'Call to'} ${customerNumber ?? 'unknown number'}`;
  const contact = customerNumber ? { phone: customerNumber } : null;
  return transact(db, (trx) =>
    recordOnTicket(trx, principal, input, 'call', { subject, contact }, async (ticket, _created, at) => {
      const call = await insertCall(trx, {
        ticket_id: ticket.id,
        external_id: input.external_id ?? null,
        direction: input.direction,
        outcome: input.outcome,
        agent_id: input.agent_id ?? null,
        department_id: ticket.department_id,
        from_number: input.from_number ?? null,
        to_number: input.to_number ?? null,
        started_at: times.started,
        answered_at: times.answered,
        ended_at: times.ended,
        duration_seconds: times.duration,
      });
      let patch: TicketPatch = {};
      let actor: Actor = agentActor(principal);
      if (input.outcome === 'answered') {
        patch = {
          ...statusPatch(ticket, 'answered', at),
          last_agent_message_at: times.answered,
          ...(ticket.first_answered_at === null && { first_answered_at: times.answered }),
        };
      } else if (input.direction === 'inbound') {
        actor = { type: 'contact', agentId: null, contactId: ticket.contact_id, tokenId: principal.tokenId };
        patch = {
          ...(['answered', 'postponed', 'resolved'].includes(ticket.status) &&
            statusPatch(ticket, 'open', at)),
          last_customer_message_at: times.started,
        };
      }
      const recorded = {
        type: 'call_recorded' as const,
        data: {
          call_id: call.id,
          direction: call.direction,
          outcome: call.outcome,
          agent_id: call.agent_id,
          duration_seconds: call.duration_seconds,
        },
      };
      return {
        steps: [{ patch, actor }],
        triggers: ['ticket.status_changed'],
        closing: [{ event: recorded, actor: agentActor(principal) }],
        result: {
          id: call.id,
          ticket_id: call.ticket_id,
          external_id: call.external_id,
          direction: call.direction,
          outcome: call.outcome,
          agent_id: call.agent_id,
          from_number: call.from_number,
          to_number: call.to_number,
          started_at: new Date(call.started_at).toISOString(),
          answered_at: call.answered_at ? new Date(call.answered_at).toISOString() : null,
          ended_at: call.ended_at ? new Date(call.ended_at).toISOString() : null,
          duration_seconds: call.duration_seconds,
          created_at: call.created_at.toISOString(),
        },
      };
    }),
  );
}
