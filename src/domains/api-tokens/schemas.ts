import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';

export const ScopeSchema = Type.Union([Type.Literal('read'), Type.Literal('write')], {
  description: 'read: GET requests only. write: everything the agent may do (implies read).',
});

export const ApiTokenSchema = Type.Object(
  {
    id: Uuid(),
    agent_id: Uuid('The agent the token acts as.'),
    name: Type.String(),
    token_prefix: Type.String({ description: 'The first characters of the secret, to recognise it.' }),
    scopes: Type.Array(ScopeSchema),
    status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
    expires_at: Type.Union([Timestamp(), Type.Null()]),
    revoked_at: Type.Union([Timestamp(), Type.Null()]),
    last_used_at: Type.Union([Timestamp(), Type.Null()], { description: 'Updated at most once a minute.' }),
    created_at: Timestamp(),
  },
  { $id: 'ApiToken', additionalProperties: false },
);
export type ApiToken = Static<typeof ApiTokenSchema>;

export const CreateApiTokenBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '\\S' }),
    scopes: Type.Array(ScopeSchema, {
      minItems: 1,
      maxItems: 2,
      uniqueItems: true,
      description:
        '["read"] for a read-only token, ["read", "write"] for read-write. "write" without "read" is refused (400 write_scope_without_read): a token that writes reads too.',
    }),
    expires_at: Type.Optional(
      Timestamp('When the token stops working; omit for no expiry. Must be in the future.'),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ name: 'nightly CSV export', scopes: ['read'], expires_at: '2027-06-30T00:00:00Z' }],
  },
);

export const CreatedApiTokenSchema = Type.Object(
  {
    token: ref(ApiTokenSchema),
    secret: Type.String({
      description: 'The bearer token. Shown only in this response; we keep only its hash.',
    }),
  },
  { $id: 'CreatedApiToken', additionalProperties: false },
);

export const ApiTokenListQuery = {
  agent_id: Type.Optional(Uuid("Admins only: list another agent's tokens.")),
};
