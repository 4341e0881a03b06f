/**
 * A ticket's history (its row, ticket_events and what they point at) as records of the import
 * format (docs: README "Exports", the import format of POST /v1/imports), so an export of one
 * Deskroute feeds another. Pure: no database, no clock. External ids are our ids (the ticket's,
 * the message's, the event's), agents, departments and contacts are referred to by our ids, and
 * every timeline record is `at` its event's occurred_at (calls and chats: their start).
 *
 * What the format has no record for is left out, and the importing help desk recomputes it:
 * SLA events, postponed_until.
 */

export type ImportRecord = Record<string, unknown> & { type: string; external_id: string };

export interface HistoryEvent {
  id: string;
  type: string;
  actor_type: string;
  actor_agent_id: string | null;
  data: Record<string, unknown>;
  occurred_at: Date;
}

export interface HistoryMessage {
  id: string;
  kind: 'customer' | 'agent' | 'note';
  body: string;
  author_agent_id: string | null;
  chat_id: string | null;
  created_at: Date;
  /** Its attachments' ids, in their order (the import's `attachments`, see filesOfRecords). */
  attachment_ids?: readonly string[];
}

/** The import format names at most this many files per message (records.ts). */
const MAX_MESSAGE_FILES = 100;

/** A message's files as the import format names them: by this help desk's attachment ids. */
const attachmentsOf = (m: HistoryMessage) =>
  m.attachment_ids && m.attachment_ids.length > 0
    ? { attachments: m.attachment_ids.slice(0, MAX_MESSAGE_FILES) }
    : {};

export interface HistoryCall {
  id: string;
  direction: 'inbound' | 'outbound';
  outcome: 'answered' | 'missed';
  agent_id: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: Date;
  answered_at: Date | null;
  ended_at: Date | null;
}

export interface HistoryChat {
  id: string;
  agent_id: string | null;
  started_at: Date;
  picked_up_at: Date | null;
  missed: boolean;
  ended_at: Date | null;
}

export interface TicketHistory {
  ticket: { id: string; channel: string; contact_id: string; created_at: Date; subject: string };
  /** In the order they happened (occurred_at, then id). */
  events: HistoryEvent[];
  messages: ReadonlyMap<string, HistoryMessage>;
  calls: ReadonlyMap<string, HistoryCall>;
  chats: ReadonlyMap<string, HistoryChat>;
  ratings: ReadonlyMap<string, { value: 'positive' | 'negative'; comment: string | null }>;
}

const IMPORTED_STATUSES = new Set(['open', 'answered', 'postponed', 'resolved', 'spam']);
const iso = (d: Date) => d.toISOString();
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

export interface ContactForImport {
  id: string;
  name: string;
  emails: string[];
  phones: string[];
  custom_fields: Record<string, unknown>;
}

export function contactRecord(c: ContactForImport): ImportRecord {
  return {
    type: 'contact',
    external_id: c.id,
    name: c.name,
    emails: c.emails,
    phones: c.phones,
    custom_fields: c.custom_fields,
  };
}

/** The ticket record (its state at creation), then its timeline records in time order. */
export function ticketRecords(h: TicketHistory): ImportRecord[] {
  const { ticket } = h;
  const created = h.events.find((e) => e.type === 'created');
  const createdData = created?.data ?? {};
  let tags = Array.isArray(createdData.tags) ? (createdData.tags as string[]) : [];
  // The opening message: added with the creation (same instant), before any other message.
  const opening = h.events.find(
    (e) => e.type === 'message_added' && created && e.occurred_at.getTime() === created.occurred_at.getTime(),
  );
  const openingMessage = opening ? h.messages.get(String(opening.data.message_id)) : undefined;
  const first = openingMessage && openingMessage.chat_id === null ? openingMessage : undefined;
  const record: ImportRecord = {
    type: 'ticket',
    external_id: ticket.id,
    created_at: iso(created?.occurred_at ?? ticket.created_at),
    subject: str(createdData.subject) ?? ticket.subject,
    channel: ticket.channel,
    contact: ticket.contact_id,
    department: str(createdData.department_id),
    priority: str(createdData.priority) ?? 'normal',
    tags,
  };
  if (first) {
    record.message = {
      body: first.body,
      author: first.kind === 'customer' ? 'contact' : 'agent',
      ...(first.kind !== 'customer' && first.author_agent_id !== null && { agent: first.author_agent_id }),
      ...attachmentsOf(first),
    };
  }
  const records: ImportRecord[] = [record];
  const base = (e: HistoryEvent, type: string, externalId = e.id) => ({
    type,
    external_id: externalId,
    ticket: ticket.id,
    at: iso(e.occurred_at),
    ...(e.actor_type === 'agent' && e.actor_agent_id !== null && { agent: e.actor_agent_id }),
  });
  for (const e of h.events) {
    if (e === created || (first && e === opening)) continue;
    switch (e.type) {
      case 'message_added': {
        const m = h.messages.get(String(e.data.message_id));
        if (!m || m.chat_id !== null) break; // chat messages travel in their chat record
        const { agent: _actor, ...rest } = base(e, 'message', m.id);
        records.push({
          ...rest,
          kind: m.kind === 'agent' ? 'reply' : m.kind,
          body: m.body,
          ...(m.kind !== 'customer' && m.author_agent_id !== null && { agent: m.author_agent_id }),
          ...attachmentsOf(m),
        });
        break;
      }
      case 'status_changed': {
        const to = str(e.data.to);
        if (to && IMPORTED_STATUSES.has(to)) records.push({ ...base(e, 'status'), status: to });
        break;
      }
      case 'transferred': {
        const to = str(e.data.to_department_id);
        if (to) records.push({ ...base(e, 'transfer'), department: to });
        break;
      }
      case 'assigned':
        records.push({ ...base(e, 'assignment'), assignee: str(e.data.to) });
        break;
      case 'tags_changed': {
        const added = (e.data.added as string[] | undefined) ?? [];
        const removed = new Set((e.data.removed as string[] | undefined) ?? []);
        tags = [...tags.filter((t) => !removed.has(t)), ...added.filter((t) => !tags.includes(t))];
        records.push({ ...base(e, 'tags'), tags });
        break;
      }
      case 'priority_changed': {
        const to = str(e.data.to);
        if (to) records.push({ ...base(e, 'priority'), priority: to });
        break;
      }
      case 'subject_changed': {
        const to = str(e.data.to);
        if (to) records.push({ ...base(e, 'subject'), subject: to });
        break;
      }
      case 'rated': {
        const rating = h.ratings.get(String(e.data.rating_id));
        if (!rating) break;
        const { agent: _agent, ...rest } = base(e, 'rating');
        records.push({
          ...rest,
          value: rating.value,
          ...(rating.comment !== null && { comment: rating.comment }),
        });
        break;
      }
      case 'call_recorded': {
        const call = h.calls.get(String(e.data.call_id));
        if (!call) break;
        records.push({
          type: 'call',
          external_id: call.id,
          ticket: ticket.id,
          // Recorded then; it began to ring at started_at (often a little earlier).
          at: iso(e.occurred_at),
          started_at: iso(call.started_at),
          direction: call.direction,
          outcome: call.outcome,
          ...(call.agent_id !== null && { agent: call.agent_id }),
          ...(call.from_number !== null && { from_number: call.from_number }),
          ...(call.to_number !== null && { to_number: call.to_number }),
          ...(call.answered_at !== null && { answered_at: iso(call.answered_at) }),
          ...(call.ended_at !== null && { ended_at: iso(call.ended_at) }),
        });
        break;
      }
      case 'chat_recorded': {
        const chat = h.chats.get(String(e.data.chat_id));
        if (!chat) break;
        const messages = [...h.messages.values()]
          .filter((m) => m.chat_id === chat.id && m.kind !== 'note')
          .sort((a, b) => a.created_at.getTime() - b.created_at.getTime())
          .map((m) => ({
            from: m.kind === 'customer' ? 'customer' : 'agent',
            body: m.body,
            sent_at: iso(m.created_at),
          }));
        records.push({
          type: 'chat',
          external_id: chat.id,
          ticket: ticket.id,
          at: iso(e.occurred_at),
          ...(chat.agent_id !== null && { agent: chat.agent_id }),
          started_at: iso(chat.started_at),
          ...(chat.picked_up_at !== null && { picked_up_at: iso(chat.picked_up_at) }),
          missed: chat.missed,
          ...(chat.ended_at !== null && { ended_at: iso(chat.ended_at) }),
          messages,
        });
        break;
      }
      default:
        // sla.*: no record in the import format.
        break;
    }
  }
  return records;
}
