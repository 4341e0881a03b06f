import { compileRules, evaluate } from '../../src/rule-engine/index.ts';
import type {
  Catalog,
  Condition,
  CustomFieldType,
  EvaluationResult,
  Rule,
  RuleEvent,
  TicketSnapshot,
} from '../../src/rule-engine/types.ts';

export const SALES = 'd-sales';
export const SUPPORT = 'd-support';
export const ANN = 'a-ann';
export const BOB = 'a-bob';

export const catalog: Catalog = {
  departmentIds: new Set([SALES, SUPPORT]),
  agentIds: new Set([ANN, BOB]),
  customFields: new Map<string, CustomFieldType | { type: CustomFieldType; options: string[] }>([
    ['plan', { type: 'choice', options: ['Free', 'Pro'] }],
    ['seats', 'number'],
    ['since', 'date'],
    ['vip', 'boolean'],
    ['company', 'text'],
  ]),
};

export function ticket(patch: Partial<TicketSnapshot> = {}): TicketSnapshot {
  return {
    id: 't-1',
    channel: 'email',
    subject: 'Refund for order 5521',
    status: 'new',
    priority: 'normal',
    department_id: SUPPORT,
    assignee_id: null,
    tags: ['refund'],
    support_address: 'help@deskroute.example',
    postponed_until: null,
    contact: {
      name: 'Jane Doe',
      email: 'jane@example.com',
      custom: { plan: 'Pro', seats: 12, since: '2023-04-01', vip: true, company: 'Acme' },
    },
    created_in_working_hours: true,
    outside_working_hours: false,
    ...patch,
  };
}

export function event(patch: Partial<RuleEvent> = {}): RuleEvent {
  return {
    type: 'ticket.created',
    occurred_at: '2024-06-01T10:00:00.000Z',
    message: {
      body: 'Hello, the parcel arrived broken. Can I get a refund?',
      sender_email: 'jane@example.com',
    },
    ...patch,
  };
}

let counter = 0;

/** A valid rule with a note action; override what a test is about. */
export function rule(patch: Partial<Rule> = {}): Rule {
  counter += 1;
  return {
    id: `rule-${counter}`,
    name: `Rule ${counter}`,
    active: true,
    position: counter,
    stop_processing: false,
    department_id: null,
    triggers: ['ticket.created', 'ticket.updated', 'ticket.customer_replied'],
    conditions: { all: [] },
    actions: [{ type: 'add_note', body: 'matched' }],
    ...patch,
  };
}

export type Mode = 'conditions' | 'rules' | 'matches' | 'closures';
export const MODES: Mode[] = ['conditions', 'rules', 'matches', 'closures'];

/** Evaluates with every engine path and insists they agree before returning the first. */
export function run(rules: Rule[], t: TicketSnapshot = ticket(), e: RuleEvent = event()): EvaluationResult {
  const generated = compileRules(rules, { version: 7 });
  const closures = compileRules(rules, { version: 7, codegen: false });
  const results = MODES.map((mode) =>
    mode === 'closures'
      ? evaluate(e, t, closures, { trace: 'rules' })
      : evaluate(e, t, generated, { trace: mode }),
  );
  const key = (r: EvaluationResult) =>
    JSON.stringify({
      matched: r.trace.rules.filter((x) => x.matched).map((x) => x.rule_id),
      effects: r.effects,
      ticket: r.ticket,
      stopped: r.trace.stopped_by,
    });
  const first = key(results[0]!);
  for (const [i, result] of results.entries()) {
    if (key(result) !== first)
      throw new Error(`engine paths disagree (${MODES[i]}): ${key(result)} vs ${first}`);
  }
  return results[0]!;
}

/** Whether a single condition matches the ticket for the event (checked on every engine path). */
export function holds(condition: Condition, t: TicketSnapshot = ticket(), e: RuleEvent = event()): boolean {
  return run([rule({ conditions: condition, triggers: [e.type] })], t, e).trace.rules[0]!.matched;
}
