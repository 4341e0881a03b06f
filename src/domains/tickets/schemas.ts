import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import type { TicketEventType } from '../../db/types.ts';
import { SLA_ESCALATED, SLA_EVENT_TYPES, SLA_KINDS } from '../../sla/index.ts';
import { AttachmentIds, AttachmentSummarySchema } from '../attachments/schemas.ts';

export const CHANNELS = [
  'email',
  'contact_form',
  'chat',
  'call',
  'facebook',
  'twitter',
  'instagram',
  'viber',
  'whatsapp',
  'api',
] as const;
export const STATUSES = ['new', 'open', 'answered', 'postponed', 'resolved', 'spam', 'deleted'] as const;
export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;

export const ChannelSchema = Type.Enum(CHANNELS, { description: 'Where the conversation came from.' });
export const StatusSchema = Type.Enum(STATUSES, {
  description:
    'new: no agent answer yet; open: the customer wrote again and waits; answered: an agent replied, waiting on the customer; postponed: until postponed_until, then open again; resolved; spam; deleted (soft).',
});
export const PrioritySchema = Type.Enum(PRIORITIES);

const Tag = Type.String({
  minLength: 1,
  maxLength: 50,
  pattern: '\\S',
  description: 'Stored trimmed and lower-cased.',
});
export const Tags = Type.Array(Tag, {
  maxItems: 50,
  description: 'At most 2,000 bytes together (UTF-8, once normalised): more answers 400 tags_too_long.',
});
const Body = Type.String({ minLength: 1, maxLength: 100_000, pattern: '\\S' });
export const Subject = Type.String({ minLength: 1, maxLength: 500, pattern: '\\S' });

export const TicketContactSchema = Type.Object(
  {
    id: Uuid(),
    name: Type.String(),
    email: Type.Union([Type.String(), Type.Null()]),
    phone: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

const Instant = Type.Union([Timestamp(), Type.Null()]);

export const TicketSlaTargetSchema = Type.Object(
  {
    kind: Type.Enum(SLA_KINDS),
    cycle: Type.Integer({ minimum: 1, description: 'next_answer and resolution start again: 1, 2, ...' }),
    status: Type.Enum(['active', 'paused', 'fulfilled', 'breached'] as const, {
      description:
        'active: counting; paused: not counting; fulfilled: met in time; breached: missed (fulfilled_at set when met late).',
    }),
    minutes: Type.Integer(),
    business: Type.Boolean(),
    started_at: Timestamp(),
    due_at: Type.Union([Timestamp(), Type.Null()], {
      description: 'When it breaches; null unless active (or when the schedule never opens enough).',
    }),
    breached_at: Instant,
    fulfilled_at: Instant,
  },
  { $id: 'TicketSlaTarget', additionalProperties: false },
);

export const TicketSlaSchema = Type.Object(
  {
    policy_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The SLA policy that applies; null when none does any more.',
    }),
    due_at: Type.Union([Timestamp(), Type.Null()], {
      description: 'The earliest due of the active targets.',
    }),
    breached: Type.Boolean({ description: 'Some target breached, ever (a breach stays history).' }),
    targets: Type.Array(ref(TicketSlaTargetSchema), {
      description: 'The current or last cycle of each kind.',
    }),
  },
  { $id: 'TicketSla', additionalProperties: false },
);

export const TicketSchema = Type.Object(
  {
    id: Uuid(),
    reference: Type.String({ description: 'Human-friendly reference, e.g. T-1042.', examples: ['T-1042'] }),
    subject: Type.String(),
    channel: ChannelSchema,
    status: StatusSchema,
    priority: PrioritySchema,
    department_id: Type.Union([Uuid(), Type.Null()]),
    assignee_id: Type.Union([Uuid(), Type.Null()]),
    contact: TicketContactSchema,
    tags: Type.Array(Type.String()),
    support_address: Type.Union([Type.String(), Type.Null()], {
      description: 'The address the customer wrote to.',
    }),
    postponed_until: Type.Union([Timestamp(), Type.Null()]),
    created_at: Timestamp(),
    updated_at: Timestamp(),
    first_answered_at: Type.Union([Timestamp(), Type.Null()]),
    last_customer_message_at: Type.Union([Timestamp(), Type.Null()]),
    resolved_at: Type.Union([Timestamp(), Type.Null()]),
    created_in_working_hours: Type.Union([Type.Boolean(), Type.Null()], {
      description:
        "Whether the ticket came in while the department it came in with was open (its schedule, else the help desk's default; always true without one). Null for tickets older than working hours.",
    }),
    sla: Type.Union([ref(TicketSlaSchema), Type.Null()], {
      description: 'The SLA clock: null while no SLA policy applies to the ticket (and none left a breach).',
    }),
  },
  { $id: 'Ticket', additionalProperties: false },
);
export type Ticket = Static<typeof TicketSchema>;

export const ContactInput = Type.Object(
  {
    id: Type.Optional(Uuid('An existing contact.')),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    email: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
    phone: Type.Optional(Type.String({ minLength: 4, maxLength: 40 })),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      'An existing contact by id, or the contact that has this email or phone (created if none has).',
  },
);

export const CreateTicketBody = Type.Object(
  {
    subject: Subject,
    channel: Type.Optional(ChannelSchema),
    contact: ContactInput,
    message: Type.Object(
      {
        body: Body,
        author: Type.Optional(
          Type.Union([Type.Literal('contact'), Type.Literal('agent')], {
            description:
              'contact (default): the customer wrote in; agent: an outbound ticket, the caller wrote first.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    assignee_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    priority: Type.Optional(PrioritySchema),
    tags: Type.Optional(Tags),
    support_address: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        subject: 'Refund for order 5521',
        channel: 'email',
        contact: { email: 'jane@example.com', name: 'Jane Doe' },
        message: { body: 'Hello, the parcel arrived broken. Can I get a refund?' },
        department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11',
        priority: 'high',
        tags: ['refund'],
      },
    ],
  },
);

export const UpdateTicketBody = Type.Object(
  {
    subject: Type.Optional(Subject),
    status: Type.Optional(
      Type.Enum(['open', 'answered', 'postponed', 'resolved', 'spam'] as const, {
        description: 'new is only ever the state before a first answer; delete with DELETE.',
      }),
    ),
    postponed_until: Type.Optional(Timestamp('Required with status postponed; must be in the future.')),
    priority: Type.Optional(PrioritySchema),
    assignee_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    tags: Type.Optional(Tags),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ status: 'resolved' }, { priority: 'urgent', assignee_id: null }],
  },
);

export const TagsChangeBody = Type.Object(
  { add: Type.Optional(Tags), remove: Type.Optional(Tags) },
  { additionalProperties: false, minProperties: 1, examples: [{ add: ['vip'], remove: ['refund'] }] },
);

export const TransferBody = Type.Object(
  {
    department_id: Uuid('The department that takes the ticket over.'),
    assignee_id: Type.Optional(
      Type.Union([Uuid(), Type.Null()], { description: 'A member of that department.' }),
    ),
    note: Type.Optional(
      Type.String({ minLength: 1, maxLength: 10_000, pattern: '\\S', description: 'An internal note.' }),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      { department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11', note: 'Billing question, over to you.' },
    ],
  },
);

export const MessageSchema = Type.Object(
  {
    id: Uuid(),
    ticket_id: Uuid(),
    kind: Type.Union([Type.Literal('customer'), Type.Literal('agent'), Type.Literal('note')], {
      description:
        'customer: from the customer; agent: a reply sent to the customer; note: internal, never shown to the customer.',
    }),
    channel: ChannelSchema,
    author_agent_id: Type.Union([Uuid(), Type.Null()]),
    author_contact_id: Type.Union([Uuid(), Type.Null()]),
    chat_id: Type.Union([Uuid(), Type.Null()]),
    body: Type.String(),
    created_at: Timestamp(),
    attachments: Type.Array(ref(AttachmentSummarySchema), {
      description: 'Download with GET /v1/attachments/{id}.',
    }),
    // Mail in (docs/email.md): present on message lists.
    html_body: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description:
          'The HTML part of a received mail, sanitised (no scripts, event handlers, forms or remote content); body is always the text.',
      }),
    ),
    mail_message_id: Type.Optional(
      Type.Union([Type.String(), Type.Null()], { description: 'The mail’s Message-ID, without <>.' }),
    ),
    mail_address: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    mail_auto_submitted: Type.Optional(
      Type.Boolean({ description: 'An auto-reply (out-of-office and the like): recorded, never answered.' }),
    ),
    raw_available: Type.Optional(
      Type.Boolean({
        description: 'The received mail can be downloaded: GET .../messages/{message_id}/raw.',
      }),
    ),
    // Mail out (docs/email.md): listed messages that went (or go) out by mail.
    delivery_state: Type.Optional(
      Type.Union([Type.Enum(['queued', 'sent', 'failed', 'bounced', 'suppressed']), Type.Null()], {
        description:
          'An agent reply mailed to the customer: queued, sent, failed, bounced or suppressed (GET /v1/tickets/{id}/mail tells more); null: not mailed.',
      }),
    ),
    delivery_error: Type.Optional(
      Type.Union([Type.String(), Type.Null()], { description: 'Why it is not sent (yet).' }),
    ),
  },
  { $id: 'TicketMessage', additionalProperties: false },
);
export type Message = Static<typeof MessageSchema>;

export const AddMessageBody = Type.Object(
  {
    kind: Type.Union([Type.Literal('reply'), Type.Literal('note'), Type.Literal('customer')], {
      description:
        'reply: an agent answer to the customer; note: internal; customer: records a message the customer sent (integrations).',
    }),
    body: Type.Optional(Body),
    canned_response_id: Type.Optional(
      Uuid(
        'A canned response to fill for this ticket (a reply or a note): its body, then its tags and status in the same change. Without body; 404 when you may not use it, 422 when it belongs to another department than the ticket’s.',
      ),
    ),
    attachment_ids: Type.Optional(AttachmentIds),
  },
  {
    additionalProperties: false,
    description: 'Either body or canned_response_id (400 with both or neither).',
    examples: [{ kind: 'reply', body: 'Sorry about that! A refund is on its way.' }],
  },
);

export const RatingSchema = Type.Object(
  {
    id: Uuid(),
    ticket_id: Uuid(),
    message_id: Type.Union([Uuid(), Type.Null()]),
    agent_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The agent rated: the author of the message, else the assignee.',
    }),
    value: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    comment: Type.Union([Type.String(), Type.Null()]),
    created_at: Timestamp(),
  },
  { $id: 'Rating', additionalProperties: false },
);

export const AddRatingBody = Type.Object(
  {
    value: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    comment: Type.Optional(Type.String({ maxLength: 5000 })),
    message_id: Type.Optional(Uuid('Rate one agent reply rather than the whole ticket.')),
  },
  { additionalProperties: false, examples: [{ value: 'positive', comment: 'Quick and kind, thanks!' }] },
);

/** Every kind of ticket history entry, as ticket_events.type holds them. */
export const TICKET_EVENT_TYPES = [
  'created',
  'message_added',
  'status_changed',
  'priority_changed',
  'subject_changed',
  'transferred',
  'assigned',
  'tags_changed',
  'rated',
  'call_recorded',
  'chat_recorded',
  ...SLA_EVENT_TYPES,
  SLA_ESCALATED,
] as const satisfies readonly TicketEventType[];

export const EventSchema = Type.Object(
  {
    id: Type.String({ description: 'Increasing with time within a ticket.' }),
    type: Type.Enum(TICKET_EVENT_TYPES, {
      description:
        'What happened; `data` holds the details. Deleting and restoring a ticket are status_changed.',
    }),
    actor: Type.Object(
      {
        type: Type.Union([
          Type.Literal('agent'),
          Type.Literal('contact'),
          Type.Literal('rule'),
          Type.Literal('system'),
        ]),
        agent_id: Type.Union([Uuid(), Type.Null()]),
        contact_id: Type.Union([Uuid(), Type.Null()]),
        rule_id: Type.Union([Uuid(), Type.Null()]),
        rule_version: Type.Union([Type.Integer(), Type.Null()]),
      },
      { additionalProperties: false },
    ),
    department_id: Type.Union([Uuid(), Type.Null()], {
      description: 'The ticket’s department when it happened.',
    }),
    agent_id: Type.Union([Uuid(), Type.Null()], { description: 'The ticket’s assignee when it happened.' }),
    data: Type.Record(Type.String(), Type.Unknown(), { description: 'What changed, e.g. {from, to}.' }),
    occurred_at: Timestamp(),
    import_id: Type.Union([Uuid(), Type.Null()], {
      description:
        'The import (POST /v1/imports) that brought this entry in from another help desk, at its original time; null for what happened here.',
    }),
  },
  { $id: 'TicketEvent', additionalProperties: false },
);
export type TicketEvent = Static<typeof EventSchema>;

const StatusCounts = Type.Object(
  {
    new: Type.Integer(),
    open: Type.Integer(),
    answered: Type.Integer(),
    postponed: Type.Integer(),
    resolved: Type.Integer(),
  },
  { additionalProperties: false },
);

export const TicketCountsSchema = Type.Object(
  {
    departments: Type.Array(
      Type.Object(
        { department_id: Uuid(), name: Type.String(), counts: StatusCounts },
        { additionalProperties: false },
      ),
    ),
    no_department: StatusCounts,
  },
  { $id: 'TicketCounts', additionalProperties: false },
);

// minItems 1: an empty list names nothing a client could mean, and a query string cannot send
// one; a saved view's JSON could, so the shared schema refuses it there.
const Several = <T extends Parameters<typeof Type.Array>[0]>(item: T, description: string, minItems: 0 | 1) =>
  Type.Optional(
    Type.Array(item, {
      ...(minItems > 0 && { minItems }),
      maxItems: 50,
      description: `${description} Repeat the parameter for several.`,
    }),
  );

const repeatableFilterFields = (minItems: 0 | 1) => ({
  department_id: Several(
    Type.Union([Uuid(), Type.Literal('none')]),
    'A department id, or none for no department.',
    minItems,
  ),
  status: Several(StatusSchema, 'Deleted tickets are listed only when asked for.', minItems),
  channel: Several(ChannelSchema, '', minItems),
  assignee_id: Several(
    Type.Union([Uuid(), Type.Literal('none'), Type.Literal('me')]),
    'An agent id, none for unassigned, or me for the caller.',
    minItems,
  ),
  tag: Several(Tag, 'Tickets with all of these tags.', minItems),
  priority: Several(PrioritySchema, '', minItems),
});

/**
 * The repeatable filters as views saved before empty lists were refused may hold them: an empty
 * list matches no ticket (tag: every ticket, as all of no tags), see ticketsMatching.
 */
export const SavedRepeatableFilterFields = repeatableFilterFields(0);

/**
 * The ticket list's filters, one definition: GET /v1/tickets takes them as query parameters and
 * saved views (src/domains/views) store them, validated by the same schema.
 */
export const TicketFilterFields = {
  ...repeatableFilterFields(1),
  contact_id: Type.Optional(Uuid()),
  created_from: Type.Optional(Timestamp()),
  created_to: Type.Optional(Timestamp('Exclusive.')),
  updated_from: Type.Optional(Timestamp()),
  updated_to: Type.Optional(Timestamp('Exclusive.')),
  q: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'Full-text search over subject and messages.',
    }),
  ),
  sla_breached: Type.Optional(
    Type.Boolean({ description: 'Tickets that breached an SLA target, ever (true) or never (false).' }),
  ),
  sla_due_before: Type.Optional(
    Timestamp(
      'Tickets with a running SLA target due before this instant (exclusive); overdue ones included.',
    ),
  ),
};

export const TICKET_SORTS = [
  '-created_at',
  'created_at',
  '-updated_at',
  'updated_at',
  '-priority',
  'priority',
  'sla_due_at',
] as const;
export type TicketSort = (typeof TICKET_SORTS)[number];

export const TicketSortSchema = Type.Enum(TICKET_SORTS, {
  default: '-created_at',
  description:
    'A leading - sorts descending. sla_due_at: the most urgent SLA due first, tickets without one last.',
});

export const TicketListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
    ...TicketFilterFields,
    sort: TicketSortSchema,
  },
  { additionalProperties: false },
);
export type TicketListQueryType = Static<typeof TicketListQuery>;

export const ticketRef = ref(TicketSchema);

const TicketFilterObject = Type.Object(TicketFilterFields);
/** The filters of a list, without its page and sort. */
export type TicketFilter = Static<typeof TicketFilterObject>;
