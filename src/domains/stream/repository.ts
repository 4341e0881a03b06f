import type { Kysely } from 'kysely';
import type { AgentRole, AgentStatus, Database, DepartmentRole } from '../../db/types.ts';

export interface SubscriberStanding {
  agents: Map<
    string,
    {
      status: AgentStatus;
      role: AgentRole;
      /** password_changed_at in ms (0 when never set): sessions issued under another one ended. */
      passwordChangedAt: number;
      departments: Map<string, DepartmentRole>;
    }
  >;
  /** Tokens still usable now (not revoked, not expired). */
  usableTokens: Set<string>;
}

/**
 * The current role, status, password change and memberships of the agents behind open streams, and which of
 * their API tokens still work: read again when a member or agent event may have changed them.
 * Two small queries whatever the number of subscribers.
 */
export async function readSubscriberStanding(
  db: Kysely<Database>,
  agentIds: readonly string[],
  tokenIds: readonly string[],
): Promise<SubscriberStanding> {
  const agents: SubscriberStanding['agents'] = new Map();
  const usableTokens = new Set<string>();
  if (agentIds.length > 0) {
    const rows = await db
      .selectFrom('agents')
      .select(['id', 'status', 'role', 'password_changed_at'])
      .where('id', 'in', agentIds)
      .execute();
    for (const r of rows) {
      agents.set(r.id, {
        status: r.status,
        role: r.role,
        passwordChangedAt: r.password_changed_at?.getTime() ?? 0,
        departments: new Map(),
      });
    }
    const members = await db
      .selectFrom('department_members')
      .select(['agent_id', 'department_id', 'role'])
      .where('agent_id', 'in', agentIds)
      .execute();
    for (const m of members) agents.get(m.agent_id)?.departments.set(m.department_id, m.role);
  }
  if (tokenIds.length > 0) {
    const rows = await db
      .selectFrom('api_tokens')
      .select('id')
      .where('id', 'in', tokenIds)
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', new Date())]))
      .execute();
    for (const r of rows) usableTokens.add(r.id);
  }
  return { agents, usableTokens };
}

/**
 * The feed's horizon (events/repository.ts). While it has not moved no new row can have appeared:
 * a poll that finds it where the last full read left it skips that read (one trivial query
 * instead of the feed's union). That matters most on PGlite, whose one connection every request
 * shares.
 */
export { feedHorizon } from '../events/repository.ts';
