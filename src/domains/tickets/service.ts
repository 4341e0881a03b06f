import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import { can, loadTicketAccess, requireTicket, type TicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import type { Channel, Database, Priority, TicketRow } from '../../db/types.ts';
import { DomainError, type FieldError, forbidden, invalid } from '../../errors.ts';
import { linkStagedAttachments } from '../attachments/link.ts';
import type { AttachmentSummary } from '../attachments/schemas.ts';
import {
  assertCannedFitsTicket,
  type FilledCannedResponse,
  fillCannedResponse,
} from '../canned-responses/service.ts';
import { assertTagsFit, fitTags, normaliseTags, statusPatch } from './changes.ts';
import { stakeLost } from './one-statement.ts';
import { readOncePerBatch } from './replay.ts';
import type { Actor, NewMessage, TicketPatch, TicketRecord } from './repository.ts';
import * as repo from './repository.ts';
import type { Message, Ticket } from './schemas.ts';
import {
  agentActor,
  type Changed,
  type CreateCommand,
  type CreateTicketInput,
  canHoldIn,
  requireAssignable,
  type TicketChange,
  writeTicket,
} from './write.ts';

const fittingTags = (tags: string[], field: string) => {
  assertTagsFit(tags, field);
  return tags;
};

// The ticket commands of the API, the contact form, calls, chats, the queue and the scheduler.
// Each is one call of writeTicket (write.ts), the one write path.

export type { CreateTicketInput } from './write.ts';
export { agentActor } from './write.ts';

type Trx = Transaction<Database>;

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

const contactActor = (ticket: TicketRecord, principal: Principal | null): Actor => ({
  type: 'contact',
  agentId: null,
  contactId: ticket.contact_id,
  tokenId: principal?.tokenId ?? null,
});

async function represent(db: Db, record: TicketRecord): Promise<Ticket> {
  return (await repo.withContacts(db, [record]))[0]!;
}

export async function getTicket(db: Db, principal: Principal, id: string): Promise<Ticket> {
  const access = await loadTicketAccess(db, principal);
  return represent(db, requireTicket(access, await repo.findTicketRecord(db, id), 'read'));
}

export async function requireReadable(db: Db, principal: Principal, id: string): Promise<TicketAccess> {
  const access = await loadTicketAccess(db, principal);
  requireTicket(access, await repo.findTicketRecord(db, id), 'read');
  return access;
}

/**
 * Opens a ticket with its first message, inside the caller's transaction, without the checks
 * of an API request (the caller vouches for the input): for test factories and scripts.
 */
export async function insertNewTicket(
  trx: Trx,
  input: CreateTicketInput,
  actor: Actor,
  authorAgentId: string | null,
): Promise<TicketRecord> {
  return (await writeTicket(trx, { kind: 'create', input, actor, authorAgentId, by: 'unchecked' })).ticket;
}

export async function createTicket(
  db: Db,
  principal: Principal,
  input: CreateTicketInput,
  trx?: Trx,
): Promise<Ticket> {
  // Inside the caller's transaction when there is one: a second connection would deadlock on
  // PGlite's single connection, and exhaust a pool under concurrent idempotent retries. In a
  // transaction of its own, the opening statement is its last and carries its COMMIT.
  const command = {
    kind: 'create' as const,
    input,
    actor: agentActor(principal),
    authorAgentId: principal.agentId,
    by: principal,
  };
  const outer = trx ?? (db.isTransaction ? (db as Trx) : undefined);
  const opened = outer ? await writeTicket(outer, command) : await openAlone(db, command);
  return repo.toTicket(opened.ticket as TicketRow, opened.contact);
}

/** A creation in a transaction of its own: in one statement when it may (one-statement.ts). */
async function openAlone(db: Db, command: CreateCommand) {
  try {
    return await db
      .transaction()
      .execute((t) => writeTicket(t, { ...command, final: true, oneStatement: true }));
  } catch (error) {
    if (!stakeLost(error)) throw error;
    return db.transaction().execute((t) => writeTicket(t, { ...command, final: true }));
  }
}

/** A change by an agent to a ticket named by id, in a transaction of its own. */
async function changeAs<R>(
  db: Db,
  principal: Principal | TicketAccess,
  id: string,
  ability: 'work' | 'manage',
  decide: (ticket: TicketRecord, trx: Trx, at: Date) => Promise<TicketChange<R>> | TicketChange<R>,
  ifMatch?: string | undefined,
  /** More of the same transaction, once the change is written (a reply's attachments). */
  then?: (trx: Trx, changed: Changed<R>) => Promise<void>,
) {
  const access = 'memberships' in principal ? principal : await loadTicketAccess(db, principal);
  return transact(db, async (trx) => {
    const changed = await writeTicket(trx, {
      kind: 'change',
      target: { id },
      access: { access, ability },
      ifMatch,
      decide: (ticket, at) => decide(ticket, trx, at),
    });
    await then?.(trx, changed);
    return changed;
  });
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
  preconditions: { ifMatch?: string | undefined },
  id: string,
  input: UpdateTicketInput,
): Promise<Ticket> {
  return represent(db, await updateTicketRecord(db, principal, preconditions, id, input));
}

/**
 * updateTicket without the representation: the changed row, for a caller that does not answer
 * with the ticket (the importer), which saves the contact's look-up.
 */
export async function updateTicketRecord(
  db: Db,
  principal: Principal,
  preconditions: { ifMatch?: string | undefined },
  id: string,
  input: UpdateTicketInput,
): Promise<TicketRecord> {
  const postponedUntil = input.postponed_until === undefined ? undefined : new Date(input.postponed_until);
  if (postponedUntil !== undefined && input.status !== 'postponed') {
    throw invalid('postponed_until_without_postpone', 'postponed_until goes with status postponed.', [
      { field: 'body/postponed_until', message: 'only with status postponed' },
    ]);
  }
  // The future of the change's own time (the application's clock), so checked once that is read.
  const notInFuture = () =>
    invalid('postpone_needs_future_time', 'Postponing needs postponed_until in the future.', [
      { field: 'body/postponed_until', message: 'must be in the future' },
    ]);
  if (input.status === 'postponed' && !postponedUntil) throw notInFuture();
  const access = await loadTicketAccess(db, principal);
  const { ticket } = await changeAs(
    db,
    access,
    id,
    'work',
    async (before, trx, at) => {
      if (postponedUntil && postponedUntil.getTime() <= at.getTime()) throw notInFuture();
      if (before.status === 'deleted') {
        throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted; restore it first.');
      }
      const mine = before.assignee_id === null || before.assignee_id === principal.agentId;
      const manage = can(access, before, 'manage');
      if (input.status !== undefined && !mine && !manage) {
        throw forbidden(
          'Only supervisors change the status of tickets assigned to others.',
          'supervisor_required',
        );
      }
      if (input.assignee_id !== undefined && input.assignee_id !== before.assignee_id) {
        const taking = input.assignee_id === principal.agentId && before.assignee_id === null;
        if (!taking && !manage) {
          throw forbidden(
            'Only supervisors assign tickets to others or take them from others.',
            'supervisor_required',
          );
        }
        if (input.assignee_id !== null) {
          await requireAssignable(trx, input.assignee_id, before.department_id, 'body/assignee_id');
        }
      }
      const patch: TicketPatch = {
        ...(input.subject !== undefined && { subject: input.subject.trim() }),
        ...(input.priority !== undefined && { priority: input.priority }),
        ...(input.assignee_id !== undefined && { assignee_id: input.assignee_id }),
        ...(input.tags !== undefined && { tags: fittingTags(normaliseTags(input.tags), 'body/tags') }),
        ...(input.status !== undefined && statusPatch(before, input.status, at, postponedUntil)),
      };
      return {
        steps: [{ patch, actor: agentActor(principal) }],
        triggers: ['ticket.updated', 'ticket.status_changed'],
        result: null,
      };
    },
    preconditions.ifMatch,
  );
  return ticket;
}

/** Soft delete: the ticket keeps its history and can be restored by setting a status. */
export async function deleteTicket(
  db: Db,
  principal: Principal,
  preconditions: { ifMatch?: string | undefined },
  id: string,
) {
  await changeAs(
    db,
    principal,
    id,
    'manage',
    (before) => ({
      steps:
        before.status === 'deleted'
          ? []
          : [
              {
                patch: { status: 'deleted' as const, status_before_delete: before.status },
                actor: agentActor(principal),
              },
            ],
      triggers: ['ticket.status_changed'],
      result: null,
    }),
    preconditions.ifMatch,
  );
}

export async function restoreTicket(db: Db, principal: Principal, id: string): Promise<Ticket> {
  const { ticket } = await changeAs(db, principal, id, 'manage', (before) => {
    if (before.status !== 'deleted') {
      throw new DomainError('conflict', 'ticket_not_deleted', 'Only a deleted ticket can be restored.');
    }
    const status = before.status_before_delete ?? 'open';
    return {
      steps: [{ patch: { status, status_before_delete: null }, actor: agentActor(principal) }],
      triggers: ['ticket.status_changed'],
      result: null,
    };
  });
  return represent(db, ticket);
}

export async function changeTags(
  db: Db,
  principal: Principal,
  id: string,
  change: { add?: string[] | undefined; remove?: string[] | undefined },
): Promise<Ticket> {
  const { ticket } = await changeAs(db, principal, id, 'work', (before) => {
    const remove = new Set(normaliseTags(change.remove ?? []));
    const tags = normaliseTags([...before.tags.filter((t) => !remove.has(t)), ...(change.add ?? [])]).filter(
      (t) => !remove.has(t) || (change.add ?? []).map(repo.normaliseTag).includes(t),
    );
    if (tags.length > 50) {
      throw invalid('too_many_tags', 'A ticket holds at most 50 tags.', [
        { field: 'body/add', message: 'too many tags' },
      ]);
    }
    assertTagsFit(tags, 'body/add');
    return {
      steps: [{ patch: { tags }, actor: agentActor(principal) }],
      triggers: ['ticket.updated'],
      result: null,
    };
  });
  return represent(db, ticket);
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
  input: {
    kind: 'reply' | 'note' | 'customer';
    body?: string | undefined;
    canned_response_id?: string | undefined;
    attachment_ids?: string[] | undefined;
  },
): Promise<Message> {
  const canned = await cannedResponseFor(db, principal, id, input);
  let attachments: AttachmentSummary[] = [];
  // Staged attachments go with the message in its transaction (attachments/link.ts).
  const linkAttachments = async (trx: Trx, changed: Changed<NewMessage>) => {
    attachments = await linkStagedAttachments(trx, {
      ticketId: id,
      messageId: changed.result.id,
      agentId: principal.agentId,
      ids: input.attachment_ids ?? [],
    });
  };
  const body = canned?.body ?? input.body!;
  const access = await loadTicketAccess(db, principal);
  const { result: message, at } = await changeAs(
    db,
    access,
    id,
    'work',
    (ticket, _trx, at) => {
      if (ticket.status === 'deleted') {
        throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted; restore it first.');
      }
      if (canned) assertCannedFitsTicket(canned, ticket.department_id);
      // A canned status is a status change: the same rule as PATCH /v1/tickets/{id}.
      const mine = ticket.assignee_id === null || ticket.assignee_id === principal.agentId;
      if (canned?.status && canned.status !== ticket.status && !mine && !can(access, ticket, 'manage')) {
        throw forbidden(
          'Only supervisors change the status of tickets assigned to others; this canned response sets one.',
          'supervisor_required',
        );
      }
      const now = at;
      const actor = agentActor(principal);
      const message: NewMessage = {
        id: randomUUID(),
        kind: input.kind === 'reply' ? 'agent' : input.kind,
        channel: ticket.channel,
        author_agent_id: input.kind === 'customer' ? null : principal.agentId,
        author_contact_id: input.kind === 'customer' ? ticket.contact_id : null,
        body,
        department_id: ticket.department_id,
      };
      const base = { messages: [message], search: body, result: message };
      if (input.kind === 'note') {
        const data = { message_id: message.id, kind: 'note' };
        return {
          ...base,
          steps: [
            { event: { type: 'message_added', data }, actor },
            ...cannedSteps(canned, ticket, now, actor),
          ],
          ...(canned && { triggers: ['ticket.updated', 'ticket.status_changed'] as const }),
        };
      }
      if (input.kind === 'reply') {
        const waited = ticket.status === 'new' || ticket.status === 'open';
        const data = {
          message_id: message.id,
          kind: 'agent',
          first_answer: ticket.first_answered_at === null,
          // from the moment the customer began to wait to this answer (null: nobody was waiting)
          wait_seconds: waited ? Math.max(0, (now.getTime() - ticket.waiting_since.getTime()) / 1000) : null,
        };
        const patch: TicketPatch = {
          ...statusPatch(ticket, 'answered', now),
          last_agent_message_at: now,
          ...(ticket.first_answered_at === null && { first_answered_at: now }),
        };
        return {
          ...base,
          steps: [
            {
              event: {
                type: 'message_added',
                data,
                // its business twin, wait_business_seconds, in the department's calendar
                ...(waited && {
                  business: [{ field: 'wait_business_seconds', from: ticket.waiting_since, to: now }],
                }),
              },
              actor,
            },
            { patch, actor },
            ...cannedSteps(canned, { ...ticket, ...patch }, now, actor),
          ],
          triggers: [
            'ticket.agent_replied',
            'ticket.status_changed',
            ...(canned ? (['ticket.updated'] as const) : []),
          ],
          ruleMessage: { id: message.id, body, senderAgentId: principal.agentId },
        };
      }
      const customer = contactActor(ticket, principal);
      const reopen = ['answered', 'postponed', 'resolved'].includes(ticket.status);
      const patch: TicketPatch = {
        ...(reopen && statusPatch(ticket, 'open', now)),
        last_customer_message_at: now,
      };
      const data = { message_id: message.id, kind: 'customer' };
      return {
        ...base,
        steps: [
          { event: { type: 'message_added', data }, actor: customer },
          { patch, actor: customer },
        ],
        triggers: ['ticket.customer_replied', 'ticket.status_changed'],
        ruleMessage: { id: message.id, body },
      };
    },
    undefined,
    input.attachment_ids?.length ? linkAttachments : undefined,
  );
  return {
    id: message.id,
    ticket_id: id,
    kind: message.kind,
    channel: message.channel,
    author_agent_id: message.author_agent_id,
    author_contact_id: message.author_contact_id,
    chat_id: null,
    body: message.body,
    created_at: at!.toISOString(),
    attachments,
  };
}

/** The canned response a message names, filled for the ticket (after the ticket's own 404). */
async function cannedResponseFor(
  db: Db,
  principal: Principal,
  id: string,
  input: { kind: string; body?: string | undefined; canned_response_id?: string | undefined },
): Promise<FilledCannedResponse | null> {
  if (input.canned_response_id === undefined) {
    if (input.body === undefined) {
      throw invalid('body_required', 'A message needs a body or a canned_response_id.', [
        { field: 'body/body', message: 'is required without canned_response_id' },
      ]);
    }
    return null;
  }
  if (input.body !== undefined || input.kind === 'customer') {
    throw invalid(
      'canned_response_not_allowed',
      'A canned response fills a reply or a note, and replaces the body: send one or the other.',
      [{ field: 'body/canned_response_id', message: 'only for a reply or a note without body' }],
    );
  }
  const access = await loadTicketAccess(db, principal);
  const ticket = requireTicket(access, await repo.findTicketRecord(db, id), 'work');
  return fillCannedResponse(db, principal, ticket, input.canned_response_id);
}

/** The canned response's tags and status, after the message's own change. */
function cannedSteps(
  canned: FilledCannedResponse | null,
  ticket: TicketRecord,
  at: Date,
  actor: Actor,
): { patch: TicketPatch; actor: Actor }[] {
  if (!canned) return [];
  const patch: TicketPatch = {
    ...(canned.tags.length > 0 && {
      tags: fitTags(normaliseTags([...ticket.tags, ...canned.tags]).slice(0, 50)),
    }),
    ...(canned.status !== null && statusPatch(ticket, canned.status, at)),
  };
  return Object.keys(patch).length > 0 ? [{ patch, actor }] : [];
}

export interface TransferInput {
  department_id: string;
  assignee_id?: string | null | undefined;
  note?: string | undefined;
}

export async function transferTicket(
  db: Db,
  principal: Principal,
  id: string,
  input: TransferInput,
): Promise<Ticket> {
  return represent(db, await transferTicketRecord(db, principal, id, input));
}

/** transferTicket without the representation (see updateTicketRecord). */
export async function transferTicketRecord(
  db: Db,
  principal: Principal,
  id: string,
  input: TransferInput,
): Promise<TicketRecord> {
  const exists = () => repo.departmentExists(db, input.department_id);
  if (!(await readOncePerBatch(`department:${input.department_id}`, exists))) {
    throw unprocessable('department_not_found', 'The department does not exist.', [
      { field: 'body/department_id', message: 'no such department' },
    ]);
  }
  const { ticket } = await changeAs(db, principal, id, 'manage', async (before, trx) => {
    if (before.status === 'deleted')
      throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted.');
    if (before.department_id === input.department_id) {
      throw new DomainError('conflict', 'same_department', 'The ticket is already in that department.');
    }
    let assignee: string | null;
    if (input.assignee_id) {
      await requireAssignable(trx, input.assignee_id, input.department_id, 'body/assignee_id');
      assignee = input.assignee_id;
    } else if (input.assignee_id === null || before.assignee_id === null) {
      assignee = null;
    } else {
      // The assignee stays only when they may work tickets in the new department.
      assignee = (await canHoldIn(trx, before.assignee_id, input.department_id)) ? before.assignee_id : null;
    }
    const actor = agentActor(principal);
    const change: TicketChange<null> = {
      steps: [{ patch: { department_id: input.department_id, assignee_id: assignee }, actor }],
      triggers: ['ticket.transferred', 'ticket.updated'],
      result: null,
    };
    if (input.note) {
      const note: NewMessage = {
        id: randomUUID(),
        kind: 'note',
        channel: before.channel,
        author_agent_id: principal.agentId,
        author_contact_id: null,
        body: input.note,
        department_id: input.department_id,
      };
      change.steps.push({
        event: { type: 'message_added', data: { message_id: note.id, kind: 'note' } },
        actor,
      });
      change.messages = [note];
      change.search = input.note;
    }
    return change;
  });
  return ticket;
}

export async function addRating(
  db: Db,
  principal: Principal,
  id: string,
  input: { value: 'positive' | 'negative'; comment?: string | undefined; message_id?: string | undefined },
) {
  const { result } = await changeAs(db, principal, id, 'work', async (ticket, trx) => {
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
    const row = await repo.insertRating(trx, {
      ticket_id: ticket.id,
      message_id: input.message_id ?? null,
      agent_id: agentId,
      department_id: ticket.department_id,
      value: input.value,
      comment: input.comment ?? null,
    });
    const data = { rating_id: row.id, value: row.value, rated_agent_id: agentId, message_id: row.message_id };
    return {
      steps: [{ event: { type: 'rated' as const, data }, actor: contactActor(ticket, principal) }],
      result: {
        id: row.id,
        ticket_id: row.ticket_id,
        message_id: row.message_id,
        agent_id: row.agent_id,
        value: row.value,
        comment: row.comment,
        created_at: row.created_at.toISOString(),
      },
    };
  });
  return result;
}

/**
 * A ticket a periodic job could not write. The job's other tickets go on: one ticket must not
 * hold up every other (a failing ticket first in due order would otherwise come back first in
 * every turn, and nothing after it would ever be written).
 */
export interface JobFailure {
  ticket_id: string;
  /** What the job did about it. */
  outcome: 'retried_in_a_minute' | 'woken_without_rules' | 'retried_next_turn';
  code: string;
  message: string;
}
export type OnJobFailure = (failure: JobFailure) => void;

const failureOf = (error: unknown) =>
  error instanceof DomainError
    ? { code: error.code, message: error.message }
    : {
        code: (error as { code?: unknown })?.code ? String((error as { code: unknown }).code) : 'internal',
        message: error instanceof Error ? error.message : String(error),
      };

/** Runs one ticket's write of a batch under a savepoint: a failure undoes that write alone. */
async function isolated(trx: Trx, write: () => Promise<unknown>): Promise<unknown> {
  await sql`savepoint ticket_write`.execute(trx);
  try {
    await write();
    await sql`release savepoint ticket_write`.execute(trx);
    return null;
  } catch (error) {
    // Lost connection and the like: the rollback fails too, and the whole batch with it.
    await sql`rollback to savepoint ticket_write`.execute(trx);
    return error ?? new Error('unknown failure');
  }
}

/**
 * Postponed tickets whose time has come go back to open and wait again. Safe to run from every
 * instance at once: each batch skips rows another instance holds. A ticket whose rules cannot
 * apply (an assignment to an agent disabled since) wakes without them, reported through
 * `onFailure`: a customer's ticket must not stay postponed because of a broken rule. Any other
 * failure leaves that ticket for the next turn.
 */
export async function wakePostponedTickets(
  db: Db,
  limit = 500,
  onFailure: OnJobFailure = () => {},
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const due = await repo.lockDuePostponedTickets(trx, limit);
    const system: Actor = { type: 'system', agentId: null, contactId: null };
    let woken = 0;
    for (const { ticket, sla } of due) {
      const wake = (withRules: boolean) =>
        writeTicket(trx, {
          kind: 'change',
          target: { locked: ticket, sla },
          access: null,
          decide: (_, at) => ({
            steps: [{ patch: { ...statusPatch(ticket, 'open', at), waiting_since: at }, actor: system }],
            triggers: withRules ? ['ticket.status_changed' as const] : [],
            // Back in the queue: idle rules count from here, not from before the postponement.
            activity: true,
            result: null,
          }),
        });
      const error = await isolated(trx, () => wake(true));
      if (error === null) {
        woken++;
        continue;
      }
      const ruleFailed = error instanceof DomainError && error.code === 'rule_action_failed';
      const retry = ruleFailed ? await isolated(trx, () => wake(false)) : error;
      if (retry === null) woken++;
      onFailure({
        ticket_id: ticket.id,
        outcome: retry === null ? 'woken_without_rules' : 'retried_next_turn',
        ...failureOf(error),
      });
    }
    return woken;
  });
}

/**
 * The SLA timer: tickets whose next warning or due has come are planned again at the
 * transaction's time, through the one write path, so what is due fires (sla.warning, sla.breached
 * with the system as actor, at the instant it was due) and the ticket gets its next instant. The
 * same turn re-plans tickets a policy or calendar change marked. Returns how many tickets it took.
 *
 * Several tickets share a transaction because a commit per ticket (its WAL flush) cut the rate
 * from about 440 to 120 breaches/s in bench:sla part 4. The price: a batch may take department
 * and capacity locks (rule picks, escalations) in another order than a single change does; if
 * that meets a request holding them the other way, PostgreSQL ends one of the two (the batch's
 * ticket is tried again a minute later, its breach still recorded at its due; a request gets 409
 * concurrent_update, to retry). Batches stay small (the scheduler's 50) to keep those locks
 * short. Any ticket whose plan fails is undone alone and tried again a minute later (reported
 * through `onFailure`); the rest of the batch goes on.
 */
export async function fireSlaTimers(
  db: Db,
  limit = 200,
  onFailure: OnJobFailure = () => {},
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const due = await repo.lockDueSlaTimers(trx, limit);
    for (const { ticket, sla } of due) {
      const error = await isolated(trx, () =>
        writeTicket(trx, {
          kind: 'change',
          target: { locked: ticket, sla },
          access: null,
          decide: () => ({ steps: [], clock: true, result: null }),
        }),
      );
      if (error === null) continue;
      await repo.deferSlaTimer(trx, ticket.id, SLA_TIMER_RETRY_MINUTES);
      onFailure({ ticket_id: ticket.id, outcome: 'retried_in_a_minute', ...failureOf(error) });
    }
    return due.length;
  });
}

/** How long a ticket whose SLA plan failed waits before the timer tries it again. */
const SLA_TIMER_RETRY_MINUTES = 1;

export interface RecordingTarget {
  ticket_id?: string | undefined;
  contact?: CreateTicketInput['contact'] | undefined;
  subject?: string | undefined;
  department_id?: string | null | undefined;
  priority?: Priority | undefined;
}

/**
 * Records something on a ticket (a call, a chat): on the existing one named by ticket_id (the
 * caller must be able to work it, and it must not be deleted), or on a new one opened for it
 * without a first message. `record` writes the recording and says what it changes; a new
 * ticket's rules ran as it opened, so its recording triggers none.
 */
export async function recordOnTicket<R>(
  trx: Trx,
  principal: Principal,
  target: RecordingTarget,
  channel: Channel,
  defaults: { subject: string; contact: CreateTicketInput['contact'] | null },
  record: (ticket: TicketRecord, created: boolean, at: Date) => Promise<TicketChange<R>>,
): Promise<R> {
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
    const changed = await writeTicket(trx, {
      kind: 'change',
      target: { id: target.ticket_id },
      access: { access, ability: 'work' },
      decide: (ticket, at) => {
        if (ticket.status === 'deleted')
          throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted.');
        return record(ticket, false, at);
      },
    });
    return changed.result;
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
  const opened = await writeTicket(trx, {
    kind: 'create',
    input,
    actor: agentActor(principal),
    authorAgentId: principal.agentId,
    by: principal,
  });
  const changed = await writeTicket(trx, {
    kind: 'change',
    target: { locked: opened.ticket, sla: opened.sla },
    access: null,
    decide: async (ticket, at) => ({ ...(await record(ticket, true, at)), triggers: [] }),
  });
  return changed.result;
}
