import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';
import { MAX_PART_LENGTH } from '../mail-identity/templates.ts';

export const CANNED_STATUSES = ['open', 'answered', 'resolved'] as const;

const Title = Type.String({ minLength: 1, maxLength: 200, pattern: '\\S' });
const Body = Type.String({
  minLength: 1,
  maxLength: MAX_PART_LENGTH,
  pattern: '\\S',
  description: 'Liquid, the variables of mail templates (docs/email.md); checked when saved.',
});
const Tag = Type.String({ minLength: 1, maxLength: 50, pattern: '\\S' });
const Tags = Type.Array(Tag, { maxItems: 20, description: 'Added to the ticket; trimmed, lower-cased.' });
const Status = Type.Enum(CANNED_STATUSES, {
  description: 'Set on the ticket, after the message’s own change.',
});

export const CannedResponseSchema = Type.Object(
  {
    id: Uuid(),
    department_id: Type.Union([Uuid(), Type.Null()], { description: 'Null: help-desk wide.' }),
    title: Type.String(),
    body: Type.String(),
    tags: Type.Array(Type.String()),
    status: Type.Union([Status, Type.Null()]),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'CannedResponse', additionalProperties: false },
);
export type CannedResponse = Static<typeof CannedResponseSchema>;

export const CreateCannedResponseBody = Type.Object(
  {
    department_id: Type.Optional(
      Type.Union([Uuid(), Type.Null()], {
        description:
          'The department it belongs to (its managers manage it); null or left out: help-desk wide (admins).',
      }),
    ),
    title: Title,
    body: Body,
    tags: Type.Optional(Tags),
    status: Type.Optional(Type.Union([Status, Type.Null()])),
  },
  {
    additionalProperties: false,
    examples: [
      {
        title: 'Refund on its way',
        body: 'Hello {{ contact.name }},\n\nyour refund for {{ ticket.reference }} is on its way.\n\n{{ agent.name }}',
        tags: ['refund'],
        status: 'resolved',
      },
    ],
  },
);
export type CreateCannedResponseInput = Static<typeof CreateCannedResponseBody>;

export const UpdateCannedResponseBody = Type.Object(
  {
    title: Type.Optional(Title),
    body: Type.Optional(Body),
    tags: Type.Optional(Tags),
    status: Type.Optional(Type.Union([Status, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ status: null }] },
);
export type UpdateCannedResponseInput = Static<typeof UpdateCannedResponseBody>;

export const CannedResponseListQuery = {
  q: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'Words of the title or body (case-insensitive).',
    }),
  ),
  department_id: Type.Optional(Uuid('That department’s canned responses and the help-desk-wide ones.')),
};
