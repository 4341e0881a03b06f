// Every operator on every field type, table-driven. Each row is checked on every engine path
// (generated code, closures, each trace level) by holds() in fixtures.ts.

import t, { type Test } from 'tap';
import type { ConditionLeaf, RuleEvent, TicketSnapshot } from '../../src/rule-engine/types.ts';
import { ANN, BOB, event, holds, rule, run, SALES, SUPPORT, ticket } from './fixtures.ts';

type Row = [
  name: string,
  leaf: ConditionLeaf,
  expected: boolean,
  ticketPatch?: Partial<TicketSnapshot>,
  eventPatch?: Partial<RuleEvent>,
];

function table(t: Test, rows: Row[]) {
  for (const [name, leaf, expected, ticketPatch, eventPatch] of rows) {
    t.equal(holds(leaf, ticket(ticketPatch), event(eventPatch)), expected, name);
  }
}

const custom = (values: Record<string, unknown>) => ({
  contact: { name: 'Jane Doe', email: 'jane@example.com', custom: values },
});

t.test('text fields', async (t) => {
  table(t, [
    ['is: folded case', { field: 'subject', operator: 'is', value: 'REFUND FOR ORDER 5521' }, true],
    ['is: whole value only', { field: 'subject', operator: 'is', value: 'refund' }, false],
    [
      'is: NFKC full-width',
      { field: 'subject', operator: 'is', value: 'refund' },
      true,
      { subject: 'Ｒｅｆｕｎｄ' },
    ],
    [
      'is: ß folds to ss',
      { field: 'subject', operator: 'is', value: 'STRASSE' },
      true,
      { subject: 'Straße' },
    ],
    ['is: ligature', { field: 'subject', operator: 'is', value: 'file' }, true, { subject: 'ﬁle' }],
    [
      'is: decomposed accent',
      { field: 'subject', operator: 'is', value: 'café' },
      true,
      { subject: 'cafe\u0301' },
    ],
    [
      'is: final sigma',
      { field: 'subject', operator: 'contains', value: 'οδοσ' },
      true,
      { subject: 'ΟΔΟΣ 5' },
    ],
    ['is_not', { field: 'subject', operator: 'is_not', value: 'hello' }, true],
    [
      'is_not on the same value',
      { field: 'subject', operator: 'is_not', value: 'refund for order 5521' },
      false,
    ],
    [
      'is_not holds on an empty value',
      { field: 'support_address', operator: 'is_not', value: 'x' },
      true,
      { support_address: null },
    ],
    ['is_one_of', { field: 'sender.domain', operator: 'is_one_of', value: ['acme.io', 'EXAMPLE.com'] }, true],
    ['is_one_of misses', { field: 'sender.domain', operator: 'is_one_of', value: ['acme.io'] }, false],
    ['is_none_of', { field: 'sender.domain', operator: 'is_none_of', value: ['acme.io'] }, true],
    ['is_none_of hits', { field: 'sender.domain', operator: 'is_none_of', value: ['example.com'] }, false],
    ['contains', { field: 'message.body', operator: 'contains', value: 'ARRIVED BROKEN' }, true],
    ['contains misses', { field: 'message.body', operator: 'contains', value: 'invoice' }, false],
    [
      'contains on a long body (signature path)',
      { field: 'message.body', operator: 'contains', value: 'needle' },
      true,
      {},
      { message: { body: `${'filler text '.repeat(20)}the Needle is here`, sender_email: null } },
    ],
    [
      'contains on an empty value',
      { field: 'support_address', operator: 'contains', value: 'help' },
      false,
      { support_address: null },
    ],
    ['does_not_contain', { field: 'message.body', operator: 'does_not_contain', value: 'invoice' }, true],
    [
      'does_not_contain hits',
      { field: 'message.body', operator: 'does_not_contain', value: 'refund' },
      false,
    ],
    [
      'does_not_contain on an empty value',
      { field: 'message.body', operator: 'does_not_contain', value: 'x' },
      true,
      {},
      { message: null },
    ],
    ['starts_with', { field: 'subject', operator: 'starts_with', value: 'refund' }, true],
    ['starts_with misses', { field: 'subject', operator: 'starts_with', value: 'order' }, false],
    ['ends_with', { field: 'contact.email', operator: 'ends_with', value: '@EXAMPLE.COM' }, true],
    ['ends_with misses', { field: 'contact.email', operator: 'ends_with', value: '.org' }, false],
    ['matches', { field: 'message.body', operator: 'matches', value: '\\bbroken\\b' }, true],
    [
      'matches is case-insensitive',
      { field: 'subject', operator: 'matches', value: 'ORDER\\s+\\d{4}$' },
      true,
    ],
    ['matches misses', { field: 'subject', operator: 'matches', value: '^order' }, false],
    [
      'matches Unicode case',
      { field: 'subject', operator: 'matches', value: 'ÉTÉ' },
      true,
      { subject: 'Un été' },
    ],
    [
      'matches on an empty value',
      { field: 'support_address', operator: 'matches', value: '.*' },
      false,
      { support_address: null },
    ],
    [
      'matches reads the first 20,000 characters only',
      { field: 'message.body', operator: 'matches', value: 'tail' },
      false,
      {},
      { message: { body: `${'x'.repeat(20_000)}tail`, sender_email: null } },
    ],
    ['is_empty on null', { field: 'support_address', operator: 'is_empty' }, true, { support_address: null }],
    [
      'is_empty on blank text',
      { field: 'support_address', operator: 'is_empty' },
      true,
      { support_address: '   ' },
    ],
    ['is_empty on text', { field: 'support_address', operator: 'is_empty' }, false],
    ['is_not_empty', { field: 'contact.name', operator: 'is_not_empty' }, true],
    ['sender.email', { field: 'sender.email', operator: 'is', value: 'JANE@example.com' }, true],
    [
      'sender.domain from the sender address',
      { field: 'sender.domain', operator: 'is', value: 'example.com' },
      true,
      {},
      { message: { body: 'x', sender_email: 'Bob@Example.COM' } },
    ],
    [
      'sender.domain without a message is empty',
      { field: 'sender.domain', operator: 'is_empty' },
      true,
      {},
      { message: null },
    ],
    ['contact.name', { field: 'contact.name', operator: 'starts_with', value: 'jane' }, true],
    ['custom text field', { field: 'contact.custom.company', operator: 'contains', value: 'ACME' }, true],
    [
      'text operator on a number is a mismatch: false',
      { field: 'contact.custom.company', operator: 'contains', value: '5' },
      false,
      custom({ company: 5 }),
    ],
    [
      'negative text operator on a mismatch is false too',
      { field: 'contact.custom.company', operator: 'is_not', value: 'x' },
      false,
      custom({ company: 5 }),
    ],
    [
      'does_not_contain on a mismatch is false',
      { field: 'contact.custom.company', operator: 'does_not_contain', value: 'x' },
      false,
      custom({ company: 5 }),
    ],
    [
      'is_not_empty is type-agnostic',
      { field: 'contact.custom.company', operator: 'is_not_empty' },
      true,
      custom({ company: 5 }),
    ],
  ]);
});

t.test('channel and status (fixed values)', async (t) => {
  table(t, [
    ['channel is', { field: 'channel', operator: 'is', value: 'email' }, true],
    ['channel is other', { field: 'channel', operator: 'is', value: 'chat' }, false],
    ['channel is_not', { field: 'channel', operator: 'is_not', value: 'chat' }, true],
    ['channel is_one_of', { field: 'channel', operator: 'is_one_of', value: ['facebook', 'email'] }, true],
    ['channel is_none_of', { field: 'channel', operator: 'is_none_of', value: ['facebook', 'email'] }, false],
    [
      'unknown channel: is_not is a mismatch',
      { field: 'channel', operator: 'is_not', value: 'chat' },
      false,
      { channel: 'fax' as never },
    ],
    [
      'unknown channel: is_none_of is a mismatch',
      { field: 'channel', operator: 'is_none_of', value: ['chat'] },
      false,
      { channel: 'fax' as never },
    ],
    ['status is', { field: 'status', operator: 'is', value: 'new' }, true],
    ['status is_not', { field: 'status', operator: 'is_not', value: 'new' }, false],
    ['status is_one_of', { field: 'status', operator: 'is_one_of', value: ['open', 'answered'] }, false],
    ['status is_none_of', { field: 'status', operator: 'is_none_of', value: ['open', 'answered'] }, true],
  ]);
});

t.test('priority (ordered)', async (t) => {
  table(t, [
    ['is', { field: 'priority', operator: 'is', value: 'normal' }, true],
    ['is_not', { field: 'priority', operator: 'is_not', value: 'normal' }, false],
    ['is_one_of', { field: 'priority', operator: 'is_one_of', value: ['high', 'urgent'] }, false],
    ['is_none_of', { field: 'priority', operator: 'is_none_of', value: ['high', 'urgent'] }, true],
    ['greater_than low', { field: 'priority', operator: 'greater_than', value: 'low' }, true],
    ['greater_than normal', { field: 'priority', operator: 'greater_than', value: 'normal' }, false],
    ['less_than high', { field: 'priority', operator: 'less_than', value: 'high' }, true],
    ['less_than low', { field: 'priority', operator: 'less_than', value: 'low' }, false],
    [
      'urgent > high',
      { field: 'priority', operator: 'greater_than', value: 'high' },
      true,
      { priority: 'urgent' },
    ],
    [
      'unknown priority is a mismatch',
      { field: 'priority', operator: 'less_than', value: 'urgent' },
      false,
      { priority: 'extreme' as never },
    ],
  ]);
});

t.test('department and assignee ids', async (t) => {
  const pending = { pending_assignment: { strategy: 'round_robin' as const, department_id: SUPPORT } };
  table(t, [
    ['department is', { field: 'department_id', operator: 'is', value: SUPPORT }, true],
    ['department is_not', { field: 'department_id', operator: 'is_not', value: SALES }, true],
    ['department is_one_of', { field: 'department_id', operator: 'is_one_of', value: [SALES] }, false],
    ['department is_none_of', { field: 'department_id', operator: 'is_none_of', value: [SALES] }, true],
    ['department is_empty', { field: 'department_id', operator: 'is_empty' }, true, { department_id: null }],
    [
      'department is_not on no department',
      { field: 'department_id', operator: 'is_not', value: SALES },
      true,
      { department_id: null },
    ],
    ['assignee is', { field: 'assignee_id', operator: 'is', value: ANN }, true, { assignee_id: ANN }],
    ['assignee is_empty', { field: 'assignee_id', operator: 'is_empty' }, true],
    ['assignee is_not_empty', { field: 'assignee_id', operator: 'is_not_empty' }, false],
    ['pending assignee: is_empty is false', { field: 'assignee_id', operator: 'is_empty' }, false, pending],
    [
      'pending assignee: is_not_empty is false',
      { field: 'assignee_id', operator: 'is_not_empty' },
      false,
      pending,
    ],
    [
      'pending assignee: is_not is false',
      { field: 'assignee_id', operator: 'is_not', value: BOB },
      false,
      pending,
    ],
    [
      'assignee of the wrong type is a mismatch',
      { field: 'assignee_id', operator: 'is_not', value: ANN },
      false,
      { assignee_id: 7 as never },
    ],
  ]);
});

t.test('tags', async (t) => {
  table(t, [
    ['contains_any', { field: 'tags', operator: 'contains_any', value: ['vip', 'Refund'] }, true],
    ['contains_any misses', { field: 'tags', operator: 'contains_any', value: ['vip'] }, false],
    [
      'contains_all',
      { field: 'tags', operator: 'contains_all', value: ['refund', 'vip'] },
      true,
      { tags: ['VIP', ' refund '] },
    ],
    ['contains_all misses', { field: 'tags', operator: 'contains_all', value: ['refund', 'vip'] }, false],
    ['contains_none', { field: 'tags', operator: 'contains_none', value: ['vip'] }, true],
    ['contains_none hits', { field: 'tags', operator: 'contains_none', value: ['REFUND'] }, false],
    [
      'contains_none on no tags',
      { field: 'tags', operator: 'contains_none', value: ['vip'] },
      true,
      { tags: [] },
    ],
    ['is_empty', { field: 'tags', operator: 'is_empty' }, true, { tags: [] }],
    ['is_not_empty', { field: 'tags', operator: 'is_not_empty' }, true],
    [
      'tags that are not a list: mismatch',
      { field: 'tags', operator: 'contains_none', value: ['vip'] },
      false,
      { tags: 'refund' as never },
    ],
  ]);
});

t.test('contact fields: number, date, boolean, choice', async (t) => {
  table(t, [
    ['number is', { field: 'contact.custom.seats', operator: 'is', value: 12 }, true],
    ['number is_not', { field: 'contact.custom.seats', operator: 'is_not', value: 5 }, true],
    ['number is_one_of', { field: 'contact.custom.seats', operator: 'is_one_of', value: [1, 12] }, true],
    ['number is_none_of', { field: 'contact.custom.seats', operator: 'is_none_of', value: [1, 12] }, false],
    ['number greater_than', { field: 'contact.custom.seats', operator: 'greater_than', value: 10 }, true],
    ['number less_than', { field: 'contact.custom.seats', operator: 'less_than', value: 10 }, false],
    [
      'number is_empty when absent',
      { field: 'contact.custom.seats', operator: 'is_empty' },
      true,
      custom({}),
    ],
    [
      'number stored as text: mismatch',
      { field: 'contact.custom.seats', operator: 'is_not', value: 5 },
      false,
      custom({ seats: '12' }),
    ],
    [
      'number stored as text: greater_than false',
      { field: 'contact.custom.seats', operator: 'greater_than', value: 1 },
      false,
      custom({ seats: '12' }),
    ],
    ['an inherited key is not a value', { field: 'contact.custom.constructor', operator: 'is_empty' }, true],
    ['date is', { field: 'contact.custom.since', operator: 'is', value: '2023-04-01' }, true],
    ['date is_not', { field: 'contact.custom.since', operator: 'is_not', value: '2023-04-01' }, false],
    [
      'date greater_than',
      { field: 'contact.custom.since', operator: 'greater_than', value: '2023-01-31' },
      true,
    ],
    ['date less_than', { field: 'contact.custom.since', operator: 'less_than', value: '2023-01-31' }, false],
    [
      'date that is not a date: mismatch',
      { field: 'contact.custom.since', operator: 'less_than', value: '2099-01-01' },
      false,
      custom({ since: 'soon' }),
    ],
    ['boolean is', { field: 'contact.custom.vip', operator: 'is', value: true }, true],
    ['boolean is_not', { field: 'contact.custom.vip', operator: 'is_not', value: true }, false],
    [
      'boolean as text: mismatch',
      { field: 'contact.custom.vip', operator: 'is_not', value: false },
      false,
      custom({ vip: 'yes' }),
    ],
    [
      'created_in_working_hours is',
      { field: 'created_in_working_hours', operator: 'is', value: false },
      true,
      { created_in_working_hours: false },
    ],
    [
      'created_in_working_hours is_empty',
      { field: 'created_in_working_hours', operator: 'is_empty' },
      true,
      { created_in_working_hours: null },
    ],
    ['choice is (folded)', { field: 'contact.custom.plan', operator: 'is', value: 'PRO' }, true],
    ['choice is_one_of', { field: 'contact.custom.plan', operator: 'is_one_of', value: ['Free'] }, false],
  ]);
});

t.test('previous values and change operators', async (t) => {
  const updated = (previous: RuleEvent['previous']): Partial<RuleEvent> => ({
    type: 'ticket.updated',
    previous,
  });
  table(t, [
    ['has_changed', { field: 'priority', operator: 'has_changed' }, true, {}, updated({ priority: 'low' })],
    [
      'has_changed: not in previous',
      { field: 'status', operator: 'has_changed' },
      false,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'has_changed: same value given',
      { field: 'priority', operator: 'has_changed' },
      false,
      {},
      updated({ priority: 'normal' }),
    ],
    [
      'changed_from',
      { field: 'priority', operator: 'changed_from', value: 'low' },
      true,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'changed_from other',
      { field: 'priority', operator: 'changed_from', value: 'high' },
      false,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'changed_to',
      { field: 'priority', operator: 'changed_to', value: 'normal' },
      true,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'changed_to without a change',
      { field: 'priority', operator: 'changed_to', value: 'normal' },
      false,
      {},
      updated({}),
    ],
    [
      'changed_from null: was unassigned',
      { field: 'assignee_id', operator: 'changed_from', value: null },
      true,
      { assignee_id: ANN },
      updated({ assignee_id: null }),
    ],
    [
      'department changed_to',
      { field: 'department_id', operator: 'changed_to', value: SUPPORT },
      true,
      {},
      updated({ department_id: SALES }),
    ],
    [
      'subject case edit is a change',
      { field: 'subject', operator: 'has_changed' },
      true,
      {},
      updated({ subject: 'REFUND FOR ORDER 5521' }),
    ],
    [
      'tags: set change',
      { field: 'tags', operator: 'has_changed' },
      true,
      {},
      updated({ tags: ['refund', 'vip'] }),
    ],
    [
      'tags: order and case are no change',
      { field: 'tags', operator: 'has_changed' },
      false,
      { tags: ['vip', 'refund'] },
      updated({ tags: ['REFUND', 'vip'] }),
    ],
    [
      'contact field changed_from',
      { field: 'contact.custom.plan', operator: 'changed_from', value: 'free' },
      true,
      {},
      updated({ contact: { custom: { plan: 'Free' } } }),
    ],
    [
      'previous.<field> is',
      { field: 'previous.priority', operator: 'is', value: 'low' },
      true,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'previous.<field> defaults to the value as it came in',
      { field: 'previous.status', operator: 'is', value: 'new' },
      true,
      {},
      updated({ priority: 'low' }),
    ],
    [
      'previous.tags',
      { field: 'previous.tags', operator: 'contains_any', value: ['vip'] },
      true,
      {},
      updated({ tags: ['vip'] }),
    ],
    [
      'previous.contact.custom',
      { field: 'previous.contact.custom.seats', operator: 'less_than', value: 5 },
      true,
      {},
      updated({ contact: { custom: { seats: 2 } } }),
    ],
    [
      'previous null',
      { field: 'previous.department_id', operator: 'is_empty' },
      true,
      {},
      updated({ department_id: null }),
    ],
  ]);
});

t.test('more `matches` patterns on one field than one RE2 set holds', async (t) => {
  const rules = Array.from({ length: 70 }, (_, i) =>
    rule({
      id: `p${String(i).padStart(2, '0')}`,
      position: i,
      conditions: { field: 'subject', operator: 'matches', value: `^item-${i}\\b|\\bcode${i}$` },
    }),
  );
  const result = run(rules, ticket({ subject: 'Item-3 follows CODE65' }));
  t.same(
    result.trace.rules.filter((r) => r.matched).map((r) => r.rule_id),
    ['p03', 'p65'],
  );
});

t.test('SLA event fields read the event, and are empty on other events', async (t) => {
  const breached = {
    type: 'sla.breached' as const,
    sla: { kind: 'first_answer', policy_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11' },
  };
  table(t, [
    ['sla.kind is', { field: 'sla.kind', operator: 'is', value: 'first_answer' }, true, {}, breached],
    [
      'sla.kind is_none_of',
      { field: 'sla.kind', operator: 'is_none_of', value: ['resolution'] },
      true,
      {},
      breached,
    ],
    [
      'sla.policy_id is (folded like text)',
      { field: 'sla.policy_id', operator: 'is', value: '6F1C2B7E-9A4D-4C1E-8F00-2B9D7C1A5E11' },
      true,
      {},
      breached,
    ],
    ['sla.kind on an event without one', { field: 'sla.kind', operator: 'is', value: 'first_answer' }, false],
    ['sla.policy_id empty without one', { field: 'sla.policy_id', operator: 'is_empty' }, true],
    [
      'a kind the engine does not know is a mismatch',
      { field: 'sla.kind', operator: 'is_not', value: 'resolution' },
      false,
      {},
      { ...breached, sla: { kind: 'first_reply', policy_id: null } },
    ],
  ]);
});
