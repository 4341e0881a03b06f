import type { Kysely } from 'kysely';
import type { Database } from '../db/types.ts';
import {
  countTicketReferencesToAgent,
  countTicketsOfDepartment,
  moveTicketsOfDepartment,
} from './tickets/repository.ts';

/**
 * What may still hang on a department or an agent when someone deletes it. Each later domain
 * that owns such things (tickets, automation rules, ...) adds one entry here; deletion then
 * answers 409 listing them, or moves them to a substitute the request names.
 */
export interface Dependents {
  kind: string;
  count(trx: Kysely<Database>, id: string): Promise<number>;
  /** Hands everything that depends on `fromId` over to `toId`, where that makes sense. */
  moveTo?(trx: Kysely<Database>, fromId: string, toId: string): Promise<void>;
  describe(count: number): string;
}

export const departmentDependents: readonly Dependents[] = [
  {
    kind: 'tickets',
    count: countTicketsOfDepartment,
    moveTo: moveTicketsOfDepartment,
    describe: (n) => `${n} ticket${n === 1 ? '' : 's'} (deleted ones included) belong to the department`,
  },
];

export const agentDependents: readonly Dependents[] = [
  {
    kind: 'tickets',
    count: countTicketReferencesToAgent,
    describe: (n) => `${n} tickets or messages name the agent as assignee or author`,
  },
];
