import { canManageDepartment, isAdmin, type Principal, requireAdmin } from '../../access/policy.ts';
import { loadTicketAccess } from '../../access/tickets.ts';
import type { Db } from '../../db/database.ts';
import { DomainError, type FieldError, forbidden } from '../../errors.ts';
import { assertIfMatch, type Preconditions } from '../../plugins/etag.ts';
import { findDepartment, roleInDepartment } from '../departments/repository.ts';
import { changesBetween, recordSettingsChange } from '../events/settings.ts';
import { ticketVariables } from '../mail-identity/render.ts';
import {
  renderCannedBody,
  sampleVariables,
  TemplateError,
  templateProblems,
} from '../mail-identity/templates.ts';
import { normaliseTags } from '../tickets/changes.ts';
import * as repo from './repository.ts';
import type { CannedResponse, CreateCannedResponseInput, UpdateCannedResponseInput } from './schemas.ts';

const unprocessable = (code: string, message: string, errors: FieldError[]) => {
  const error = new DomainError('unprocessable', code, message);
  error.errors = errors;
  return error;
};

const cannedNotFound = () =>
  new DomainError('not_found', 'canned_response_not_found', 'No such canned response.');

/** The departments the caller may use canned responses of (null: all, an admin). */
async function usableDepartments(db: Db, principal: Principal): Promise<string[] | null> {
  if (isAdmin(principal)) return null;
  const access = await loadTicketAccess(db, principal);
  return [...access.memberships.keys()];
}

async function requireUsable(db: Db, principal: Principal, id: string): Promise<CannedResponse> {
  const canned = await repo.findCannedResponse(db, id);
  if (!canned) throw cannedNotFound();
  if (canned.department_id !== null) {
    const departments = await usableDepartments(db, principal);
    // A department's canned responses are its members' (and admins'): others get 404.
    if (departments !== null && !departments.includes(canned.department_id)) throw cannedNotFound();
  }
  return canned;
}

async function requireManager(db: Db, principal: Principal, departmentId: string | null) {
  if (departmentId === null) {
    requireAdmin(principal);
    return;
  }
  const role = await roleInDepartment(db, principal.agentId, departmentId);
  if (!canManageDepartment(principal, role)) {
    throw forbidden(
      "Only owners, admins and the department's managers manage its canned responses.",
      'department_manager_required',
    );
  }
}

async function assertUsableBody(body: string) {
  const errors = await templateProblems('canned_response', { body }, sampleVariables());
  if (errors.length > 0) {
    throw unprocessable(
      'invalid_template',
      `The body cannot be used: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}.`,
      errors,
    );
  }
}

export async function listCannedResponses(
  db: Db,
  principal: Principal,
  filter: { q?: string | undefined; department_id?: string | undefined },
  page: { limit: number; cursor?: string | undefined },
) {
  return repo.listCannedResponses(
    db,
    { ...filter, departments: await usableDepartments(db, principal) },
    page,
  );
}

export const getCannedResponse = requireUsable;

export async function createCannedResponse(
  db: Db,
  principal: Principal,
  input: CreateCannedResponseInput,
): Promise<CannedResponse> {
  const departmentId = input.department_id ?? null;
  if (departmentId !== null && !(await findDepartment(db, departmentId))) {
    throw unprocessable('department_not_found', 'The department does not exist.', [
      { field: 'body/department_id', message: 'no such department' },
    ]);
  }
  await requireManager(db, principal, departmentId);
  await assertUsableBody(input.body);
  return db.transaction().execute(async (trx) => {
    const id = await repo.insertCannedResponse(trx, departmentId, {
      title: input.title.trim(),
      body: input.body,
      tags: normaliseTags(input.tags ?? []),
      status: input.status ?? null,
    });
    const canned = (await repo.findCannedResponse(trx, id))!;
    await recordSettingsChange(
      trx,
      principal,
      'canned_response.created',
      { departmentId, subjectId: id },
      { canned_response: canned },
    );
    return canned;
  });
}

export async function updateCannedResponse(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
  patch: UpdateCannedResponseInput,
): Promise<CannedResponse> {
  const current = await requireUsable(db, principal, id);
  await requireManager(db, principal, current.department_id);
  if (patch.body !== undefined) await assertUsableBody(patch.body);
  return db.transaction().execute(async (trx) => {
    const before = await repo.lockCannedResponse(trx, id);
    if (!before) throw cannedNotFound();
    assertIfMatch(preconditions.ifMatch, before);
    await repo.updateCannedResponse(trx, id, {
      title: patch.title?.trim() ?? before.title,
      body: patch.body ?? before.body,
      tags: patch.tags === undefined ? before.tags : normaliseTags(patch.tags),
      status: patch.status === undefined ? before.status : patch.status,
    });
    const after = (await repo.findCannedResponse(trx, id))!;
    const changes = changesBetween(before, after);
    if (Object.keys(changes).length === 0) return before;
    await recordSettingsChange(
      trx,
      principal,
      'canned_response.updated',
      { departmentId: after.department_id, subjectId: id },
      { canned_response: after, changes },
    );
    return after;
  });
}

export async function deleteCannedResponse(
  db: Db,
  principal: Principal,
  preconditions: Preconditions,
  id: string,
): Promise<void> {
  const current = await requireUsable(db, principal, id);
  await requireManager(db, principal, current.department_id);
  await db.transaction().execute(async (trx) => {
    const before = await repo.lockCannedResponse(trx, id);
    if (!before) throw cannedNotFound();
    assertIfMatch(preconditions.ifMatch, before);
    await repo.deleteCannedResponse(trx, id);
    await recordSettingsChange(
      trx,
      principal,
      'canned_response.deleted',
      { departmentId: before.department_id, subjectId: id },
      { canned_response: before },
    );
  });
}

export interface FilledCannedResponse {
  body: string;
  tags: string[];
  status: CannedResponse['status'];
  /** The department it belongs to (null: help-desk wide); the ticket must be in it. */
  departmentId: string | null;
}

const FIELD = 'body/canned_response_id';

/** 422 when a department's canned response is used on a ticket of another department. */
export function assertCannedFitsTicket(filled: FilledCannedResponse, ticketDepartmentId: string | null) {
  if (filled.departmentId !== null && filled.departmentId !== ticketDepartmentId) {
    throw unprocessable(
      'canned_response_other_department',
      'This canned response belongs to another department than the ticket’s.',
      [{ field: FIELD, message: 'belongs to another department' }],
    );
  }
}

/**
 * A canned response filled for a ticket (the caller has checked they may see it) and the agent
 * using it: 404 when the caller may not use it, 422 when it belongs to another department.
 */
export async function fillCannedResponse(
  db: Db,
  principal: Principal,
  ticket: { id: string; department_id: string | null },
  cannedId: string,
): Promise<FilledCannedResponse> {
  const canned = await requireUsable(db, principal, cannedId);
  const filled = {
    body: '',
    tags: canned.tags,
    status: canned.status,
    departmentId: canned.department_id,
  };
  assertCannedFitsTicket(filled, ticket.department_id);
  const { variables } = await ticketVariables(db, ticket.id, { agentId: principal.agentId });
  try {
    filled.body = await renderCannedBody(canned.body, variables);
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    throw unprocessable('invalid_template', `The canned response cannot be filled: ${error.message}.`, [
      { field: FIELD, message: error.message },
    ]);
  }
  if (filled.body.trim() === '') {
    throw unprocessable('canned_response_empty', 'The canned response is empty for this ticket.', [
      { field: FIELD, message: 'renders to nothing' },
    ]);
  }
  return filled;
}
