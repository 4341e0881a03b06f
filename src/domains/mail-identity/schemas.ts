import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { MAX_PART_LENGTH, MAX_SUBJECT_LENGTH, TEMPLATE_KINDS } from './templates.ts';

// Addresses are plain strings here: their syntax is checked by the service (422 naming the
// entry), not by Ajv (400).
const Address = Type.String({ minLength: 1, maxLength: 254 });
const SenderName = Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' });
const SignatureText = Type.String({ maxLength: 10_000 });
const SignatureHtml = Type.String({ maxLength: 50_000 });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T, description: string) =>
  Type.Union([schema, Type.Null()], { description });

export const MailSettingsSchema = Type.Object(
  {
    help_desk_name: Type.String({ description: 'The help desk’s name (`help_desk.name` in templates).' }),
    sender_name: Nullable(Type.String(), 'Default sender name; null: the help desk’s name.'),
    signature_text: Nullable(Type.String(), 'Default signature, plain text.'),
    signature_html: Nullable(Type.String(), 'Default signature, HTML (sanitised when saved).'),
    from_address: Nullable(
      Type.String(),
      'Default from-address for departments without a reply-from address; null: none.',
    ),
    updated_at: Timestamp(),
  },
  { $id: 'MailSettings', additionalProperties: false },
);
export type MailSettings = Static<typeof MailSettingsSchema>;

export const UpdateMailSettingsBody = Type.Object(
  {
    help_desk_name: Type.Optional(SenderName),
    sender_name: Type.Optional(Type.Union([SenderName, Type.Null()])),
    signature_text: Type.Optional(Type.Union([SignatureText, Type.Null()])),
    signature_html: Type.Optional(Type.Union([SignatureHtml, Type.Null()])),
    from_address: Type.Optional(Type.Union([Address, Type.Null()])),
  },
  {
    additionalProperties: false,
    description: 'Fields left out keep their value; null clears one.',
    examples: [{ help_desk_name: 'Acme Support', from_address: 'help@acme.example' }],
  },
);
export type UpdateMailSettingsInput = Static<typeof UpdateMailSettingsBody>;

const SupportAddress = Type.Object(
  {
    address: Type.String({ description: 'Lower-cased; unique across departments.' }),
    reply_from: Type.Boolean({ description: 'Mail to customers goes out from this address.' }),
  },
  { additionalProperties: false },
);

export const DepartmentMailIdentitySchema = Type.Object(
  {
    department_id: Uuid(),
    sender_name: Nullable(Type.String(), 'The department’s own; null: the help desk’s default.'),
    signature_text: Nullable(Type.String(), 'The department’s own; null: the help desk’s default.'),
    signature_html: Nullable(
      Type.String(),
      'The department’s own (sanitised when saved); null: made from signature_text when that is set, else the help desk’s.',
    ),
    addresses: Type.Array(SupportAddress, { description: 'Support addresses, the reply-from first.' }),
    effective: Type.Object(
      {
        sender_name: Type.String(),
        from_address: Type.Union([Type.String(), Type.Null()], {
          description: 'The reply-from address, else the help desk’s default; null: no sender configured.',
        }),
        signature_text: Type.String(),
        signature_html: Type.String(),
      },
      { additionalProperties: false, description: 'What mail of this department goes out with.' },
    ),
    updated_at: Type.Union([Timestamp(), Type.Null()], { description: 'Null: never set.' }),
  },
  { $id: 'DepartmentMailIdentity', additionalProperties: false },
);
export type DepartmentMailIdentity = Static<typeof DepartmentMailIdentitySchema>;

export const UpdateDepartmentMailIdentityBody = Type.Object(
  {
    sender_name: Type.Optional(Type.Union([SenderName, Type.Null()])),
    signature_text: Type.Optional(Type.Union([SignatureText, Type.Null()])),
    signature_html: Type.Optional(Type.Union([SignatureHtml, Type.Null()])),
    addresses: Type.Optional(
      Type.Array(
        Type.Object(
          {
            address: Address,
            reply_from: Type.Optional(
              Type.Boolean({ description: 'At most one; none marked: the first is the reply-from.' }),
            ),
          },
          { additionalProperties: false },
        ),
        { maxItems: 50, description: 'Replaces the department’s support addresses.' },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'Fields left out keep their value; null clears one (the help desk’s default applies).',
    examples: [
      {
        sender_name: 'Sales',
        signature_text: 'Your Sales team',
        addresses: [{ address: 'sales@acme.example', reply_from: true }, { address: 'orders@acme.example' }],
      },
    ],
  },
);
export type UpdateDepartmentMailIdentityInput = Static<typeof UpdateDepartmentMailIdentityBody>;

export const TemplateKindSchema = Type.Enum(TEMPLATE_KINDS, {
  description:
    'acknowledgement: new ticket; agent_reply: the wrapper of an agent reply; outside_hours: auto-reply outside working hours; transfer_notice; resolved_notice; csat_survey.',
});

export const MailTemplateSchema = Type.Object(
  {
    kind: TemplateKindSchema,
    department_id: Type.Union([Uuid(), Type.Null()], { description: 'Null: the help desk level.' }),
    source: Type.Enum(['built_in', 'help_desk', 'department'] as const, {
      description: 'Where the template in effect at this level comes from.',
    }),
    subject: Type.String(),
    text: Type.String(),
    html: Type.String(),
    updated_at: Type.Union([Timestamp(), Type.Null()], { description: 'Null: the built-in template.' }),
  },
  { $id: 'MailTemplate', additionalProperties: false },
);
export type MailTemplate = Static<typeof MailTemplateSchema>;

export const MailTemplateListSchema = Type.Object(
  { data: Type.Array(ref(MailTemplateSchema)) },
  { $id: 'MailTemplateList', additionalProperties: false },
);

const Subject = Type.String({ minLength: 1, maxLength: MAX_SUBJECT_LENGTH, pattern: '\\S' });
const Part = Type.String({ minLength: 1, maxLength: MAX_PART_LENGTH, pattern: '\\S' });

export const PutMailTemplateBody = Type.Object(
  {
    subject: Subject,
    text: Part,
    html: Part,
  },
  {
    additionalProperties: false,
    description: 'Liquid; checked when saved (422 with the part, line and column of each error).',
    examples: [
      {
        subject: 'Re: {{ ticket.subject }} {{ ticket.reference }}',
        text: '{{ message.text }}\n\n{{ agent.name }}\n{{ department.signature_text }}',
        html: '{{ message.html | raw }}<p>{{ agent.name }}</p>{{ department.signature_html | raw }}',
      },
    ],
  },
);
export type PutMailTemplateInput = Static<typeof PutMailTemplateBody>;

export const PreviewMailTemplateBody = Type.Object(
  {
    subject: Type.Optional(Subject),
    text: Type.Optional(Part),
    html: Type.Optional(Part),
    ticket_id: Type.Optional(
      Uuid('A ticket you may see to render against; left out: a built-in sample ticket.'),
    ),
  },
  {
    additionalProperties: false,
    description: 'Draft parts; each part left out is the one in effect at this level.',
    examples: [{ subject: 'Hello {{ contact.name }} {{ ticket.reference }}' }],
  },
);
export type PreviewMailTemplateInput = Static<typeof PreviewMailTemplateBody>;

export const RenderedMailSchema = Type.Object(
  {
    from: Type.Object(
      {
        name: Type.String(),
        address: Type.Union([Type.String(), Type.Null()], { description: 'Null: no sender configured.' }),
      },
      { additionalProperties: false },
    ),
    subject: Type.String({ description: 'Always carries the ticket reference.' }),
    text: Type.String(),
    html: Type.String({ description: 'Every variable escaped, the result sanitised.' }),
  },
  { $id: 'RenderedMail', additionalProperties: false },
);

export const KindParams = Type.Object({ kind: TemplateKindSchema }, { additionalProperties: false });
export const DepartmentKindParams = Type.Object(
  { id: Uuid(), kind: TemplateKindSchema },
  { additionalProperties: false },
);
