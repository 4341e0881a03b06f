import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from '../../contract.ts';

const CustomFieldValue = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);

export const ContactSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String({ description: 'May be empty when the contact is known by email or phone only.' }),
    emails: Type.Array(Type.String(), { description: 'In the order given; the first is the main one.' }),
    phones: Type.Array(Type.String(), {
      description: 'Normalised (digits and an optional leading +), in the order given.',
    }),
    custom_fields: Type.Record(Type.String(), CustomFieldValue, {
      description: 'Values of the fields defined under /v1/contact-fields, by field key.',
    }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
  },
  { $id: 'Contact', additionalProperties: false },
);
export type Contact = Static<typeof ContactSchema>;

const Name = Type.String({ maxLength: 200, description: 'Up to 200 characters; stored trimmed.' });

const Emails = Type.Array(
  Type.String({ format: 'email', maxLength: 254, description: 'Unique across contacts, ignoring case.' }),
  { maxItems: 20, description: 'Up to 20, no repeats (ignoring case). On update, replaces the whole list.' },
);

const Phones = Type.Array(
  Type.String({
    minLength: 1,
    maxLength: 64,
    description:
      'Spaces, dashes, dots and parentheses are removed; what remains must be 4-20 digits with an optional leading +. Unique across contacts.',
  }),
  { maxItems: 20, description: 'Up to 20, no repeats once normalised. On update, replaces the whole list.' },
);

const CustomFieldsInput = (description: string) =>
  Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]), {
    maxProperties: 200,
    description,
  });

export const CreateContactBody = Type.Object(
  {
    name: Type.Optional(Name),
    emails: Type.Optional(Emails),
    phones: Type.Optional(Phones),
    custom_fields: Type.Optional(
      CustomFieldsInput(
        'Values by field key; each key must be a defined contact field and each value fit its type. null is the same as leaving the key out.',
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'At least one of name, emails and phones must be non-empty.',
    examples: [
      {
        name: 'Maria Keller',
        emails: ['maria.keller@example.com'],
        phones: ['+49 30 1234-5678'],
        custom_fields: { plan: 'Pro', customer_since: '2024-03-01' },
      },
    ],
  },
);

export const UpdateContactBody = Type.Object(
  {
    name: Type.Optional(Name),
    emails: Type.Optional(Emails),
    phones: Type.Optional(Phones),
    custom_fields: Type.Optional(
      CustomFieldsInput('Merged into the current values: the keys given are set, a null value removes one.'),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'The contact must keep at least one of name, emails and phones.',
    examples: [{ phones: ['+1 (555) 010-0199'], custom_fields: { plan: 'Enterprise', vip: null } }],
  },
);

export const ContactListQuery = {
  q: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 254,
      description:
        'Matches part of the name, of any email or of any phone (ignoring case; phone punctuation is ignored).',
    }),
  ),
};
