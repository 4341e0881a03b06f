import type { AgentRole, DepartmentRole, TokenScope } from '../db/types.ts';
import { forbidden } from '../errors.ts';

/** Who is calling: the agent behind a session token or an API token, and what that token may do. */
export interface Principal {
  agentId: string;
  role: AgentRole;
  scopes: readonly TokenScope[];
  via: 'session' | 'api_token';
  tokenId: string | null;
  /**
   * The agent's departments and role in each, read with the credentials (one round trip for
   * both); absent when the principal was made otherwise, and then read when needed.
   */
  departments?: ReadonlyMap<string, DepartmentRole>;
}

/** Department roles from least to most powerful; each includes what the ones before it may do. */
export const DEPARTMENT_ROLES = [
  'reader',
  'solver',
  'supervisor',
  'manager',
] as const satisfies readonly DepartmentRole[];

export function isAdmin(principal: Principal): boolean {
  return principal.role === 'owner' || principal.role === 'admin';
}

export function atLeast(role: DepartmentRole | null | undefined, needed: DepartmentRole): boolean {
  return role != null && DEPARTMENT_ROLES.indexOf(role) >= DEPARTMENT_ROLES.indexOf(needed);
}

/** Owners and admins manage every department; a department's managers manage that one. */
export function canManageDepartment(principal: Principal, roleInDepartment: DepartmentRole | null): boolean {
  return isAdmin(principal) || atLeast(roleInDepartment, 'manager');
}

export function requireAdmin(principal: Principal): void {
  if (!isAdmin(principal)) throw forbidden('Only owners and admins may do this.', 'admin_required');
}

/**
 * Whether `actor` may change `target` (role, status, email, password, deletion). Admins manage
 * agents and admins; only owners manage owners or hand out the owner role.
 */
export function canManageAgent(actor: Principal, targetRole: AgentRole, newRole?: AgentRole): boolean {
  if (!isAdmin(actor)) return false;
  if (actor.role === 'owner') return true;
  return targetRole !== 'owner' && newRole !== 'owner';
}

/** Credentials are managed with a signed-in session, never with an API token (no token can mint tokens). */
export function requireSession(principal: Principal): void {
  if (principal.via !== 'session') {
    throw forbidden('Sign in with email and password to do this; API tokens cannot.', 'session_required');
  }
}
