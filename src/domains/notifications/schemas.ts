import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import type { NotificationKind } from '../../db/types.ts';

/**
 * The kinds of notification, each one of the seeds' "notify the group" moments. Agents choose
 * them per department; a department's managers set the department's defaults; the help desk's
 * default is every kind on.
 */
export const NOTIFICATION_KINDS = [
  'ticket_created',
  'customer_replied',
  'ticket_assigned',
  'ticket_transferred',
  'mentioned',
  'sla_escalated',
] as const satisfies readonly NotificationKind[];

export const NotificationKindSchema = Type.Enum(NOTIFICATION_KINDS, {
  description:
    'ticket_created: a new ticket in one of your departments. customer_replied: a customer wrote on your ticket, or on an unassigned ticket of your department. ticket_assigned: a ticket was assigned to you. ticket_transferred: a ticket was transferred to your department. mentioned: a note named your @email. sla_escalated: an SLA escalation handed you a ticket, or (supervisors and managers) handed one on in your department or found nobody to take it.',
});

const NullableUuid = (description: string) => Type.Union([Uuid(), Type.Null()], { description });

export const NotificationSchema = Type.Object(
  {
    id: Uuid(),
    kind: NotificationKindSchema,
    event_id: Type.String({ description: 'The feed event that caused it (GET /v1/events).' }),
    ticket_id: Uuid(),
    department_id: NullableUuid('The ticket’s department when it happened.'),
    actor_agent_id: NullableUuid('The agent who caused it; null for a customer, a rule or the system.'),
    subject: Type.String({ description: 'The ticket’s subject when it happened.' }),
    created_at: Timestamp(),
    read_at: Type.Union([Timestamp(), Type.Null()]),
  },
  { $id: 'Notification', additionalProperties: false },
);
export type Notification = Static<typeof NotificationSchema>;

export function notificationView(row: {
  id: string;
  kind: NotificationKind;
  event_id: string;
  ticket_id: string;
  department_id: string | null;
  actor_agent_id: string | null;
  subject: string;
  created_at: Date;
  read_at: Date | null;
}): Notification {
  return {
    id: row.id,
    kind: row.kind,
    event_id: row.event_id,
    ticket_id: row.ticket_id,
    department_id: row.department_id,
    actor_agent_id: row.actor_agent_id,
    subject: row.subject,
    created_at: row.created_at.toISOString(),
    read_at: row.read_at?.toISOString() ?? null,
  };
}

export const NotificationListQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (1-200).' }),
    cursor: Type.Optional(
      Type.String({ minLength: 1, maxLength: 1000, description: 'The `next_cursor` of the previous page.' }),
    ),
    unread_only: Type.Boolean({ default: false, description: 'Only notifications not yet read.' }),
  },
  { additionalProperties: false },
);

export const MarkedReadSchema = Type.Object(
  {
    marked: Type.Integer({ minimum: 0, description: 'How many notifications were unread and are now read.' }),
  },
  { $id: 'NotificationsMarkedRead', additionalProperties: false },
);

const PreferenceSource = Type.Union(
  [Type.Literal('agent'), Type.Literal('department'), Type.Literal('default')],
  {
    description:
      'agent: your own choice; department: the department’s default; default: the help desk’s (the inbox on, email off).',
  },
);

const DefaultSource = Type.Union([Type.Literal('department'), Type.Literal('default')], {
  description:
    'department: the department’s own default; default: the help desk’s (the inbox on, email off).',
});

const INBOX = 'In the in-app inbox (GET /v1/me/notifications) and on live streams.';
const EMAIL =
  'By email to your address, from the department’s sender (sent only where an SMTP server is known for the department).';

export const NotificationPreferenceSchema = Type.Object(
  {
    department_id: Uuid(),
    kind: NotificationKindSchema,
    enabled: Type.Boolean({ description: INBOX }),
    source: PreferenceSource,
    email: Type.Boolean({ description: EMAIL }),
    email_source: PreferenceSource,
  },
  { $id: 'NotificationPreference', additionalProperties: false },
);

export const NotificationPreferencesSchema = Type.Object(
  {
    data: Type.Array(ref(NotificationPreferenceSchema), {
      description: 'Every kind for every department you belong to.',
    }),
  },
  { $id: 'NotificationPreferences', additionalProperties: false },
);

const Choice = (what: string) =>
  Type.Optional(
    Type.Union([Type.Boolean(), Type.Null()], {
      description: `${what} null forgets your choice: the department’s default applies again. Absent: unchanged.`,
    }),
  );

export const PutNotificationPreferencesBody = Type.Object(
  {
    preferences: Type.Array(
      Type.Object(
        {
          department_id: Uuid('One of your departments.'),
          kind: NotificationKindSchema,
          enabled: Choice(INBOX),
          email: Choice(EMAIL),
        },
        {
          additionalProperties: false,
          description: 'Sets enabled, email or both (an item with neither answers 400).',
        },
      ),
      { minItems: 1, maxItems: 500 },
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        preferences: [
          { department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11', kind: 'ticket_created', enabled: false },
          { department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11', kind: 'ticket_assigned', email: true },
        ],
      },
    ],
  },
);

/** One kind as a department's members get it unless they chose otherwise. */
export const NotificationDefaultSchema = Type.Object(
  {
    kind: NotificationKindSchema,
    enabled: Type.Boolean({ description: INBOX }),
    source: DefaultSource,
    email: Type.Boolean({ description: EMAIL }),
    email_source: DefaultSource,
  },
  { additionalProperties: false },
);

export const NotificationDefaultsSchema = Type.Object(
  { data: Type.Array(NotificationDefaultSchema) },
  { $id: 'NotificationDefaults', additionalProperties: false },
);

export const PutNotificationDefaultsBody = Type.Object(
  {
    defaults: Type.Array(
      Type.Object(
        {
          kind: NotificationKindSchema,
          enabled: Type.Optional(Type.Boolean({ description: `${INBOX} Absent: unchanged.` })),
          email: Type.Optional(Type.Boolean({ description: `${EMAIL} Absent: unchanged.` })),
        },
        {
          additionalProperties: false,
          description: 'Sets enabled, email or both (an item with neither answers 400).',
        },
      ),
      { minItems: 1, maxItems: 50 },
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        defaults: [
          { kind: 'customer_replied', enabled: false },
          { kind: 'ticket_created', email: true },
        ],
      },
    ],
  },
);
