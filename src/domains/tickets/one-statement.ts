import { cachedRuleSet } from '../automation-rules/runner.ts';
import type { SeenByRules } from '../contacts/repository.ts';

// A ticket's opening in one statement. A creation by email reads, in its contact statement, the
// contact and what decides the opening besides the request: the rules' key, the SLA policies'
// key, the department's schedule and the transaction's time. When this process last read that
// no rule acts on ticket.created, no SLA policy is active and the department follows no schedule,
// none of it changes the opening, and the time is the row's own default: the contact is then
// found or made by the opening statement itself (contacts/repository.ts contactByEmailCtes), which
// checks those stakes where it stands (tickets/repository.ts openingStakes). That statement is
// the whole transaction: db/client.ts sends it alone, without BEGIN and COMMIT. When a stake no
// longer holds (another process changed rules, policies or schedules; a concurrent creation
// claimed the same new email; the contact found changed after the statement's snapshot), the
// statement fails whole with DR001 (migrations/0050), and the creation runs again the long way,
// which reads them anew.

/** SQLSTATE of a stake that no longer held (deskroute_expect). */
const STAKE_LOST = 'DR001';

interface Known {
  rulesKey: string;
  /** Departments ('' for none) read without a schedule under this rules key. */
  unscheduled: Set<string>;
}

/** What this process's latest contact statement read; null while no SLA policy was active. */
let known: Known | null = null;
const MOST_DEPARTMENTS = 10_000;

/** Learns from a contact statement (SeenByRules) of a creation in this department. */
export function remember(departmentId: string | null, seen: SeenByRules): void {
  if (seen.sla === undefined || seen.scheduleKey === undefined) return;
  if (seen.sla.key !== null) {
    known = null;
    return;
  }
  if (known?.rulesKey !== seen.rulesKey) known = { rulesKey: seen.rulesKey, unscheduled: new Set() };
  const department = departmentId ?? '';
  if (seen.scheduleKey !== null) {
    known.unscheduled.delete(department);
    return;
  }
  if (known.unscheduled.size >= MOST_DEPARTMENTS) known.unscheduled.clear();
  known.unscheduled.add(department);
}

/** The rules key a creation in this department may stake, or null: it takes the long way. */
export function stakeFor(departmentId: string | null): string | null {
  if (known === null || !known.unscheduled.has(departmentId ?? '')) return null;
  const set = cachedRuleSet(known.rulesKey);
  return set && !set.activeTriggers.has('ticket.created') ? known.rulesKey : null;
}

/** Whether this error is a stake that no longer held; what was known is forgotten then. */
export function stakeLost(error: unknown): boolean {
  if ((error as { code?: unknown } | null)?.code !== STAKE_LOST) return false;
  known = null;
  return true;
}
