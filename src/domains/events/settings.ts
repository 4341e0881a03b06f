import type { Transaction } from 'kysely';
import type { Principal } from '../../access/policy.ts';
import type { Database } from '../../db/types.ts';
import { findMember, type MemberStanding, memberRoles } from '../departments/repository.ts';
import type { SettingsEventType } from './catalogue.ts';
import { recordSettingsEvent, settingsActor } from './repository.ts';

/**
 * Settings events as the services emit them, inside the transaction of the change: the payload
 * is the API object after the change (or as it was, for deletions), never a secret.
 */
export async function recordSettingsChange(
  trx: Transaction<Database>,
  principal: Principal | null,
  type: SettingsEventType,
  about: { departmentId?: string | null; subjectId: string },
  payload: Record<string, unknown>,
): Promise<void> {
  await recordSettingsEvent(trx, {
    type,
    actor: principal ? settingsActor(principal) : { type: 'system' },
    departmentId: about.departmentId ?? null,
    subjectId: about.subjectId,
    payload,
  });
}

/** Timestamps every write moves (and counters that follow other rows) are not changes. */
const NOT_CHANGES = new Set(['updated_at', 'member_count', 'last_sign_in_at', 'last_used_at', 'version']);

/** {field: {from, to}} for the fields whose values differ (compared as JSON). */
export function changesBetween(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
): Record<string, { from: unknown; to: unknown }> {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    if (NOT_CHANGES.has(key)) continue;
    const from = before[key] ?? null;
    const to = after[key] ?? null;
    if (JSON.stringify(from) !== JSON.stringify(to)) changes[key] = { from, to };
  }
  return changes;
}

/**
 * member.added / updated / removed for what changed in a department's membership since
 * `before` (its agents and roles, read earlier in the same transaction).
 */
export async function recordMemberChanges(
  trx: Transaction<Database>,
  principal: Principal | null,
  departmentId: string,
  before: ReadonlyMap<string, MemberStanding>,
): Promise<void> {
  const after = await memberRoles(trx, departmentId);
  for (const [agentId, now] of after) {
    const previous = before.get(agentId);
    if (previous?.role === now.role && previous.level === now.level) continue;
    const member = await findMember(trx, departmentId, agentId);
    if (!member) continue;
    const about = { departmentId, subjectId: agentId };
    if (previous === undefined) {
      await recordSettingsChange(trx, principal, 'member.added', about, {
        department_id: departmentId,
        member,
      });
    } else {
      await recordSettingsChange(trx, principal, 'member.updated', about, {
        department_id: departmentId,
        member,
        changes: {
          ...(previous.role !== now.role && { role: { from: previous.role, to: now.role } }),
          ...(previous.level !== now.level && { level: { from: previous.level, to: now.level } }),
        },
      });
    }
  }
  for (const agentId of before.keys()) {
    if (after.has(agentId)) continue;
    await recordSettingsChange(
      trx,
      principal,
      'member.removed',
      { departmentId, subjectId: agentId },
      { department_id: departmentId, agent_id: agentId },
    );
  }
}
