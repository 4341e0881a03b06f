// Random rule sets on random tickets: the compiled engine (generated code, closures, every trace
// level) must agree with the plain reference interpreter in ./reference.ts, rule by rule and
// condition node by condition node.

import { inspect, isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import { compileRules, evaluate, validateRule } from '../../src/rule-engine/index.ts';
import type {
  Action,
  Catalog,
  Condition,
  ConditionLeaf,
  Rule,
  RuleEvent,
  TicketSnapshot,
  Trigger,
} from '../../src/rule-engine/types.ts';
import { CHANNELS, PRIORITIES, SLA_KINDS, STATUSES, TRIGGERS } from '../../src/rule-engine/types.ts';
import { checkProperty } from '../helpers/property.ts';
import { referenceEvaluate } from './reference.ts';

/**
 * Inside a property, a failed check must throw: tap's assertions only record, so fast-check would
 * see every case pass and could neither shrink nor report the seed.
 */
function expectSame(actual: unknown, expected: unknown, what: string): void {
  // structuredClone: both sides as plain data, so a null-prototype object (contact.custom) equals
  // a plain one with the same entries, as tap's t.same had it.
  if (!isDeepStrictEqual(structuredClone(actual), structuredClone(expected))) {
    throw new Error(
      `${what}: got ${inspect(actual, { depth: 8 })}, expected ${inspect(expected, { depth: 8 })}`,
    );
  }
}

const DEPTS = ['d-sales', 'd-support', 'd-billing'];
const AGENTS = ['a-ann', 'a-bob'];
const catalog: Catalog = {
  departmentIds: new Set(DEPTS),
  agentIds: new Set(AGENTS),
  customFields: new Map([
    ['plan', 'text'],
    ['seats', 'number'],
    ['since', 'date'],
    ['vip', 'boolean'],
  ]),
};

// Words chosen to hit the folding rules: case, ß, ligatures, full-width, decomposed accents, sigma.
const WORDS = [
  'refund',
  'Refund',
  'REFUND',
  'fund',
  'straße',
  'STRASSE',
  'ﬁle',
  'file',
  'Ｒｅｆｕｎｄ',
  'e\u0301',
  'é',
  'ΟΔΟΣ',
  'οδοσ',
  'vip',
  'acme.io',
  'ACME.io',
  'jane@acme.io',
  'a b',
  'x',
];
const PATTERNS = [
  'refund',
  '^re',
  'fund$',
  '\\bvip\\b',
  'x*',
  '^$',
  '(a|b)+c',
  '[0-9]{2,}',
  'é',
  'Straße',
  'STRASSE',
  '\\d+-\\d+',
  '.',
  'ß',
  '(?i)ACME\\.IO$',
  '^\\s*$',
];
const TAGS = ['vip', 'VIP', ' vip ', 'billing', 'spam  Suspect', 'spam suspect', 'Ünïcode'];

const word = fc.constantFrom(...WORDS);
const textValue = fc.oneof(
  word,
  fc.array(word, { minLength: 2, maxLength: 3 }).map((w) => w.join(' ')),
);
// Long texts (64+ characters) take the bigram-signature path of `contains`.
const longText = fc.array(word, { minLength: 12, maxLength: 40 }).map((w) => w.join(' '));
const rawText = fc.oneof(
  { weight: 5, arbitrary: textValue },
  { weight: 2, arbitrary: longText },
  { weight: 1, arbitrary: fc.constantFrom(null, '', '   ', 42 as unknown as string) },
);
const date = fc.constantFrom('2023-01-31', '2024-02-29', '2024-06-01', '2025-12-31');

type FieldSpec = { ops: string[]; value: (op: string) => fc.Arbitrary<unknown>; tracked: boolean };

const TEXT_OPS = [
  'is',
  'is_not',
  'is_one_of',
  'is_none_of',
  'contains',
  'does_not_contain',
  'starts_with',
  'ends_with',
  'matches',
  'is_empty',
  'is_not_empty',
];
const EQ = ['is', 'is_not', 'is_one_of', 'is_none_of'];
const ORDER = ['greater_than', 'less_than'];
const EMPTINESS = ['is_empty', 'is_not_empty'];

function valueFor(scalar: fc.Arbitrary<unknown>, nullable = true) {
  return (op: string): fc.Arbitrary<unknown> => {
    if (op === 'is_one_of' || op === 'is_none_of') return fc.array(scalar, { minLength: 1, maxLength: 3 });
    if (op === 'changed_from' || op === 'changed_to')
      return nullable ? fc.oneof(scalar, fc.constant(null)) : scalar;
    return scalar;
  };
}

const textSpec = (tracked: boolean): FieldSpec => ({
  ops: TEXT_OPS,
  tracked,
  value: (op) => (op === 'matches' ? fc.constantFrom(...PATTERNS) : valueFor(textValue)(op)),
});

const FIELDS: Record<string, FieldSpec> = {
  channel: { ops: EQ, tracked: true, value: valueFor(fc.constantFrom(...CHANNELS), false) },
  subject: textSpec(true),
  'message.body': textSpec(false),
  'sender.email': textSpec(false),
  'sender.domain': textSpec(false),
  support_address: textSpec(true),
  department_id: { ops: [...EQ, ...EMPTINESS], tracked: true, value: valueFor(fc.constantFrom(...DEPTS)) },
  status: { ops: EQ, tracked: true, value: valueFor(fc.constantFrom(...STATUSES), false) },
  priority: { ops: [...EQ, ...ORDER], tracked: true, value: valueFor(fc.constantFrom(...PRIORITIES), false) },
  assignee_id: { ops: [...EQ, ...EMPTINESS], tracked: true, value: valueFor(fc.constantFrom(...AGENTS)) },
  tags: {
    ops: ['contains_any', 'contains_all', 'contains_none', ...EMPTINESS],
    tracked: true,
    value: () => fc.array(fc.constantFrom(...TAGS), { minLength: 1, maxLength: 3 }),
  },
  'contact.name': textSpec(true),
  'contact.email': textSpec(true),
  created_in_working_hours: {
    ops: ['is', 'is_not', ...EMPTINESS],
    tracked: false,
    value: () => fc.boolean(),
  },
  outside_working_hours: {
    ops: ['is', 'is_not', ...EMPTINESS],
    tracked: false,
    value: () => fc.boolean(),
  },
  'sla.kind': { ops: EQ, tracked: false, value: valueFor(fc.constantFrom(...SLA_KINDS), false) },
  'sla.policy_id': textSpec(false),
  'contact.custom.plan': textSpec(true),
  'contact.custom.seats': {
    ops: [...EQ, ...ORDER, ...EMPTINESS],
    tracked: true,
    value: valueFor(fc.integer({ min: -2, max: 12 })),
  },
  'contact.custom.since': {
    ops: ['is', 'is_not', ...ORDER, ...EMPTINESS],
    tracked: true,
    value: valueFor(date),
  },
  'contact.custom.vip': { ops: ['is', 'is_not', ...EMPTINESS], tracked: true, value: valueFor(fc.boolean()) },
};

const leaf: fc.Arbitrary<ConditionLeaf> = fc
  .tuple(fc.constantFrom(...Object.keys(FIELDS)), fc.constantFrom('current', 'previous', 'change'))
  .chain(([name, mode]) => {
    const spec = FIELDS[name]!;
    let field = name;
    let ops = spec.ops;
    if (mode === 'previous' && spec.tracked) field = `previous.${name}`;
    if (mode === 'change' && spec.tracked) {
      ops = name === 'tags' ? ['has_changed'] : ['has_changed', 'changed_from', 'changed_to'];
    }
    return fc.constantFrom(...ops).chain((operator) => {
      if (operator === 'has_changed' || operator === 'is_empty' || operator === 'is_not_empty') {
        return fc.constant({ field, operator } as ConditionLeaf);
      }
      return spec.value(operator).map((value) => ({ field, operator, value }) as ConditionLeaf);
    });
  });

const condition: fc.Arbitrary<Condition> = fc.letrec<{ node: Condition }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 3, arbitrary: leaf },
    { weight: 1, arbitrary: fc.array(tie('node'), { minLength: 0, maxLength: 3 }).map((all) => ({ all })) },
    { weight: 1, arbitrary: fc.array(tie('node'), { minLength: 1, maxLength: 3 }).map((any) => ({ any })) },
    { weight: 1, arbitrary: tie('node').map((not) => ({ not })) },
  ),
})).node;

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.constantFrom(...DEPTS).map((department_id) => ({ type: 'transfer', department_id }) as Action),
  fc.constantFrom(...AGENTS).map((agent_id) => ({ type: 'assign', to: 'agent', agent_id }) as Action),
  fc.constantFrom('nobody', 'round_robin', 'least_busy').map((to) => ({ type: 'assign', to }) as Action),
  fc
    .tuple(
      fc.constantFrom('add_tags', 'remove_tags', 'replace_tags'),
      fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
    )
    .map(
      ([type, tags]) =>
        ({ type, tags: type === 'replace_tags' || tags.length > 0 ? tags : ['vip'] }) as Action,
    ),
  fc.constantFrom(...PRIORITIES).map((priority) => ({ type: 'set_priority', priority }) as Action),
  fc.constantFrom('open', 'answered', 'resolved').map((status) => ({ type: 'set_status', status }) as Action),
  fc.constant({ type: 'set_status', status: 'postponed', postpone_seconds: 3600 } as Action),
  fc.constant({ type: 'mark_spam' } as Action),
  fc.constant({ type: 'add_note', body: 'Routed by a rule.' } as Action),
);

/** ticket.idle rules need their parameter; which one does not matter to the engine. */
const IDLE = { minutes: 60, business: false };

const rules: fc.Arbitrary<Rule[]> = fc
  .array(
    fc.record({
      position: fc.integer({ min: 0, max: 4 }),
      active: fc.boolean().map((b) => b || Math.random() < 0), // mostly true via weights below
      activeWeight: fc.integer({ min: 0, max: 9 }),
      stop_processing: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      department_id: fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.constantFrom(...DEPTS) },
      ),
      triggers: fc.subarray([...TRIGGERS], { minLength: 1 }),
      conditions: condition,
      actions: fc.array(action, { minLength: 1, maxLength: 3 }),
    }),
    { minLength: 1, maxLength: 6 },
  )
  .map((list) =>
    list.map(
      ({ activeWeight, active: _unused, ...r }, i): Rule => ({
        id: `r${i}`,
        name: `Rule ${i}`,
        ...r,
        idle: r.triggers.includes('ticket.idle') ? IDLE : null,
        active: activeWeight > 0,
      }),
    ),
  );

const custom = fc.record(
  {
    plan: rawText,
    seats: fc.oneof(fc.integer({ min: -2, max: 12 }), fc.constantFrom(null, '7' as unknown as number)),
    since: fc.oneof(date, fc.constantFrom(null, 'soon')),
    vip: fc.oneof(fc.boolean(), fc.constantFrom(null, 'yes' as unknown as boolean)),
  },
  { requiredKeys: [] },
);

const ticket: fc.Arbitrary<TicketSnapshot> = fc.record({
  id: fc.constant('t1'),
  channel: fc.oneof(fc.constantFrom(...CHANNELS), fc.constantFrom('fax' as never, null as never)),
  subject: rawText as fc.Arbitrary<string>,
  status: fc.oneof(fc.constantFrom(...STATUSES), fc.constant('bogus' as never)),
  priority: fc.oneof(fc.constantFrom(...PRIORITIES), fc.constant('extreme' as never)),
  department_id: fc.oneof(fc.constantFrom(...DEPTS), fc.constant(null)),
  assignee_id: fc.oneof(fc.constantFrom(...AGENTS), fc.constant(null)),
  tags: fc.oneof(
    { weight: 5, arbitrary: fc.array(fc.constantFrom(...TAGS), { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.constant('vip' as unknown as string[]) },
  ),
  support_address: rawText as fc.Arbitrary<string | null>,
  postponed_until: fc.constant(null),
  contact: fc.record({
    name: rawText as fc.Arbitrary<string>,
    email: rawText as fc.Arbitrary<string | null>,
    custom,
  }),
  created_in_working_hours: fc.oneof(fc.boolean(), fc.constantFrom(null, 'yes' as unknown as boolean)),
  outside_working_hours: fc.oneof(fc.boolean(), fc.constantFrom(null, 'yes' as unknown as boolean)),
  pending_assignment: fc.oneof(
    { weight: 4, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constant({ strategy: 'round_robin' as const, department_id: 'd-sales' }) },
  ),
});

const event: fc.Arbitrary<RuleEvent> = fc.record({
  type: fc.constantFrom(...TRIGGERS) as fc.Arbitrary<Trigger>,
  occurred_at: fc.constant('2024-06-01T10:00:00.000Z'),
  message: fc.oneof(
    fc.constant(null),
    fc.record({
      body: rawText as fc.Arbitrary<string>,
      sender_email: fc.oneof(
        fc.constantFrom('jane@acme.io', 'Bob@Example.COM', 'noat', ''),
        fc.constant(null),
      ),
    }),
  ),
  sla: fc.oneof(
    fc.constant(null),
    fc.record({
      kind: fc.constantFrom(...SLA_KINDS, 'other'),
      policy_id: fc.oneof(fc.constantFrom('p-refund', 'P-REFUND', ''), fc.constant(null)),
    }),
  ),
  previous: fc.record(
    {
      channel: fc.constantFrom(...CHANNELS),
      subject: textValue,
      status: fc.constantFrom(...STATUSES),
      priority: fc.constantFrom(...PRIORITIES),
      department_id: fc.oneof(fc.constantFrom(...DEPTS), fc.constant(null)),
      assignee_id: fc.oneof(fc.constantFrom(...AGENTS), fc.constant(null)),
      tags: fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
      contact: fc.record({ name: textValue, custom }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  ),
});

function effectKeys(effects: readonly { rule_id: string; action_index: number; type: string }[]): string[] {
  return effects.map((e) => `${e.rule_id}#${e.action_index}:${e.type}`);
}

t.test(
  'generated rules are valid and the compiled engine agrees with the reference interpreter',
  async (t) => {
    let checked = 0;
    let matched = 0;
    checkProperty(
      t,
      'compiled engine vs reference',
      fc.property(rules, ticket, event, (ruleSet, snapshot, ev) => {
        for (const rule of ruleSet) {
          const errors = validateRule(rule, catalog);
          if (errors.length > 0) throw new Error(`generator made an invalid rule: ${JSON.stringify(errors)}`);
        }
        const expected = referenceEvaluate(ev, snapshot, ruleSet);
        const frozen = structuredClone(snapshot);
        const generated = compileRules(ruleSet, { version: 1 });
        const closures = compileRules(ruleSet, { version: 1, codegen: false });
        const runs = [
          evaluate(ev, snapshot, generated),
          evaluate(ev, snapshot, generated, { trace: 'rules' }),
          evaluate(ev, snapshot, closures, { trace: 'rules' }),
        ];
        for (const result of runs) {
          const got = result.trace.rules.map((r) => [r.rule_id, r.matched]);
          if (JSON.stringify(got) !== JSON.stringify(expected.rules)) {
            throw new Error(`matches differ: ${JSON.stringify(got)} vs ${JSON.stringify(expected.rules)}`);
          }
          expectSame(result.ticket, expected.ticket, 'ticket after the rules');
          expectSame(effectKeys(result.effects), effectKeys(expected.effects as never), 'effects');
          expectSame(result.trace.stopped_by, expected.stoppedBy, 'stopped_by');
        }
        for (const light of [evaluate(ev, snapshot, generated, { trace: 'matches' })]) {
          expectSame(
            light.trace.rules.map((r) => r.rule_id),
            expected.rules.filter(([, m]) => m).map(([id]) => id),
            "matched rules with trace 'matches'",
          );
          expectSame(light.ticket, expected.ticket, "ticket with trace 'matches'");
        }
        for (const entry of runs[0]!.trace.rules) {
          if (!entry.considered) continue;
          const nodes = entry.conditions!.map(({ pointer, result }) => ({ pointer, result }));
          expectSame(nodes, expected.nodes.get(entry.rule_id), `condition nodes of ${entry.rule_id}`);
        }
        expectSame(snapshot, frozen, 'the input ticket is not mutated');
        checked += 1;
        matched += expected.rules.filter(([, m]) => m).length;
      }),
      { numRuns: 400 },
    );
    t.ok(checked === 400, 'ran 400 random cases');
    t.ok(matched > 50, `enough rules matched to exercise actions (${matched})`);
  },
);

t.test(
  'one compiled set evaluating ticket after ticket (reused buffers) agrees with the reference',
  async (t) => {
    checkProperty(
      t,
      'one compiled set, many tickets',
      fc.property(
        rules,
        fc.array(fc.tuple(ticket, event), { minLength: 2, maxLength: 5 }),
        (ruleSet, cases) => {
          const compiled = compileRules(ruleSet, { version: 1 });
          for (const [snapshot, ev] of cases) {
            const expected = referenceEvaluate(ev, snapshot, ruleSet);
            const ids = expected.rules.filter(([, m]) => m).map(([id]) => id);
            for (const trace of ['matches', 'rules', 'conditions'] as const) {
              const result = evaluate(ev, snapshot, compiled, { trace });
              expectSame(
                result.trace.rules.filter((r) => r.matched).map((r) => r.rule_id),
                ids,
                `matched rules with trace '${trace}'`,
              );
              expectSame(result.ticket, expected.ticket, `ticket with trace '${trace}'`);
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  },
);

t.test('leaves one by one: every field and operator agrees with the reference', async (t) => {
  checkProperty(
    t,
    'single leaves',
    fc.property(leaf, ticket, event, (node, snapshot, ev) => {
      const rule: Rule = {
        id: 'r',
        name: 'r',
        active: true,
        position: 0,
        stop_processing: false,
        triggers: [ev.type],
        ...(ev.type === 'ticket.idle' && { idle: IDLE }),
        conditions: node,
        actions: [{ type: 'add_note', body: 'x' }],
      };
      const expected = referenceEvaluate(ev, snapshot, [rule]).rules[0]![1];
      const compiled = compileRules([rule], { version: 1 });
      expectSame(
        evaluate(ev, snapshot, compiled, { trace: 'matches' }).trace.rules.length === 1,
        expected,
        "matched with trace 'matches'",
      );
      expectSame(evaluate(ev, snapshot, compiled).trace.rules[0]!.matched, expected, 'matched');
    }),
    { numRuns: 1500 },
  );
});

t.test(
  'many patterns and needles on one field (pattern sets, needle index) agree with the reference',
  async (t) => {
    const leafOn = (field: string) =>
      fc.oneof(
        fc.constantFrom(...PATTERNS).map((value) => ({ field, operator: 'matches', value }) as ConditionLeaf),
        textValue.map((value) => ({ field, operator: 'contains', value }) as ConditionLeaf),
        textValue.map((value) => ({ field, operator: 'does_not_contain', value }) as ConditionLeaf),
        textValue.map((value) => ({ field, operator: 'starts_with', value }) as ConditionLeaf),
        textValue.map((value) => ({ field, operator: 'ends_with', value }) as ConditionLeaf),
      );
    const manyRules = fc
      .array(fc.oneof(leafOn('message.body'), leafOn('subject')), { minLength: 2, maxLength: 40 })
      .map((leaves) =>
        leaves.map(
          (conditions, i): Rule => ({
            id: `p${i}`,
            name: `p${i}`,
            active: true,
            position: i,
            stop_processing: false,
            triggers: ['ticket.created'],
            conditions,
            actions: [{ type: 'add_note', body: 'x' }],
          }),
        ),
      );
    const texts = fc.oneof(
      longText,
      textValue,
      fc.constantFrom('', 'Ｒｅｆｕｎｄ STRASSE 12-34 VIP', 'ACME.IO'),
    );
    checkProperty(
      t,
      'pattern sets and needle index',
      fc.property(manyRules, texts, texts, (ruleSet, subject, body) => {
        const snapshot: TicketSnapshot = {
          id: 't',
          channel: 'email',
          subject,
          status: 'new',
          priority: 'normal',
          department_id: null,
          assignee_id: null,
          tags: [],
          support_address: null,
          postponed_until: null,
          contact: { name: 'n', email: null, custom: {} },
          created_in_working_hours: true,
          outside_working_hours: false,
        };
        const ev: RuleEvent = {
          type: 'ticket.created',
          occurred_at: '2024-06-01T10:00:00.000Z',
          message: { body, sender_email: null },
        };
        const expected = referenceEvaluate(ev, snapshot, ruleSet).rules;
        const got = evaluate(ev, snapshot, compileRules(ruleSet, { version: 1 }), { trace: 'rules' }).trace
          .rules;
        expectSame(
          got.map((r) => [r.rule_id, r.matched]),
          expected,
          'matched rules',
        );
      }),
      { numRuns: 300 },
    );
  },
);
