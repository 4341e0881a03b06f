import type { Readable } from 'node:stream';
import type { Principal } from '../../access/policy.ts';
import { can, loadTicketAccess, requireTicket } from '../../access/tickets.ts';
import type { Config } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, forbidden, invalid, notFound } from '../../errors.ts';
import { BlobMissing, type BlobStore } from '../../storage/blobs.ts';
import { findTicketRecord } from '../tickets/repository.ts';
import { type Part, uploadError } from './multipart.ts';
import * as repo from './repository.ts';
import type { Attachment } from './schemas.ts';
import { discardFiles, insertAttachmentRows, type PutFile, putFile } from './store.ts';

type Limits = Config['attachments'];

/** Reads a file part to its end without keeping it (an empty file input of a browser form). */
async function drain(stream: Readable) {
  for await (const _ of stream) {
    // discarded
  }
}

/**
 * Streams every file of a multipart body into the blob store. All or nothing: on any failure
 * (a limit, a malformed body, a field where only files belong) the blobs written so far are
 * deleted and the error is turned into problem+json.
 */
async function putParts(
  blobs: BlobStore,
  parts: AsyncIterable<Part>,
  limits: Limits,
  onField: (part: Extract<Part, { type: 'field' }>) => void,
): Promise<PutFile[]> {
  const files: PutFile[] = [];
  try {
    for await (const part of parts) {
      if (part.type === 'field') {
        onField(part);
        continue;
      }
      // A browser sends an empty file input as a file part without a name.
      if (!part.filename) {
        await drain(part.file);
        continue;
      }
      files.push(
        await putFile(blobs, { filename: part.filename, content: part.file, maxBytes: limits.maxBytes }),
      );
    }
    return files;
  } catch (error) {
    await discardFiles(blobs, files);
    throw uploadError(error, limits);
  }
}

/**
 * Stages uploaded files on a ticket (message_id null) for a reply of the uploader's to send
 * (`attachment_ids`). Anyone who may work the ticket may upload; a deleted ticket takes none.
 */
export async function stageUploads(
  db: Db,
  blobs: BlobStore,
  principal: Principal,
  ticketId: string,
  parts: AsyncIterable<Part>,
  limits: Limits,
): Promise<Attachment[]> {
  const access = await loadTicketAccess(db, principal);
  const ticket = requireTicket(access, await findTicketRecord(db, ticketId), 'work');
  if (ticket.status === 'deleted') {
    throw new DomainError('conflict', 'ticket_deleted', 'The ticket is deleted; restore it first.');
  }
  const files = await putParts(blobs, parts, limits, (field) => {
    throw invalid('unexpected_field', 'Send files only: this upload takes no other fields.', [
      { field: `body/${field.fieldname}`, message: 'is not a known field' },
    ]);
  });
  if (files.length === 0) {
    throw invalid('attachment_required', 'Send at least one file (multipart/form-data, any field name).', [
      { field: 'body', message: 'holds no file' },
    ]);
  }
  try {
    const stored = await insertAttachmentRows(db, files, {
      ticketId,
      messageId: null,
      uploadedByAgentId: principal.agentId,
    });
    const ids = new Set(stored.map((s) => s.id));
    const rows = (await repo.listTicketAttachments(db, ticketId)).filter((a) => ids.has(a.id));
    return stored.map((s) => rows.find((r) => r.id === s.id)!);
  } catch (error) {
    await discardFiles(blobs, files);
    throw error;
  }
}

/**
 * The text fields and files of a multipart form (the contact form). Files go to the blob store
 * as they arrive; their rows are the caller's to write, or `discardFiles` theirs to call. Each
 * field may come once; a value cut at the field limit is refused.
 */
export async function readFormWithFiles(
  blobs: BlobStore,
  parts: AsyncIterable<Part>,
  limits: Limits,
): Promise<{ fields: Record<string, string>; files: PutFile[] }> {
  const fields: Record<string, string> = {};
  const files = await putParts(blobs, parts, limits, (field) => {
    if (Object.hasOwn(fields, field.fieldname)) {
      throw invalid('duplicate_field', `The field ${field.fieldname} is sent more than once.`, [
        { field: `body/${field.fieldname}`, message: 'is sent more than once' },
      ]);
    }
    if (field.valueTruncated) {
      throw new DomainError('too_large', 'field_too_large', `The field ${field.fieldname} is too long.`);
    }
    fields[field.fieldname] = String(field.value);
  });
  return { fields, files };
}

/** The attachments of a ticket the caller may see (staged ones too), oldest first. */
export async function listAttachments(db: Db, principal: Principal, ticketId: string): Promise<Attachment[]> {
  const access = await loadTicketAccess(db, principal);
  requireTicket(access, await findTicketRecord(db, ticketId), 'read');
  return repo.listTicketAttachments(db, ticketId);
}

/** An attachment of a ticket the caller may see, with its bytes; 404 alike for any other. */
export async function openAttachment(
  db: Db,
  blobs: BlobStore,
  principal: Principal,
  id: string,
): Promise<{ attachment: Attachment; content: Readable }> {
  const row = await repo.findAttachment(db, id);
  const ticket = row && (await findTicketRecord(db, row.ticket_id));
  if (!row || !ticket || !can(await loadTicketAccess(db, principal), ticket, 'read')) {
    throw notFound('attachment');
  }
  try {
    return { attachment: repo.toAttachment(row), content: await blobs.get(row.blob_key) };
  } catch (error) {
    if (error instanceof BlobMissing) {
      throw new DomainError(
        'not_found',
        'attachment_content_missing',
        'The attachment’s bytes are gone from storage.',
      );
    }
    throw error;
  }
}

/**
 * Deletes a staged attachment: its uploader, or a supervisor of the ticket. One sent with a
 * message stays (409): the customer has it.
 */
export async function deleteStagedAttachment(
  db: Db,
  blobs: BlobStore,
  principal: Principal,
  id: string,
): Promise<void> {
  const row = await repo.findAttachment(db, id);
  const access = await loadTicketAccess(db, principal);
  const ticket = row && (await findTicketRecord(db, row.ticket_id));
  if (!row || !ticket || !can(access, ticket, 'read')) throw notFound('attachment');
  requireTicket(access, ticket, 'work');
  if (row.message_id !== null) {
    throw new DomainError(
      'conflict',
      'attachment_linked',
      'The attachment was sent with a message and stays with it; only staged ones can be deleted.',
    );
  }
  if (row.uploaded_by_agent_id !== principal.agentId && !can(access, ticket, 'manage')) {
    throw forbidden('Only its uploader or a supervisor deletes a staged attachment.', 'supervisor_required');
  }
  const key = await repo.deleteStaged(db, id);
  // Sent meanwhile: it stays.
  if (key === undefined) {
    throw new DomainError(
      'conflict',
      'attachment_linked',
      'The attachment was sent with a message meanwhile.',
    );
  }
  await blobs.delete(key);
}

/**
 * Housekeeping: staged attachments nobody sent within a day are removed, rows first (so a crash
 * leaves at most an unreferenced blob, never a row without bytes), then their blobs.
 */
export async function sweepStagedAttachments(db: Db, blobs: BlobStore, batch = 500): Promise<number> {
  let removed = 0;
  for (;;) {
    const keys = await repo.deleteStaleStaged(db, batch);
    await discardFiles(
      blobs,
      keys.map((blob_key) => ({ blob_key })),
    );
    removed += keys.length;
    if (keys.length < batch) return removed;
  }
}
