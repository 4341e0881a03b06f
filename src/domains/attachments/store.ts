// STAND-IN: replaced at merge (the attachments part implements storeAttachment with sniffing).
import type { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/types.ts';
import type { BlobStore } from '../../storage/blobs.ts';

export async function storeAttachment(
  db: Kysely<Database>,
  blobs: BlobStore,
  input: {
    ticketId: string;
    messageId: string | null;
    filename: string;
    content: Buffer | Readable;
    maxBytes: number;
  },
): Promise<{ id: string; filename: string; content_type: string; size_bytes: number; sha256: string }> {
  const blob = await blobs.put(input.content, { maxBytes: input.maxBytes });
  const row = await db
    .insertInto('attachments')
    .values({
      ticket_id: input.ticketId,
      message_id: input.messageId,
      filename: input.filename,
      content_type: 'application/octet-stream',
      size_bytes: blob.size,
      sha256: blob.sha256,
      blob_key: blob.key,
    })
    .returning(['id', 'filename', 'content_type', 'size_bytes', 'sha256'])
    .executeTakeFirstOrThrow();
  return { ...row, size_bytes: Number(row.size_bytes) };
}
