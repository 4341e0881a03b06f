import { Readable } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import { type Kysely, sql } from 'kysely';
import type { Database } from '../../db/types.ts';
import type { BlobStore } from '../../storage/blobs.ts';

// Storing a file: its bytes go to the blob store as they arrive (never whole in memory), its
// type is read from those bytes (never from the sender's word), its name is cleaned, and only
// then is its row written. Used by uploads, the contact form and mail in.

/** What an attachment row says about its file, as the API shows it. */
export interface StoredAttachment {
  id: string;
  filename: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
}

/** A file in the blob store whose row is not written yet. */
export interface PutFile {
  filename: string;
  content_type: string;
  size_bytes: number;
  sha256: string;
  blob_key: string;
}

/** file-type finds nearly every format it knows within the first few KiB; ZIP-based ones need more. */
const SNIFF_BYTES = 64 * 1024;
const MAX_FILENAME = 200;
const FALLBACK_NAME = 'attachment';

/**
 * A name safe to store and to send back: no path (what follows the last / or \), no control,
 * format (bidi overrides) or line-separator characters, NFC, trimmed, at most 200 characters
 * with the extension kept. Nothing left (or only dots): "attachment".
 */
export function cleanFilename(raw: string | undefined | null): string {
  const base = (raw ?? '').split(/[/\\]/).at(-1) ?? '';
  const cleaned = base
    .normalize('NFC')
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, '')
    .trim()
    .replace(/^\.+/, '');
  if (cleaned === '') return FALLBACK_NAME;
  const chars = [...cleaned];
  if (chars.length <= MAX_FILENAME) return cleaned;
  const dot = cleaned.lastIndexOf('.');
  const extension = dot > 0 ? [...cleaned.slice(dot)] : [];
  if (extension.length > 0 && extension.length <= 20) {
    return chars.slice(0, MAX_FILENAME - extension.length).join('') + extension.join('');
  }
  return chars.slice(0, MAX_FILENAME).join('');
}

/**
 * Passes the bytes on while watching them: keeps the first SNIFF_BYTES for file-type and checks,
 * across chunk boundaries, whether the whole is UTF-8 text without NUL.
 */
function sniffing(source: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer>) {
  const head: Buffer[] = [];
  let headSize = 0;
  let text = true;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  async function* watch() {
    for await (const chunk of source) {
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      if (headSize < SNIFF_BYTES) {
        const part = bytes.subarray(0, SNIFF_BYTES - headSize);
        head.push(Buffer.from(part));
        headSize += part.length;
      }
      if (text) {
        if (bytes.includes(0)) text = false;
        else {
          try {
            decoder.decode(bytes, { stream: true });
          } catch {
            text = false;
          }
        }
      }
      yield bytes;
    }
  }
  return {
    stream: Readable.from(watch(), { objectMode: false }),
    async contentType(): Promise<string> {
      const sample = Buffer.concat(head);
      const found = sample.length > 0 ? await fileTypeFromBuffer(sample) : undefined;
      if (found) return found.mime;
      if (text) {
        try {
          decoder.decode();
        } catch {
          text = false;
        }
      }
      return text ? 'text/plain' : 'application/octet-stream';
    },
  };
}

/**
 * Streams `content` into the blob store (BlobTooLarge past `maxBytes`, nothing left behind) and
 * reads its type and cleaned name. The caller writes the row, or deletes the blob.
 */
export async function putFile(
  blobs: BlobStore,
  input: { filename: string; content: Buffer | Readable; maxBytes: number },
): Promise<PutFile> {
  const sniff = sniffing(Buffer.isBuffer(input.content) ? [input.content] : input.content);
  const blob = await blobs.put(sniff.stream, { maxBytes: input.maxBytes });
  let contentType: string;
  try {
    contentType = await sniff.contentType();
  } catch (error) {
    await blobs.delete(blob.key);
    throw error;
  }
  return {
    filename: cleanFilename(input.filename),
    content_type: contentType,
    size_bytes: blob.size,
    sha256: blob.sha256,
    blob_key: blob.key,
  };
}

/** Writes the rows of files already in the blob store; one statement. */
export async function insertAttachmentRows(
  db: Kysely<Database>,
  files: readonly PutFile[],
  owner: { ticketId: string; messageId: string | null; uploadedByAgentId?: string | null },
): Promise<StoredAttachment[]> {
  if (files.length === 0) return [];
  const rows = await db
    .insertInto('attachments')
    .values(
      files.map((f, i) => ({
        // One statement, one transaction time: a microsecond apiece keeps the files' order
        // (lists sort by created_at, then id).
        created_at: sql<Date>`deskroute_now() + ${i} * interval '1 microsecond'`,
        ticket_id: owner.ticketId,
        message_id: owner.messageId,
        uploaded_by_agent_id: owner.uploadedByAgentId ?? null,
        filename: f.filename,
        content_type: f.content_type,
        size_bytes: f.size_bytes,
        sha256: f.sha256,
        blob_key: f.blob_key,
      })),
    )
    .returning(['id', 'filename', 'content_type', 'size_bytes', 'sha256', 'blob_key'])
    .execute();
  // In the order given (RETURNING follows VALUES' order in practice, but not by promise).
  const byKey = new Map(rows.map((r) => [r.blob_key, r]));
  return files.map((f) => {
    const { blob_key: _key, ...row } = byKey.get(f.blob_key)!;
    return { ...row, size_bytes: Number(row.size_bytes) };
  });
}

/** Deletes blobs, ignoring failures (cleaning up after a failed request). */
export async function discardFiles(blobs: BlobStore, files: readonly { blob_key: string }[]) {
  await Promise.allSettled(files.map((f) => blobs.delete(f.blob_key)));
}

/**
 * Stores one attachment: sniffs its type, cleans its name, streams it into the blob store and
 * writes its row (on `messageId`, or staged on the ticket when null). Throws BlobTooLarge past
 * `maxBytes`; whatever fails leaves neither blob nor row behind.
 */
export async function storeAttachment(
  db: Kysely<Database>,
  blobs: BlobStore,
  input: {
    ticketId: string;
    messageId: string | null;
    filename: string;
    content: Buffer | Readable;
    maxBytes: number;
    /** The agent staging it (uploads); mail and the contact form leave it out. */
    uploadedByAgentId?: string | null;
  },
): Promise<StoredAttachment> {
  const file = await putFile(blobs, input);
  try {
    const [row] = await insertAttachmentRows(db, [file], {
      ticketId: input.ticketId,
      messageId: input.messageId,
      uploadedByAgentId: input.uploadedByAgentId ?? null,
    });
    return row!;
  } catch (error) {
    await discardFiles(blobs, [file]);
    throw error;
  }
}
