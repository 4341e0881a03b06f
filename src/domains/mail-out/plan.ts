import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { Logger as PinoLogger } from 'pino';
import type { MailConfig } from '../../config.ts';
import { describe, isDatabaseUnreachable } from '../../db/outage.ts';
import type { Channel, Database, OutboxKind, OutboxState } from '../../db/types.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { isSupportAddress } from '../departments/addresses.ts';
import type { FeedRow } from '../events/repository.ts';
import { renderMail } from '../mail-identity/render.ts';
import { smtpSettingsOfDepartment } from '../mailboxes/repository.ts';
import { csatSettingOf, hasOpenSurvey, insertSurvey, linkSurveyToOutbox } from '../surveys/repository.ts';
import { enqueueMails } from './delivery.ts';

type Trx = Transaction<Database>;

export const MAIL_CONSUMER = 'mail-out';

/**
 * Tickets whose customer is answered by mail: those that came by mail and those from the contact
 * form (the customer left an address and expects the answer there). Chats, calls, social
 * channels and the API carry their conversation elsewhere: nothing is mailed for them.
 */
export const MAIL_CHANNELS: readonly Channel[] = ['email', 'contact_form'];

/** Acknowledgements (and outside-hours replies) per address per hour; past it, suppressed. */
export const ACKNOWLEDGEMENTS_PER_HOUR = 3;

/** References carries the first message of the thread and the latest ones, this many in all. */
const MAX_REFERENCES = 10;

export interface PlanDeps {
  config: MailConfig;
  queue: JobQueue | undefined;
  log?: Pick<PinoLogger, 'warn'> | undefined;
}

interface TicketNow {
  id: string;
  number: number;
  channel: Channel;
  status: string;
  department_id: string | null;
  contact_id: string;
  created_in_working_hours: boolean | null;
}

/** The events that may cause a mail; the others are passed over without a look at their ticket. */
const WATCHED = new Set([
  'ticket.created',
  'ticket.agent_replied',
  'ticket.transferred',
  'ticket.status_changed',
]);

/**
 * The outbox rows one batch of the feed causes, in the consumer's transaction. The batch's
 * tickets are read in one statement, and whether a department can send at all once per
 * department: most events cause no mail (a chat, a department without SMTP), and those cost
 * nothing more. Each event that may cause one runs under a savepoint: one that cannot be mailed
 * (a template that fails to render, a bug) is logged and passed over alone, rather than holding
 * every later mail back for good. A database gone away still fails the batch, which is read again.
 */
export async function planMails(deps: PlanDeps, trx: Trx, rows: readonly FeedRow[]): Promise<void> {
  const watched = rows.filter((row) => row.event.ticket_id !== null && WATCHED.has(row.event.type));
  if (watched.length === 0) return;
  const ids = [...new Set(watched.map((row) => row.event.ticket_id as string))];
  const tickets = new Map(
    (
      await trx
        .selectFrom('tickets')
        .select([
          'id',
          'number',
          'channel',
          'status',
          'department_id',
          'contact_id',
          'created_in_working_hours',
        ])
        .where('id', 'in', ids)
        .execute()
    ).map((ticket) => [ticket.id, ticket]),
  );
  const sending = new Map<string | null, Promise<boolean>>();
  for (const row of watched) {
    const ticket = tickets.get(row.event.ticket_id as string);
    if (!ticket || !MAIL_CHANNELS.includes(ticket.channel)) continue;
    if (ticket.status === 'spam' || ticket.status === 'deleted') continue;
    if (!sending.has(ticket.department_id))
      sending.set(ticket.department_id, canSend(deps, trx, ticket.department_id));
    if (!(await sending.get(ticket.department_id))) continue;
    await sql`savepoint mail_event`.execute(trx);
    try {
      await planOne(deps, trx, row, ticket);
      await sql`release savepoint mail_event`.execute(trx);
    } catch (error) {
      if (isDatabaseUnreachable(error)) throw error;
      await sql`rollback to savepoint mail_event`.execute(trx);
      deps.log?.warn(
        { event: row.event.id, type: row.event.type, ticket: row.event.ticket_id, reason: describe(error) },
        'mail out: an event could not be mailed; passed over',
      );
    }
  }
}

/** The mail one event causes, for a ticket of a mail channel whose department can send. */
async function planOne(deps: PlanDeps, trx: Trx, row: FeedRow, ticket: TicketNow): Promise<void> {
  const { event } = row;
  const payload = event.payload as Record<string, unknown>;
  switch (event.type) {
    case 'ticket.created': {
      const opening = await trx
        .selectFrom('ticket_messages')
        .select(['kind', 'mail_auto_submitted'])
        .where('ticket_id', '=', ticket.id)
        .orderBy('created_at')
        .orderBy('id')
        .executeTakeFirst();
      // Only a customer's own first message is acknowledged; never a machine's (no mail loop).
      if (opening?.kind !== 'customer' || opening.mail_auto_submitted) return;
      const kind = ticket.created_in_working_hours === false ? 'outside_hours' : 'acknowledgement';
      await compose(deps, trx, ticket, { kind });
      return;
    }
    case 'ticket.agent_replied': {
      const messageId = (payload.message as { id?: unknown } | null)?.id;
      if (typeof messageId !== 'string') return;
      const message = await trx
        .selectFrom('ticket_messages')
        .select(['id', 'kind', 'body', 'html_body', 'author_agent_id', 'delivery_state'])
        .where('id', '=', messageId)
        .where('ticket_id', '=', ticket.id)
        .executeTakeFirst();
      if (message?.kind !== 'agent' || message.delivery_state !== null) return;
      await compose(deps, trx, ticket, { kind: 'agent_reply', message });
      return;
    }
    case 'ticket.transferred': {
      if (typeof payload.to_department_id !== 'string') return;
      await compose(deps, trx, ticket, { kind: 'transfer_notice' });
      return;
    }
    case 'ticket.status_changed': {
      if (payload.to !== 'resolved' || ticket.status !== 'resolved') return;
      await compose(deps, trx, ticket, { kind: 'resolved_notice' });
      const csat = await csatSettingOf(trx, ticket.department_id, deps.config.csat);
      if (!csat.enabled || (await hasOpenSurvey(trx, ticket.id))) return;
      const due = new Date(Date.now() + csat.delay_minutes * 60_000);
      const expiresAt = new Date(due.getTime() + deps.config.csat.linkDays * 86_400_000);
      const survey = await insertSurvey(trx, { ticketId: ticket.id, expiresAt });
      const url = `${deps.config.publicBaseUrl}/ratings/${survey.token}`;
      const outboxId = await compose(deps, trx, ticket, {
        kind: 'csat_survey',
        survey: { url, expiresAt },
        due,
      });
      if (outboxId) await linkSurveyToOutbox(trx, survey.id, outboxId);
      return;
    }
  }
}

/** Mail goes out only where an SMTP server is known: help-desk wide, or the department's mailbox. */
async function canSend(deps: PlanDeps, trx: Trx, departmentId: string | null): Promise<boolean> {
  if (deps.config.smtpUrl) return true;
  return departmentId !== null && (await smtpSettingsOfDepartment(trx, departmentId)) !== undefined;
}

/**
 * The address a ticket's mail goes to: the one the customer last wrote from when it is still
 * theirs, else their first; never one a bounce marked, never one of our own support addresses.
 */
async function recipient(
  trx: Trx,
  ticket: TicketNow,
): Promise<{ address: string } | { address: string | null; suppressed: string }> {
  const emails = await trx
    .selectFrom('contact_emails')
    .select(['email', 'bounced_at', 'bounce_reason'])
    .where('contact_id', '=', ticket.contact_id)
    .orderBy('position')
    .execute();
  if (emails.length === 0) return { address: null, suppressed: 'the contact has no email address' };
  const last = await trx
    .selectFrom('ticket_messages')
    .select('mail_address')
    .where('ticket_id', '=', ticket.id)
    .where('kind', '=', 'customer')
    .where('mail_address', 'is not', null)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  const preferred = last?.mail_address?.toLowerCase();
  const ordered = [
    ...emails.filter((e) => e.email.toLowerCase() === preferred),
    ...emails.filter((e) => e.email.toLowerCase() !== preferred),
  ];
  let why = '';
  for (const e of ordered) {
    if (e.bounced_at) {
      why ||= `the address bounced${e.bounce_reason ? `: ${e.bounce_reason}` : ''}`;
      continue;
    }
    if (await isSupportAddress(trx, e.email)) {
      why ||= 'the address is one of our own support addresses';
      continue;
    }
    return { address: e.email };
  }
  return { address: ordered[0]?.email ?? null, suppressed: why.slice(0, 500) };
}

/** In-Reply-To (the customer's last mail) and References (the thread, capped). */
async function threading(trx: Trx, ticketId: string): Promise<Record<string, string>> {
  const thread = await trx
    .selectFrom('ticket_messages')
    .select(['mail_message_id', 'kind'])
    .where('ticket_id', '=', ticketId)
    .where('mail_message_id', 'is not', null)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  const ids = thread.map((m) => m.mail_message_id as string);
  const lastCustomer = thread.filter((m) => m.kind === 'customer').at(-1)?.mail_message_id;
  const refs = ids.length > MAX_REFERENCES ? [ids[0]!, ...ids.slice(-(MAX_REFERENCES - 1))] : ids;
  const headers: Record<string, string> = {};
  if (lastCustomer) headers['In-Reply-To'] = `<${lastCustomer}>`;
  if (refs.length > 0) headers.References = refs.map((id) => `<${id}>`).join(' ');
  return headers;
}

const domainOf = (address: string | null) => address?.split('@').pop()?.toLowerCase() || 'deskroute.invalid';

/**
 * Renders one mail and writes its outbox row (and, for an agent reply, the message's delivery
 * state and Message-ID) with its job. Returns the outbox row's id.
 */
async function compose(
  deps: PlanDeps,
  trx: Trx,
  ticket: TicketNow,
  what: {
    kind: Exclude<OutboxKind, 'notification'>;
    message?: { id: string; body: string; html_body: string | null; author_agent_id: string | null };
    survey?: { url: string; expiresAt: Date };
    due?: Date;
  },
): Promise<string> {
  const rendered = await renderMail(trx, {
    kind: what.kind,
    ticketId: ticket.id,
    agentId: what.message?.author_agent_id ?? null,
    message: what.message ? { text: what.message.body, html: what.message.html_body } : null,
    survey: what.survey ?? null,
  });
  const fromAddress = rendered.from.address ?? deps.config.from ?? null;
  const to = await recipient(trx, ticket);
  const reference = `[Ticket#${ticket.number}]`;
  const subject = rendered.subject.includes(reference)
    ? rendered.subject
    : `${rendered.subject} ${reference}`;
  const headers = await threading(trx, ticket.id);
  if (what.kind !== 'agent_reply') headers['Auto-Submitted'] = 'auto-replied';
  const mailMessageId = `${randomUUID()}@${domainOf(fromAddress)}`;
  let state: OutboxState = 'queued';
  let error: string | null = null;
  if ('suppressed' in to) {
    state = 'suppressed';
    error = to.suppressed;
  } else if (fromAddress === null) {
    state = 'failed';
    error = 'no sender address: give the department a reply-from address or set MAIL_FROM';
  } else if (what.kind === 'acknowledgement' || what.kind === 'outside_hours') {
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from mail_outbox
       where to_address = ${to.address} and kind in ('acknowledgement', 'outside_hours')
         and state <> 'suppressed' and created_at > now() - interval '1 hour'`.execute(trx);
    if ((rows[0]?.n ?? 0) >= ACKNOWLEDGEMENTS_PER_HOUR) {
      state = 'suppressed';
      error = `loop guard: ${ACKNOWLEDGEMENTS_PER_HOUR} acknowledgements to this address in the last hour`;
    }
  }
  const row = await trx
    .insertInto('mail_outbox')
    .values({
      kind: what.kind,
      ticket_id: ticket.id,
      message_id: what.message?.id ?? null,
      department_id: ticket.department_id,
      to_address: to.address,
      from_name: rendered.from.name,
      from_address: fromAddress,
      subject,
      text_body: rendered.text,
      html_body: rendered.html,
      headers: JSON.stringify(headers),
      mail_message_id: mailMessageId,
      state,
      last_error: error,
      next_attempt_at: state === 'queued' ? (what.due ?? null) : null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  if (what.message) {
    await trx
      .updateTable('ticket_messages')
      .set({
        mail_message_id: mailMessageId,
        mail_address: to.address,
        delivery_state: state,
        delivery_error: error,
      })
      .where('id', '=', what.message.id)
      .execute();
  }
  if (state === 'queued') await enqueueMails(deps.queue, trx, [{ id: row.id, at: what.due ?? null }]);
  return row.id;
}
