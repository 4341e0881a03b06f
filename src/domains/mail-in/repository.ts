import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/types.ts';

type Executor = Kysely<Database>;

/** The message a Message-ID already made, if any. */
export function messageOfMailId(db: Executor, mailMessageId: string) {
  return db
    .selectFrom('ticket_messages')
    .select(['id', 'ticket_id'])
    .where('mail_message_id', '=', mailMessageId)
    .executeTakeFirst();
}

/** Serialises the receptions of one Message-ID until the transaction ends (a second delivery waits, then finds the first). */
export async function lockMailId(trx: Executor, mailMessageId: string) {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`mail:${mailMessageId}`}, 0))`.execute(trx);
}

/**
 * The newest live ticket one of these Message-IDs belongs to (In-Reply-To / References): a
 * message of the ticket, or a mail we sent about it (acknowledgements, notices and surveys are
 * only in mail_outbox, and customers answer them too).
 */
export async function ticketOfMailIds(db: Executor, ids: string[]): Promise<string | undefined> {
  if (ids.length === 0) return undefined;
  const row = await db
    .selectFrom('ticket_messages as m')
    .innerJoin('tickets as t', 't.id', 'm.ticket_id')
    .select(['m.ticket_id', 'm.created_at'])
    .where('m.mail_message_id', 'in', ids)
    .where('t.status', '<>', 'deleted')
    .unionAll(
      db
        .selectFrom('mail_outbox as o')
        .innerJoin('tickets as t', 't.id', 'o.ticket_id')
        .select(['o.ticket_id', 'o.created_at'])
        .where('o.mail_message_id', 'in', ids)
        .where('o.kind', '<>', 'notification')
        .where('t.status', '<>', 'deleted'),
    )
    .orderBy('created_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.ticket_id;
}

/** Whether one of these Message-IDs is a notification we mailed to an agent (its replies are not read). */
export async function isNotificationMailId(db: Executor, ids: string[]): Promise<boolean> {
  if (ids.length === 0) return false;
  const row = await db
    .selectFrom('mail_outbox')
    .select('id')
    .where('mail_message_id', 'in', ids)
    .where('kind', '=', 'notification')
    .executeTakeFirst();
  return row !== undefined;
}

/** The live ticket of this number whose contact has this address: a subject's [Ticket#n] counts only then. */
export async function ticketOfNumberAndContact(db: Executor, number: number, email: string) {
  const row = await db
    .selectFrom('tickets as t')
    .innerJoin('contact_emails as e', 'e.contact_id', 't.contact_id')
    .select('t.id')
    .where('t.number', '=', number)
    .where('t.status', '<>', 'deleted')
    .where(sql<boolean>`lower(e.email) = ${email.toLowerCase()}`)
    .executeTakeFirst();
  return row?.id;
}

export async function setMailFields(
  trx: Executor,
  messageId: string,
  fields: {
    mail_message_id: string;
    mail_address: string;
    html_body: string | null;
    raw_blob_key: string;
    mail_auto_submitted: boolean;
  },
) {
  await trx.updateTable('ticket_messages').set(fields).where('id', '=', messageId).execute();
}

/**
 * A bounce of one of our mails: an agent's reply (ticket_messages) or a mail only in the outbox
 * (acknowledgement, notice, survey). A reply is marked bounced; an outbox row has no such state
 * (migrations/0035), so it stays as sent. The address that mail went to (else the bounce's
 * Final-Recipient) is marked on the ticket's contact, so mail out stops sending to it; the
 * contact's other addresses are left alone.
 */
export async function markBounced(
  trx: Executor,
  mailIds: string[],
  reason: string,
  finalRecipient: string | undefined,
) {
  if (mailIds.length === 0) return undefined;
  const message = await trx
    .selectFrom('ticket_messages as m')
    .innerJoin('tickets as t', 't.id', 'm.ticket_id')
    .select(['m.id', 'm.ticket_id', 'm.mail_address', 't.contact_id'])
    .where('m.mail_message_id', 'in', mailIds)
    .where('m.kind', '=', 'agent')
    .orderBy('m.created_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  const sent = message
    ? undefined
    : await trx
        .selectFrom('mail_outbox as o')
        .innerJoin('tickets as t', 't.id', 'o.ticket_id')
        .select(['o.ticket_id', 'o.to_address', 't.contact_id'])
        .where('o.mail_message_id', 'in', mailIds)
        // A notification went to an agent: its bounce says nothing of the customer's address.
        .where('o.kind', '<>', 'notification')
        .orderBy('o.created_at', 'desc')
        .limit(1)
        .executeTakeFirst();
  if (!message && !sent) return undefined;
  if (message) {
    await trx
      .updateTable('ticket_messages')
      .set({ delivery_state: 'bounced', delivery_error: reason })
      .where('id', '=', message.id)
      .execute();
  }
  const address = (message?.mail_address ?? sent?.to_address ?? finalRecipient)?.toLowerCase();
  const contactId = message?.contact_id ?? sent?.contact_id;
  if (address && contactId) {
    await trx
      .updateTable('contact_emails')
      .set({ bounced_at: sql`now()`, bounce_reason: reason })
      .where('contact_id', '=', contactId)
      .where(sql<boolean>`lower(email) = ${address}`)
      .execute();
  }
  return { ticketId: (message?.ticket_id ?? sent?.ticket_id)!, messageId: message?.id ?? null };
}

/** The raw mail of a message of this ticket, if it came by mail. */
export function rawBlobOf(db: Executor, ticketId: string, messageId: string) {
  return db
    .selectFrom('ticket_messages')
    .select(['raw_blob_key', 'mail_message_id'])
    .where('ticket_id', '=', ticketId)
    .where('id', '=', messageId)
    .executeTakeFirst();
}
