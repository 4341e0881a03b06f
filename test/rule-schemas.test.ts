import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import t from 'tap';
import { FIELDS, type FieldSpec, operatorsFor, resolveField, VALUE_KIND } from '../src/rule-engine/fields.ts';
import type { Action, Catalog, Condition, CustomFieldType, Operator } from '../src/rule-engine/index.ts';
import { LIMITS, PREVIOUS_PREFIX, validateRule } from '../src/rule-engine/index.ts';

// The committed spec publishes the shape of rule conditions and actions; the rule engine's
// validateRule() stays the judge of requests. The spec must never refuse a rule the engine
// accepts (a validating proxy would block it, a generated client would not compile it), and it
// must still refuse what the engine refuses by shape. Walked over the engine's own tables:
// every field, every operator it takes, every kind of value, every action.

const spec = JSON.parse(readFileSync(new URL('../openapi/openapi.json', import.meta.url), 'utf8'));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addSchema(spec, 'openapi.json');
const conditionFits = ajv.compile({ $ref: 'openapi.json#/components/schemas/RuleCondition' });
const actionFits = ajv.compile({ $ref: 'openapi.json#/components/schemas/RuleAction' });

const DEPARTMENT = '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11';
const AGENT = '0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9';
const CUSTOM: Record<string, CustomFieldType> = {
  plan: 'text',
  seats: 'number',
  renewal: 'date',
  active: 'boolean',
  tier: 'choice',
};
const catalog: Catalog = {
  departmentIds: new Set([DEPARTMENT]),
  agentIds: new Set([AGENT]),
  customFields: new Map(Object.entries(CUSTOM)),
};

function sample(spec: FieldSpec): unknown {
  switch (spec.type) {
    case 'text':
    case 'choice':
      return 'Gold plan';
    case 'enum':
    case 'priority':
      return spec.enumValues!.at(-1);
    case 'department':
      return DEPARTMENT;
    case 'agent':
      return AGENT;
    case 'number':
      return 3.5;
    case 'date':
      return '2024-02-29';
    case 'boolean':
      return false;
    case 'tags':
      return 'vip';
  }
}

/** Every value an operator of this field may take, one of each shape. */
function values(spec: FieldSpec, op: Operator): unknown[] {
  switch (VALUE_KIND[op]) {
    case 'none':
      return [undefined];
    case 'scalar':
      return [sample(spec)];
    case 'scalar_or_null':
      return [sample(spec), null];
    case 'list':
      return [[sample(spec)]];
    case 'text':
      return ['refund'];
    case 'pattern':
      return ['^re(fund|turn)'];
    case 'tags':
      return [['vip', 'Billing']];
  }
}

function leaves(): Condition[] {
  const names = Object.entries(FIELDS).flatMap(([name, s]) =>
    s.tracked ? [name, `${PREVIOUS_PREFIX}${name}`] : [name],
  );
  for (const key of Object.keys(CUSTOM))
    names.push(`contact.custom.${key}`, `previous.contact.custom.${key}`);
  const out: Condition[] = [];
  for (const name of names) {
    const lookup = resolveField(name, (key) => CUSTOM[key]);
    if (!lookup.ok) throw new Error(lookup.message);
    for (const operator of operatorsFor(lookup.field)) {
      for (const value of values(lookup.field.spec, operator)) {
        out.push(
          value === undefined ? { field: name, operator } : ({ field: name, operator, value } as Condition),
        );
      }
    }
  }
  return out;
}

const ACTIONS: Action[] = [
  { type: 'transfer', department_id: DEPARTMENT },
  { type: 'assign', to: 'agent', agent_id: AGENT },
  { type: 'assign', to: 'nobody' },
  { type: 'assign', to: 'round_robin' },
  { type: 'assign', to: 'least_busy' },
  { type: 'add_tags', tags: ['vip'] },
  { type: 'remove_tags', tags: ['vip'] },
  { type: 'replace_tags', tags: [] },
  { type: 'set_priority', priority: 'urgent' },
  { type: 'set_status', status: 'resolved' },
  { type: 'set_status', status: 'postponed', postpone_seconds: 3600 },
  { type: 'mark_spam' },
  { type: 'add_note', body: 'Routed by a rule.' },
];

function ruleWith(conditions: unknown, actions: unknown[] = [{ type: 'mark_spam' }]) {
  return {
    id: 'schema-check',
    name: 'Schema check',
    active: true,
    position: 0,
    stop_processing: false,
    triggers: ['ticket.created'],
    conditions,
    actions,
  };
}

t.test('every leaf the engine accepts fits the published schema', async (t) => {
  const all = leaves();
  t.ok(all.length > 150, `${all.length} leaves`);
  for (const leaf of all) {
    const errors = validateRule(ruleWith(leaf), catalog);
    t.same(errors, [], `the engine accepts ${JSON.stringify(leaf)}`);
    t.ok(conditionFits(leaf), `${JSON.stringify(leaf)} fits: ${ajv.errorsText(conditionFits.errors)}`);
  }
  const tree = { any: [{ all: all.slice(0, 100) }, { not: { all: [] } }, { all: all.slice(100, 200) }] };
  t.same(validateRule(ruleWith(tree), catalog), []);
  t.ok(conditionFits(tree), 'groups nest');
});

t.test('every action the engine accepts fits the published schema', async (t) => {
  for (const action of ACTIONS) {
    t.same(validateRule(ruleWith({ all: [] }, [action]), catalog), [], JSON.stringify(action));
    t.ok(actionFits(action), `${JSON.stringify(action)} fits: ${ajv.errorsText(actionFits.errors)}`);
  }
});

t.test('what the engine refuses by shape, the schema refuses too', async (t) => {
  const badConditions: unknown[] = [
    { field: 'priority', operator: 'equals', value: 'high' },
    { field: 'priority', operator: 'contains', value: 'hi' },
    { field: 'priority', operator: 'is', value: 'critical' },
    { field: 'channel', operator: 'is_one_of', value: [] },
    { field: 'tags', operator: 'contains_any', value: 'vip' },
    { field: 'subject', operator: 'is_empty', value: 'x' },
    { field: 'message.body', operator: 'has_changed' },
    { field: 'previous.sender.email', operator: 'is', value: 'a@b.c' },
    { field: 'nonsense', operator: 'is', value: 'x' },
    { any: [] },
    { all: [], any: [] },
    { not: [] },
    { field: 'subject', operator: 'is', value: 'x', extra: true },
  ];
  for (const condition of badConditions) {
    t.not(
      validateRule(ruleWith(condition), catalog).length,
      0,
      `the engine refuses ${JSON.stringify(condition)}`,
    );
    t.notOk(conditionFits(condition), `the schema refuses ${JSON.stringify(condition)}`);
  }
  const badActions: unknown[] = [
    { type: 'assign', to: 'agent' },
    { type: 'assign', to: 'nobody', agent_id: AGENT },
    { type: 'set_priority', priority: 'critical' },
    { type: 'set_status', status: 'spam' },
    { type: 'set_status', status: 'postponed' },
    { type: 'set_status', status: 'open', postpone_seconds: 60 },
    { type: 'set_status', status: 'postponed', postpone_seconds: LIMITS.maxPostponeSeconds + 1 },
    { type: 'add_tags', tags: [] },
    { type: 'explode' },
  ];
  for (const action of badActions) {
    t.not(
      validateRule(ruleWith({ all: [] }, [action]), catalog).length,
      0,
      `the engine refuses ${JSON.stringify(action)}`,
    );
    t.notOk(actionFits(action), `the schema refuses ${JSON.stringify(action)}`);
  }
});
