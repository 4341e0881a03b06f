import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import {
  CreateSlaPolicyBody,
  SlaEscalationSchema,
  SlaPolicyList,
  SlaPolicyOrderBody,
  SlaPolicySchema,
  SlaTargetSchema,
  UpdateSlaPolicyBody,
} from './schemas.ts';
import * as service from './service.ts';

export const slaPolicySchemas = [SlaTargetSchema, SlaEscalationSchema, SlaPolicySchema, SlaPolicyList];

const tags = ['sla-policies'];
const Policy = ref(SlaPolicySchema);
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('SLA policy') };
const CHECKED =
  'Checked when written: an unknown priority or kind, minutes out of range, no target at all, conditions that name an unknown department or field, read message, sender or previous values, or use change operators, or an escalation that could never act (on warnings without warn_before_minutes, for a kind without a target, behind earlier escalations that answer all it would) answer 422 `invalid_sla_policy`, each error pointing at the offending node (e.g. body/targets/high/first_answer/minutes, body/escalations/1/action).';

export const slaPolicyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/sla-policies',
    {
      schema: {
        operationId: 'listSlaPolicies',
        tags,
        summary: 'List SLA policies in selection order',
        description:
          'Every agent may read them. Sorted by position, then id: on every write of a ticket, the first active policy whose conditions hold for it applies.',
        response: { 200: ref(SlaPolicyList) },
      },
    },
    async () => service.listPolicies(db),
  );

  app.post(
    '/v1/sla-policies',
    {
      schema: {
        operationId: 'createSlaPolicy',
        tags,
        summary: 'Create an SLA policy',
        description: `Owners and admins. Without a position the policy comes last. ${CHECKED} Tickets pick it up at their next write.`,
        body: CreateSlaPolicyBody,
        response: { 201: { ...Policy, headers: createdHeaders }, ...problems(422) },
      },
    },
    async (request, reply) => {
      const policy = await service.createPolicy(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/sla-policies/${policy.id}`);
      return withEtag(reply, policy);
    },
  );

  app.put(
    '/v1/sla-policies/order',
    {
      schema: {
        operationId: 'reorderSlaPolicies',
        tags,
        summary: 'Set the order SLA policies are tried in',
        description:
          'Owners and admins. List every policy once, in order; positions become 1, 2, 3... Each policy that moves gets a new version.',
        body: SlaPolicyOrderBody,
        response: { 200: ref(SlaPolicyList), ...problems(422) },
      },
    },
    async (request) => service.reorderPolicies(db, principalOf(request), request.body.policy_ids),
  );

  app.get(
    '/v1/sla-policies/:id',
    {
      schema: {
        operationId: 'getSlaPolicy',
        tags,
        summary: 'Get an SLA policy',
        params: IdParams,
        response: { 200: { ...Policy, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getPolicy(db, request.params.id)),
  );

  app.patch(
    '/v1/sla-policies/:id',
    {
      schema: {
        operationId: 'updateSlaPolicy',
        tags,
        summary: 'Change an SLA policy',
        description: `Owners and admins. Every change makes a new version; a ticket under the policy takes it at its next write, keeping the time already used. Honours If-Match (412 when the policy changed since it was read). ${CHECKED}`,
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateSlaPolicyBody,
        response: { 200: { ...Policy, headers: etagHeader }, ...problems(404, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updatePolicy(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/sla-policies/:id',
    {
      schema: {
        operationId: 'deleteSlaPolicy',
        tags,
        summary: 'Delete an SLA policy',
        description:
          'Owners and admins. Honours If-Match. Tickets under it are re-selected at their next write (those kept by a transfer run on as they were set).',
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 412) },
      },
    },
    async (request, reply) => {
      await service.deletePolicy(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );
};
