import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import {
  CreateWebhookBody,
  DeliveryListQuery,
  DeliveryParams,
  UpdateWebhookBody,
  WebhookDeliveryAttemptSchema,
  WebhookDeliveryDetailSchema,
  WebhookDeliverySchema,
  WebhookPingEventSchema,
  WebhookSchema,
  WebhookWithSecretSchema,
} from './schemas.ts';
import * as service from './service.ts';

export const WebhookPage = PageOf(ref(WebhookSchema), 'WebhookPage');
export const WebhookDeliveryPage = PageOf(ref(WebhookDeliverySchema), 'WebhookDeliveryPage');
export const webhookSchemas = [
  WebhookSchema,
  WebhookWithSecretSchema,
  WebhookDeliverySchema,
  WebhookPage,
  WebhookDeliveryPage,
  WebhookPingEventSchema,
  WebhookDeliveryAttemptSchema,
  WebhookDeliveryDetailSchema,
];

// The detail's event is a oneOf over the Event types: as for the feed (events/routes.ts), plain
// JSON.stringify of what the repository built.
const stringify = () => (data: unknown) => JSON.stringify(data);

const tags = ['webhooks'];

const SIGNING =
  'Each delivery is an HTTP POST of the Event JSON, signed per Standard Webhooks (headers webhook-id = the delivery id, the same on every attempt; webhook-timestamp; webhook-signature, with two signatures during a secret rotation’s overlap). ';
const ADDRESS =
  'Unless WEBHOOKS_ALLOW_PRIVATE is set, the URL must resolve to public addresses only: a name that does not resolve, or resolves to a loopback, private, link-local or metadata address, answers 422 (webhook_url_unresolvable, webhook_url_not_public); DNS that cannot answer now (timed out, failing) answers 503 webhook_dns_unavailable with Retry-After. The address is checked again on every new connection. ';
const RETRIES =
  'A delivery succeeds on a 2xx within WEBHOOK_TIMEOUT_MS (10 s); redirects are not followed (a 3xx is a failure); at most 4 KB of the answer is read. Failed attempts are retried with exponential backoff and full jitter: attempt n waits a random time up to min(6 h, 30 s × 2^(n-1)) (WEBHOOK_RETRY_BASE_MS, WEBHOOK_RETRY_MAX_DELAY_MS), until 24 h after the first attempt (WEBHOOK_RETRY_WINDOW_MS), then the delivery is failed. A subscription whose attempts failed 20 times in a row over at least 24 h is disabled (webhook.disabled). Deliveries of one subscription for one ticket go out in order, one at a time.';

export const webhookRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const deps = () => ({ db: app.db, log: app.log, config: app.config.webhooks, queue: app.jobs });

  app.post(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'createWebhook',
        tags,
        summary: 'Create a webhook',
        description: `Admins create help-desk-wide webhooks (no department_id) and any other; a department's managers create their department's. The secret is in this response only. ${ADDRESS}${SIGNING}${RETRIES}`,
        body: CreateWebhookBody,
        response: {
          201: { ...ref(WebhookWithSecretSchema), headers: responseHeaders.location('webhook') },
          ...problems(403, 422),
        },
      },
    },
    async (request, reply) => {
      const created = await service.createWebhook(deps(), principalOf(request), request.body);
      reply.code(201).header('location', `/v1/webhooks/${created.id}`);
      return created;
    },
  );

  app.get(
    '/v1/webhooks',
    {
      schema: {
        operationId: 'listWebhooks',
        tags,
        summary: 'List webhooks',
        description:
          'Admins see every webhook; department managers those of their departments. Newest first.',
        querystring: Type.Object({ ...PageQuery }, { additionalProperties: false }),
        response: { 200: ref(WebhookPage) },
      },
    },
    async (request) => service.listWebhooks(deps(), principalOf(request), request.query),
  );

  app.get(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'getWebhook',
        tags,
        summary: 'Get a webhook',
        params: IdParams,
        response: { 200: ref(WebhookSchema), ...problems(403, 404) },
      },
    },
    async (request) => service.getWebhook(deps(), principalOf(request), request.params.id),
  );

  app.patch(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'updateWebhook',
        tags,
        summary: 'Change a webhook',
        description: `Moving it to a department (from another one, or from help-desk wide) drops its deliveries so far, pending ones included: they were made for its former scope. A new url is checked as on creation: ${ADDRESS}`,
        params: IdParams,
        body: UpdateWebhookBody,
        response: { 200: ref(WebhookSchema), ...problems(403, 404, 422) },
      },
    },
    async (request) => service.updateWebhook(deps(), principalOf(request), request.params.id, request.body),
  );

  app.delete(
    '/v1/webhooks/:id',
    {
      schema: {
        operationId: 'deleteWebhook',
        tags,
        summary: 'Delete a webhook',
        description: 'Its deliveries go with it; pending ones are not attempted.',
        params: IdParams,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(403, 404) },
      },
    },
    async (request, reply) => {
      await service.deleteWebhook(deps(), principalOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/webhooks/:id/rotate-secret',
    {
      schema: {
        operationId: 'rotateWebhookSecret',
        tags,
        summary: 'Rotate the signing secret',
        description:
          'Answers the new secret (this once). The previous one keeps signing every delivery alongside the new one for WEBHOOK_SECRET_OVERLAP_MS (24 h), so receivers can switch without dropping any.',
        params: IdParams,
        response: { 200: ref(WebhookWithSecretSchema), ...problems(403, 404) },
      },
    },
    async (request) => service.rotateSecret(deps(), principalOf(request), request.params.id),
  );

  app.get(
    '/v1/webhooks/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: "List a webhook's deliveries",
        description: `Newest first. ${RETRIES} Delivered and failed deliveries are kept for WEBHOOK_DELIVERY_RETENTION_DAYS (30 by default) after they settled (were delivered, or last attempted), then deleted with their attempts; pending ones are kept until they settle.`,
        params: IdParams,
        querystring: Type.Object({ ...PageQuery, ...DeliveryListQuery }, { additionalProperties: false }),
        response: { 200: ref(WebhookDeliveryPage), ...problems(403, 404) },
      },
    },
    async (request) => {
      const { status, ...page } = request.query;
      return service.listDeliveries(deps(), principalOf(request), request.params.id, status, page);
    },
  );

  app.get(
    '/v1/webhooks/:id/deliveries/:delivery_id',
    {
      serializerCompiler: stringify,
      schema: {
        operationId: 'getWebhookDelivery',
        tags,
        summary: 'Get a delivery, with its attempts and the event it sends',
        description:
          'What a receiver was sent (the event, byte for byte the JSON of every attempt) and how each attempt went. Whoever may list the webhook’s deliveries may read them.',
        params: DeliveryParams,
        response: { 200: ref(WebhookDeliveryDetailSchema), ...problems(403, 404) },
      },
    },
    async (request) =>
      service.getDelivery(deps(), principalOf(request), request.params.id, request.params.delivery_id),
  );

  app.post(
    '/v1/webhooks/:id/deliveries/:delivery_id/retry',
    {
      schema: {
        operationId: 'retryWebhookDelivery',
        tags,
        summary: 'Retry a failed delivery',
        description:
          'Back to pending, attempted at once, with a new retry window; its attempt count carries on. 404 when the caller may no longer read the event (its ticket left their departments: the detail shows `event: null`); owners and admins may retry every delivery.',
        params: DeliveryParams,
        response: { 200: ref(WebhookDeliverySchema), ...problems(403, 404, 409) },
      },
    },
    async (request) =>
      service.retryDelivery(deps(), principalOf(request), request.params.id, request.params.delivery_id),
  );

  app.post(
    '/v1/webhooks/:id/ping',
    {
      schema: {
        operationId: 'pingWebhook',
        tags,
        summary: 'Send a webhook.ping now',
        description:
          'One attempt, made during this request (no retries), even for an inactive webhook; answers the delivery with its outcome.',
        params: IdParams,
        response: { 200: ref(WebhookDeliverySchema), ...problems(403, 404) },
      },
    },
    async (request) => service.ping(deps(), principalOf(request), request.params.id),
  );
};
