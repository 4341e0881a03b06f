import { randomUUID } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Transaction } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import { can, loadTicketAccess, type TicketAbility, type TicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import type { Channel, Database, DepartmentRole, Priority, TicketRow, TicketStatus } from '../../db/types.ts';
import { DomainError, type FieldError, forbidden, invalid, notFound } from '../../errors.ts';
import { assertIfMatch } from '../../plugins/etag.ts';
import { evaluateRules, openingWithRules, runRules } from '../automation-rules/runner.ts';
import { resolveContact, type SeenByRules } from '../contacts/repository.ts';
import type { Actor, NewEvent, TicketPatch, TicketRecord } from './repository.ts';
import * as repo from './repository.ts';
import type { Ticket } from './schemas.ts';

type Trx = Transaction<Database>;

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

export function agentActor(principal: Principal): Actor {
  return { type: 'agent', agentId: principal.agentId, contactId: null, tokenId: principal.tokenId };
}

/** A ticket the caller may see, with its representation; 404 when it is out of reach. */
export async function reachable(
  db: Db,
  access: TicketAccess,
  record: TicketRecord | undefined,
  ability: TicketAbility,
) {
  if (!record || !can(access, record, 'read')) throw notFound('ticket');
  if (!can(access, record, ability)) {
    throw forbidden(
      ability === 'work'
        ? 'Your role in this ticket’s department only lets you read it.'
        : 'Only supervisors and managers of the ticket’s department (or admins) may do this.',
      ability === 'work' ? 'solver_required' : 'supervisor_required',
    );
  }
  const [ticket] = await repo.withContacts(db, [record]);
  return ticket!;
}

export async function getTicket(db: Db, principal: Principal, id: string): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  return reachable(db, access, await repo.findTicketRecord(db, id), 'read');
}

export async function requireReadable(db: Db, principal: Principal, id: string): Promise<TicketAccess> {
  const access = await loadTicketAccess(db, principal);
  await reachable(db, access, await repo.findTicketRecord(db, id), 'read');
  return access;
}

export async function requireDepartment(db: Db, departmentId: string, field: string) {
  const row = await db
    .selectFrom('departments')
    .select('id')
    .where('id', '=', departmentId)
    .executeTakeFirst();
  if (!row)
    throw unprocessable('department_not_found', 'The department does not exist.', [
      { field, message: 'no such department' },
    ]);
}

/**
 * An agent may hold a ticket when active and, for a ticket in a department, a member of it
 * who may work tickets there (solver or more).
 */
export async function requireAssignable(db: Db, agentId: string, departmentId: string | null, field: string) {
  const agent = await db
    .selectFrom('agents')
    .select(['id', 'status'])
    .where('id', '=', agentId)
    .executeTakeFirst();
  if (!agent)
    throw unprocessable('agent_not_found', 'The agent does not exist.', [
      { field, message: 'no such agent' },
    ]);
  if (agent.status !== 'active') {
    throw unprocessable('agent_disabled', 'A disabled agent cannot take tickets.', [
      { field, message: 'is disabled' },
    ]);
  }
  if (departmentId !== null && !(await canHoldIn(db, agentId, departmentId))) {
    throw unprocessable(
      'assignee_not_member',
      'The agent is not a solver (or more) in the ticket’s department.',
      [{ field, message: 'is not a solver, supervisor or manager of the department' }],
    );
  }
}

async function canHoldIn(db: Db, agentId: string, departmentId: string) {
  const row = await db
    .selectFrom('department_members')
    .select('role')
    .where('agent_id', '=', agentId)
    .where('department_id', '=', departmentId)
    .executeTakeFirst();
  return row !== undefined && (['solver', 'supervisor', 'manager'] as DepartmentRole[]).includes(row.role);
}

export function normaliseTags(tags: string[]): string[] {
  return [...new Set(tags.map(repo.normaliseTag))];
}

export interface CreateTicketInput {
  subject: string;
  channel?: Channel | undefined;
  contact: {
    id?: string | undefined;
    name?: string | undefined;
    email?: string | undefined;
    phone?: string | undefined;
  };
  /** The first message; calls and chats open tickets without one and add their own. */
  message?: { body: string; author?: 'contact' | 'agent' | undefined } | undefined;
  department_id?: string | null | undefined;
  assignee_id?: string | null | undefined;
  priority?: Priority | undefined;
  tags?: string[] | undefined;
  support_address?: string | undefined;
}

/**
 * Opens a ticket with its first message, inside the caller's transaction: the contact is found
 * or created, and the history starts with `created` (and `assigned` when an assignee is given).
 * Validation that needs no lock happens before, in `checkNewTicket`.
 */
export async function insertNewTicket(
  trx: Trx,
  input: CreateTicketInput,
  actor: Actor,
  authorAgentId: string | null,
): Promise<TicketRecord> {
  const contact = await resolveContactOf(trx, input);
  const opened = await openTicket(trx, input, actor, authorAgentId, contact);
  return opened.ticket;
}

/**
 * insertNewTicket's work once the contact is known; also returns the contact summary. `final`:
 * the opening statement is the last of the transaction (see db/prepared.ts, final()).
 */
async function openTicket(
  trx: Trx,
  input: CreateTicketInput,
  actor: Actor,
  authorAgentId: string | null,
  { id: contactId, seen }: { id: string; seen: SeenByRules | null },
  final = false,
) {
  const fromAgent = input.message?.author === 'agent';
  const ticketId = randomUUID();
  const tags = normaliseTags(input.tags ?? []);
  const subject = input.subject.trim();
  const status: TicketStatus = fromAgent ? 'answered' : 'new';
  const message = input.message
    ? {
        id: randomUUID(),
        kind: fromAgent ? ('agent' as const) : ('customer' as const),
        author_agent_id: fromAgent ? authorAgentId : null,
        author_contact_id: fromAgent ? null : contactId,
        body: input.message.body,
      }
    : null;
  // The customer opened the ticket when it starts with their message; whoever created it
  // through the API chose the assignee.
  const opener: Actor =
    message && !fromAgent ? { ...actor, type: 'contact', agentId: null, contactId } : actor;
  const events: repo.OpeningEvent[] = [
    {
      type: 'created',
      actor: opener,
      data: {
        subject,
        status,
        priority: input.priority ?? 'normal',
        department_id: input.department_id ?? null,
        tags,
      },
    },
  ];
  if (message) {
    events.push({
      type: 'message_added',
      actor: opener,
      data: { message_id: message.id, kind: message.kind },
    });
  }
  if (input.assignee_id) {
    events.push({ type: 'assigned', actor, data: { from: null, to: input.assignee_id } });
  }
  const values = {
    id: ticketId,
    subject,
    channel: input.channel ?? 'api',
    status,
    priority: input.priority ?? 'normal',
    department_id: input.department_id ?? null,
    assignee_id: input.assignee_id ?? null,
    contact_id: contactId,
    tags,
    support_address: input.support_address ?? null,
  };
  const snapshot = { ...values, postponed_until: null };
  const evaluation = await evaluateRules(trx, snapshot, ['ticket.created'], {
    seen,
    message: message && {
      id: message.id,
      body: message.body,
      ...(fromAgent
        ? { senderAgentId: authorAgentId }
        : input.contact.email !== undefined && { senderEmail: input.contact.email }),
    },
  });
  // What the rules do to a new ticket travels in its opening statement, with its own events.
  const ruled = evaluation ? await openingWithRules(trx, snapshot, evaluation) : null;
  return repo.insertOpenedTicket(
    trx,
    ruled ? { ...values, ...ruled.values } : values,
    message,
    ruled ? [...events.map((e) => ({ ...e, stamp: ruled.stamp })), ...ruled.events] : events,
    { ...ruled?.extra, final },
  );
}

function resolveContactOf(trx: Trx, input: CreateTicketInput) {
  return resolveContact(trx, {
    ...(input.contact.id !== undefined && { id: input.contact.id }),
    ...(input.contact.name !== undefined && { name: input.contact.name }),
    ...(input.contact.email !== undefined && { email: input.contact.email }),
    ...(input.contact.phone !== undefined && { phone: input.contact.phone }),
  });
}

/** The checks of a new ticket that need no lock: references exist, the caller may assign. */
export async function checkNewTicket(db: Db, principal: Principal | null, input: CreateTicketInput) {
  // An unknown department needs no look-up of its own: the foreign key refuses it (plugins/problem.ts
  // turns that into 422 department_not_found), which saves a round trip on every creation.
  const departmentId = input.department_id ?? null;
  if (input.assignee_id) {
    await requireAssignable(db, input.assignee_id, departmentId, 'body/assignee_id');
    if (principal) {
      const access = await loadTicketAccess(db, principal);
      const ability: TicketAbility = input.assignee_id === principal.agentId ? 'work' : 'manage';
      const draft = { department_id: departmentId, assignee_id: null };
      if (!can(access, draft, ability)) {
        throw forbidden('You may not assign tickets of this department to others.', 'supervisor_required');
      }
    }
  }
  if (input.contact.id === undefined && !input.contact.email && !input.contact.phone) {
    throw invalid('contact_required', 'Give the contact’s id, email or phone.', [
      { field: 'body/contact', message: 'needs id, email or phone' },
    ]);
  }
}

export async function createTicket(
  db: Db,
  principal: Principal,
  input: CreateTicketInput,
  trx?: Trx,
): Promise<Ticket> {
  // Inside the caller's transaction when there is one: a second connection would deadlock on
  // PGlite's single connection, and exhaust a pool under concurrent idempotent retries.
  await checkNewTicket(trx ?? db, principal, input);
  // In a transaction of its own, the opening statement is its last and carries its COMMIT.
  const run = async (t: Trx, final: boolean) =>
    openTicket(t, input, agentActor(principal), principal.agentId, await resolveContactOf(t, input), final);
  const opened = trx ? await run(trx, false) : await db.transaction().execute((t) => run(t, true));
  return repo.toTicket(opened.ticket as TicketRow, opened.contact);
}

/** Applies a patch under the ticket's lock and records one event per change. */
export async function applyChanges(
  trx: Trx,
  before: TicketRecord,
  patch: TicketPatch,
  actor: Actor,
  search?: string,
) {
  const after = await repo.updateTicketRecord(trx, before.id, patch, search);
  await repo.insertEvents(trx, after, actor, changeEvents(before, after));
  return after;
}

/** What the history tells about a ticket's state. */
export type TicketState = Pick<
  TicketRecord,
  'subject' | 'priority' | 'department_id' | 'assignee_id' | 'status' | 'postponed_until' | 'tags'
>;

/** The history events that tell what changed between two states of a ticket. */
export function changeEvents(before: TicketState, after: TicketState): NewEvent[] {
  const events: NewEvent[] = [];
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
    if (after.status === 'postponed') data.postponed_until = after.postponed_until?.toISOString();
    if (before.status === 'resolved' && after.status === 'open') data.reopened = true;
    events.push({ type: 'status_changed', data });
  }
  const added = after.tags.filter((t) => !before.tags.includes(t));
  const removed = before.tags.filter((t) => !after.tags.includes(t));
  if (added.length > 0 || removed.length > 0) events.push({ type: 'tags_changed', data: { added, removed } });
  return events;
}

/** The patch that moves a ticket to a status, with the timestamps the lifecycle keeps. */
export function statusPatch(
  before: Pick<TicketRecord, 'status' | 'postponed_until'>,
  status: TicketStatus,
  postponedUntil?: Date,
): TicketPatch {
  if (status === before.status && status !== 'postponed') return {};
  const patch: TicketPatch = { status };
  if (status === 'resolved') patch.resolved_at = new Date();
  if (status === 'postponed') patch.postponed_until = postponedUntil ?? null;
  else if (before.postponed_until) patch.postponed_until = null;
  if (status === 'open' && before.status !== 'new') patch.waiting_since = new Date();
  return patch;
}

export interface UpdateTicketInput {
  subject?: string | undefined;
  status?: 'open' | 'answered' | 'postponed' | 'resolved' | 'spam' | undefined;
  postponed_until?: string | undefined;
  priority?: Priority | undefined;
  assignee_id?: string | null | undefined;
  tags?: string[] | undefined;
}

export async function updateTicket(
  db: Db,
  principal: Principal,
  request: FastifyRequest,
  id: string,
  input: UpdateTicketInput,
): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  const postponedUntil = input.postponed_until === undefined ? undefined : new Date(input.postponed_until);
  if (postponedUntil !== undefined && input.status !== 'postponed') {
    throw invalid('postponed_until_without_postpone', 'postponed_until goes with status postponed.', [
      { field: 'body/postponed_until', message: 'only with status postponed' },
    ]);
  }
  if (input.status === 'postponed' && (!postponedUntil || postponedUntil.getTime() <= Date.now())) {
    throw invalid('postpone_needs_future_time', 'Postponing needs postponed_until in the future.', [
      { field: 'body/postponed_until', message: 'must be in the future' },
    ]);
  }
  const record = await db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    const current = await reachable(trx, access, before, 'work');
    assertIfMatch(request, current);
    if (before!.status === 'deleted') {
      throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted; restore it first.');
    }
    const mine = before!.assignee_id === null || before!.assignee_id === principal.agentId;
    const manage = can(access, before!, 'manage');
    if (input.status !== undefined && !mine && !manage) {
      throw forbidden(
        'Only supervisors change the status of tickets assigned to others.',
        'supervisor_required',
      );
    }
    if (input.assignee_id !== undefined && input.assignee_id !== before!.assignee_id) {
      const taking = input.assignee_id === principal.agentId && before!.assignee_id === null;
      if (!taking && !manage) {
        throw forbidden(
          'Only supervisors assign tickets to others or take them from others.',
          'supervisor_required',
        );
      }
      if (input.assignee_id !== null) {
        await requireAssignable(trx, input.assignee_id, before!.department_id, 'body/assignee_id');
      }
    }
    const patch: TicketPatch = {
      ...(input.subject !== undefined && { subject: input.subject.trim() }),
      ...(input.priority !== undefined && { priority: input.priority }),
      ...(input.assignee_id !== undefined && { assignee_id: input.assignee_id }),
      ...(input.tags !== undefined && { tags: normaliseTags(input.tags) }),
      ...(input.status !== undefined && statusPatch(before!, input.status, postponedUntil)),
    };
    const after = await applyChanges(trx, before!, patch, agentActor(principal));
    return runRules(trx, after, ['ticket.updated', 'ticket.status_changed'], { before: before! });
  });
  return (await repo.withContacts(db, [record]))[0]!;
}

/** Soft delete: the ticket keeps its history and can be restored by setting a status. */
export async function deleteTicket(db: Db, principal: Principal, request: FastifyRequest, id: string) {
  const access = await loadTicketAccess(db, principal);
  await db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    const current = await reachable(trx, access, before, 'manage');
    assertIfMatch(request, current);
    if (before!.status === 'deleted') return;
    const after = await applyChanges(
      trx,
      before!,
      { status: 'deleted', status_before_delete: before!.status },
      agentActor(principal),
    );
    await runRules(trx, after, ['ticket.status_changed'], { before: before! });
  });
}

export async function restoreTicket(db: Db, principal: Principal, id: string): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  const record = await db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    await reachable(trx, access, before, 'manage');
    if (before!.status !== 'deleted') {
      throw new DomainError('conflict', 'ticket_not_deleted', 'Only a deleted ticket can be restored.');
    }
    const status = before!.status_before_delete ?? 'open';
    const after = await applyChanges(
      trx,
      before!,
      { status, status_before_delete: null },
      agentActor(principal),
    );
    return runRules(trx, after, ['ticket.status_changed'], { before: before! });
  });
  return (await repo.withContacts(db, [record]))[0]!;
}

export async function changeTags(
  db: Db,
  principal: Principal,
  id: string,
  change: { add?: string[] | undefined; remove?: string[] | undefined },
): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  const record = await db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    await reachable(trx, access, before, 'work');
    const remove = new Set(normaliseTags(change.remove ?? []));
    const tags = normaliseTags([...before!.tags.filter((t) => !remove.has(t)), ...(change.add ?? [])]).filter(
      (t) => !remove.has(t) || (change.add ?? []).map(repo.normaliseTag).includes(t),
    );
    if (tags.length > 50) {
      throw invalid('too_many_tags', 'A ticket holds at most 50 tags.', [
        { field: 'body/add', message: 'too many tags' },
      ]);
    }
    const after = await applyChanges(trx, before!, { tags }, agentActor(principal));
    return runRules(trx, after, ['ticket.updated'], { before: before! });
  });
  return (await repo.withContacts(db, [record]))[0]!;
}

/**
 * Adds a message. An agent reply sets the first answer once and moves the ticket to answered;
 * a customer message reopens an answered, postponed or resolved ticket (new stays new); a note
 * changes no status. Each records how long the customer had been waiting, for the reports.
 */
export async function addMessage(
  db: Db,
  principal: Principal,
  id: string,
  input: { kind: 'reply' | 'note' | 'customer'; body: string },
) {
  const access = await loadTicketAccess(db, principal);
  return db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    await reachable(trx, access, before, 'work');
    const ticket = before!;
    if (ticket.status === 'deleted') {
      throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted; restore it first.');
    }
    const now = new Date();
    const actor = agentActor(principal);
    if (input.kind === 'note') {
      const message = await repo.insertMessage(trx, {
        ticket_id: ticket.id,
        kind: 'note',
        channel: ticket.channel,
        author_agent_id: principal.agentId,
        author_contact_id: null,
        body: input.body,
        department_id: ticket.department_id,
      });
      const after = await repo.updateTicketRecord(trx, ticket.id, {}, input.body);
      await repo.insertEvents(trx, after, actor, [
        { type: 'message_added', data: { message_id: message.id, kind: 'note' } },
      ]);
      return message;
    }
    if (input.kind === 'reply') {
      const waited = ticket.status === 'new' || ticket.status === 'open';
      const message = await repo.insertMessage(trx, {
        ticket_id: ticket.id,
        kind: 'agent',
        channel: ticket.channel,
        author_agent_id: principal.agentId,
        author_contact_id: null,
        body: input.body,
        department_id: ticket.department_id,
      });
      const patch: TicketPatch = {
        ...statusPatch(ticket, 'answered'),
        last_agent_message_at: now,
        ...(ticket.first_answered_at === null && { first_answered_at: now }),
      };
      await repo.insertEvents(trx, ticket, actor, [
        {
          type: 'message_added',
          data: {
            message_id: message.id,
            kind: 'agent',
            first_answer: ticket.first_answered_at === null,
            // from the moment the customer began to wait to this answer (null: nobody was waiting)
            wait_seconds: waited
              ? Math.max(0, (now.getTime() - ticket.waiting_since.getTime()) / 1000)
              : null,
          },
        },
      ]);
      const after = await applyChanges(trx, ticket, patch, actor, input.body);
      await runRules(trx, after, ['ticket.agent_replied', 'ticket.status_changed'], {
        before: ticket,
        message: { id: message.id, body: input.body, senderAgentId: principal.agentId },
      });
      return message;
    }
    const contactActor: Actor = {
      type: 'contact',
      agentId: null,
      contactId: ticket.contact_id,
      tokenId: principal.tokenId,
    };
    const message = await repo.insertMessage(trx, {
      ticket_id: ticket.id,
      kind: 'customer',
      channel: ticket.channel,
      author_agent_id: null,
      author_contact_id: ticket.contact_id,
      body: input.body,
      department_id: ticket.department_id,
    });
    const reopen = ['answered', 'postponed', 'resolved'].includes(ticket.status);
    const patch: TicketPatch = { ...(reopen && statusPatch(ticket, 'open')), last_customer_message_at: now };
    await repo.insertEvents(trx, ticket, contactActor, [
      { type: 'message_added', data: { message_id: message.id, kind: 'customer' } },
    ]);
    const after = await applyChanges(trx, ticket, patch, contactActor, input.body);
    await runRules(trx, after, ['ticket.customer_replied', 'ticket.status_changed'], {
      before: ticket,
      message: { id: message.id, body: input.body },
    });
    return message;
  });
}

export async function transferTicket(
  db: Db,
  principal: Principal,
  id: string,
  input: { department_id: string; assignee_id?: string | null | undefined; note?: string | undefined },
): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  await requireDepartment(db, input.department_id, 'body/department_id');
  const record = await db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    await reachable(trx, access, before, 'manage');
    const ticket = before!;
    if (ticket.status === 'deleted')
      throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted.');
    if (ticket.department_id === input.department_id) {
      throw new DomainError('conflict', 'same_department', 'The ticket is already in that department.');
    }
    let assignee: string | null;
    if (input.assignee_id) {
      await requireAssignable(trx, input.assignee_id, input.department_id, 'body/assignee_id');
      assignee = input.assignee_id;
    } else if (input.assignee_id === null || ticket.assignee_id === null) {
      assignee = null;
    } else {
      // The assignee stays only when they may work tickets in the new department.
      assignee = (await canHoldIn(trx, ticket.assignee_id, input.department_id)) ? ticket.assignee_id : null;
    }
    const actor = agentActor(principal);
    const after = await applyChanges(
      trx,
      ticket,
      { department_id: input.department_id, assignee_id: assignee },
      actor,
    );
    if (input.note) {
      const note = await repo.insertMessage(trx, {
        ticket_id: ticket.id,
        kind: 'note',
        channel: ticket.channel,
        author_agent_id: principal.agentId,
        author_contact_id: null,
        body: input.note,
        department_id: after.department_id,
      });
      await repo.insertEvents(trx, after, actor, [
        { type: 'message_added', data: { message_id: note.id, kind: 'note' } },
      ]);
    }
    const noted = input.note ? await repo.updateTicketRecord(trx, ticket.id, {}, input.note) : after;
    return runRules(trx, noted, ['ticket.transferred', 'ticket.updated'], { before: ticket });
  });
  return (await repo.withContacts(db, [record]))[0]!;
}

export async function addRating(
  db: Db,
  principal: Principal,
  id: string,
  input: { value: 'positive' | 'negative'; comment?: string | undefined; message_id?: string | undefined },
) {
  const access = await loadTicketAccess(db, principal);
  return db.transaction().execute(async (trx) => {
    const before = await repo.lockTicketRecord(trx, id);
    await reachable(trx, access, before, 'work');
    const ticket = before!;
    let agentId = ticket.assignee_id;
    if (input.message_id !== undefined) {
      const message = await repo.findMessage(trx, ticket.id, input.message_id);
      if (message?.kind !== 'agent') {
        throw unprocessable('message_not_found', 'Only an agent reply of this ticket can be rated.', [
          { field: 'body/message_id', message: 'no agent reply with this id on the ticket' },
        ]);
      }
      agentId = message.author_agent_id;
    }
    const row = await trx
      .insertInto('ratings')
      .values({
        ticket_id: ticket.id,
        message_id: input.message_id ?? null,
        agent_id: agentId,
        department_id: ticket.department_id,
        value: input.value,
        comment: input.comment ?? null,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    const contactActor: Actor = {
      type: 'contact',
      agentId: null,
      contactId: ticket.contact_id,
      tokenId: principal.tokenId,
    };
    await repo.insertEvents(trx, ticket, contactActor, [
      {
        type: 'rated',
        data: { rating_id: row.id, value: row.value, rated_agent_id: agentId, message_id: row.message_id },
      },
    ]);
    return {
      id: row.id,
      ticket_id: row.ticket_id,
      message_id: row.message_id,
      agent_id: row.agent_id,
      value: row.value,
      comment: row.comment,
      created_at: row.created_at.toISOString(),
    };
  });
}

/**
 * Postponed tickets whose time has come go back to open and wait again. Safe to run from every
 * instance at once: each batch skips rows another instance holds.
 */
export async function wakePostponedTickets(db: Db, limit = 500): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const due = await trx
      .selectFrom('tickets as t')
      .select(repo.TICKET_COLUMNS)
      .where('t.status', '=', 'postponed')
      .where('t.postponed_until', '<=', new Date())
      .orderBy('t.postponed_until')
      .limit(limit)
      .forUpdate()
      .skipLocked()
      .execute();
    const system: Actor = { type: 'system', agentId: null, contactId: null };
    for (const ticket of due) {
      const after = await applyChanges(
        trx,
        ticket,
        { ...statusPatch(ticket, 'open'), waiting_since: new Date() },
        system,
      );
      await runRules(trx, after, ['ticket.status_changed'], { before: ticket });
    }
    return due.length;
  });
}

export interface RecordingTarget {
  ticket_id?: string | undefined;
  contact?: CreateTicketInput['contact'] | undefined;
  subject?: string | undefined;
  department_id?: string | null | undefined;
  priority?: Priority | undefined;
}

/**
 * The ticket a recorded call or chat belongs to: the existing one named by ticket_id (locked,
 * and the caller must be able to work it), or a new one opened for it without a first message.
 */
export async function ticketForRecording(
  trx: Trx,
  principal: Principal,
  target: RecordingTarget,
  channel: Channel,
  defaults: { subject: string; contact: CreateTicketInput['contact'] | null },
): Promise<{ ticket: TicketRecord; created: boolean }> {
  if (target.ticket_id !== undefined) {
    const extra = (['contact', 'subject', 'department_id', 'priority'] as const).filter(
      (k) => target[k] !== undefined,
    );
    if (extra.length > 0) {
      throw invalid(
        'ticket_or_new_ticket',
        'Give ticket_id to add to an existing ticket, or the new ticket’s fields, not both.',
        extra.map((k) => ({ field: `body/${k}`, message: 'not allowed with ticket_id' })),
      );
    }
    const access = await loadTicketAccess(trx, principal);
    const ticket = await repo.lockTicketRecord(trx, target.ticket_id);
    await reachable(trx, access, ticket, 'work');
    if (ticket!.status === 'deleted')
      throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted.');
    return { ticket: ticket!, created: false };
  }
  const contact = target.contact ?? defaults.contact;
  if (!contact) {
    throw invalid('contact_required', 'Name the contact (or give a phone number) for the new ticket.', [
      { field: 'body/contact', message: 'is required without ticket_id' },
    ]);
  }
  const input: CreateTicketInput = {
    subject: target.subject ?? defaults.subject,
    channel,
    contact,
    department_id: target.department_id ?? null,
    ...(target.priority !== undefined && { priority: target.priority }),
  };
  await checkNewTicket(trx, principal, input);
  return {
    ticket: await insertNewTicket(trx, input, agentActor(principal), principal.agentId),
    created: true,
  };
}
