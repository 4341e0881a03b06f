import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { IdParams, ref, Uuid } from '../../contract.ts';
import { principalOf } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { PageOf, PageQuery } from '../../plugins/pagination.ts';
import { agentDependents } from '../registered-dependents.ts';
import { listAgents } from './repository.ts';
import {
  AgentListQuery,
  AgentSchema,
  CreateAgentBody,
  PresenceState,
  SetOtherPresenceBody,
  SetPresenceBody,
  UpdateAgentBody,
} from './schemas.ts';
import * as service from './service.ts';

export const AgentPage = PageOf(ref(AgentSchema), 'AgentPage');
export const agentSchemas = [AgentSchema, AgentPage, PresenceState];

const tags = ['agents'];
const Agent = ref(AgentSchema);
const etagHeader = responseHeaders.etag('update');
const createdHeaders = { ...etagHeader, ...responseHeaders.location('agent') };

export const agentRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;

  app.get(
    '/v1/agents',
    {
      schema: {
        operationId: 'listAgents',
        tags,
        summary: 'List agents',
        description: 'Every agent may list agents, sorted by name, each with their departments.',
        querystring: Type.Object({ ...PageQuery, ...AgentListQuery }, { additionalProperties: false }),
        response: { 200: ref(AgentPage) },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return listAgents(db, filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/agents',
    {
      schema: {
        operationId: 'createAgent',
        tags,
        summary: 'Create an agent',
        description:
          'Owners and admins; only owners create owners. Without a password the agent cannot sign in until one is set. Setting a password needs a session: an API token may create agents only without one (403 `session_required`).',
        body: CreateAgentBody,
        response: { 201: { ...Agent, headers: createdHeaders }, ...problems(409, 422) },
      },
    },
    async (request, reply) => {
      const agent = await service.createAgent(db, principalOf(request), request.body);
      reply.code(201).header('location', `/v1/agents/${agent.id}`);
      return withEtag(reply, agent, service.agentVersion(agent));
    },
  );

  app.get(
    '/v1/agents/:id',
    {
      schema: {
        operationId: 'getAgent',
        tags,
        summary: 'Get an agent',
        params: IdParams,
        response: { 200: { ...Agent, headers: etagHeader }, ...problems(404) },
      },
    },
    async (request, reply) => {
      const agent = await service.getAgent(db, request.params.id);
      return withEtag(reply, agent, service.agentVersion(agent));
    },
  );

  app.patch(
    '/v1/agents/:id',
    {
      schema: {
        operationId: 'updateAgent',
        tags,
        summary: 'Update an agent',
        description:
          'Owners and admins (only owners change owners or grant the owner role). Disabling an agent ends their sessions and revokes their API tokens (enabling them again brings neither back); setting a password ends their sessions and needs a signed-in session, not an API token; an agent’s own password changes only with POST /v1/me/password (403 `current_password_required`). The last active owner cannot be demoted or disabled. `capacity` bounds the tickets automatic assignment limited to available agents hands them.',
        params: IdParams,
        headers: IfMatchHeaders,
        body: UpdateAgentBody,
        response: { 200: { ...Agent, headers: etagHeader }, ...problems(404, 409, 412) },
      },
    },
    async (request, reply) => {
      const agent = await service.updateAgent(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
        request.body,
      );
      return withEtag(reply, agent, service.agentVersion(agent));
    },
  );

  app.delete(
    '/v1/agents/:id',
    {
      schema: {
        operationId: 'deleteAgent',
        tags,
        summary: 'Delete an agent',
        description:
          'Owners and admins. Answers 409 while other records refer to the agent (disable them instead); automation rules that name the agent can be handed to `substitute_agent_id` instead. Memberships and API tokens go with the agent.',
        params: IdParams,
        headers: IfMatchHeaders,
        querystring: Type.Object(
          {
            substitute_agent_id: Type.Optional(
              Uuid('The agent who takes the deleted agent’s place in automation rules.'),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 204: { description: 'Deleted.', type: 'null' }, ...problems(404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      await service.deleteAgent(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.params.id,
        agentDependents,
        request.query.substitute_agent_id,
      );
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/me/presence',
    {
      schema: {
        operationId: 'getMyPresence',
        tags,
        summary: 'Your presence',
        response: { 200: ref(PresenceState) },
      },
    },
    async (request) => service.getPresence(db, principalOf(request).agentId),
  );

  app.put(
    '/v1/me/presence',
    {
      schema: {
        operationId: 'setMyPresence',
        tags,
        summary: 'Set your presence, or confirm it (heartbeat)',
        description:
          'online, away or offline. Online and away hold for the presence timeout (PRESENCE_TIMEOUT_SECONDS, 300 s unless configured) and then read offline: send the same status again before `expires_at` to keep it. A heartbeat does not move `changed_at`. Presence changes are not settings events: they appear in neither the audit log, the event feed nor the live stream.',
        body: SetPresenceBody,
        response: { 200: ref(PresenceState) },
      },
    },
    async (request) =>
      service.setOwnPresence(db, principalOf(request), request.body.status, config.presenceTimeoutSeconds),
  );

  app.put(
    '/v1/agents/:id/presence',
    {
      schema: {
        operationId: 'setAgentPresence',
        tags,
        summary: "Set an agent's presence to away or offline",
        description:
          'Owners for any agent, admins for any agent but owners (say, one who left without going offline and keeps being picked by automatic assignment until the timeout). Never online: only the agent can say they are there (PUT /v1/me/presence).',
        params: IdParams,
        body: SetOtherPresenceBody,
        response: { 200: ref(PresenceState), ...problems(404) },
      },
    },
    async (request) =>
      service.setAgentPresence(
        db,
        principalOf(request),
        request.params.id,
        request.body.status,
        config.presenceTimeoutSeconds,
      ),
  );
};
