import { type Static, type TSchema, Type } from 'typebox';
import { Timestamp } from '../../contract.ts';
import { AgentStatusSchema, CreateAgentBody, DepartmentRoleSchema } from '../agents/schemas.ts';
import { RecordCallBody } from '../calls/schemas.ts';
import { RecordChatBody } from '../chats/schemas.ts';
import { CreateContactFieldBody } from '../contact-fields/schemas.ts';
import { CreateContactBody } from '../contacts/schemas.ts';
import { CreateDepartmentBody } from '../departments/schemas.ts';
import { AddMessageBody, ChannelSchema, PrioritySchema, Subject, Tags } from '../tickets/schemas.ts';

// The records of an import file (docs/import.md): one JSON object per line, each with its type and
// the id it has in the help desk it comes from. Other records are named by those ids, so a file
// reads like the source's export. The field schemas are the API's own where one exists (a
// contact's emails, a call's times), so an import accepts exactly what the API would.

const ExternalId = Type.String({
  minLength: 1,
  maxLength: 200,
  description: 'The id in the system the record comes from; unique per source and record type.',
});
const Ref = (what: string) =>
  Type.String({ minLength: 1, maxLength: 200, description: `The external_id of the ${what} record.` });
const Attachments = Type.Optional(
  Type.Array(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description:
        'The external_id of a file uploaded for this source (PUT /v1/imports/files/{external_id}).',
    }),
    {
      maxItems: 100,
      uniqueItems: true,
      description:
        'Files the message carried, uploaded before the import: they become its attachments, in this order.',
    },
  ),
);
const ActingAgent = Type.Optional(
  Type.Union([Ref('agent'), Type.Null()], {
    description: 'Who did it (an agent record); absent or null: the system, or the contact where that fits.',
  }),
);

const record = <T extends string, P extends Record<string, TSchema>>(
  type: T,
  id: string,
  description: string,
  properties: P,
) =>
  Type.Object(
    { type: Type.Literal(type), external_id: ExternalId, ...properties },
    { $id: id, additionalProperties: false, description },
  );

const timeline = <T extends string, P extends Record<string, TSchema>>(
  type: T,
  id: string,
  description: string,
  properties: P,
) =>
  record(type, id, `${description} Replayed at \`at\` through the tickets' write path.`, {
    ticket: Ref('ticket'),
    at: Timestamp('When it happened.'),
    ...properties,
  });

export const ImportAgentRecord = record('agent', 'ImportAgentRecord', 'An agent, without a password.', {
  email: CreateAgentBody.properties.email,
  name: CreateAgentBody.properties.name,
  role: Type.Optional(Type.Union([Type.Literal('agent'), Type.Literal('admin')], { default: 'agent' })),
  status: Type.Optional(AgentStatusSchema),
});

export const ImportDepartmentRecord = record('department', 'ImportDepartmentRecord', 'A department.', {
  name: CreateDepartmentBody.properties.name,
  description: CreateDepartmentBody.properties.description,
});

export const ImportMembershipRecord = record(
  'membership',
  'ImportMembershipRecord',
  "An agent's role in a department.",
  { department: Ref('department'), agent: Ref('agent'), role: Type.Optional(DepartmentRoleSchema) },
);

export const ImportContactFieldRecord = record(
  'contact_field',
  'ImportContactFieldRecord',
  'A custom field contacts may carry.',
  {
    key: CreateContactFieldBody.properties.key,
    label: CreateContactFieldBody.properties.label,
    field_type: CreateContactFieldBody.properties.type,
    options: CreateContactFieldBody.properties.options,
  },
);

export const ImportContactRecord = record('contact', 'ImportContactRecord', 'A contact.', {
  name: CreateContactBody.properties.name,
  emails: CreateContactBody.properties.emails,
  phones: CreateContactBody.properties.phones,
  custom_fields: CreateContactBody.properties.custom_fields,
});

export const ImportTicketRecord = record(
  'ticket',
  'ImportTicketRecord',
  'Opens a ticket at `created_at`, as a creation then would have (status new); its first message when given.',
  {
    created_at: Timestamp('When the ticket was opened.'),
    subject: Subject,
    channel: Type.Optional(ChannelSchema),
    contact: Ref('contact'),
    department: Type.Optional(Type.Union([Ref('department'), Type.Null()])),
    priority: Type.Optional(PrioritySchema),
    tags: Type.Optional(Tags),
    message: Type.Optional(
      Type.Object(
        {
          body: Type.String({ minLength: 1, maxLength: 100_000 }),
          author: Type.Optional(
            Type.Union([Type.Literal('contact'), Type.Literal('agent')], { default: 'contact' }),
          ),
          agent: Type.Optional(Ref('agent')),
          attachments: Attachments,
        },
        { additionalProperties: false },
      ),
    ),
    agent: ActingAgent,
  },
);

export const ImportMessageRecord = timeline(
  'message',
  'ImportMessageRecord',
  'A customer message, agent reply or note.',
  {
    kind: AddMessageBody.properties.kind,
    body: Type.String({ minLength: 1, maxLength: 100_000 }),
    agent: ActingAgent,
    attachments: Attachments,
  },
);

export const ImportStatusRecord = timeline('status', 'ImportStatusRecord', 'A status change.', {
  status: Type.Union([
    Type.Literal('open'),
    Type.Literal('answered'),
    Type.Literal('postponed'),
    Type.Literal('resolved'),
    Type.Literal('spam'),
  ]),
  postponed_until: Type.Optional(Timestamp('For postponed.')),
  agent: ActingAgent,
});

export const ImportTransferRecord = timeline(
  'transfer',
  'ImportTransferRecord',
  'A transfer to another department.',
  {
    department: Ref('department'),
    agent: ActingAgent,
  },
);

export const ImportAssignmentRecord = timeline(
  'assignment',
  'ImportAssignmentRecord',
  'An assignment (null: unassigned).',
  {
    assignee: Type.Union([Ref('agent'), Type.Null()]),
    agent: ActingAgent,
  },
);

export const ImportTagsRecord = timeline(
  'tags',
  'ImportTagsRecord',
  "The ticket's whole set of tags from then on.",
  {
    tags: Tags,
    agent: ActingAgent,
  },
);

export const ImportPriorityRecord = timeline('priority', 'ImportPriorityRecord', 'A change of priority.', {
  priority: PrioritySchema,
  agent: ActingAgent,
});

export const ImportSubjectRecord = timeline('subject', 'ImportSubjectRecord', 'A change of subject.', {
  subject: Subject,
  agent: ActingAgent,
});

const StartedAt = Type.Optional(
  Timestamp('When it began, if earlier than `at` (when it was recorded on the ticket); default: `at`.'),
);

export const ImportCallRecord = timeline(
  'call',
  'ImportCallRecord',
  'A call on the ticket, recorded at `at`.',
  {
    started_at: StartedAt,
    direction: RecordCallBody.properties.direction,
    outcome: RecordCallBody.properties.outcome,
    agent: ActingAgent,
    from_number: RecordCallBody.properties.from_number,
    to_number: RecordCallBody.properties.to_number,
    answered_at: RecordCallBody.properties.answered_at,
    ended_at: RecordCallBody.properties.ended_at,
  },
);

export const ImportChatRecord = timeline(
  'chat',
  'ImportChatRecord',
  'A chat on the ticket, recorded at `at`.',
  {
    started_at: StartedAt,
    agent: ActingAgent,
    picked_up_at: RecordChatBody.properties.picked_up_at,
    missed: RecordChatBody.properties.missed,
    ended_at: RecordChatBody.properties.ended_at,
    messages: RecordChatBody.properties.messages,
  },
);

export const ImportRatingRecord = timeline(
  'rating',
  'ImportRatingRecord',
  "The customer's rating of the ticket.",
  {
    value: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    comment: Type.Optional(Type.String({ maxLength: 5000 })),
  },
);

export const IMPORT_RECORDS = [
  ImportAgentRecord,
  ImportDepartmentRecord,
  ImportMembershipRecord,
  ImportContactFieldRecord,
  ImportContactRecord,
  ImportTicketRecord,
  ImportMessageRecord,
  ImportStatusRecord,
  ImportTransferRecord,
  ImportAssignmentRecord,
  ImportTagsRecord,
  ImportPriorityRecord,
  ImportSubjectRecord,
  ImportCallRecord,
  ImportChatRecord,
  ImportRatingRecord,
] as const;

export type ImportRecord =
  | Static<typeof ImportAgentRecord>
  | Static<typeof ImportDepartmentRecord>
  | Static<typeof ImportMembershipRecord>
  | Static<typeof ImportContactFieldRecord>
  | Static<typeof ImportContactRecord>
  | Static<typeof ImportTicketRecord>
  | Static<typeof ImportMessageRecord>
  | Static<typeof ImportStatusRecord>
  | Static<typeof ImportTransferRecord>
  | Static<typeof ImportAssignmentRecord>
  | Static<typeof ImportTagsRecord>
  | Static<typeof ImportPriorityRecord>
  | Static<typeof ImportSubjectRecord>
  | Static<typeof ImportCallRecord>
  | Static<typeof ImportChatRecord>
  | Static<typeof ImportRatingRecord>;

export type RecordType = ImportRecord['type'];

/** The record types, in the order a file should bring them (what is referenced first). */
export const RECORD_TYPES = IMPORT_RECORDS.map((r) => r.properties.type.const) as RecordType[];
