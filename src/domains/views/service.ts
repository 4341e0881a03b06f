import { canManageDepartment, isAdmin, type Principal, requireAdmin } from '../../access/policy.ts';
import { loadTicketAccess, type TicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, type FieldError, forbidden } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { countMatching, listTickets } from '../tickets/repository.ts';
import * as repo from './repository.ts';
import {
  type CreateViewInput,
  MAX_VIEWS_PER_HOLDER,
  type UpdateViewInput,
  VIEW_COUNT_CAP,
  type View,
  type ViewCounts,
  type ViewFilters,
} from './schemas.ts';

const viewNotFound = () => new DomainError('not_found', 'view_not_found', 'No such view.');

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

/** Whether the caller may see the view: its owner, its department's members, or everyone. */
function canSee(access: TicketAccess, view: View): boolean {
  if (view.scope === 'personal') return view.owner_agent_id === access.principal.agentId;
  if (view.scope === 'helpdesk') return true;
  return isAdmin(access.principal) || access.memberships.has(view.department_id!);
}

/** Personal views are their owner's; shared ones their department's managers' or admins'. */
function requireManager(access: TicketAccess, holder: Pick<View, 'scope' | 'department_id'>) {
  if (holder.scope === 'personal') return;
  if (holder.scope === 'helpdesk') {
    requireAdmin(access.principal);
    return;
  }
  const role = access.memberships.get(holder.department_id!) ?? null;
  if (!canManageDepartment(access.principal, role)) {
    throw forbidden(
      "Only owners, admins and the department's managers manage its views.",
      'department_manager_required',
    );
  }
}

async function requireVisible(db: Db, access: TicketAccess, id: string): Promise<View> {
  const view = await repo.findView(db, id);
  // Another agent's personal view and another department's answer alike: ids reveal nothing.
  if (!view || !canSee(access, view)) throw viewNotFound();
  return view;
}

/** The departments and agents a filter names must exist: 422 naming each one that does not. */
async function assertFiltersResolve(db: Db, filters: ViewFilters) {
  const departments = (filters.department_id ?? []).filter((d) => d !== 'none');
  const agents = (filters.assignee_id ?? []).filter((a) => a !== 'none' && a !== 'me');
  const [noDepartments, noAgents] = await Promise.all([
    repo.missingDepartments(db, [...new Set(departments)]),
    repo.missingAgents(db, [...new Set(agents)]),
  ]);
  // The field names the position in the array as sent.
  const errors: FieldError[] = [
    ...(filters.department_id ?? []).flatMap((id, i) =>
      noDepartments.has(id)
        ? [{ field: `body/filters/department_id/${i}`, message: 'no such department' }]
        : [],
    ),
    ...(filters.assignee_id ?? []).flatMap((id, i) =>
      noAgents.has(id) ? [{ field: `body/filters/assignee_id/${i}`, message: 'no such agent' }] : [],
    ),
  ];
  if (errors.length > 0) {
    throw unprocessable(
      'view_filter_unknown_reference',
      `The filters name what does not exist: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}.`,
      errors,
    );
  }
}

export async function listViews(db: Db, principal: Principal): Promise<View[]> {
  const access = await loadTicketAccess(db, principal);
  return repo.listVisibleViews(
    db,
    principal.agentId,
    isAdmin(principal) ? null : [...access.memberships.keys()],
  );
}

export async function getView(db: Db, principal: Principal, id: string): Promise<View> {
  return requireVisible(db, await loadTicketAccess(db, principal), id);
}

export async function createView(db: Db, principal: Principal, input: CreateViewInput): Promise<View> {
  const access = await loadTicketAccess(db, principal);
  const scope = input.scope ?? 'personal';
  if ((scope === 'department') !== (input.department_id !== undefined)) {
    throw unprocessable(
      'view_department_mismatch',
      'department_id goes with scope department, and only with it.',
      [
        {
          field: 'body/department_id',
          message: scope === 'department' ? 'is required' : 'is only for scope department',
        },
      ],
    );
  }
  const departmentId = input.department_id ?? null;
  if (departmentId !== null && (await repo.missingDepartments(db, [departmentId])).size > 0) {
    throw unprocessable('department_not_found', 'The department does not exist.', [
      { field: 'body/department_id', message: 'no such department' },
    ]);
  }
  const holder = {
    scope,
    department_id: departmentId,
    owner_agent_id: scope === 'personal' ? principal.agentId : null,
  };
  requireManager(access, holder);
  const filters = input.filters ?? {};
  await assertFiltersResolve(db, filters);
  return db.transaction().execute(async (trx) => {
    const held = await repo.countViewsOf(trx, { owner: holder.owner_agent_id, department: departmentId });
    if (held >= MAX_VIEWS_PER_HOLDER) {
      throw new DomainError(
        'conflict',
        'too_many_views',
        `At most ${MAX_VIEWS_PER_HOLDER} ${scope} views${scope === 'department' ? ' per department' : ''}; delete one first.`,
      );
    }
    const id = await repo.insertView(
      trx,
      holder,
      {
        name: input.name.trim(),
        filters,
        sort: input.sort ?? '-created_at',
        position: input.position ?? null,
      },
      principal.agentId,
    );
    return (await repo.findView(trx, id))!;
  });
}

export async function updateView(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: UpdateViewInput,
): Promise<View> {
  const access = await loadTicketAccess(db, principal);
  requireManager(access, await requireVisible(db, access, id));
  if (patch.filters !== undefined) await assertFiltersResolve(db, patch.filters);
  return db.transaction().execute(async (trx) => {
    const before = await repo.lockView(trx, id);
    if (!before) throw viewNotFound();
    assertIfMatch(preconditions.ifMatch, before);
    await repo.updateView(trx, id, {
      name: patch.name?.trim() ?? before.name,
      filters: patch.filters ?? before.filters,
      sort: patch.sort ?? before.sort,
      position: patch.position === undefined ? before.position : patch.position,
    });
    return (await repo.findView(trx, id))!;
  });
}

export async function deleteView(db: Db, principal: Principal, preconditions: Preconditions, id: string) {
  const access = await loadTicketAccess(db, principal);
  requireManager(access, await requireVisible(db, access, id));
  await db.transaction().execute(async (trx) => {
    const before = await repo.lockView(trx, id);
    if (!before) throw viewNotFound();
    assertIfMatch(preconditions.ifMatch, before);
    await repo.deleteView(trx, id);
  });
}

/** The view's tickets for the caller: its filters through the list's own query, their visibility kept. */
export async function listViewTickets(
  db: Db,
  principal: Principal,
  id: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const access = await loadTicketAccess(db, principal);
  const view = await requireVisible(db, access, id);
  return listTickets(db, access, { ...view.filters, sort: view.sort, ...page });
}

/** Every visible view's count for the caller, each stopping at the cap (countMatching). */
export async function countViews(db: Db, principal: Principal): Promise<ViewCounts> {
  const access = await loadTicketAccess(db, principal);
  const views = await repo.listVisibleViews(
    db,
    principal.agentId,
    isAdmin(principal) ? null : [...access.memberships.keys()],
  );
  const counts = await countMatching(
    db,
    access,
    views.map((v) => v.filters),
    VIEW_COUNT_CAP,
  );
  return {
    cap: VIEW_COUNT_CAP,
    data: views.map((view, i) => ({
      view_id: view.id,
      count: Math.min(counts[i]!, VIEW_COUNT_CAP),
      capped: counts[i]! > VIEW_COUNT_CAP,
    })),
  };
}
