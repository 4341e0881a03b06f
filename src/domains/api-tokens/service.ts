import { randomBytes } from 'node:crypto';
import { isAdmin, type Principal, requireSession } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import type { TokenScope } from '../../db/types.ts';
import { invalid, notFound } from '../../errors.ts';
import { API_TOKEN_PREFIX, hashApiToken } from '../../plugins/auth.ts';
import { recordSettingsChange } from '../events/settings.ts';
import * as repo from './repository.ts';

/** Creates a token acting as the caller. The secret is returned once; only its hash is kept. */
export async function createApiToken(
  db: Db,
  principal: Principal,
  input: { name: string; scopes: TokenScope[]; expires_at?: string | undefined },
) {
  requireSession(principal);
  const expiresAt = input.expires_at === undefined ? null : new Date(input.expires_at);
  if (expiresAt && expiresAt.getTime() <= Date.now()) {
    throw invalid('expiry_in_past', 'expires_at must be in the future.', [
      { field: 'body/expires_at', message: 'must be in the future' },
    ]);
  }
  // A token asked for as write-only would read anyway (every write answers with what it wrote),
  // so it is refused rather than quietly given read: the caller says ["read", "write"].
  if (input.scopes.includes('write') && !input.scopes.includes('read')) {
    throw invalid('write_scope_without_read', 'A token that writes also reads: ask for ["read", "write"].', [
      { field: 'body/scopes', message: 'write needs read' },
    ]);
  }
  const secret = `${API_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  // Stored in one order, whatever order they came in (migrations/0047 allows only these two).
  const scopes: TokenScope[] = input.scopes.includes('write') ? ['read', 'write'] : ['read'];
  return db.transaction().execute(async (trx) => {
    const row = await repo.insertApiToken(trx, {
      agent_id: principal.agentId,
      name: input.name.trim(),
      token_hash: hashApiToken(secret),
      token_prefix: secret.slice(0, API_TOKEN_PREFIX.length + 8),
      scopes,
      expires_at: expiresAt,
    });
    const token = repo.toApiToken(row);
    await recordSettingsChange(trx, principal, 'token.created', { subjectId: row.id }, { token });
    return { token, secret };
  });
}

/** Agents see their own tokens; owners and admins may look at anyone's. Others' answer 404. */
async function visibleToken(db: Db, principal: Principal, id: string) {
  const row = await repo.findApiToken(db, id);
  if (!row || (row.agent_id !== principal.agentId && !isAdmin(principal))) throw notFound('api_token');
  return row;
}

export async function getApiToken(db: Db, principal: Principal, id: string) {
  return repo.toApiToken(await visibleToken(db, principal, id));
}

export async function listApiTokens(
  db: Db,
  principal: Principal,
  agentId: string | undefined,
  page: { limit: number; cursor?: string | undefined },
) {
  const owner = agentId ?? principal.agentId;
  if (owner !== principal.agentId && !isAdmin(principal)) {
    throw invalid('not_your_tokens', "Only owners and admins may list another agent's tokens.", [
      { field: 'querystring/agent_id', message: 'must be your own id' },
    ]);
  }
  return repo.listApiTokens(db, owner, page);
}

/** Revoking is idempotent: a revoked token stays listed, marked revoked. */
export async function revokeApiToken(db: Db, principal: Principal, id: string) {
  const before = await visibleToken(db, principal, id);
  await db.transaction().execute(async (trx) => {
    await repo.revokeApiToken(trx, id);
    // Revoking twice is no second change (and an expired token can still be revoked).
    if (before.revoked_at !== null) return;
    const token = repo.toApiToken((await repo.findApiToken(trx, id))!);
    await recordSettingsChange(trx, principal, 'token.deleted', { subjectId: id }, { token });
  });
}
