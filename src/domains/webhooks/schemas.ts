import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { EVENT_TYPES, EventActorSchema, EventSchema } from '../events/catalogue.ts';
import { MAX_URL_LENGTH } from './address-guard.ts';

const EventTypeName = Type.Union(
  EVENT_TYPES.map((type) => Type.Literal(type)),
  { description: 'An event type (see the Event schema).' },
);

const webhookFields = {
  id: Uuid(),
  url: Type.String({ description: 'Where events are POSTed.' }),
  event_types: Type.Array(Type.String(), { description: 'The types delivered; empty = every type.' }),
  department_id: Type.Union([Uuid(), Type.Null()], {
    description: "Null: help-desk wide (managed by admins). Set: only that department's ticket events.",
  }),
  active: Type.Boolean(),
  description: Type.String(),
  disabled_reason: Type.Union([Type.String(), Type.Null()], {
    description: 'Why deliveries stopped, when the help desk disabled it after failing deliveries.',
  }),
  disabled_at: Type.Union([Timestamp(), Type.Null()]),
  previous_secret_expires_at: Type.Union([Timestamp(), Type.Null()], {
    description: 'After a rotation, deliveries are signed with the previous secret too until then.',
  }),
  created_at: Timestamp(),
  updated_at: Timestamp(),
};

export const WebhookSchema = Type.Object(webhookFields, { $id: 'Webhook', additionalProperties: false });
export type Webhook = Static<typeof WebhookSchema>;

export const WebhookWithSecretSchema = Type.Object(
  {
    ...webhookFields,
    secret: Type.String({
      description:
        'The signing secret (whsec_ + base64), for Standard Webhooks verification. Shown on create and rotate only.',
    }),
  },
  { $id: 'WebhookWithSecret', additionalProperties: false },
);

export const CreateWebhookBody = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: MAX_URL_LENGTH,
      description:
        'http or https, no credentials. Loopback, private, link-local and metadata addresses are refused (422) unless WEBHOOKS_ALLOW_PRIVATE=true.',
    }),
    event_types: Type.Optional(Type.Array(EventTypeName, { maxItems: 64, uniqueItems: true })),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    active: Type.Optional(Type.Boolean()),
    description: Type.Optional(Type.String({ maxLength: 500 })),
  },
  {
    additionalProperties: false,
    examples: [{ url: 'https://example.com/hooks/deskroute', event_types: ['ticket.created'] }],
  },
);

export const UpdateWebhookBody = Type.Object(
  {
    url: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_URL_LENGTH })),
    event_types: Type.Optional(Type.Array(EventTypeName, { maxItems: 64, uniqueItems: true })),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    active: Type.Optional(
      Type.Boolean({ description: 'true also re-enables a subscription the help desk disabled.' }),
    ),
    description: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ active: true, event_types: [] }] },
);

export const DeliveryStatusSchema = Type.Union(
  [Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')],
  { description: 'pending: to be attempted (again); delivered: a 2xx came back; failed: retries exhausted.' },
);

export const WebhookDeliverySchema = Type.Object(
  {
    id: Type.String({ description: 'Also the webhook-id header: the same on every attempt.' }),
    webhook_id: Uuid(),
    event_id: Type.String(),
    event_type: Type.String(),
    ticket_id: Type.Union([Uuid(), Type.Null()]),
    status: DeliveryStatusSchema,
    attempts: Type.Integer({ minimum: 0 }),
    last_status_code: Type.Union([Type.Integer(), Type.Null()]),
    last_latency_ms: Type.Union([Type.Integer(), Type.Null()]),
    last_error: Type.Union([Type.String(), Type.Null()]),
    last_attempt_at: Type.Union([Timestamp(), Type.Null()]),
    next_attempt_at: Type.Union([Timestamp(), Type.Null()]),
    delivered_at: Type.Union([Timestamp(), Type.Null()]),
    created_at: Timestamp(),
  },
  { $id: 'WebhookDelivery', additionalProperties: false },
);
export type WebhookDelivery = Static<typeof WebhookDeliverySchema>;

/** What POST /v1/webhooks/{id}/ping sends: not an event of the feed. */
export const WebhookPingEventSchema = Type.Object(
  {
    id: Type.String({ description: 'ping_<delivery id>' }),
    type: Type.Literal('webhook.ping'),
    occurred_at: Timestamp(),
    actor: ref(EventActorSchema),
    department_id: Type.Union([Uuid(), Type.Null()], { description: 'The webhook’s department.' }),
    ticket_id: Type.Null(),
    payload: Type.Object({ webhook_id: Uuid() }, { additionalProperties: false }),
  },
  { $id: 'WebhookPingEvent', additionalProperties: false, description: 'The test event a ping sends.' },
);

export const WebhookDeliveryAttemptSchema = Type.Object(
  {
    attempt: Type.Integer({ minimum: 1 }),
    started_at: Timestamp(),
    status_code: Type.Union([Type.Integer(), Type.Null()], {
      description: 'The receiver’s answer; null when none came (refused, timed out, reset).',
    }),
    latency_ms: Type.Integer({ minimum: 0 }),
    error: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed; null on a 2xx.' }),
  },
  { $id: 'WebhookDeliveryAttempt', additionalProperties: false },
);
export type WebhookDeliveryAttempt = Static<typeof WebhookDeliveryAttemptSchema>;

export const WebhookDeliveryDetailSchema = Type.Object(
  {
    ...WebhookDeliverySchema.properties,
    event: Type.Union([ref(EventSchema), ref(WebhookPingEventSchema), Type.Null()], {
      description:
        'The body every attempt sent (and a retry sends), parsed: the event as it was when dispatched, per the Event schema of that time. Null if it is gone, or if its ticket is not one you may read now (moved out of your departments since).',
    }),
    attempt_log: Type.Array(ref(WebhookDeliveryAttemptSchema), {
      description: 'Every attempt, oldest first.',
    }),
  },
  { $id: 'WebhookDeliveryDetail', additionalProperties: false },
);
export type WebhookDeliveryDetail = Static<typeof WebhookDeliveryDetailSchema>;

export const DeliveryParams = Type.Object(
  { id: Uuid(), delivery_id: Uuid() },
  { additionalProperties: false },
);

export const DeliveryListQuery = {
  status: Type.Optional(DeliveryStatusSchema),
};
