import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageQuery } from '../../plugins/pagination.ts';
import * as repo from './repository.ts';
import {
  ActionSchema,
  AutomationRuleSchema,
  ConditionLeafSchema,
  ConditionSchema,
  CreateRuleBody,
  EffectSchema,
  IdleAfterSchema,
  ReorderBody,
  RuleListQuery,
  RuleOrderSchema,
  RulePage,
  RuleRunPage,
  RuleRunSchema,
  RuleTraceEntrySchema,
  RuleVersionPage,
  RuleVersionSchema,
  SimulateBody,
  SimulationSchema,
  SlaFactsSchema,
  TicketSnapshotSchema,
  UpdateRuleBody,
} from './schemas.ts';
import * as service from './service.ts';

export const automationRuleSchemas = [
  ConditionLeafSchema,
  ConditionSchema,
  ActionSchema,
  IdleAfterSchema,
  AutomationRuleSchema,
  RuleVersionSchema,
  RuleOrderSchema,
  TicketSnapshotSchema,
  RuleTraceEntrySchema,
  EffectSchema,
  SlaFactsSchema,
  RuleRunSchema,
  SimulationSchema,
  RulePage,
  RuleVersionPage,
  RuleRunPage,
];

const tags = ['automation-rules'];
const Rule = ref(AutomationRuleSchema);
const etagHeader = responseHeaders.etag();
const createdHeaders = { ...etagHeader, ...responseHeaders.location('rule') };
const pageQuery = Type.Object(PageQuery, { additionalProperties: false });

export const automationRuleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app;

  app.get(
    '/v1/automation-rules',
    {
      schema: {
        operationId: 'listAutomationRules',
        tags,
        summary: 'List automation rules in running order',
        description: 'Every agent may read the rules. Sorted by position, then id: the order they run in.',
        querystring: Type.Object({ ...PageQuery, ...RuleListQuery }, { additionalProperties: false }),
        response: { 200: ref(RulePage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return repo.listRules(db, filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/automation-rules',
    {
      schema: {
        operationId: 'createAutomationRule',
        tags,
        summary: 'Create an automation rule',
        description:
          "Owners and admins; a department's managers for rules owned by their department. Without a position the rule runs last. The rule is checked when written: an unknown field, an operator that does not fit its field, an unsafe pattern, or a department, agent or contact field that does not exist answers 422 `invalid_rule`, each error's `field` pointing at the offending node (e.g. body/conditions/any/0/all/1/operator).",
        body: CreateRuleBody,
        response: { 201: { ...Rule, headers: createdHeaders }, ...problems(422) },
      },
    },
    async (request, reply) => {
      const rule = await service.createRule(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/automation-rules/${rule.id}`);
      return withEtag(reply, rule);
    },
  );

  app.put(
    '/v1/automation-rules/order',
    {
      schema: {
        operationId: 'reorderAutomationRules',
        tags,
        summary: 'Set the order rules run in',
        description:
          'Owners and admins. List every rule once, in running order; positions become 1, 2, 3... Each rule that moves gets a new version.',
        body: ReorderBody,
        response: { 200: ref(RuleOrderSchema), ...problems(422) },
      },
    },
    async (request) => service.reorderRules(db, principalOf(request), request.body.rule_ids),
  );

  app.post(
    '/v1/automation-rules/simulate',
    {
      config: { readOnly: true },
      schema: {
        operationId: 'simulateAutomationRules',
        tags,
        summary: 'Simulate rules on a ticket, writing nothing',
        description:
          'Runs the saved rules, or draft rules not saved yet, on an existing ticket (`ticket_id`) or on a ticket snapshot, for one event. Answers the trace (every rule, each condition node with the value it read, or why the rule was not considered) and the resulting changes; round robin and least busy show whom they would pick now. Nothing is written, so read-only tokens may call it.',
        body: SimulateBody,
        response: { 200: ref(SimulationSchema), ...problems(404, 422) },
      },
    },
    async (request) => service.simulate(db, principalOf(request), request.body),
  );

  app.get(
    '/v1/automation-rules/:id',
    {
      schema: {
        operationId: 'getAutomationRule',
        tags,
        summary: 'Get an automation rule',
        params: IdParams,
        response: { 200: { ...Rule, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => withEtag(reply, await service.getRule(db, request.params.id)),
  );

  app.patch(
    '/v1/automation-rules/:id',
    {
      schema: {
        operationId: 'updateAutomationRule',
        tags,
        summary: 'Change an automation rule',
        description:
          "Owners and admins; a department's managers for their department's rules. Every change makes a new version. Honours If-Match (412 when the rule changed since it was read). Checked like a new rule (422 `invalid_rule`).",
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateRuleBody,
        response: { 200: { ...Rule, headers: etagHeader }, ...problems(404, 412, 422) },
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await service.updateRule(
          db,
          principalOf(request),
          { ifMatch: request.headers['if-match'] },
          request.params.id,
          request.body,
        ),
      ),
  );

  app.delete(
    '/v1/automation-rules/:id',
    {
      schema: {
        operationId: 'deleteAutomationRule',
        tags,
        summary: 'Delete an automation rule',
        description:
          "Owners and admins; a department's managers for their department's rules. Its versions stay, so ticket histories keep naming it.",
        params: IdParams,
        headers: IfMatchHeaders,
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 412) },
      },
    },
    async (request, reply) => {
      await service.deleteRule(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
      );
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/automation-rules/:id/versions',
    {
      schema: {
        operationId: 'listAutomationRuleVersions',
        tags,
        summary: 'Every version of a rule, oldest first',
        description:
          'Immutable: created, updated, reordered and deleted versions, also after the rule was deleted.',
        params: IdParams,
        querystring: pageQuery,
        response: { 200: ref(RuleVersionPage), ...problems(404) },
      },
    },
    async (request) => service.listVersions(db, request.params.id, request.query),
  );

  app.get(
    '/v1/tickets/:id/rule-trace',
    {
      schema: {
        operationId: 'getTicketRuleTrace',
        tags: ['tickets', 'automation-rules'],
        summary: 'Which rules ran on a ticket, what they saw and did',
        description:
          'One entry per change that made rules run, oldest first: the events, the ticket as the rules saw it, every rule of the set as it stood then (with the condition nodes it evaluated and the values they read, or why it was not considered) and what was applied.',
        params: IdParams,
        querystring: pageQuery,
        response: { 200: ref(RuleRunPage), ...problems(404) },
      },
    },
    async (request) => service.ruleTrace(db, principalOf(request), request.params.id, request.query),
  );
};
