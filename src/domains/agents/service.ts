import type { Transaction } from 'kysely';
import { canManageAgent, type Principal, requireAdmin, requireSession } from '../../access/policy.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import type {
  AgentPresence,
  AgentRole,
  AgentRow,
  AgentStatus,
  Database,
  DepartmentRole,
  MemberLevel,
} from '../../db/types.ts';
import { DomainError, forbidden, invalid, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { revokeAllApiTokens, toApiToken, unrevokedApiTokens } from '../api-tokens/repository.ts';
import { hashPassword, verifyPassword } from '../auth/passwords.ts';
import * as throttle from '../auth/repository.ts';
import { departmentsExist, findMember, upsertMember } from '../departments/repository.ts';
import { blockersOf, type Dependents } from '../dependents.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import * as repo from './repository.ts';
import type { Agent, PresenceState } from './schemas.ts';

/**
 * What an agent's ETag hashes: everything but their presence. Presence is live state (a heartbeat,
 * a timeout), not a setting, so it must not make an admin's pending If-Match edit stale.
 */
export function agentVersion(agent: Agent): Omit<Agent, 'presence' | 'presence_changed_at'> {
  const { presence: _presence, presence_changed_at: _changedAt, ...settings } = agent;
  return settings;
}

export async function getAgent(db: Db, id: string): Promise<Agent> {
  const agent = await repo.findAgent(db, id);
  if (!agent) throw notFound('agent');
  return agent;
}

export async function createAgent(
  db: Db,
  principal: Principal,
  input: {
    name: string;
    email: string;
    role?: AgentRole | undefined;
    password?: string | undefined;
    capacity?: number | null | undefined;
    departments?:
      | { department_id: string; role?: DepartmentRole | undefined; level?: number | undefined }[]
      | undefined;
  },
): Promise<Agent> {
  // A password is a way to sign in, and a session can mint tokens: an API token may create
  // agents, but not with a password (as it may not set one later).
  if (input.password !== undefined) requireSession(principal);
  const role = input.role ?? 'agent';
  if (!canManageAgent(principal, 'agent', role)) {
    throw forbidden(
      role === 'owner' ? 'Only owners may create owners.' : 'Only owners and admins may create agents.',
      role === 'owner' ? 'owner_required' : 'admin_required',
    );
  }
  const memberships = input.departments ?? [];
  const seen = new Set<string>();
  const duplicate = memberships.findIndex((m) => seen.size === seen.add(m.department_id).size);
  if (duplicate >= 0) {
    const error = new DomainError(
      'invalid',
      'duplicate_department',
      'A department is listed more than once.',
    );
    error.errors = [
      { field: `body/departments/${duplicate}/department_id`, message: 'appears more than once' },
    ];
    throw error;
  }
  const existing = await departmentsExist(
    db,
    memberships.map((m) => m.department_id),
  );
  const missing = memberships.flatMap((m, i) =>
    existing.has(m.department_id)
      ? []
      : [{ field: `body/departments/${i}/department_id`, message: 'no such department' }],
  );
  if (missing.length > 0) {
    const error = new DomainError('unprocessable', 'department_not_found', 'Some departments do not exist.');
    error.errors = missing;
    throw error;
  }
  const passwordHash = input.password ? await hashPassword(input.password) : null;
  const id = await transact(db, async (trx) => {
    const row = await repo.insertAgent(trx, {
      name: input.name.trim(),
      email: input.email.trim(),
      role,
      password_hash: passwordHash,
      ...(input.capacity !== undefined && { capacity: input.capacity }),
    });
    for (const m of memberships) {
      await upsertMember(trx, m.department_id, row.id, m.role ?? 'solver', (m.level ?? 1) as MemberLevel);
    }
    await recordSettingsChange(
      trx,
      principal,
      'agent.created',
      { subjectId: row.id },
      {
        agent: await repo.findAgent(trx, row.id),
      },
    );
    for (const m of memberships) {
      await recordSettingsChange(
        trx,
        principal,
        'member.added',
        { departmentId: m.department_id, subjectId: row.id },
        { department_id: m.department_id, member: await findMember(trx, m.department_id, row.id) },
      );
    }
    return row.id;
  });
  return getAgent(db, id);
}

async function assertOwnersRemain(
  trx: Transaction<Database>,
  target: AgentRow,
  next: { role: AgentRole; status: AgentStatus } | null,
) {
  const stillOwner = next !== null && next.role === 'owner' && next.status === 'active';
  if (target.role !== 'owner' || target.status !== 'active' || stillOwner) return;
  // Counted under the lock, so a concurrent change that removes another owner is seen committed.
  await repo.lockOwnerChanges(trx);
  if ((await repo.countActiveOwners(trx)) <= 1) {
    throw new DomainError('conflict', 'last_owner', 'The help desk needs at least one active owner.');
  }
}

export async function updateAgent(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  rawId: string,
  patch: {
    name?: string | undefined;
    email?: string | undefined;
    role?: AgentRole | undefined;
    status?: AgentStatus | undefined;
    password?: string | undefined;
    capacity?: number | null | undefined;
  },
): Promise<Agent> {
  // Ids are compared with the caller's below: a UUID in upper case names the same agent.
  const id = rawId.toLowerCase();
  // Setting a password mints a way to sign in, which API tokens must never be able to do.
  if (patch.password !== undefined) requireSession(principal);
  // One's own password changes with the current one (POST /v1/me/password, throttled), so a
  // stolen admin session cannot set a new one and keep the account.
  if (patch.password !== undefined && id === principal.agentId) {
    throw forbidden(
      'Change your own password with POST /v1/me/password, which asks for the current one.',
      'current_password_required',
    );
  }
  const passwordHash = patch.password ? await hashPassword(patch.password) : undefined;
  await transact(db, async (trx) => {
    const row = await repo.lockAgentRow(trx, id);
    if (!row) throw notFound('agent');
    if (!canManageAgent(principal, row.role, patch.role)) {
      throw forbidden(
        row.role === 'owner' || patch.role === 'owner'
          ? 'Only owners may change owners or hand out the owner role.'
          : 'Only owners and admins may change agents; use /v1/me for your own profile.',
        row.role === 'owner' || patch.role === 'owner' ? 'owner_required' : 'admin_required',
      );
    }
    if (id === principal.agentId && patch.status === 'disabled') {
      throw new DomainError('conflict', 'cannot_disable_self', 'You cannot disable yourself.');
    }
    assertIfMatch(
      preconditions.ifMatch,
      agentVersion(repo.toAgent(row, (await repo.departmentsOfAgents(trx, [id])).get(id) ?? [])),
    );
    await assertOwnersRemain(trx, row, { role: patch.role ?? row.role, status: patch.status ?? row.status });
    const before = (await repo.findAgent(trx, id))!;
    await repo.updateAgentRow(trx, id, {
      ...(patch.name !== undefined && { name: patch.name.trim() }),
      ...(patch.email !== undefined && { email: patch.email.trim() }),
      ...(patch.role !== undefined && { role: patch.role }),
      ...(patch.status !== undefined && { status: patch.status }),
      ...(passwordHash !== undefined && { password_hash: passwordHash }),
      ...(patch.capacity !== undefined && { capacity: patch.capacity }),
    });
    if (patch.status === 'disabled' && row.status !== 'disabled') {
      // Disabling ends the agent's sessions and revokes their API tokens for good, so enabling
      // them again later does not bring old credentials back to life.
      await repo.endSessions(trx, id);
      // Nor do they stay online until the timeout, as if they could still answer.
      await repo.confirmPresence(trx, id, 'offline', { at: new Date(), timeoutSeconds: 0 });
      for (const revoked of await revokeAllApiTokens(trx, id)) {
        await recordSettingsChange(
          trx,
          principal,
          'token.deleted',
          { subjectId: revoked.id },
          { token: toApiToken(revoked), reason: 'agent_disabled' },
        );
      }
    }
    await recordAgentUpdate(trx, principal, before, passwordHash !== undefined);
  });
  return getAgent(db, id);
}

/**
 * Deletes an agent. Whatever still names them blocks the deletion with a 409 listing it, except
 * what a `substitute` agent can take over (automation rules), which is handed to them.
 */
export async function deleteAgent(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  rawId: string,
  dependents: readonly Dependents[],
  rawSubstitute?: string,
): Promise<void> {
  requireAdmin(principal);
  // Compared with the caller's id and with each other: a UUID in upper case is the same agent.
  const id = rawId.toLowerCase();
  const substitute = rawSubstitute?.toLowerCase();
  if (id === principal.agentId) {
    throw new DomainError('conflict', 'cannot_delete_self', 'You cannot delete yourself.');
  }
  if (substitute === id) {
    throw invalid('invalid_substitute', 'An agent cannot stand in for themselves.', [
      { field: 'querystring/substitute_agent_id', message: 'must differ from the agent being deleted' },
    ]);
  }
  await db.transaction().execute(async (trx) => {
    const row = await repo.lockAgentRow(trx, id);
    if (!row) throw notFound('agent');
    if (!canManageAgent(principal, row.role))
      throw forbidden('Only owners may delete owners.', 'owner_required');
    assertIfMatch(
      preconditions.ifMatch,
      agentVersion(repo.toAgent(row, (await repo.departmentsOfAgents(trx, [id])).get(id) ?? [])),
    );
    await assertOwnersRemain(trx, row, null);
    if (substitute !== undefined) {
      if (!(await repo.findAgentRow(trx, substitute))) {
        const error = new DomainError(
          'unprocessable',
          'substitute_not_found',
          'The substitute agent does not exist.',
        );
        error.errors = [{ field: 'querystring/substitute_agent_id', message: 'no such agent' }];
        throw error;
      }
      for (const d of dependents) await d.moveTo?.(trx, id, substitute, principal);
    }
    const blockers = await blockersOf(dependents, trx, id);
    if (blockers.length > 0) {
      const error = new DomainError(
        'conflict',
        'agent_in_use',
        'Other records still refer to this agent; disable the agent instead, or reassign them first.',
      );
      error.blockers = blockers;
      throw error;
    }
    const agent = await repo.findAgent(trx, id);
    // Memberships and tokens go with the agent (foreign keys, on delete cascade): each is a
    // change of its own in the audit log. Tokens revoked earlier had their event then.
    for (const m of agent?.departments ?? []) {
      await recordSettingsChange(
        trx,
        principal,
        'member.removed',
        { departmentId: m.department_id, subjectId: id },
        { department_id: m.department_id, agent_id: id, reason: 'agent_deleted' },
      );
    }
    for (const token of await unrevokedApiTokens(trx, id)) {
      await recordSettingsChange(
        trx,
        principal,
        'token.deleted',
        { subjectId: token.id },
        { token: toApiToken(token), reason: 'agent_deleted' },
      );
    }
    await repo.deleteAgentRow(trx, id);
    await recordSettingsChange(trx, principal, 'agent.deleted', { subjectId: id }, { agent });
  });
}

export async function updateProfile(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  patch: { name?: string | undefined; email?: string | undefined },
): Promise<Agent> {
  await db.transaction().execute(async (trx) => {
    const row = await repo.lockAgentRow(trx, principal.agentId);
    if (!row) throw notFound('agent');
    assertIfMatch(
      preconditions.ifMatch,
      agentVersion(repo.toAgent(row, (await repo.departmentsOfAgents(trx, [row.id])).get(row.id) ?? [])),
    );
    const before = (await repo.findAgent(trx, row.id))!;
    await repo.updateAgentRow(trx, row.id, {
      ...(patch.name !== undefined && { name: patch.name.trim() }),
      ...(patch.email !== undefined && { email: patch.email.trim() }),
    });
    await recordAgentUpdate(trx, principal, before, false);
  });
  return getAgent(db, principal.agentId);
}

/** Changes the caller's password; every session begun before it ends. Returns the updated row. */
export async function changePassword(
  db: Db,
  principal: Principal,
  input: { current_password: string; new_password: string },
  limits: { maxFailures: number; lockSeconds: number },
): Promise<AgentRow> {
  requireSession(principal);
  const row = await repo.findAgentRow(db, principal.agentId);
  if (!row) throw notFound('agent');
  // Guessing the current password with a stolen session is throttled like sign-in.
  const key = `password-change:${row.id}`;
  // Counted before the password is checked: guesses sent together are limited like guesses in turn.
  const blocked = await throttle.takeAttempt(db, key, limits.maxFailures, limits.lockSeconds);
  if (blocked > 0) {
    const error = new DomainError(
      'throttled',
      'too_many_attempts',
      'Too many wrong passwords; try again later.',
    );
    error.retryAfterSeconds = blocked;
    throw error;
  }
  if (!(await verifyPassword(input.current_password, row.password_hash))) {
    const error = new DomainError('forbidden', 'wrong_password', 'The current password is wrong.');
    error.errors = [{ field: 'body/current_password', message: 'is wrong' }];
    throw error;
  }
  await throttle.clearFailures(db, key);
  const passwordHash = await hashPassword(input.new_password);
  return db.transaction().execute(async (trx) => {
    const before = (await repo.findAgent(trx, row.id))!;
    const updated = await repo.updateAgentRow(trx, row.id, { password_hash: passwordHash });
    await recordAgentUpdate(trx, principal, before, true);
    return updated;
  });
}

/** agent.updated with what changed; a new password shows as changed, never as a value. */
async function recordAgentUpdate(
  trx: Transaction<Database>,
  principal: Principal,
  before: Agent,
  passwordChanged: boolean,
) {
  const agent = (await repo.findAgent(trx, before.id))!;
  const changes: Record<string, { from: unknown; to: unknown }> = changesBetween(before, agent);
  // Presence is no setting: a timeout running out between the two reads is not a change made.
  delete changes.presence;
  delete changes.presence_changed_at;
  if (passwordChanged) changes.password = { from: null, to: null };
  if (Object.keys(changes).length === 0) return;
  await recordSettingsChange(trx, principal, 'agent.updated', { subjectId: agent.id }, { agent, changes });
}

// Presence. Not a settings event: agents confirm it every few minutes, which would bury the audit
// log, and a timeout happens with no write at all (see docs/architecture.md, Availability).

export async function getPresence(db: Db, agentId: string): Promise<PresenceState> {
  const row = await repo.findAgentRow(db, agentId);
  if (!row) throw notFound('agent');
  return repo.effectivePresence(row);
}

/** The caller states their own presence; stating the same one again is a heartbeat. */
export async function setOwnPresence(
  db: Db,
  principal: Principal,
  status: AgentPresence,
  timeoutSeconds: number,
): Promise<PresenceState> {
  const row = await repo.confirmPresence(db, principal.agentId, status, {
    at: new Date(),
    timeoutSeconds,
  });
  if (!row) throw notFound('agent');
  return repo.effectivePresence(row);
}

/**
 * An owner or admin (admins: not on owners) sets another agent away or offline (say, someone who left without signing out and
 * keeps being picked before the timeout). Never online: being online is what makes automatic
 * assignment hand an agent tickets, so only the agent can say they are there.
 */
export async function setAgentPresence(
  db: Db,
  principal: Principal,
  rawId: string,
  status: Exclude<AgentPresence, 'online'>,
  timeoutSeconds: number,
): Promise<PresenceState> {
  const id = rawId.toLowerCase();
  if (id !== principal.agentId) requireAdmin(principal);
  return db.transaction().execute(async (trx) => {
    const target = await repo.lockAgentRow(trx, id);
    if (!target) throw notFound('agent');
    // As with every other change to an agent: only owners act on owners.
    if (id !== principal.agentId && !canManageAgent(principal, target.role))
      throw forbidden("Only owners may change an owner's presence.", 'owner_required');
    const row = await repo.confirmPresence(trx, id, status, { at: new Date(), timeoutSeconds });
    if (!row) throw notFound('agent');
    return repo.effectivePresence(row);
  });
}
