import { createHash, randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { type AddressObject, type ParsedMail, simpleParser } from 'mailparser';
import type { Logger } from 'pino';
import type { Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import type { BlobStore } from '../../storage/blobs.ts';
import { storeAttachment } from '../attachments/store.ts';
import { departmentOfAddresses, isOurAddress, normaliseAddress } from '../departments/addresses.ts';
import { statusPatch } from '../tickets/changes.ts';
import { type Actor, type NewMessage, openingMessageId, type TicketPatch } from '../tickets/repository.ts';
import { writeTicket } from '../tickets/write.ts';
import { autoSubmittedReason, bounceReason, finalRecipient, isBounce, returnedMessageIds } from './loops.ts';
import * as repo from './repository.ts';
import { sanitiseMailHtml } from './sanitise.ts';

// The one way mail becomes tickets, for POST /v1/inbound/email and the IMAP watcher alike
// (docs/email.md, "Mail in").

export type Outcome = 'created' | 'threaded' | 'duplicate' | 'auto_submitted' | 'bounce' | 'ignored';

export interface Received {
  outcome: Outcome;
  /** The ticket the mail went to (a bounce: the ticket of the message it returned); null when none. */
  ticket_id: string | null;
  /** The message it made (duplicate: the one the first delivery made; bounce: the bounced one). */
  message_id: string | null;
  /** Its Message-ID without <>, or the one made from its sha256 when it had none. */
  mail_message_id: string;
  /** Why nothing was made (ignored, auto_submitted) or what the bounce said. */
  reason: string | null;
}

export interface ReceiveDeps {
  db: Kysely<Database>;
  blobs: BlobStore;
  log?: Pick<Logger, 'info' | 'warn'> | undefined;
  /** MAIL_FROM: mail from it is our own, like mail from a support address. */
  mailFrom?: string | undefined;
  /** Each attachment at most this large (larger ones are left out, the raw mail keeps them). */
  maxAttachmentBytes: number;
}

export interface ReceivingMailbox {
  id: string;
  department_id: string;
}

// PostgreSQL's full-text vector refuses very long text; the raw mail keeps the whole of it.
const MAX_BODY_CHARS = 200_000;
const MAX_SUBJECT_CHARS = 500;
const SUBJECT_REFERENCE = /\[Ticket#(\d{1,18})\]/i;
// A header may list any number of ids or addresses, but a query takes at most 65,535 parameters
// (PostgreSQL): the thread is found by In-Reply-To and the latest References (RFC 5322 appends
// each new id at the end), and routing by the first recipients.
const MAX_THREAD_IDS = 50;
const MAX_RECIPIENTS = 50;

const SYSTEM: Actor = { type: 'system', agentId: null, contactId: null };

function addressesOf(value: AddressObject | AddressObject[] | undefined): string[] {
  const out: string[] = [];
  const visit = (entries: AddressObject['value']) => {
    for (const entry of entries) {
      if (entry.address) out.push(normaliseAddress(entry.address));
      if (entry.group) visit(entry.group);
    }
  };
  for (const object of [value ?? []].flat()) visit(object.value);
  return out;
}

/** Delivered-To is parsed as addresses by mailparser; X-Original-To stays text. */
function headerAddresses(mail: ParsedMail, name: string): string[] {
  const value = mail.headers.get(name);
  const objects = [value ?? []]
    .flat()
    .filter(
      (v): v is AddressObject =>
        typeof v === 'object' && v !== null && 'value' in v && Array.isArray(v.value),
    );
  if (objects.length > 0) return addressesOf(objects);
  const texts = [value ?? []].flat().map((v) => (typeof v === 'string' ? v : ''));
  // The runs between separators that hold an @ with something on both sides. Not matched as
  // /[^\s<>,;"]+@[^\s<>,;"]+/g: that backtracks quadratically on a long run without an @, and
  // the sender writes this header (mailparser takes 1 MiB of it: the event loop held for an hour).
  return texts.flatMap((t) =>
    t
      .split(/[\s<>,;"]+/)
      .filter((run) => run.slice(1, -1).includes('@'))
      .map(normaliseAddress),
  );
}

const stripBrackets = (id: string) => id.trim().replace(/^<|>$/g, '').trim();

function messageIdsIn(value: string | string[] | undefined): string[] {
  return [value ?? []]
    .flat()
    .flatMap((v) =>
      [...v.matchAll(/<([^>\s]+)>/g)].map((m) => m[1]!).concat(v.includes('<') ? [] : [v.trim()]),
    )
    .filter((id) => id.length > 0 && id.length <= 998);
}

function bodyText(mail: ParsedMail): string {
  let text = (mail.text ?? '').trim();
  if (!text && typeof mail.html === 'string') {
    text = sanitiseMailHtml(mail.html)
      .replace(/<[^>]*>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
  }
  if (!text) text = '(no text)';
  return text.length > MAX_BODY_CHARS
    ? `${text.slice(0, MAX_BODY_CHARS)}\n[…truncated: the raw mail has it all]`
    : text;
}

/**
 * Receives one raw mail for a mailbox: parses it, recognises a second delivery, a bounce, an
 * auto-reply or our own mail, routes it to a department, threads it into its ticket or opens one,
 * all through writeTicket, and keeps the raw mail and its attachments.
 */
export async function receiveMail(
  deps: ReceiveDeps,
  mailbox: ReceivingMailbox,
  raw: Buffer,
): Promise<Received> {
  const { db, blobs } = deps;
  let mail: ParsedMail;
  try {
    mail = await simpleParser(raw, { keepCidLinks: true });
  } catch (error) {
    throw new DomainError(
      'unprocessable',
      'mail_unreadable',
      `The message could not be parsed: ${(error as Error).message}`,
    );
  }
  const parsedId = mail.messageId ? stripBrackets(mail.messageId) : '';
  const mailMessageId =
    parsedId && parsedId.length <= 998
      ? parsedId
      : `sha256-${createHash('sha256').update(raw).digest('hex')}@deskroute.invalid`;
  const result = (outcome: Outcome, rest: Partial<Received> = {}): Received => ({
    outcome,
    ticket_id: null,
    message_id: null,
    mail_message_id: mailMessageId,
    reason: null,
    ...rest,
  });

  const existing = await repo.messageOfMailId(db, mailMessageId);
  if (existing) return result('duplicate', { ticket_id: existing.ticket_id, message_id: existing.id });

  const fromEntry = mail.from?.value.find((a) => a.address);
  const from = fromEntry?.address ? normaliseAddress(fromEntry.address) : undefined;

  if (isBounce(mail, from)) {
    const reason = bounceReason(mail, raw);
    const ids = returnedMessageIds(raw).filter((id) => id !== mailMessageId);
    const marked = await db
      .transaction()
      .execute((trx) => repo.markBounced(trx, ids, reason, finalRecipient(raw)));
    if (!marked) return result('ignored', { reason: 'bounce of no message of ours' });
    deps.log?.info({ ticketId: marked.ticketId, messageId: marked.messageId }, 'mail bounced');
    return result('bounce', { ticket_id: marked.ticketId, message_id: marked.messageId, reason });
  }
  if (!from) return result('ignored', { reason: 'no sender address' });
  if (await isOurAddress(db, from, deps.mailFrom))
    return result('ignored', { reason: 'sent from one of our own addresses' });

  const auto = autoSubmittedReason(mail);
  const recipients = [
    ...new Set([
      ...addressesOf(mail.to),
      ...addressesOf(mail.cc),
      ...headerAddresses(mail, 'delivered-to'),
      ...headerAddresses(mail, 'x-original-to'),
    ]),
  ].slice(0, MAX_RECIPIENTS);
  const routed = await departmentOfAddresses(db, recipients);
  const departmentId = routed?.departmentId ?? mailbox.department_id;

  const threadIds = [
    ...new Set([...messageIdsIn(mail.inReplyTo), ...messageIdsIn(mail.references).slice(-MAX_THREAD_IDS)]),
  ].slice(0, MAX_THREAD_IDS + 1);
  // An agent answering a notification mail (docs/email.md): not a customer's message, not a ticket.
  // Named by In-Reply-To or by References alone, as some clients and forwards do.
  if (await repo.isNotificationMailId(db, threadIds))
    return result('ignored', { reason: 'a reply to a notification mailed to an agent' });
  let ticketId = await repo.ticketOfMailIds(db, threadIds);
  const subject = (mail.subject ?? '').trim();
  if (!ticketId) {
    const reference = SUBJECT_REFERENCE.exec(subject);
    if (reference) ticketId = await repo.ticketOfNumberAndContact(db, Number(reference[1]), from);
  }
  if (!ticketId && auto) return result('auto_submitted', { reason: auto });

  const text = bodyText(mail);
  const html = typeof mail.html === 'string' && mail.html.trim() ? sanitiseMailHtml(mail.html) : null;
  const stored = await blobs.put(raw);
  try {
    const received = await db.transaction().execute(async (trx) => {
      await repo.lockMailId(trx, mailMessageId);
      const again = await repo.messageOfMailId(trx, mailMessageId);
      if (again) return result('duplicate', { ticket_id: again.ticket_id, message_id: again.id });
      const {
        ticketId: into,
        messageId,
        outcome,
      } = ticketId
        ? await addToTicket(trx, ticketId, text, from, auto !== undefined)
        : await openTicket(trx, {
            subject: subject.slice(0, MAX_SUBJECT_CHARS) || '(no subject)',
            text,
            from,
            name: fromEntry?.name?.trim() || undefined,
            departmentId,
            supportAddress: routed?.address,
          });
      await repo.setMailFields(trx, messageId, {
        mail_message_id: mailMessageId,
        mail_address: from,
        html_body: html,
        raw_blob_key: stored.key,
        mail_auto_submitted: auto !== undefined,
      });
      for (const attachment of mail.attachments) {
        if (attachment.size > deps.maxAttachmentBytes) continue;
        await storeAttachment(trx, blobs, {
          ticketId: into,
          messageId,
          filename: (attachment.filename ?? 'attachment').slice(0, 255),
          content: attachment.content,
          maxBytes: deps.maxAttachmentBytes,
        });
      }
      return result(outcome, { ticket_id: into, message_id: messageId, reason: auto ?? null });
    });
    if (received.outcome === 'duplicate') await blobs.delete(stored.key);
    return received;
  } catch (error) {
    await blobs.delete(stored.key).catch(() => {});
    throw error;
  }
}

async function openTicket(
  trx: Transaction<Database>,
  input: {
    subject: string;
    text: string;
    from: string;
    name: string | undefined;
    departmentId: string;
    supportAddress: string | undefined;
  },
) {
  const opened = await writeTicket(trx, {
    kind: 'create',
    input: {
      subject: input.subject,
      channel: 'email',
      contact: { email: input.from, ...(input.name !== undefined && { name: input.name.slice(0, 200) }) },
      message: { body: input.text, author: 'contact' },
      department_id: input.departmentId,
      ...(input.supportAddress !== undefined && { support_address: input.supportAddress }),
    },
    actor: SYSTEM,
    authorAgentId: null,
    by: 'unchecked',
  });
  const messageId = await openingMessageId(trx, opened.ticket.id);
  return { ticketId: opened.ticket.id, messageId, outcome: 'created' as const };
}

/**
 * A customer's mail into their ticket: it reopens an answered, postponed or resolved ticket and
 * raises the customer-replied rules, like a customer message through the API. An auto-reply is
 * recorded (so agents see the out-of-office) but changes no status and raises no rule: it is
 * never answered.
 */
async function addToTicket(
  trx: Transaction<Database>,
  ticketId: string,
  text: string,
  from: string,
  auto: boolean,
) {
  const changed = await writeTicket(trx, {
    kind: 'change',
    target: { id: ticketId },
    access: null,
    decide: (ticket, at) => {
      const customer: Actor = { type: 'contact', agentId: null, contactId: ticket.contact_id };
      const message: NewMessage = {
        id: randomUUID(),
        kind: 'customer',
        channel: 'email',
        author_agent_id: null,
        author_contact_id: ticket.contact_id,
        body: text,
        department_id: ticket.department_id,
      };
      const data = { message_id: message.id, kind: 'customer' };
      if (auto) {
        return {
          messages: [message],
          search: text,
          activity: false,
          steps: [{ event: { type: 'message_added', data }, actor: customer }],
          result: message.id,
        };
      }
      const reopen = ['answered', 'postponed', 'resolved'].includes(ticket.status);
      const patch: TicketPatch = {
        ...(reopen && statusPatch(ticket, 'open', at)),
        last_customer_message_at: at,
      };
      return {
        messages: [message],
        search: text,
        steps: [
          { event: { type: 'message_added', data }, actor: customer },
          { patch, actor: customer },
        ],
        triggers: ['ticket.customer_replied', 'ticket.status_changed'],
        ruleMessage: { id: message.id, body: text, senderEmail: from },
        result: message.id,
      };
    },
  });
  return { ticketId, messageId: changed.result, outcome: 'threaded' as const };
}
