import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';

/** An attachment as a message lists it. */
export const AttachmentSummarySchema = Type.Object(
  {
    id: Uuid(),
    filename: Type.String({
      description: 'Cleaned: no path, no control characters, at most 200 characters.',
    }),
    content_type: Type.String({
      description:
        'Read from the bytes, never from the sender: a known format, else text/plain (UTF-8 text without NUL), else application/octet-stream.',
    }),
    size_bytes: Type.Integer({ minimum: 0 }),
  },
  { $id: 'AttachmentSummary', additionalProperties: false },
);
export type AttachmentSummary = Static<typeof AttachmentSummarySchema>;

export const AttachmentSchema = Type.Object(
  {
    id: Uuid(),
    ticket_id: Uuid(),
    message_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The message it came with or was sent with; null while staged (uploaded, not sent yet).',
    }),
    filename: Type.String({
      description: 'Cleaned: no path, no control characters, at most 200 characters.',
    }),
    content_type: Type.String({
      description:
        'Read from the bytes, never from the sender: a known format, else text/plain (UTF-8 text without NUL), else application/octet-stream.',
    }),
    size_bytes: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ description: 'Hex SHA-256 of the bytes.' }),
    uploaded_by_agent_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The agent who uploaded it; null for files from mail or the contact form.',
    }),
    created_at: Timestamp(),
    download_url: Type.String({ description: 'GET it with the same credentials.' }),
  },
  { $id: 'Attachment', additionalProperties: false },
);
export type Attachment = Static<typeof AttachmentSchema>;

export const AttachmentListSchema = Type.Object(
  { data: Type.Array(Type.Unsafe<Attachment>({ $ref: 'Attachment#' })) },
  { $id: 'AttachmentList', additionalProperties: false },
);
export type AttachmentList = Static<typeof AttachmentListSchema>;

export const AttachmentIds = Type.Array(Uuid(), {
  minItems: 1,
  maxItems: 100,
  uniqueItems: true,
  description:
    'Staged attachments of this ticket that you uploaded (POST /v1/tickets/{id}/attachments), sent with this message.',
});
