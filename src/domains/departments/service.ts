import type { Transaction } from 'kysely';
import { canManageDepartment, type Principal, requireAdmin } from '../../access/policy.ts';
import { HORIZON_DAYS } from '../../business-time/index.ts';
import type { Db } from '../../db/database.ts';
import { transact } from '../../db/transact.ts';
import type { ChannelAvailability, Database, DepartmentRole, MemberLevel } from '../../db/types.ts';
import { DomainError, forbidden, invalid, notFound } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { blockersOf, type Dependents } from '../dependents.ts';
import { changesBetween, recordMemberChanges, recordSettingsChange } from '../events/settings.ts';
import { availabilityAt, departmentCalendar } from '../schedules/calendar.ts';
import { replanForCalendars } from '../sla-policies/repository.ts';
import { recordDepartmentWebhooksGone } from '../webhooks/service.ts';
import * as repo from './repository.ts';
import type { Department, DepartmentAvailability } from './schemas.ts';

const DEFAULT_ROLE: DepartmentRole = 'solver';

async function requireManager(db: Db, principal: Principal, departmentId: string) {
  const role = await repo.roleInDepartment(db, principal.agentId, departmentId);
  if (!canManageDepartment(principal, role)) {
    throw forbidden(
      "Only owners, admins and the department's managers may do this.",
      'department_manager_required',
    );
  }
}

export async function getDepartment(db: Db, id: string): Promise<Department> {
  const department = await repo.findDepartment(db, id);
  if (!department) throw notFound('department');
  return department;
}

type ChannelModes = {
  chat?: ChannelAvailability | undefined;
  phone?: ChannelAvailability | undefined;
  messaging?: ChannelAvailability | undefined;
};

/** The working-hours columns a create or patch sets. */
function workingHoursColumns(input: {
  schedule_id?: string | null | undefined;
  availability?: ChannelModes | undefined;
}) {
  const a = input.availability ?? {};
  return {
    ...(input.schedule_id !== undefined && { schedule_id: input.schedule_id }),
    ...(a.chat !== undefined && { chat_availability: a.chat }),
    ...(a.phone !== undefined && { phone_availability: a.phone }),
    ...(a.messaging !== undefined && { messaging_availability: a.messaging }),
  };
}

/**
 * Whether the department is open at `at` (its schedule, else the default, else always) and which
 * of its channels are available then.
 */
/**
 * The latest instant availability answers for: its next change may lie up to the business-time
 * horizon (plus a day of slack) later, and an RFC 3339 timestamp ends with year 9999 (a later
 * one would not serialise as date-time).
 */
export const LATEST_AVAILABILITY_AT =
  Date.parse('9999-12-31T23:59:59.999Z') - (HORIZON_DAYS + 1) * 86_400_000;

export async function departmentAvailability(db: Db, id: string, at: Date): Promise<DepartmentAvailability> {
  if (at.getTime() > LATEST_AVAILABILITY_AT) {
    throw invalid(
      'at_out_of_range',
      `at must be at most ${new Date(LATEST_AVAILABILITY_AT).toISOString()}: the next change could not be written as a date-time.`,
      [{ field: 'querystring/at', message: 'is too far in the future' }],
    );
  }
  const department = await getDepartment(db, id);
  const { scheduleId, calendar } = await departmentCalendar(db, department.id);
  return {
    at: at.toISOString(),
    // As stored: the path may spell the UUID in upper case.
    department_id: department.id,
    schedule_id: scheduleId,
    time_zone: scheduleId === null ? null : calendar.timeZone,
    ...availabilityAt(calendar, department.availability, at.getTime()),
  };
}

export async function createDepartment(
  db: Db,
  principal: Principal,
  input: {
    name: string;
    description?: string | undefined;
    to_solve_enabled?: boolean | undefined;
    selectable_on_contact_form?: boolean | undefined;
    schedule_id?: string | null | undefined;
    availability?: ChannelModes | undefined;
  },
): Promise<Department> {
  requireAdmin(principal);
  return transact(db, async (trx) => {
    const { id } = await repo.insertDepartment(trx, {
      name: input.name.trim(),
      ...(input.description !== undefined && { description: input.description }),
      ...(input.to_solve_enabled !== undefined && { to_solve_enabled: input.to_solve_enabled }),
      ...(input.selectable_on_contact_form !== undefined && {
        selectable_on_contact_form: input.selectable_on_contact_form,
      }),
      ...workingHoursColumns(input),
    });
    const department = (await repo.findDepartment(trx, id))!;
    await recordSettingsChange(
      trx,
      principal,
      'department.created',
      { departmentId: id, subjectId: id },
      { department },
    );
    return department;
  });
}

type Trx = Transaction<Database>;

/** Whether a department moving from one schedule_id to another follows another calendar (null: the default). */
async function followsAnother(trx: Trx, from: string | null, to: string | null): Promise<boolean> {
  if (from !== null && to !== null) return from !== to;
  const fallback = await trx
    .selectFrom('schedules')
    .select('id')
    .where('is_default', '=', true)
    .executeTakeFirst();
  return (from ?? fallback?.id ?? null) !== (to ?? fallback?.id ?? null);
}

export async function updateDepartment(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: {
    name?: string | undefined;
    description?: string | undefined;
    to_solve_enabled?: boolean | undefined;
    selectable_on_contact_form?: boolean | undefined;
    schedule_id?: string | null | undefined;
    availability?: ChannelModes | undefined;
  },
): Promise<Department> {
  await getDepartment(db, id);
  await requireManager(db, principal, id);
  return transact(db, async (trx) => {
    const current = await repo.lockDepartment(trx, id);
    if (!current) throw notFound('department');
    assertIfMatch(preconditions.ifMatch, current);
    const before = (await repo.findDepartment(trx, id))!;
    await repo.updateDepartment(trx, id, {
      ...(patch.name !== undefined && { name: patch.name.trim() }),
      ...(patch.description !== undefined && { description: patch.description }),
      ...(patch.to_solve_enabled !== undefined && { to_solve_enabled: patch.to_solve_enabled }),
      ...(patch.selectable_on_contact_form !== undefined && {
        selectable_on_contact_form: patch.selectable_on_contact_form,
      }),
      ...workingHoursColumns(patch),
    });
    const department = (await repo.findDepartment(trx, id))!;
    const changes = changesBetween(before, department);
    if ('schedule_id' in changes && (await followsAnother(trx, before.schedule_id, department.schedule_id))) {
      await replanForCalendars(trx);
    }
    if (Object.keys(changes).length > 0) {
      await recordSettingsChange(
        trx,
        principal,
        'department.updated',
        { departmentId: id, subjectId: id },
        { department, changes },
      );
    }
    return department;
  });
}

/**
 * Deletes a department. Whatever still depends on it (tickets, rules, ...) blocks the deletion
 * with a 409 listing it, unless `moveTo` names the department that takes it all over.
 */
export async function deleteDepartment(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  options: { moveTo?: string | undefined; dependents: readonly Dependents[] },
): Promise<void> {
  requireAdmin(principal);
  if (options.moveTo === id) {
    throw invalid('invalid_substitute', 'A department cannot take over its own tickets and rules.', [
      {
        field: 'querystring/move_to_department_id',
        message: 'must differ from the department being deleted',
      },
    ]);
  }
  await db.transaction().execute(async (trx) => {
    // The writers' lock order (docs/architecture.md, "Deletion and dependents"): a ticket, then
    // the round-robin cursor of an assignment, then the key share of the department (foreign
    // keys: the ticket moved there, the cursor written). With the row taken first (FOR UPDATE),
    // each waited for the other.
    if (options.moveTo !== undefined) {
      for (const dependents of options.dependents) await dependents.hold?.(trx, id);
    }
    await repo.lockRoundRobinCursor(trx, id);
    const current = await repo.lockDepartment(trx, id);
    if (!current) throw notFound('department');
    assertIfMatch(preconditions.ifMatch, current);
    if (options.moveTo !== undefined) {
      // A key share keeps the substitute from going meanwhile; FOR UPDATE also held up every
      // writer moving a ticket into it, while that writer may hold a ticket moved here.
      if (!(await repo.holdDepartment(trx, options.moveTo))) {
        const error = new DomainError(
          'unprocessable',
          'substitute_not_found',
          'The substitute department does not exist.',
        );
        error.errors = [{ field: 'querystring/move_to_department_id', message: 'no such department' }];
        throw error;
      }
      for (const dependents of options.dependents)
        await dependents.moveTo?.(trx, id, options.moveTo, principal);
      // Its tickets now count business time in the substitute's calendar.
      await replanForCalendars(trx);
    } else {
      const blockers = await blockersOf(options.dependents, trx, id);
      if (blockers.length > 0) {
        const error = new DomainError(
          'conflict',
          'department_in_use',
          `The department still owns ${blockers.map((b) => `${b.count} ${b.kind}`).join(', ')}. Move them first, or pass move_to_department_id.`,
        );
        error.blockers = blockers;
        throw error;
      }
    }
    const department = (await repo.findDepartment(trx, id))!;
    // Memberships and webhooks go with the department (on delete cascade): each is a change of
    // its own in the audit log. The department row is locked, so neither list can grow meanwhile.
    for (const agentId of (await repo.memberRoles(trx, id)).keys()) {
      await recordSettingsChange(
        trx,
        principal,
        'member.removed',
        { departmentId: id, subjectId: agentId },
        { department_id: id, agent_id: agentId, reason: 'department_deleted' },
      );
    }
    await recordDepartmentWebhooksGone(trx, principal, id);
    await repo.deleteDepartmentRow(trx, id);
    await recordSettingsChange(
      trx,
      principal,
      'department.deleted',
      { departmentId: id, subjectId: id },
      { department },
    );
  });
}

// Members

export async function listMembers(
  db: Db,
  departmentId: string,
  filter: { role?: DepartmentRole | undefined },
  page: { limit: number; cursor?: string | undefined },
) {
  await getDepartment(db, departmentId);
  return repo.listMembers(db, departmentId, filter, page);
}

export async function getMember(db: Db, departmentId: string, agentId: string) {
  await getDepartment(db, departmentId);
  const member = await repo.findMember(db, departmentId, agentId);
  if (!member)
    throw new DomainError('not_found', 'member_not_found', 'The agent is not a member of this department.');
  return member;
}

async function requireAgents(db: Db, agentIds: string[], field: (index: number) => string) {
  const unique = [...new Set(agentIds)];
  const found = new Set<string>();
  if (unique.length > 0) {
    const rows = await db.selectFrom('agents').select('id').where('id', 'in', unique).execute();
    for (const r of rows) found.add(r.id);
  }
  const errors = agentIds.flatMap((agentId, i) =>
    found.has(agentId) ? [] : [{ field: field(i), message: 'no such agent' }],
  );
  if (errors.length > 0) {
    const error = new DomainError('unprocessable', 'agent_not_found', 'Some agents do not exist.');
    error.errors = errors;
    throw error;
  }
}

export async function setMember(
  db: Db,
  principal: Principal,
  departmentId: string,
  agentId: string,
  role: DepartmentRole | undefined,
  level?: number | undefined,
) {
  await getDepartment(db, departmentId);
  await requireManager(db, principal, departmentId);
  await requireAgents(db, [agentId], () => 'params/agent_id');
  const created = await transact(db, async (trx) => {
    await repo.lockDepartment(trx, departmentId);
    const before = await repo.memberRoles(trx, departmentId);
    const existing = await repo.roleInDepartment(trx, agentId, departmentId);
    const created = await repo.upsertMember(
      trx,
      departmentId,
      agentId,
      role ?? existing ?? DEFAULT_ROLE,
      level as MemberLevel | undefined,
    );
    await recordMemberChanges(trx, principal, departmentId, before);
    return created;
  });
  return { created, member: (await repo.findMember(db, departmentId, agentId))! };
}

export async function removeMember(db: Db, principal: Principal, departmentId: string, agentId: string) {
  await getDepartment(db, departmentId);
  await requireManager(db, principal, departmentId);
  const removed = await db.transaction().execute(async (trx) => {
    const before = await repo.memberRoles(trx, departmentId);
    const done = await repo.removeMember(trx, departmentId, agentId);
    await recordMemberChanges(trx, principal, departmentId, before);
    return done;
  });
  if (!removed)
    throw new DomainError('not_found', 'member_not_found', 'The agent is not a member of this department.');
}

export async function replaceMembers(
  db: Db,
  principal: Principal,
  departmentId: string,
  members: { agent_id: string; role?: DepartmentRole | undefined; level?: number | undefined }[],
) {
  await getDepartment(db, departmentId);
  await requireManager(db, principal, departmentId);
  const seen = new Set<string>();
  const duplicates = members.flatMap((m, i) => {
    const dup = seen.has(m.agent_id);
    seen.add(m.agent_id);
    return dup ? [{ field: `body/members/${i}/agent_id`, message: 'appears more than once' }] : [];
  });
  if (duplicates.length > 0)
    throw invalid('duplicate_member', 'An agent is listed more than once.', duplicates);
  await requireAgents(
    db,
    members.map((m) => m.agent_id),
    (i) => `body/members/${i}/agent_id`,
  );
  await db.transaction().execute(async (trx) => {
    await repo.lockDepartment(trx, departmentId);
    const before = await repo.memberRoles(trx, departmentId);
    await repo.removeMembersExcept(
      trx,
      departmentId,
      members.map((m) => m.agent_id),
    );
    for (const m of members) {
      await repo.upsertMember(
        trx,
        departmentId,
        m.agent_id,
        m.role ?? DEFAULT_ROLE,
        (m.level ?? 1) as MemberLevel,
      );
    }
    await recordMemberChanges(trx, principal, departmentId, before);
  });
}

export async function addAllAgents(
  db: Db,
  principal: Principal,
  departmentId: string,
  role: DepartmentRole | undefined,
  includeDisabled: boolean,
) {
  await getDepartment(db, departmentId);
  await requireManager(db, principal, departmentId);
  return db.transaction().execute(async (trx) => {
    await repo.lockDepartment(trx, departmentId);
    const before = await repo.memberRoles(trx, departmentId);
    const added = await repo.addAllAgents(trx, departmentId, role ?? DEFAULT_ROLE, includeDisabled);
    await recordMemberChanges(trx, principal, departmentId, before);
    return added;
  });
}
