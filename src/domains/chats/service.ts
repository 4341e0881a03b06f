import { randomUUID } from 'node:crypto';
import type { Principal } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import { DomainError, type FieldError, invalid } from '../../errors.ts';
import { agentExists } from '../calls/repository.ts';
import { statusPatch } from '../tickets/changes.ts';
import type { TicketPatch } from '../tickets/repository.ts';
import { agentActor, recordOnTicket } from '../tickets/service.ts';
import { insertChat } from './repository.ts';

export interface RecordChatInput {
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
  agent_id?: string | undefined;
  started_at: string;
  picked_up_at?: string | undefined;
  missed: boolean;
  ended_at?: string | undefined;
  messages: { from: 'customer' | 'agent'; body: string; sent_at: string }[];
}

function checkChat(input: RecordChatInput) {
  const started = new Date(input.started_at);
  const pickedUp = input.picked_up_at ? new Date(input.picked_up_at) : null;
  const ended = input.ended_at ? new Date(input.ended_at) : null;
  const errors: FieldError[] = [];
  if (input.missed && pickedUp)
    errors.push({ field: 'body/picked_up_at', message: 'a missed chat was not picked up' });
  if (!input.missed && !pickedUp)
    errors.push({ field: 'body/picked_up_at', message: 'is required unless the chat was missed' });
  if (!input.missed && !input.agent_id)
    errors.push({ field: 'body/agent_id', message: 'is required unless the chat was missed' });
  if (pickedUp && pickedUp < started)
    errors.push({ field: 'body/picked_up_at', message: 'is before started_at' });
  if (ended && ended < started) errors.push({ field: 'body/ended_at', message: 'is before started_at' });
  if (started.getTime() > Date.now() + 60_000)
    errors.push({ field: 'body/started_at', message: 'is in the future' });
  input.messages.forEach((m, i) => {
    const sent = new Date(m.sent_at);
    if (sent < started || (ended && sent > ended)) {
      errors.push({ field: `body/messages/${i}/sent_at`, message: 'is outside the chat' });
    }
    if (m.from === 'agent' && input.missed) {
      errors.push({ field: `body/messages/${i}/from`, message: 'a missed chat has no agent messages' });
    }
  });
  if (errors.length > 0) throw invalid('invalid_chat', 'The chat does not add up.', errors);
  return { started, pickedUp, ended };
}

/**
 * Records a chat from a chat system, with its messages, on an existing ticket or a new chat
 * ticket. Agent messages answer the customer (the first one is the first answer); a missed
 * chat leaves the customer waiting.
 */
export async function recordChat(db: Db, principal: Principal, input: RecordChatInput) {
  const times = checkChat(input);
  if (input.agent_id) {
    if (!(await agentExists(db, input.agent_id))) {
      const error = new DomainError('unprocessable', 'agent_not_found', 'The agent does not exist.');
      error.errors = [{ field: 'body/agent_id', message: 'no such agent' }];
      throw error;
    }
  }
  const messages = [...input.messages].sort((a, b) => Date.parse(a.sent_at) - Date.parse(b.sent_at));
  const subject = `Chat of ${times.started.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return transact(db, (trx) =>
    recordOnTicket(
      trx,
      principal,
      input,
      'chat',
      { subject, contact: null },
      async (ticket, _created, at) => {
        const chat = await insertChat(trx, {
          ticket_id: ticket.id,
          external_id: input.external_id ?? null,
          agent_id: input.agent_id ?? null,
          department_id: ticket.department_id,
          started_at: times.started,
          picked_up_at: times.pickedUp,
          missed: input.missed,
          ended_at: times.ended,
        });
        const firstAgent = messages.find((m) => m.from === 'agent');
        const lastAgent = messages.findLast((m) => m.from === 'agent');
        const lastCustomer = messages.findLast((m) => m.from === 'customer');
        const answeredLast =
          lastAgent && (!lastCustomer || Date.parse(lastAgent.sent_at) >= Date.parse(lastCustomer.sent_at));
        const customerWroteLater =
          lastCustomer !== undefined &&
          (ticket.last_customer_message_at === null ||
            Date.parse(lastCustomer.sent_at) > ticket.last_customer_message_at.getTime());
        let patch: TicketPatch = {};
        if (answeredLast) {
          patch = {
            ...statusPatch(ticket, 'answered', at),
            last_agent_message_at: new Date(lastAgent.sent_at),
            // The customer wrote in this chat too, even if an agent had the last word.
            ...(customerWroteLater && { last_customer_message_at: new Date(lastCustomer!.sent_at) }),
            ...(ticket.first_answered_at === null &&
              firstAgent && { first_answered_at: new Date(firstAgent.sent_at) }),
          };
        } else if (lastCustomer || input.missed) {
          patch = {
            ...(['answered', 'postponed', 'resolved'].includes(ticket.status) &&
              statusPatch(ticket, 'open', at)),
            last_customer_message_at: lastCustomer ? new Date(lastCustomer.sent_at) : times.started,
            ...(firstAgent &&
              ticket.first_answered_at === null && { first_answered_at: new Date(firstAgent.sent_at) }),
          };
        }
        const text = messages.map((m) => m.body).join('\n');
        const recorded = {
          type: 'chat_recorded' as const,
          data: {
            chat_id: chat.id,
            agent_id: chat.agent_id,
            missed: chat.missed,
            pickup_seconds: times.pickedUp
              ? (times.pickedUp.getTime() - times.started.getTime()) / 1000
              : null,
            duration_seconds: times.ended ? (times.ended.getTime() - times.started.getTime()) / 1000 : null,
            customer_messages: messages.filter((m) => m.from === 'customer').length,
            agent_messages: messages.filter((m) => m.from === 'agent').length,
          },
          // pickup_business_seconds: the pickup wait in the department's business minutes. The
          // chat's own length has no business twin: it is time an agent spent working, whenever.
          ...(times.pickedUp && {
            business: [
              { field: 'pickup_business_seconds' as const, from: times.started, to: times.pickedUp },
            ],
          }),
        };
        return {
          steps: [{ patch, actor: agentActor(principal) }],
          messages: messages.map((m) => ({
            id: randomUUID(),
            kind: m.from === 'agent' ? ('agent' as const) : ('customer' as const),
            channel: 'chat' as const,
            author_agent_id: m.from === 'agent' ? (input.agent_id ?? null) : null,
            author_contact_id: m.from === 'customer' ? ticket.contact_id : null,
            chat_id: chat.id,
            body: m.body,
            department_id: ticket.department_id,
            created_at: new Date(m.sent_at),
          })),
          search: text || undefined,
          triggers: ['ticket.status_changed'],
          closing: [{ event: recorded, actor: agentActor(principal) }],
          result: {
            id: chat.id,
            ticket_id: chat.ticket_id,
            external_id: chat.external_id,
            agent_id: chat.agent_id,
            started_at: times.started.toISOString(),
            picked_up_at: times.pickedUp?.toISOString() ?? null,
            missed: chat.missed,
            ended_at: times.ended?.toISOString() ?? null,
            message_count: messages.length,
            created_at: chat.created_at.toISOString(),
          },
        };
      },
    ),
  );
}
