import { type Static, Type } from 'typebox';
import { DisplayName, Timestamp, Uuid } from '../../contract.ts';

export const ContactFieldTypeSchema = Type.Union(
  [
    Type.Literal('text'),
    Type.Literal('number'),
    Type.Literal('date'),
    Type.Literal('boolean'),
    Type.Literal('choice'),
  ],
  {
    description:
      'What values the field takes: text (a string of up to 10,000 characters), number (a finite number), date (YYYY-MM-DD), boolean, or choice (one of `options`).',
  },
);

const FieldKey = Type.String({
  pattern: '^[a-z][a-z0-9_]{0,62}$',
  description: 'The name under which contacts carry the value in `custom_fields`; unique.',
});

/** The most options a choice field has, here and when an import adds to one (service.ts). */
export const MAX_OPTIONS = 100;

const Options = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  minItems: 1,
  maxItems: MAX_OPTIONS,
  uniqueItems: true,
  description: 'The values a choice field accepts (1-100 distinct strings). Only for type choice.',
});

export const ContactFieldSchema = Type.Object(
  {
    id: Uuid(),
    key: Type.String({ description: "Unique; the key of the value in a contact's `custom_fields`." }),
    label: Type.String(),
    type: ContactFieldTypeSchema,
    options: Type.Array(Type.String(), {
      description: 'The accepted values of a choice field; empty otherwise.',
    }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'ContactField', additionalProperties: false },
);
export type ContactField = Static<typeof ContactFieldSchema>;

export const CreateContactFieldBody = Type.Object(
  {
    key: FieldKey,
    label: DisplayName('Shown to agents; stored trimmed.'),
    type: ContactFieldTypeSchema,
    options: Type.Optional(Options),
  },
  {
    additionalProperties: false,
    examples: [
      { key: 'plan', label: 'Plan', type: 'choice', options: ['Free', 'Pro', 'Enterprise'] },
      { key: 'customer_since', label: 'Customer since', type: 'date' },
    ],
  },
);

export const UpdateContactFieldBody = Type.Object(
  {
    key: Type.Optional(FieldKey),
    label: Type.Optional(DisplayName('Shown to agents; stored trimmed.')),
    type: Type.Optional(ContactFieldTypeSchema),
    options: Type.Optional(Options),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ label: 'Subscription plan', options: ['Free', 'Pro', 'Business', 'Enterprise'] }],
  },
);
