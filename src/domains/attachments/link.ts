import type { Transaction } from 'kysely';
import type { Database } from '../../db/types.ts';
import { DomainError } from '../../errors.ts';
import { attachmentsOfMessages, linkAttachments, lockTicketAttachments } from './repository.ts';
import type { AttachmentSummary } from './schemas.ts';

/**
 * Sends staged attachments with a new message of the same ticket, in the message's transaction.
 * Each id must name an attachment of this ticket (else 422 attachment_not_found: another
 * ticket's answers like one that does not exist), staged by this agent (else 422
 * attachment_not_yours) and not sent yet (else 409 attachment_already_linked). The first
 * failure undoes the whole message.
 */
export async function linkStagedAttachments(
  trx: Transaction<Database>,
  input: { ticketId: string; messageId: string; agentId: string | null; ids: readonly string[] },
): Promise<AttachmentSummary[]> {
  if (input.ids.length === 0) return [];
  const rows = new Map((await lockTicketAttachments(trx, input.ticketId, input.ids)).map((r) => [r.id, r]));
  const failures: { status: 'unprocessable' | 'conflict'; code: string; index: number; message: string }[] =
    [];
  input.ids.forEach((id, index) => {
    const row = rows.get(id);
    if (!row)
      failures.push({
        status: 'unprocessable',
        code: 'attachment_not_found',
        index,
        message: 'is not an attachment of this ticket',
      });
    else if (row.message_id !== null)
      failures.push({
        status: 'conflict',
        code: 'attachment_already_linked',
        index,
        message: 'was already sent with another message',
      });
    else if (row.uploaded_by_agent_id !== input.agentId)
      failures.push({
        status: 'unprocessable',
        code: 'attachment_not_yours',
        index,
        message: 'was staged by someone else',
      });
  });
  const first = failures.find((f) => f.status === 'unprocessable') ?? failures[0];
  if (first) {
    const details: Record<string, string> = {
      attachment_not_found: 'An attachment_ids entry is not a staged attachment of this ticket.',
      attachment_not_yours: 'An attachment_ids entry was staged by another agent; upload your own copy.',
      attachment_already_linked: 'An attachment_ids entry was already sent with another message.',
    };
    const error = new DomainError(first.status, first.code, details[first.code]!);
    error.errors = failures
      .filter((f) => f.code === first.code)
      .map((f) => ({ field: `body/attachment_ids/${f.index}`, message: f.message }));
    throw error;
  }
  await linkAttachments(trx, input.ids, input.messageId);
  return (await attachmentsOfMessages(trx, [input.messageId])).get(input.messageId) ?? [];
}
