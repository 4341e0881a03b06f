import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ref } from '../../contract.ts';
import type { AgentRow } from '../../db/types.ts';
import { principalOf, type SessionClaims } from '../../plugins/auth.ts';
import { IfMatchHeaders, withEtag } from '../../plugins/etag.ts';
import { problems, responseHeaders } from '../../plugins/openapi.ts';
import { AgentSchema, ChangePasswordBody, UpdateProfileBody } from '../agents/schemas.ts';
import * as agents from '../agents/service.ts';
import { getAgent } from '../agents/service.ts';
import { signIn } from './service.ts';

export const SessionTokenSchema = Type.Object(
  {
    access_token: Type.String({ description: 'Send as Authorization: Bearer <access_token>.' }),
    token_type: Type.Literal('Bearer'),
    expires_in: Type.Integer({ description: 'Seconds until the token expires.' }),
    agent: ref(AgentSchema),
  },
  { $id: 'SessionToken', additionalProperties: false },
);
export const authSchemas = [SessionTokenSchema];

const SignInBody = Type.Object(
  {
    email: Type.String({ minLength: 1, maxLength: 254 }),
    password: Type.String({ minLength: 1, maxLength: 200 }),
  },
  { additionalProperties: false, examples: [{ email: 'admin@example.com', password: 'a long passphrase' }] },
);

export const authRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, config } = app;

  async function session(agent: AgentRow) {
    const claims: SessionClaims = { sub: agent.id, pwd: agent.password_changed_at?.getTime() ?? 0 };
    return {
      access_token: app.jwt.sign(claims),
      token_type: 'Bearer' as const,
      expires_in: config.jwtTtlSeconds,
      agent: await getAgent(db, agent.id),
    };
  }

  app.post(
    '/v1/auth/token',
    {
      config: {
        public: true,
        rateLimit: { max: 30, timeWindow: 60_000 },
      },
      schema: {
        operationId: 'createSessionToken',
        tags: ['auth'],
        summary: 'Sign in: trade email and password for a session token',
        description:
          'Returns a short-lived JWT. Unknown emails, wrong passwords and disabled agents get the same 401. Repeated failures for one email answer 429 for a while; each client address may try 30 times a minute.',
        body: SignInBody,
        // Public, so the standard 401 is not added for it; wrong credentials still answer 401.
        response: { 200: ref(SessionTokenSchema), ...problems(401) },
      },
    },
    async (request) => session(await signIn(db, request.body, config.signIn)),
  );

  app.get(
    '/v1/me',
    {
      schema: {
        operationId: 'getMe',
        tags: ['auth'],
        summary: 'The signed-in agent',
        response: { 200: { ...ref(AgentSchema), headers: responseHeaders.etag('update') } },
      },
    },
    async (request, reply) => {
      const agent = await getAgent(db, principalOf(request).agentId);
      return withEtag(reply, agent, agents.agentVersion(agent));
    },
  );

  app.patch(
    '/v1/me',
    {
      schema: {
        operationId: 'updateMe',
        tags: ['auth'],
        summary: 'Update your own name or email',
        headers: IfMatchHeaders,
        body: UpdateProfileBody,
        response: {
          200: { ...ref(AgentSchema), headers: responseHeaders.etag('update') },
          ...problems(409, 412),
        },
      },
    },
    async (request, reply) => {
      const agent = await agents.updateProfile(
        db,
        principalOf(request),
        { ifMatch: request.headers['if-match'] },
        request.body,
      );
      return withEtag(reply, agent, agents.agentVersion(agent));
    },
  );

  app.post(
    '/v1/me/password',
    {
      schema: {
        operationId: 'changeMyPassword',
        tags: ['auth'],
        summary: 'Change your own password',
        description:
          'Needs the current password. Every session token issued before the change stops working; the response carries a new one. API tokens keep working (revoke them separately).',
        body: ChangePasswordBody,
        response: { 200: ref(SessionTokenSchema), ...problems(429) },
      },
    },
    async (request) =>
      session(await agents.changePassword(db, principalOf(request), request.body, config.signIn)),
  );
};
