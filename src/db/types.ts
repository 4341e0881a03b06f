import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export type AgentRole = 'owner' | 'admin' | 'agent';
export type AgentStatus = 'active' | 'disabled';
export type DepartmentRole = 'reader' | 'solver' | 'supervisor' | 'manager';
export type TokenScope = 'read' | 'write';

export interface DepartmentsTable {
  id: Generated<string>;
  name: string;
  description: Generated<string>;
  to_solve_enabled: Generated<boolean>;
  selectable_on_contact_form: Generated<boolean>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface AgentsTable {
  id: Generated<string>;
  name: string;
  email: string;
  role: AgentRole;
  status: ColumnType<AgentStatus, AgentStatus | undefined, AgentStatus>;
  password_hash: string | null;
  password_changed_at: Date | null;
  last_sign_in_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface DepartmentMembersTable {
  department_id: string;
  agent_id: string;
  role: DepartmentRole;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ApiTokensTable {
  id: Generated<string>;
  agent_id: string;
  name: string;
  token_hash: string;
  token_prefix: string;
  scopes: TokenScope[];
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: CreatedAt;
}

export interface SignInThrottleTable {
  key: string;
  failures: number;
  window_started_at: Date;
  blocked_until: Date | null;
}

export interface Database {
  departments: DepartmentsTable;
  agents: AgentsTable;
  department_members: DepartmentMembersTable;
  api_tokens: ApiTokensTable;
  sign_in_throttle: SignInThrottleTable;
}

export type DepartmentRow = Selectable<DepartmentsTable>;
export type NewDepartmentRow = Insertable<DepartmentsTable>;
export type DepartmentUpdate = Updateable<DepartmentsTable>;
export type AgentRow = Selectable<AgentsTable>;
export type ApiTokenRow = Selectable<ApiTokensTable>;
