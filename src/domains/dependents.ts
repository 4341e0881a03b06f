import type { Kysely } from 'kysely';
import type { Principal } from '../access/policy.ts';
import type { Database } from '../db/types.ts';
import type { Blocker } from '../errors.ts';

/**
 * What may still hang on a department or an agent when someone deletes it. Each later domain
 * that owns such things (tickets, automation rules, ...) adds one entry to the lists in
 * registered-dependents.ts; deletion then
 * answers 409 listing them, or moves them to a substitute the request names.
 */
export interface Dependents {
  kind: string;
  /** How many there are; with names when they have names worth showing (rules do). */
  count(trx: Kysely<Database>, id: string): Promise<number | { count: number; names: string[] }>;
  /**
   * Hands everything that depends on `fromId` over to `toId`, where that makes sense. `by` made
   * the deletion: settings it rewrites are recorded as their change (the audit log).
   */
  moveTo?(trx: Kysely<Database>, fromId: string, toId: string, by: Principal): Promise<void>;
  /**
   * Locks what `moveTo` will move, before the deletion locks the department's row: their writers
   * lock them first and a department's key share after (through a foreign key, e.g. a ticket
   * transferred), so the other way round each waited for the other.
   */
  hold?(trx: Kysely<Database>, id: string): Promise<void>;
  describe(count: number, names?: string[]): string;
}

/** The 409 `blockers` of a deletion: every kind of dependent that still has some. */
export async function blockersOf(
  dependents: readonly Dependents[],
  trx: Kysely<Database>,
  id: string,
): Promise<Blocker[]> {
  const blockers: Blocker[] = [];
  for (const d of dependents) {
    const found = await d.count(trx, id);
    const { count, names } = typeof found === 'number' ? { count: found, names: undefined } : found;
    if (count > 0) blockers.push({ kind: d.kind, count, detail: d.describe(count, names) });
  }
  return blockers;
}
