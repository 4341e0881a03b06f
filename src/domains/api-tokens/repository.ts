import { type Kysely, sql } from 'kysely';
import { AUTH_NEUTRAL_MARK, prepared } from '../../db/prepared.ts';
import type {
  AgentRole,
  AgentStatus,
  ApiTokenRow,
  Database,
  DepartmentRole,
  TokenScope,
} from '../../db/types.ts';
import { afterCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import { departmentsOf } from '../agents/repository.ts';
import type { ApiToken } from './schemas.ts';

type Executor = Kysely<Database>;

export function toApiToken(row: ApiTokenRow, now = new Date()): ApiToken {
  return {
    id: row.id,
    agent_id: row.agent_id,
    name: row.name,
    token_prefix: row.token_prefix,
    scopes: row.scopes,
    status: row.revoked_at ? 'revoked' : row.expires_at && row.expires_at <= now ? 'expired' : 'active',
    expires_at: row.expires_at?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
    last_used_at: row.last_used_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
  };
}

export function insertApiToken(
  db: Executor,
  values: {
    agent_id: string;
    name: string;
    token_hash: string;
    token_prefix: string;
    scopes: TokenScope[];
    expires_at: Date | null;
  },
) {
  return db
    .insertInto('api_tokens')
    .values({ ...values, scopes: sql<TokenScope[]>`${values.scopes}::text[]` })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export function findApiToken(db: Executor, id: string) {
  return db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The token and its agent (with the agent's departments, which most routes need next), looked
 * up by the hash of the secret the client sent; the same statement records the use, at most
 * once a minute per token, so authenticating an API token costs one round trip and reads do not
 * turn into a write each. Recording the use changes nothing the auth caches hold (AUTH_NEUTRAL).
 */
export async function findTokenForAuth(db: Executor, tokenHash: string) {
  const result = await prepared(sql<{
    id: string;
    agent_id: string;
    scopes: TokenScope[];
    expires_at: Date | null;
    revoked_at: Date | null;
    role: AgentRole;
    agent_status: AgentStatus;
    departments: [string, DepartmentRole][];
  }>`${sql.raw(AUTH_NEUTRAL_MARK)}
    with found as (
      select t.id, t.agent_id, t.scopes, t.expires_at, t.revoked_at, t.last_used_at, a.role, a.status as agent_status
      from api_tokens t join agents a on a.id = t.agent_id
      where t.token_hash = ${tokenHash}
    ), touched as (
      update api_tokens set last_used_at = now()
      where id = (select id from found where revoked_at is null)
        and (last_used_at is null or last_used_at < now() - interval '1 minute')
    )
    select id, agent_id, scopes, expires_at, revoked_at, role, agent_status,
      ${departmentsOf('found.agent_id')} as departments
    from found`).execute(db);
  return result.rows[0];
}

export async function listApiTokens(
  db: Executor,
  agentId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<ApiTokenRow> = {
    list: `api-tokens:${agentId}`,
    columns: [sql`created_at`, sql`id`],
    key: (row) => [row.created_at.toISOString(), row.id],
    direction: 'desc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('api_tokens')
    .selectAll()
    .where('agent_id', '=', agentId)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  const now = new Date();
  return toPage(keyset, rows, page.limit, (row) => toApiToken(row, now));
}

export function revokeApiToken(db: Executor, id: string) {
  return db
    .updateTable('api_tokens')
    .set({ revoked_at: new Date() })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .execute();
}

/** Revokes every token of the agent not yet revoked; answers those it revoked. */
export function revokeAllApiTokens(db: Executor, agentId: string) {
  return db
    .updateTable('api_tokens')
    .set({ revoked_at: new Date() })
    .where('agent_id', '=', agentId)
    .where('revoked_at', 'is', null)
    .returningAll()
    .execute();
}

/** The agent's tokens not revoked yet (expired ones included), oldest first. */
export function unrevokedApiTokens(db: Executor, agentId: string) {
  return db
    .selectFrom('api_tokens')
    .selectAll()
    .where('agent_id', '=', agentId)
    .where('revoked_at', 'is', null)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}
