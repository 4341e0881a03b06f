import { agentRuleDependents, departmentRuleDependents } from './automation-rules/service.ts';
import type { Dependents } from './dependents.ts';
import { countMailboxesOfDepartment, moveMailboxesOfDepartment } from './mailboxes/repository.ts';
import {
  countTicketReferencesToAgent,
  countTicketsOfDepartment,
  lockTicketsOfDepartment,
  moveTicketsOfDepartment,
} from './tickets/repository.ts';

// Apart from dependents.ts, which the domains listed here import for the Dependents shape: the
// lists import those domains, and one module doing both made an import cycle.

export const departmentDependents: readonly Dependents[] = [
  {
    kind: 'tickets',
    count: countTicketsOfDepartment,
    hold: lockTicketsOfDepartment,
    moveTo: moveTicketsOfDepartment,
    describe: (n) => `${n} ticket${n === 1 ? '' : 's'} (deleted ones included) belong to the department`,
  },
  departmentRuleDependents,
  {
    kind: 'mailboxes',
    count: countMailboxesOfDepartment,
    moveTo: moveMailboxesOfDepartment,
    describe: (n) => `${n} mailbox${n === 1 ? '' : 'es'} deliver to the department`,
  },
];

export const agentDependents: readonly Dependents[] = [
  {
    kind: 'tickets',
    count: countTicketReferencesToAgent,
    describe: (n) => `${n} tickets or messages name the agent as assignee or author`,
  },
  agentRuleDependents,
];
