import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import type { Attachment, AttachmentSummary } from './schemas.ts';

type Executor = Kysely<Database>;

const COLUMNS = [
  'id',
  'ticket_id',
  'message_id',
  'filename',
  'content_type',
  'size_bytes',
  'sha256',
  'uploaded_by_agent_id',
  'created_at',
] as const;

type Row = {
  id: string;
  ticket_id: string;
  message_id: string | null;
  filename: string;
  content_type: string;
  size_bytes: number | string;
  sha256: string;
  uploaded_by_agent_id: string | null;
  created_at: Date;
};

export function toAttachment(row: Row): Attachment {
  return {
    id: row.id,
    ticket_id: row.ticket_id,
    message_id: row.message_id,
    filename: row.filename,
    content_type: row.content_type,
    size_bytes: Number(row.size_bytes),
    sha256: row.sha256,
    uploaded_by_agent_id: row.uploaded_by_agent_id,
    created_at: row.created_at.toISOString(),
    download_url: `/v1/attachments/${row.id}`,
  };
}

/** A ticket's attachments, oldest first (a ticket holds few: no pages). */
export async function listTicketAttachments(db: Executor, ticketId: string): Promise<Attachment[]> {
  const rows = await db
    .selectFrom('attachments')
    .select(COLUMNS)
    .where('ticket_id', '=', ticketId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map(toAttachment);
}

export async function findAttachment(db: Executor, id: string) {
  const row = await db
    .selectFrom('attachments')
    .select([...COLUMNS, 'blob_key'])
    .where('id', '=', id)
    .executeTakeFirst();
  return row && { ...row, size_bytes: Number(row.size_bytes) };
}

/** The attachments of these messages, by message, oldest first. */
export async function attachmentsOfMessages(
  db: Executor,
  messageIds: readonly string[],
): Promise<Map<string, AttachmentSummary[]>> {
  const byMessage = new Map<string, AttachmentSummary[]>();
  if (messageIds.length === 0) return byMessage;
  const rows = await db
    .selectFrom('attachments')
    .select(['id', 'message_id', 'filename', 'content_type', 'size_bytes'])
    .where('message_id', 'in', [...messageIds])
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  for (const row of rows) {
    const list = byMessage.get(row.message_id!) ?? [];
    list.push({
      id: row.id,
      filename: row.filename,
      content_type: row.content_type,
      size_bytes: Number(row.size_bytes),
    });
    byMessage.set(row.message_id!, list);
  }
  return byMessage;
}

/** The files of one message, with their blob keys: for mail out. */
export function messageFiles(db: Executor, messageId: string) {
  return db
    .selectFrom('attachments')
    .select(['id', 'filename', 'content_type', 'size_bytes', 'blob_key'])
    .where('message_id', '=', messageId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/** Locks the named attachments of a ticket for linking; those of other tickets are not returned. */
export function lockTicketAttachments(trx: Transaction<Database>, ticketId: string, ids: readonly string[]) {
  return trx
    .selectFrom('attachments')
    .select(['id', 'message_id', 'uploaded_by_agent_id'])
    .where('ticket_id', '=', ticketId)
    .where('id', 'in', [...ids])
    .forUpdate()
    .execute();
}

export async function linkAttachments(
  trx: Transaction<Database>,
  ids: readonly string[],
  messageId: string,
): Promise<void> {
  await trx
    .updateTable('attachments')
    .set({ message_id: messageId })
    .where('id', 'in', [...ids])
    .where('message_id', 'is', null)
    .execute();
}

/** Deletes a staged attachment (a linked one stays); returns its blob key when it was deleted. */
export async function deleteStaged(db: Executor, id: string): Promise<string | undefined> {
  const row = await db
    .deleteFrom('attachments')
    .where('id', '=', id)
    .where('message_id', 'is', null)
    .returning('blob_key')
    .executeTakeFirst();
  return row?.blob_key;
}

/**
 * Removes up to `limit` staged attachments (never linked to a message) created more than a day
 * ago by the application's clock, except on soft-deleted tickets, which keep what they had.
 * Rows another instance is removing are skipped. Returns the blob keys to delete.
 */
export async function deleteStaleStaged(db: Executor, limit: number): Promise<string[]> {
  const rows = await db
    .deleteFrom('attachments')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('attachments as a')
        .innerJoin('tickets as t', 't.id', 'a.ticket_id')
        .select('a.id')
        .where('a.message_id', 'is', null)
        .where('a.created_at', '<', sql<Date>`deskroute_now() - interval '1 day'`)
        .where('t.status', '!=', 'deleted')
        .limit(limit)
        .forUpdate('a')
        .skipLocked(),
    )
    .where('message_id', 'is', null)
    .returning('blob_key')
    .execute();
  return rows.map((r) => r.blob_key);
}
