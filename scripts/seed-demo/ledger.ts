import type { Channel, DepartmentRole, MessageKind, Priority, TicketStatus } from '../../src/db/types.ts';
import { normaliseTags } from '../../src/domains/tickets/changes.ts';
import type { Actor } from '../../src/domains/tickets/repository.ts';
import type { Random } from './random.ts';

// A replay of the ticket service in memory, with the clock passed in. Each method mirrors one
// service function (named in its comment) and produces the rows and events that function
// writes, in the same order, stamped the same way; the seed then writes them in batches. When
// the service changes, change the mirror here: test/seed-demo.test.ts checks the invariants
// the API keeps.

export interface TicketState {
  id: string;
  subject: string;
  channel: Channel;
  status: TicketStatus;
  priority: Priority;
  department_id: string | null;
  assignee_id: string | null;
  contact_id: string;
  tags: string[];
  support_address: string | null;
  postponed_until: Date | null;
  status_before_delete: TicketStatus | null;
  created_at: Date;
  updated_at: Date;
  first_answered_at: Date | null;
  last_customer_message_at: Date | null;
  last_agent_message_at: Date | null;
  resolved_at: Date | null;
  first_resolved_at: Date | null;
  waiting_since: Date;
  /** The text the search vector is built from. */
  search: string[];
}

type TicketPatch = Partial<
  Pick<
    TicketState,
    | 'subject'
    | 'status'
    | 'priority'
    | 'department_id'
    | 'assignee_id'
    | 'tags'
    | 'postponed_until'
    | 'status_before_delete'
    | 'first_answered_at'
    | 'last_customer_message_at'
    | 'last_agent_message_at'
    | 'resolved_at'
    | 'first_resolved_at'
    | 'waiting_since'
  >
>;

export interface MessageRow {
  id: string;
  ticket_id: string;
  kind: MessageKind;
  channel: Channel;
  author_agent_id: string | null;
  author_contact_id: string | null;
  chat_id: string | null;
  body: string;
  department_id: string | null;
  created_at: Date;
}

export interface EventRow {
  ticket_id: string;
  type: string;
  actor_type: Actor['type'];
  actor_agent_id: string | null;
  actor_contact_id: string | null;
  via_token_id: string | null;
  department_id: string | null;
  agent_id: string | null;
  channel: Channel;
  data: Record<string, unknown>;
  occurred_at: Date;
  /** Order of writing, which breaks ties between events of one transaction. */
  seq: number;
}

export interface CallRow {
  id: string;
  ticket_id: string;
  external_id: string | null;
  direction: 'inbound' | 'outbound';
  outcome: 'answered' | 'missed';
  agent_id: string | null;
  department_id: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: Date;
  answered_at: Date | null;
  ended_at: Date | null;
  duration_seconds: number;
  created_at: Date;
}

export interface ChatRow {
  id: string;
  ticket_id: string;
  external_id: string | null;
  agent_id: string | null;
  department_id: string | null;
  started_at: Date;
  picked_up_at: Date | null;
  missed: boolean;
  ended_at: Date | null;
  created_at: Date;
}

export interface RatingRow {
  id: string;
  ticket_id: string;
  message_id: string | null;
  agent_id: string | null;
  department_id: string | null;
  value: 'positive' | 'negative';
  comment: string | null;
  created_at: Date;
}

export interface ContactRow {
  id: string;
  name: string;
  created_at: Date;
  emails: string[];
  phones: string[];
}

/** Everything the seed writes about contacts and tickets, collected before the batched inserts. */
export class Ledger {
  readonly tickets: TicketState[] = [];
  readonly messages: MessageRow[] = [];
  readonly events: EventRow[] = [];
  readonly calls: CallRow[] = [];
  readonly chats: ChatRow[] = [];
  readonly ratings: RatingRow[] = [];
  readonly contacts: ContactRow[] = [];
  /** Last time each API token was used. */
  readonly tokenUse = new Map<string, Date>();
  private seq = 0;
  private readonly byEmail = new Map<string, string>();
  private readonly byPhone = new Map<string, string>();

  readonly ids: Random;
  /** Agent id -> department id -> role, for the assignee rule of transfers. */
  readonly memberships: Map<string, Map<string, DepartmentRole>>;

  constructor(ids: Random, memberships: Map<string, Map<string, DepartmentRole>>) {
    this.ids = ids;
    this.memberships = memberships;
  }

  id(): string {
    return this.ids.uuid();
  }

  /** Contacts already in the database (a seed with --force on top of earlier data). */
  knowContact(id: string, emails: string[], phones: string[]) {
    for (const e of emails) this.byEmail.set(e.toLowerCase(), id);
    for (const p of phones) this.byPhone.set(p, id);
  }

  /** resolveContact (contacts/repository.ts): by email, else by phone, else a new contact with both. */
  resolveContact(at: Date, input: { name?: string; email?: string; phone?: string }): string {
    const email = input.email?.trim() || undefined;
    const phone = input.phone;
    const existing =
      (email !== undefined ? this.byEmail.get(email.toLowerCase()) : undefined) ??
      (phone !== undefined ? this.byPhone.get(phone) : undefined);
    if (existing) return existing;
    return this.createContact(at, {
      name: input.name?.trim() ?? '',
      emails: email ? [email] : [],
      phones: phone ? [phone] : [],
    });
  }

  /** createContact (contacts/service.ts), e.g. by the social inbox before it opens a ticket. */
  createContact(at: Date, input: { name: string; emails: string[]; phones: string[] }): string {
    const id = this.id();
    this.contacts.push({ id, name: input.name, created_at: at, emails: input.emails, phones: input.phones });
    this.knowContact(id, input.emails, input.phones);
    return id;
  }

  useToken(actor: Actor, at: Date) {
    if (!actor.tokenId) return;
    const last = this.tokenUse.get(actor.tokenId);
    if (!last || last < at) this.tokenUse.set(actor.tokenId, at);
  }

  /** insertEvents (tickets/repository.ts): each stamped with the ticket's department, assignee and channel now. */
  addEvents(
    ticket: TicketState,
    actor: Actor,
    at: Date,
    events: { type: string; data?: Record<string, unknown> }[],
  ) {
    this.useToken(actor, at);
    for (const e of events) {
      this.events.push({
        ticket_id: ticket.id,
        type: e.type,
        actor_type: actor.type,
        actor_agent_id: actor.agentId,
        actor_contact_id: actor.contactId,
        via_token_id: actor.tokenId ?? null,
        department_id: ticket.department_id,
        agent_id: ticket.assignee_id,
        channel: ticket.channel,
        data: e.data ?? {},
        occurred_at: at,
        seq: this.seq++,
      });
    }
  }

  addMessage(values: Omit<MessageRow, 'id'>): MessageRow {
    const row = { id: this.id(), ...values };
    this.messages.push(row);
    return row;
  }
}

export interface OpenInput {
  subject: string;
  channel: Channel;
  contactId: string;
  message?: { body: string; author: 'contact' | 'agent' };
  department_id: string | null;
  assignee_id?: string | null;
  priority?: Priority;
  tags?: string[];
  support_address?: string | null;
}

export interface CallInput {
  external_id: string | null;
  direction: 'inbound' | 'outbound';
  outcome: 'answered' | 'missed';
  agent_id: string | null;
  from_number: string | null;
  to_number: string | null;
  started_at: Date;
  answered_at: Date | null;
  ended_at: Date | null;
}

export interface ChatInput {
  external_id: string | null;
  agent_id: string | null;
  started_at: Date;
  picked_up_at: Date | null;
  missed: boolean;
  ended_at: Date | null;
  messages: { from: 'customer' | 'agent'; body: string; sent_at: Date }[];
}

const isoOrUndefined = (d: Date | null) => d?.toISOString();

/** One ticket's life, replayed through mirrors of the service functions. */
export class TicketStory {
  /** Agent replies so far, newest last (a rating may name one). */
  readonly replies: MessageRow[] = [];
  /** When the last change happened: the next one must come later. */
  last: Date;

  private readonly ledger: Ledger;
  readonly ticket: TicketState;

  private constructor(ledger: Ledger, ticket: TicketState) {
    this.ledger = ledger;
    this.ticket = ticket;
    this.last = ticket.created_at;
  }

  /** insertNewTicket (tickets/service.ts). */
  static open(
    ledger: Ledger,
    at: Date,
    input: OpenInput,
    actor: Actor,
    authorAgentId: string | null,
  ): TicketStory {
    const fromAgent = input.message?.author === 'agent';
    const ticket: TicketState = {
      id: ledger.id(),
      subject: input.subject.trim(),
      channel: input.channel,
      status: fromAgent ? 'answered' : 'new',
      priority: input.priority ?? 'normal',
      department_id: input.department_id,
      assignee_id: input.assignee_id ?? null,
      contact_id: input.contactId,
      tags: normaliseTags(input.tags ?? []),
      support_address: input.support_address ?? null,
      postponed_until: null,
      status_before_delete: null,
      created_at: at,
      updated_at: at,
      first_answered_at: null,
      last_customer_message_at: null,
      last_agent_message_at: null,
      resolved_at: null,
      first_resolved_at: null,
      waiting_since: at,
      search: [input.subject.trim(), input.message?.body ?? ''],
    };
    ledger.tickets.push(ticket);
    const story = new TicketStory(ledger, ticket);
    const events: { type: string; data?: Record<string, unknown> }[] = [
      {
        type: 'created',
        data: {
          subject: ticket.subject,
          status: ticket.status,
          priority: ticket.priority,
          department_id: ticket.department_id,
          tags: ticket.tags,
        },
      },
    ];
    if (input.message) {
      const message = ledger.addMessage({
        ticket_id: ticket.id,
        kind: fromAgent ? 'agent' : 'customer',
        channel: ticket.channel,
        author_agent_id: fromAgent ? authorAgentId : null,
        author_contact_id: fromAgent ? null : ticket.contact_id,
        chat_id: null,
        body: input.message.body,
        department_id: ticket.department_id,
        created_at: at,
      });
      if (fromAgent) {
        ticket.first_answered_at = at;
        ticket.last_agent_message_at = at;
        story.replies.push(message);
      } else {
        ticket.last_customer_message_at = at;
      }
      events.push({ type: 'message_added', data: { message_id: message.id, kind: message.kind } });
    }
    if (ticket.assignee_id) events.push({ type: 'assigned', data: { from: null, to: ticket.assignee_id } });
    const opener: Actor =
      fromAgent || !input.message
        ? actor
        : { ...actor, type: 'contact', agentId: null, contactId: ticket.contact_id };
    ledger.addEvents(ticket, opener, at, events);
    return story;
  }

  private moveTo(at: Date) {
    if (at < this.last)
      throw new Error(`ticket ${this.ticket.id}: ${at.toISOString()} is before ${this.last.toISOString()}`);
    this.last = at;
  }

  /** writeTicketChanges (tickets/repository.ts): updated_at is the transaction's now. */
  private update(at: Date, patch: TicketPatch, appendToSearch?: string) {
    Object.assign(this.ticket, patch);
    this.ticket.updated_at = at;
    if (appendToSearch !== undefined) this.ticket.search.push(appendToSearch);
    else if (patch.subject !== undefined) this.ticket.search.push(patch.subject);
  }

  /** applyChanges (tickets/service.ts): one event per change, stamped with the ticket after it. */
  applyChanges(at: Date, patch: TicketPatch, actor: Actor, search?: string) {
    this.moveTo(at);
    const before = { ...this.ticket, tags: [...this.ticket.tags] };
    this.update(at, patch, search);
    const after = this.ticket;
    const events: { type: string; data: Record<string, unknown> }[] = [];
    if (after.subject !== before.subject)
      events.push({ type: 'subject_changed', data: { from: before.subject, to: after.subject } });
    if (after.priority !== before.priority) {
      events.push({ type: 'priority_changed', data: { from: before.priority, to: after.priority } });
    }
    if (after.department_id !== before.department_id) {
      events.push({
        type: 'transferred',
        data: { from_department_id: before.department_id, to_department_id: after.department_id },
      });
    }
    if (after.assignee_id !== before.assignee_id) {
      events.push({ type: 'assigned', data: { from: before.assignee_id, to: after.assignee_id } });
    }
    if (after.status !== before.status) {
      const data: Record<string, unknown> = { from: before.status, to: after.status };
      if (after.status === 'postponed') data.postponed_until = isoOrUndefined(after.postponed_until);
      if (before.status === 'resolved' && after.status === 'open') data.reopened = true;
      if (
        after.status === 'resolved' &&
        before.first_resolved_at === null &&
        after.first_resolved_at !== null
      ) {
        data.first_resolution = true;
        data.resolution_seconds = Math.max(
          0,
          (after.first_resolved_at.getTime() - after.created_at.getTime()) / 1000,
        );
      }
      events.push({ type: 'status_changed', data });
    }
    const added = after.tags.filter((t) => !before.tags.includes(t));
    const removed = before.tags.filter((t) => !after.tags.includes(t));
    if (added.length > 0 || removed.length > 0)
      events.push({ type: 'tags_changed', data: { added, removed } });
    this.ledger.addEvents(after, actor, at, events);
  }

  /** statusPatch (tickets/service.ts), with the clock passed in. */
  statusPatch(at: Date, status: TicketStatus, postponedUntil?: Date): TicketPatch {
    const before = this.ticket;
    if (status === before.status && status !== 'postponed') return {};
    const patch: TicketPatch = { status };
    if (status === 'resolved') {
      patch.resolved_at = at;
      if (before.first_resolved_at === null) patch.first_resolved_at = at;
    }
    if (status === 'postponed') patch.postponed_until = postponedUntil ?? null;
    else if (before.postponed_until) patch.postponed_until = null;
    if (status === 'open' && before.status !== 'new') patch.waiting_since = at;
    return patch;
  }

  /** updateTicket (PATCH /v1/tickets/:id). */
  patch(
    at: Date,
    actor: Actor,
    input: {
      status?: 'open' | 'answered' | 'postponed' | 'resolved' | 'spam';
      postponed_until?: Date;
      priority?: Priority;
      assignee_id?: string | null;
      tags?: string[];
    },
  ) {
    const patch: TicketPatch = {
      ...(input.priority !== undefined && { priority: input.priority }),
      ...(input.assignee_id !== undefined && { assignee_id: input.assignee_id }),
      ...(input.tags !== undefined && { tags: normaliseTags(input.tags) }),
      ...(input.status !== undefined && this.statusPatch(at, input.status, input.postponed_until)),
    };
    this.applyChanges(at, patch, actor);
  }

  /** changeTags (POST /v1/tickets/:id/tags), adding only. */
  addTags(at: Date, actor: Actor, add: string[]) {
    this.applyChanges(at, { tags: normaliseTags([...this.ticket.tags, ...add]) }, actor);
  }

  /** deleteTicket (DELETE /v1/tickets/:id). */
  remove(at: Date, actor: Actor) {
    if (this.ticket.status === 'deleted') return;
    this.applyChanges(at, { status: 'deleted', status_before_delete: this.ticket.status }, actor);
  }

  /** wakePostponedTickets (tickets/service.ts): the scheduler, as the system. */
  wake(at: Date) {
    const system: Actor = { type: 'system', agentId: null, contactId: null };
    this.applyChanges(at, { ...this.statusPatch(at, 'open'), waiting_since: at }, system);
  }

  /** addMessage kind note. */
  note(at: Date, actor: Actor, body: string): MessageRow {
    this.moveTo(at);
    const t = this.ticket;
    const message = this.ledger.addMessage({
      ticket_id: t.id,
      kind: 'note',
      channel: t.channel,
      author_agent_id: actor.agentId,
      author_contact_id: null,
      chat_id: null,
      body,
      department_id: t.department_id,
      created_at: at,
    });
    this.update(at, {}, body);
    this.ledger.addEvents(t, actor, at, [
      { type: 'message_added', data: { message_id: message.id, kind: 'note' } },
    ]);
    return message;
  }

  /** addMessage kind reply: the first answer once, the ticket answered, and how long the customer waited. */
  reply(at: Date, actor: Actor, body: string): MessageRow {
    this.moveTo(at);
    const t = this.ticket;
    const waited = t.status === 'new' || t.status === 'open';
    const message = this.ledger.addMessage({
      ticket_id: t.id,
      kind: 'agent',
      channel: t.channel,
      author_agent_id: actor.agentId,
      author_contact_id: null,
      chat_id: null,
      body,
      department_id: t.department_id,
      created_at: at,
    });
    this.replies.push(message);
    const patch: TicketPatch = {
      ...this.statusPatch(at, 'answered'),
      last_agent_message_at: at,
      ...(t.first_answered_at === null && { first_answered_at: at }),
    };
    this.ledger.addEvents(t, actor, at, [
      {
        type: 'message_added',
        data: {
          message_id: message.id,
          kind: 'agent',
          first_answer: t.first_answered_at === null,
          wait_seconds: waited ? Math.max(0, (at.getTime() - t.waiting_since.getTime()) / 1000) : null,
        },
      },
    ]);
    this.applyChanges(at, patch, actor, body);
    return message;
  }

  /** addMessage kind customer, recorded by an integration: reopens an answered, postponed or resolved ticket. */
  customerMessage(at: Date, integration: Actor, body: string): MessageRow {
    this.moveTo(at);
    const t = this.ticket;
    const contactActor: Actor = {
      type: 'contact',
      agentId: null,
      contactId: t.contact_id,
      tokenId: integration.tokenId ?? null,
    };
    const message = this.ledger.addMessage({
      ticket_id: t.id,
      kind: 'customer',
      channel: t.channel,
      author_agent_id: null,
      author_contact_id: t.contact_id,
      chat_id: null,
      body,
      department_id: t.department_id,
      created_at: at,
    });
    const reopen = ['answered', 'postponed', 'resolved'].includes(t.status);
    const patch: TicketPatch = { ...(reopen && this.statusPatch(at, 'open')), last_customer_message_at: at };
    this.ledger.addEvents(t, contactActor, at, [
      { type: 'message_added', data: { message_id: message.id, kind: 'customer' } },
    ]);
    this.applyChanges(at, patch, contactActor, body);
    return message;
  }

  /** transferTicket: the assignee stays only when they may work tickets in the new department. */
  transfer(
    at: Date,
    actor: Actor,
    departmentId: string,
    input: { assignee_id?: string | null; note?: string } = {},
  ) {
    const t = this.ticket;
    let assignee: string | null;
    if (input.assignee_id) assignee = input.assignee_id;
    else if (input.assignee_id === null || t.assignee_id === null) assignee = null;
    else {
      const role = this.ledger.memberships.get(t.assignee_id)?.get(departmentId);
      assignee = role === 'solver' || role === 'supervisor' || role === 'manager' ? t.assignee_id : null;
    }
    this.applyChanges(at, { department_id: departmentId, assignee_id: assignee }, actor);
    if (input.note) {
      const note = this.ledger.addMessage({
        ticket_id: t.id,
        kind: 'note',
        channel: t.channel,
        author_agent_id: actor.agentId,
        author_contact_id: null,
        chat_id: null,
        body: input.note,
        department_id: t.department_id,
        created_at: at,
      });
      this.ledger.addEvents(t, actor, at, [
        { type: 'message_added', data: { message_id: note.id, kind: 'note' } },
      ]);
      this.update(at, {}, input.note);
    }
  }

  /** addRating, recorded by an integration for the customer; changes nothing on the ticket. */
  rate(
    at: Date,
    integration: Actor,
    input: { value: 'positive' | 'negative'; comment?: string; message?: MessageRow },
  ) {
    this.moveTo(at);
    const t = this.ticket;
    const agentId = input.message ? input.message.author_agent_id : t.assignee_id;
    const row: RatingRow = {
      id: this.ledger.id(),
      ticket_id: t.id,
      message_id: input.message?.id ?? null,
      agent_id: agentId,
      department_id: t.department_id,
      value: input.value,
      comment: input.comment ?? null,
      created_at: at,
    };
    this.ledger.ratings.push(row);
    const contactActor: Actor = {
      type: 'contact',
      agentId: null,
      contactId: t.contact_id,
      tokenId: integration.tokenId ?? null,
    };
    this.ledger.addEvents(t, contactActor, at, [
      {
        type: 'rated',
        data: { rating_id: row.id, value: row.value, rated_agent_id: agentId, message_id: row.message_id },
      },
    ]);
  }

  /** recordCall (calls/service.ts), recorded at `at` by the telephony integration. */
  recordCall(at: Date, integration: Actor, input: CallInput) {
    this.moveTo(at);
    const t = this.ticket;
    const duration =
      input.answered_at && input.ended_at
        ? Math.round((input.ended_at.getTime() - input.answered_at.getTime()) / 1000)
        : 0;
    const call: CallRow = {
      id: this.ledger.id(),
      ticket_id: t.id,
      external_id: input.external_id,
      direction: input.direction,
      outcome: input.outcome,
      agent_id: input.agent_id,
      department_id: t.department_id,
      from_number: input.from_number,
      to_number: input.to_number,
      started_at: input.started_at,
      answered_at: input.answered_at,
      ended_at: input.ended_at,
      duration_seconds: duration,
      created_at: at,
    };
    this.ledger.calls.push(call);
    let patch: TicketPatch = {};
    let actor = integration;
    if (input.outcome === 'answered') {
      patch = {
        ...this.statusPatch(at, 'answered'),
        last_agent_message_at: input.answered_at,
        ...(t.first_answered_at === null && { first_answered_at: input.answered_at }),
      };
    } else if (input.direction === 'inbound') {
      actor = {
        type: 'contact',
        agentId: null,
        contactId: t.contact_id,
        tokenId: integration.tokenId ?? null,
      };
      patch = {
        ...(['answered', 'postponed', 'resolved'].includes(t.status) && this.statusPatch(at, 'open')),
        last_customer_message_at: input.started_at,
      };
    }
    this.applyChanges(at, patch, actor);
    this.ledger.addEvents(t, integration, at, [
      {
        type: 'call_recorded',
        data: {
          call_id: call.id,
          direction: call.direction,
          outcome: call.outcome,
          agent_id: call.agent_id,
          duration_seconds: call.duration_seconds,
        },
      },
    ]);
  }

  /** recordChat (chats/service.ts): messages keep their sent times; no message_added events. */
  recordChat(at: Date, integration: Actor, input: ChatInput) {
    this.moveTo(at);
    const t = this.ticket;
    const messages = [...input.messages].sort((a, b) => a.sent_at.getTime() - b.sent_at.getTime());
    const chat: ChatRow = {
      id: this.ledger.id(),
      ticket_id: t.id,
      external_id: input.external_id,
      agent_id: input.agent_id,
      department_id: t.department_id,
      started_at: input.started_at,
      picked_up_at: input.picked_up_at,
      missed: input.missed,
      ended_at: input.ended_at,
      created_at: at,
    };
    this.ledger.chats.push(chat);
    for (const m of messages) {
      const row = this.ledger.addMessage({
        ticket_id: t.id,
        kind: m.from === 'agent' ? 'agent' : 'customer',
        channel: 'chat',
        author_agent_id: m.from === 'agent' ? input.agent_id : null,
        author_contact_id: m.from === 'customer' ? t.contact_id : null,
        chat_id: chat.id,
        body: m.body,
        department_id: t.department_id,
        created_at: m.sent_at,
      });
      if (row.kind === 'agent') this.replies.push(row);
    }
    const firstAgent = messages.find((m) => m.from === 'agent');
    const lastAgent = messages.findLast((m) => m.from === 'agent');
    const lastCustomer = messages.findLast((m) => m.from === 'customer');
    const answeredLast = lastAgent && (!lastCustomer || lastAgent.sent_at >= lastCustomer.sent_at);
    let patch: TicketPatch = {};
    if (answeredLast) {
      patch = {
        ...this.statusPatch(at, 'answered'),
        last_agent_message_at: lastAgent.sent_at,
        ...(t.first_answered_at === null && firstAgent && { first_answered_at: firstAgent.sent_at }),
      };
    } else if (lastCustomer || input.missed) {
      patch = {
        ...(['answered', 'postponed', 'resolved'].includes(t.status) && this.statusPatch(at, 'open')),
        last_customer_message_at: lastCustomer ? lastCustomer.sent_at : input.started_at,
        ...(firstAgent && t.first_answered_at === null && { first_answered_at: firstAgent.sent_at }),
      };
    }
    const text = messages.map((m) => m.body).join('\n');
    this.applyChanges(at, patch, integration, text || undefined);
    this.ledger.addEvents(t, integration, at, [
      {
        type: 'chat_recorded',
        data: {
          chat_id: chat.id,
          agent_id: chat.agent_id,
          missed: chat.missed,
          pickup_seconds: input.picked_up_at
            ? (input.picked_up_at.getTime() - input.started_at.getTime()) / 1000
            : null,
          duration_seconds: input.ended_at
            ? (input.ended_at.getTime() - input.started_at.getTime()) / 1000
            : null,
          customer_messages: messages.filter((m) => m.from === 'customer').length,
          agent_messages: messages.filter((m) => m.from === 'agent').length,
        },
      },
    ]);
  }
}
