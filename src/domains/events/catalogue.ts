import { type Static, type TSchema, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import {
  ESCALATION_ACTIONS,
  ESCALATION_MOMENTS,
  SLA_ESCALATED,
  SLA_EVENT_TYPES,
  SLA_KINDS,
  type SlaEventType,
} from '../../sla/index.ts';
import { AgentSchema } from '../agents/schemas.ts';
import { ApiTokenSchema } from '../api-tokens/schemas.ts';
import { AutomationRuleSchema } from '../automation-rules/schemas.ts';
import { CannedResponseSchema } from '../canned-responses/schemas.ts';
import { ContactFieldSchema } from '../contact-fields/schemas.ts';
import { DepartmentSchema, MemberSchema } from '../departments/schemas.ts';
import {
  DepartmentMailIdentitySchema,
  MailSettingsSchema,
  MailTemplateSchema,
} from '../mail-identity/schemas.ts';
import { NotificationKindSchema } from '../notifications/schemas.ts';
import { ScheduleSchema } from '../schedules/schemas.ts';
import { SlaPolicySchema } from '../sla-policies/schemas.ts';
import { ChannelSchema, PrioritySchema, StatusSchema } from '../tickets/schemas.ts';

/**
 * The event catalogue: every type the feed, the stream and webhooks carry, with the schema of its
 * payload. One list, so the spec, the validators and the subscriptions cannot disagree.
 */
export const TICKET_FEED_TYPES = [
  'ticket.created',
  'ticket.updated',
  'ticket.customer_replied',
  'ticket.agent_replied',
  'ticket.note_added',
  'ticket.assigned',
  'ticket.transferred',
  'ticket.status_changed',
  'ticket.tags_changed',
  'ticket.rated',
  'ticket.deleted',
  'ticket.restored',
  'call.recorded',
  'chat.recorded',
  ...SLA_EVENT_TYPES,
  SLA_ESCALATED,
] as const;

export const SETTINGS_EVENT_TYPES = [
  'department.created',
  'department.updated',
  'department.deleted',
  'member.added',
  'member.updated',
  'member.removed',
  'agent.created',
  'agent.updated',
  'agent.deleted',
  'rule.created',
  'rule.updated',
  'rule.deleted',
  'token.created',
  'token.deleted',
  'webhook.created',
  'webhook.updated',
  'webhook.deleted',
  'webhook.disabled',
  'webhook.secret_rotated',
  'notification_defaults.updated',
  'csat_settings.updated',
  'contact_field.created',
  'contact_field.updated',
  'contact_field.deleted',
  'schedule.created',
  'schedule.updated',
  'schedule.deleted',
  'sla_policy.created',
  'sla_policy.updated',
  'sla_policy.deleted',
  'mail_settings.updated',
  'mail_identity.updated',
  'mail_template.updated',
  'mail_template.deleted',
  'canned_response.created',
  'canned_response.updated',
  'canned_response.deleted',
  'mailbox.created',
  'mailbox.updated',
  'mailbox.deleted',
  'mailbox.secret_rotated',
] as const;

export const EVENT_TYPES = [...TICKET_FEED_TYPES, ...SETTINGS_EVENT_TYPES] as const;

export type TicketFeedType = (typeof TICKET_FEED_TYPES)[number];
export type SettingsEventType = (typeof SETTINGS_EVENT_TYPES)[number];
export type EventType = (typeof EVENT_TYPES)[number];

const EVENT_TYPE_SET: ReadonlySet<string> = new Set(EVENT_TYPES);
export const isEventType = (type: string): type is EventType => EVENT_TYPE_SET.has(type);
const SETTINGS_TYPE_SET: ReadonlySet<string> = new Set(SETTINGS_EVENT_TYPES);
export const isSettingsEventType = (type: string): type is SettingsEventType => SETTINGS_TYPE_SET.has(type);

const NullableUuid = (description?: string) => Type.Union([Uuid(description), Type.Null()]);

/** The ticket as it is when the event is read (not as it was): enough to route and display. */
export const EventTicketSchema = Type.Object(
  {
    id: Uuid(),
    number: Type.Integer(),
    subject: Type.String(),
    status: StatusSchema,
    priority: PrioritySchema,
    channel: ChannelSchema,
    department_id: NullableUuid(),
    assignee_id: NullableUuid(),
    contact_id: Uuid(),
  },
  { $id: 'EventTicket', additionalProperties: false },
);
export type EventTicket = Static<typeof EventTicketSchema>;

export const EventMessageSchema = Type.Object(
  {
    id: Uuid(),
    kind: Type.Union([Type.Literal('customer'), Type.Literal('agent'), Type.Literal('note')]),
    body: Type.String(),
    author_agent_id: NullableUuid(),
    author_contact_id: NullableUuid(),
    created_at: Timestamp(),
  },
  { $id: 'EventMessage', additionalProperties: false },
);

const Change = Type.Object(
  { from: Type.Unknown(), to: Type.Unknown() },
  { additionalProperties: false, description: 'The value before and after.' },
);
const Changes = Type.Record(Type.String(), Change, {
  description: 'Only the fields that changed, each as {from, to}.',
});

const ticketPayload = <P extends Record<string, TSchema>>(name: string, description: string, props: P) =>
  Type.Object(
    { ticket: ref(EventTicketSchema), ...props },
    { $id: name, description, additionalProperties: false },
  );
const messagePayload = (name: string, description: string, props: Record<string, TSchema> = {}) =>
  ticketPayload(name, description, {
    message: Type.Union([ref(EventMessageSchema), Type.Null()], {
      description: 'Null only if the message is gone.',
    }),
    ...props,
  });
const statusPayload = (name: string, description: string) =>
  ticketPayload(name, description, {
    from: StatusSchema,
    to: StatusSchema,
    postponed_until: Type.Optional(Timestamp('Set when the ticket was postponed.')),
    reopened: Type.Optional(Type.Boolean({ description: 'A resolved ticket opened again.' })),
    first_resolution: Type.Optional(
      Type.Boolean({
        description: "Set on the ticket's first resolve, the one its resolution time is measured at.",
      }),
    ),
    resolution_seconds: Type.Optional(
      Type.Number({
        description: 'On the first resolve: seconds from the creation of the ticket (docs/metrics.md).',
      }),
    ),
    resolution_business_seconds: Type.Optional(
      Type.Number({
        description:
          "The same, counting only the business minutes of the department's calendar (docs/metrics.md).",
      }),
    ),
  });

const WebhookSummary = Type.Object(
  {
    id: Uuid(),
    url: Type.String(),
    event_types: Type.Array(Type.String()),
    department_id: NullableUuid(),
    active: Type.Boolean(),
    description: Type.String(),
  },
  { additionalProperties: false, description: 'The subscription (never its secret).' },
);

const MailboxSummary = Type.Object(
  {
    id: Uuid(),
    name: Type.String(),
    department_id: Uuid(),
    kind: Type.String(),
    active: Type.Boolean(),
  },
  { additionalProperties: false, description: 'The mailbox (never a password or its secret).' },
);

/**
 * Why a settings object changed or went when nobody changed it directly: deleting a department
 * or an agent hands their rules to the substitute and takes their memberships, tokens and
 * webhooks with them; disabling an agent revokes their tokens. The actor is whoever did that.
 */
const sideEffect = <const R extends readonly ('department_deleted' | 'agent_deleted' | 'agent_disabled')[]>(
  ...reasons: R
) =>
  Type.Optional(
    Type.Enum(reasons, {
      description: 'Set when this followed from deleting (or disabling) a department or an agent.',
    }),
  );

/** The payload schema of each event type ($id: its name in the spec). */
const SLA_DESCRIPTIONS: Record<SlaEventType, string> = {
  'sla.applied': 'An SLA policy now applies to the ticket (reason: created, transferred, changed, edited).',
  'sla.removed': 'SLA targets were dropped without a verdict (kind null: the whole policy).',
  'sla.started': 'An SLA target started a cycle; due_at is when it breaches.',
  'sla.target_changed':
    'A running SLA target got a new due (reason: priority, edited, transferred, schedule: its calendar was edited); due_at is the new due.',
  'sla.paused': 'An SLA target stopped counting (postponed, or answered when the policy says so).',
  'sla.resumed': 'A paused SLA target counts again; due_at is the new due.',
  'sla.warning': 'An SLA target is about to breach.',
  'sla.breached': 'An SLA target was not met by its due; at is the due.',
  'sla.fulfilled': 'An SLA target was met (late: after it breached).',
};

const slaPayload = (type: SlaEventType) =>
  ticketPayload(
    `Sla${type
      .slice(4)
      .split('_')
      .map((w) => w[0]!.toUpperCase() + w.slice(1))
      .join('')}Payload`,
    SLA_DESCRIPTIONS[type],
    {
      at: Timestamp('When it happened (a breach: its due).'),
      policy_id: NullableUuid('The policy in force when it happened.'),
      policy_version: Type.Union([Type.Integer(), Type.Null()]),
      kind: Type.Union([Type.Enum(SLA_KINDS), Type.Null()], { description: 'Null for policy-level events.' }),
      cycle: Type.Union([Type.Integer(), Type.Null()]),
      due_at: Type.Union([Timestamp(), Type.Null()]),
      reason: Type.Union([Type.String(), Type.Null()]),
      late: Type.Union([Type.Boolean(), Type.Null()]),
    },
  );

function slaPayloads() {
  return Object.fromEntries(SLA_EVENT_TYPES.map((t) => [t, slaPayload(t)])) as Record<
    SlaEventType,
    ReturnType<typeof slaPayload>
  >;
}

export const PAYLOAD_SCHEMAS = {
  'ticket.created': ticketPayload('TicketCreatedPayload', 'The ticket was created; its opening values.', {
    subject: Type.String(),
    status: StatusSchema,
    priority: PrioritySchema,
    department_id: NullableUuid(),
    tags: Type.Array(Type.String()),
  }),
  'ticket.updated': ticketPayload('TicketUpdatedPayload', 'The subject or priority changed.', {
    changes: Type.Object(
      { subject: Type.Optional(Change), priority: Type.Optional(Change) },
      { additionalProperties: false },
    ),
  }),
  'ticket.customer_replied': messagePayload('TicketCustomerRepliedPayload', 'The customer wrote.'),
  'ticket.agent_replied': messagePayload('TicketAgentRepliedPayload', 'An agent answered the customer.', {
    first_answer: Type.Optional(Type.Boolean()),
    wait_seconds: Type.Optional(
      Type.Union([Type.Number(), Type.Null()], { description: 'How long the customer had waited.' }),
    ),
    wait_business_seconds: Type.Optional(
      Type.Number({ description: "The same wait in the business minutes of the department's calendar." }),
    ),
  }),
  'ticket.note_added': messagePayload('TicketNoteAddedPayload', 'An internal note (agent or rule).'),
  'ticket.assigned': ticketPayload('TicketAssignedPayload', 'The assignee changed (null: nobody).', {
    from: NullableUuid(),
    to: NullableUuid(),
    reason: Type.Optional(
      Type.Literal('sla_escalated', {
        description: 'Handed on by an SLA escalation (the sla.escalated event that follows says why).',
      }),
    ),
  }),
  'ticket.transferred': ticketPayload('TicketTransferredPayload', 'The ticket moved to another department.', {
    from_department_id: NullableUuid(),
    to_department_id: NullableUuid(),
    reason: Type.Optional(
      Type.Literal('department_deleted', { description: 'Moved because its department was deleted.' }),
    ),
  }),
  'ticket.status_changed': statusPayload('TicketStatusChangedPayload', 'The status changed.'),
  'ticket.tags_changed': ticketPayload('TicketTagsChangedPayload', 'Tags were added or removed.', {
    added: Type.Array(Type.String()),
    removed: Type.Array(Type.String()),
  }),
  'ticket.rated': ticketPayload('TicketRatedPayload', 'The customer rated the ticket or one reply.', {
    rating_id: Uuid(),
    value: Type.Union([Type.Literal('positive'), Type.Literal('negative')]),
    rated_agent_id: NullableUuid(),
    message_id: NullableUuid(),
  }),
  'ticket.deleted': statusPayload('TicketDeletedPayload', 'Moved to status deleted (soft delete).'),
  'ticket.restored': statusPayload('TicketRestoredPayload', 'Brought back from status deleted.'),
  'call.recorded': ticketPayload('CallRecordedPayload', 'A phone call was recorded on the ticket.', {
    call_id: Uuid(),
    direction: Type.Union([Type.Literal('inbound'), Type.Literal('outbound')]),
    outcome: Type.String(),
    agent_id: NullableUuid(),
    duration_seconds: Type.Number(),
  }),
  'chat.recorded': ticketPayload('ChatRecordedPayload', 'A chat was recorded on the ticket.', {
    chat_id: Uuid(),
    agent_id: NullableUuid(),
    missed: Type.Boolean(),
    pickup_seconds: Type.Union([Type.Number(), Type.Null()]),
    pickup_business_seconds: Type.Optional(
      Type.Number({ description: "The pickup wait in the business minutes of the department's calendar." }),
    ),
    duration_seconds: Type.Union([Type.Number(), Type.Null()]),
    customer_messages: Type.Integer(),
    agent_messages: Type.Integer(),
  }),
  ...slaPayloads(),
  [SLA_ESCALATED]: ticketPayload(
    'SlaEscalatedPayload',
    "An SLA warning or breach handed the ticket on as its policy's escalation says (actor: the system). to is null when nobody available could take it; then the department's supervisors and managers are told.",
    {
      policy_id: Uuid('The policy whose escalation applied.'),
      policy_version: Type.Integer({ description: 'Its version when it applied.' }),
      on: Type.Enum(ESCALATION_MOMENTS, { description: 'What fired it: a warning or a breach.' }),
      kind: Type.Enum(SLA_KINDS, { description: 'The target that warned or breached.' }),
      cycle: Type.Integer(),
      action: Type.Enum(ESCALATION_ACTIONS),
      from: NullableUuid('The assignee before.'),
      to: NullableUuid('The new assignee; null: the ticket stayed where it was.'),
      level: Type.Union([Type.Integer({ minimum: 1, maximum: 3 }), Type.Null()], {
        description: 'next_level: the tier of the new assignee; otherwise null.',
      }),
      recipients: Type.Array(Uuid(), {
        description:
          'The agents told (an sla_escalated notification each, as their preferences and the ticket’s visibility allow).',
      }),
    },
  ),
  'department.created': Type.Object(
    { department: ref(DepartmentSchema) },
    { $id: 'DepartmentCreatedPayload', additionalProperties: false },
  ),
  'department.updated': Type.Object(
    { department: ref(DepartmentSchema), changes: Changes },
    { $id: 'DepartmentUpdatedPayload', additionalProperties: false },
  ),
  'department.deleted': Type.Object(
    { department: ref(DepartmentSchema) },
    { $id: 'DepartmentDeletedPayload', description: 'As it was.', additionalProperties: false },
  ),
  'member.added': Type.Object(
    { department_id: Uuid(), member: ref(MemberSchema) },
    { $id: 'MemberAddedPayload', additionalProperties: false },
  ),
  'member.updated': Type.Object(
    { department_id: Uuid(), member: ref(MemberSchema), changes: Changes },
    { $id: 'MemberUpdatedPayload', additionalProperties: false },
  ),
  'member.removed': Type.Object(
    { department_id: Uuid(), agent_id: Uuid(), reason: sideEffect('department_deleted', 'agent_deleted') },
    { $id: 'MemberRemovedPayload', additionalProperties: false },
  ),
  'agent.created': Type.Object(
    { agent: ref(AgentSchema) },
    { $id: 'AgentCreatedPayload', additionalProperties: false },
  ),
  'agent.updated': Type.Object(
    { agent: ref(AgentSchema), changes: Changes },
    {
      $id: 'AgentUpdatedPayload',
      description: 'A password change shows as `password: {from: null, to: null}`, never the password.',
      additionalProperties: false,
    },
  ),
  'agent.deleted': Type.Object(
    { agent: ref(AgentSchema) },
    { $id: 'AgentDeletedPayload', description: 'As it was.', additionalProperties: false },
  ),
  'rule.created': Type.Object(
    { rule: ref(AutomationRuleSchema) },
    { $id: 'RuleCreatedPayload', additionalProperties: false },
  ),
  'rule.updated': Type.Object(
    {
      rule: ref(AutomationRuleSchema),
      changes: Changes,
      reason: sideEffect('department_deleted', 'agent_deleted'),
    },
    {
      $id: 'RuleUpdatedPayload',
      description:
        'With a reason, the rule named a deleted department or agent and now names the substitute the deletion gave.',
      additionalProperties: false,
    },
  ),
  'rule.deleted': Type.Object(
    { rule: ref(AutomationRuleSchema) },
    { $id: 'RuleDeletedPayload', description: 'As it was.', additionalProperties: false },
  ),
  'token.created': Type.Object(
    { token: ref(ApiTokenSchema) },
    { $id: 'TokenCreatedPayload', description: 'Never the token itself.', additionalProperties: false },
  ),
  'token.deleted': Type.Object(
    { token: ref(ApiTokenSchema), reason: sideEffect('agent_disabled', 'agent_deleted') },
    {
      $id: 'TokenDeletedPayload',
      description:
        'Revoked (DELETE, or its agent was disabled), or deleted with its agent (then the token as it was).',
      additionalProperties: false,
    },
  ),
  'webhook.created': Type.Object(
    { webhook: WebhookSummary },
    { $id: 'WebhookCreatedPayload', additionalProperties: false },
  ),
  'webhook.updated': Type.Object(
    { webhook: WebhookSummary, changes: Changes },
    { $id: 'WebhookUpdatedPayload', additionalProperties: false },
  ),
  'webhook.deleted': Type.Object(
    { webhook: WebhookSummary, reason: sideEffect('department_deleted') },
    { $id: 'WebhookDeletedPayload', additionalProperties: false },
  ),
  'webhook.disabled': Type.Object(
    {
      webhook: WebhookSummary,
      reason: Type.String({ description: 'Why it was disabled, e.g. after repeated failures.' }),
    },
    { $id: 'WebhookDisabledPayload', additionalProperties: false },
  ),
  'webhook.secret_rotated': Type.Object(
    {
      webhook: WebhookSummary,
      previous_secret_expires_at: Timestamp('Until then the previous secret signs alongside the new one.'),
    },
    {
      $id: 'WebhookSecretRotatedPayload',
      description: 'A new signing secret was made (neither secret is ever in an event).',
      additionalProperties: false,
    },
  ),
  'csat_settings.updated': Type.Object(
    {
      department_id: Uuid(),
      enabled: Type.Boolean(),
      delay_minutes: Type.Integer(),
      changes: Changes,
    },
    {
      $id: 'CsatSettingsUpdatedPayload',
      description: "A department's CSAT survey setting changed (GET /v1/departments/{id}/csat).",
      additionalProperties: false,
    },
  ),
  'notification_defaults.updated': Type.Object(
    {
      department_id: Uuid(),
      defaults: Type.Array(
        Type.Object(
          {
            kind: NotificationKindSchema,
            enabled: Type.Boolean(),
            source: Type.Union([Type.Literal('department'), Type.Literal('default')]),
            email: Type.Optional(Type.Boolean()),
            email_source: Type.Optional(Type.Union([Type.Literal('department'), Type.Literal('default')])),
          },
          { additionalProperties: false },
        ),
        {
          description:
            'Every kind as members now get it, as GET .../notification-defaults answers (email and email_source are absent from events recorded before email notifications existed).',
        },
      ),
      changes: Type.Record(Type.String(), Change, {
        description:
          "Per kind whose inbox setting changed: the department's setting before and after (null: none, members get the help desk's default, on).",
      }),
      email_changes: Type.Optional(
        Type.Record(Type.String(), Change, {
          description:
            "Per kind whose email setting changed: the department's setting before and after (null: none, members get the help desk's default, off). Absent from events recorded before email notifications existed.",
        }),
      ),
    },
    {
      $id: 'NotificationDefaultsUpdatedPayload',
      description: "A department's notification defaults changed.",
      additionalProperties: false,
    },
  ),
  'contact_field.created': Type.Object(
    { contact_field: ref(ContactFieldSchema) },
    { $id: 'ContactFieldCreatedPayload', additionalProperties: false },
  ),
  'contact_field.updated': Type.Object(
    { contact_field: ref(ContactFieldSchema), changes: Changes },
    { $id: 'ContactFieldUpdatedPayload', additionalProperties: false },
  ),
  'contact_field.deleted': Type.Object(
    { contact_field: ref(ContactFieldSchema) },
    {
      $id: 'ContactFieldDeletedPayload',
      description: "As it was; every contact's value for it went with it.",
      additionalProperties: false,
    },
  ),
  'schedule.created': Type.Object(
    { schedule: ref(ScheduleSchema) },
    { $id: 'ScheduleCreatedPayload', additionalProperties: false },
  ),
  'schedule.updated': Type.Object(
    {
      schedule: ref(ScheduleSchema),
      changes: Changes,
      reason: Type.Optional(
        Type.Enum(['default_moved', 'holidays_imported'], {
          description:
            'default_moved: another schedule became the default, so this one is no longer; holidays_imported: an iCalendar import (POST .../holidays/import).',
        }),
      ),
    },
    { $id: 'ScheduleUpdatedPayload', additionalProperties: false },
  ),
  'schedule.deleted': Type.Object(
    { schedule: ref(ScheduleSchema) },
    { $id: 'ScheduleDeletedPayload', description: 'As it was.', additionalProperties: false },
  ),
  'sla_policy.created': Type.Object(
    { sla_policy: ref(SlaPolicySchema) },
    { $id: 'SlaPolicyCreatedPayload', additionalProperties: false },
  ),
  'sla_policy.updated': Type.Object(
    { sla_policy: ref(SlaPolicySchema), changes: Changes },
    { $id: 'SlaPolicyUpdatedPayload', additionalProperties: false },
  ),
  'sla_policy.deleted': Type.Object(
    { sla_policy: ref(SlaPolicySchema) },
    {
      $id: 'SlaPolicyDeletedPayload',
      description: 'As it was; tickets it applied to keep their targets until their next write.',
      additionalProperties: false,
    },
  ),
  'mail_settings.updated': Type.Object(
    { mail_settings: ref(MailSettingsSchema), changes: Changes },
    { $id: 'MailSettingsUpdatedPayload', additionalProperties: false },
  ),
  'mail_identity.updated': Type.Object(
    { mail_identity: ref(DepartmentMailIdentitySchema), changes: Changes },
    { $id: 'MailIdentityUpdatedPayload', additionalProperties: false },
  ),
  'mail_template.updated': Type.Object(
    { mail_template: ref(MailTemplateSchema), changes: Changes },
    { $id: 'MailTemplateUpdatedPayload', additionalProperties: false },
  ),
  'mail_template.deleted': Type.Object(
    { mail_template: ref(MailTemplateSchema) },
    {
      $id: 'MailTemplateDeletedPayload',
      description: 'As it was; the next level’s template (or the built-in one) applies again.',
      additionalProperties: false,
    },
  ),
  'canned_response.created': Type.Object(
    { canned_response: ref(CannedResponseSchema) },
    { $id: 'CannedResponseCreatedPayload', additionalProperties: false },
  ),
  'canned_response.updated': Type.Object(
    { canned_response: ref(CannedResponseSchema), changes: Changes },
    { $id: 'CannedResponseUpdatedPayload', additionalProperties: false },
  ),
  'canned_response.deleted': Type.Object(
    { canned_response: ref(CannedResponseSchema) },
    { $id: 'CannedResponseDeletedPayload', description: 'As it was.', additionalProperties: false },
  ),
  'mailbox.created': Type.Object(
    { mailbox: MailboxSummary },
    { $id: 'MailboxCreatedPayload', additionalProperties: false },
  ),
  'mailbox.updated': Type.Object(
    {
      mailbox: MailboxSummary,
      changes: Type.Array(Type.String(), {
        description: 'The fields changed (a password changed shows as imap.password, never its value).',
      }),
      reason: sideEffect('department_deleted'),
    },
    { $id: 'MailboxUpdatedPayload', additionalProperties: false },
  ),
  'mailbox.deleted': Type.Object(
    { mailbox: MailboxSummary },
    { $id: 'MailboxDeletedPayload', additionalProperties: false },
  ),
  'mailbox.secret_rotated': Type.Object(
    { mailbox: MailboxSummary },
    {
      $id: 'MailboxSecretRotatedPayload',
      description: 'A new inbound secret was made; the previous one stops working at once.',
      additionalProperties: false,
    },
  ),
} as const satisfies Record<EventType, TSchema>;

export type EventPayload<T extends EventType> = Static<(typeof PAYLOAD_SCHEMAS)[T]>;

export const EventActorSchema = Type.Object(
  {
    type: Type.Union(
      [
        Type.Literal('agent'),
        Type.Literal('contact'),
        Type.Literal('rule'),
        Type.Literal('system'),
        Type.Literal('token'),
      ],
      {
        description:
          'token: an agent acting through an API token (agent_id and token_id set); rule: an automation rule (rule_id, rule_version).',
      },
    ),
    agent_id: NullableUuid(),
    contact_id: NullableUuid(),
    rule_id: NullableUuid(),
    rule_version: Type.Union([Type.Integer(), Type.Null()]),
    token_id: NullableUuid(),
  },
  { $id: 'EventActor', additionalProperties: false },
);
export type EventActor = Static<typeof EventActorSchema>;

const eventVariant = <T extends EventType>(type: T) =>
  Type.Object(
    {
      id: Type.String({
        description: 'te_<n> for ticket events, se_<n> for settings events; stable, unique.',
      }),
      type: Type.Literal(type),
      occurred_at: Timestamp(),
      actor: ref(EventActorSchema),
      department_id: NullableUuid(
        'The department concerned: for a ticket event, the ticket’s department when it happened.',
      ),
      ticket_id: NullableUuid('Null for settings events.'),
      payload: ref(PAYLOAD_SCHEMAS[type]),
    },
    { additionalProperties: false },
  );

const variants = EVENT_TYPES.map(eventVariant);

/**
 * An event as the feed, the stream and webhooks carry it. One variant per type (oneOf on the
 * `type` constant), so generated clients narrow the payload by type.
 */
export const EventSchema = Type.Unsafe<
  {
    [T in EventType]: {
      id: string;
      type: T;
      occurred_at: string;
      actor: EventActor;
      department_id: string | null;
      ticket_id: string | null;
      payload: EventPayload<T>;
    };
  }[EventType]
>({
  $id: 'Event',
  oneOf: variants,
  description: 'Something that happened; `payload` depends on `type`.',
});
export type Event = Static<typeof EventSchema>;

/** The components the app registers (payloads before the Event that references them). */
export const eventSchemas = [
  EventTicketSchema,
  EventMessageSchema,
  EventActorSchema,
  ...Object.values(PAYLOAD_SCHEMAS),
  EventSchema,
];
