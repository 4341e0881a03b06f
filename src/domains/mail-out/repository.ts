import { type Kysely, sql } from 'kysely';
import type { Database, OutboxKind, OutboxState } from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { OutgoingMailView } from './schemas.ts';

type Executor = Kysely<Database>;

interface Row {
  id: string;
  kind: Exclude<OutboxKind, 'notification'>;
  message_id: string | null;
  to_address: string | null;
  from_name: string;
  from_address: string | null;
  subject: string;
  headers: Record<string, string>;
  mail_message_id: string;
  state: OutboxState;
  attempts: number;
  last_error: string | null;
  next_attempt_at: Date | null;
  sent_at: Date | null;
  created_at: Date;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

function toView(row: Row): OutgoingMailView {
  return {
    id: row.id,
    kind: row.kind,
    message_id: row.message_id,
    to: row.to_address,
    from: { name: row.from_name, address: row.from_address },
    subject: row.subject,
    mail_message_id: row.mail_message_id,
    in_reply_to: row.headers['In-Reply-To'] ?? null,
    auto_submitted: row.headers['Auto-Submitted'] !== undefined,
    state: row.state,
    attempts: row.attempts,
    last_error: row.last_error,
    next_attempt_at: row.state === 'queued' ? iso(row.next_attempt_at) : null,
    sent_at: iso(row.sent_at),
    created_at: row.created_at.toISOString(),
  };
}

/** A ticket's outgoing mails, oldest first (keyset pages). */
export async function listTicketMails(
  db: Executor,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<Row> = {
    list: `mails:${ticketId}`,
    columns: [sql`created_at`, sql`id`],
    key: (row) => [row.created_at.toISOString(), row.id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('mail_outbox')
    .select([
      'id',
      'kind',
      'message_id',
      'to_address',
      'from_name',
      'from_address',
      'subject',
      'headers',
      'mail_message_id',
      'state',
      'attempts',
      'last_error',
      'next_attempt_at',
      'sent_at',
      'created_at',
    ])
    .where('ticket_id', '=', ticketId)
    // Agents' notification mails are theirs, not part of the ticket's conversation.
    .where('kind', '<>', 'notification')
    .$narrowType<{ kind: Exclude<OutboxKind, 'notification'> }>()
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(keyset, rows, page.limit, toView);
}

/**
 * The ticket a mail we sent belongs to, by its Message-ID (without <>): for mail in, whose
 * customer may answer an acknowledgement or a notice (those are not ticket messages).
 */
export async function ticketOfSentMessageId(db: Executor, messageId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('mail_outbox')
    .select('ticket_id')
    .where('mail_message_id', '=', messageId)
    .where('kind', '<>', 'notification')
    .executeTakeFirst();
  return row?.ticket_id;
}
