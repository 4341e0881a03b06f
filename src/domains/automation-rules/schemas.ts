import { type Static, Type } from 'typebox';
import { ref, Timestamp, Uuid } from '../../contract.ts';
import { PageOf } from '../../plugins/pagination.ts';
import {
  type Action,
  type Condition,
  type ConditionLeaf,
  CUSTOM_PREFIX,
  FIELDS,
  type FieldSpec,
  LIMITS,
  OPERATORS,
  type Operator,
  operatorsFor,
  PREVIOUS_PREFIX,
  PRIORITIES,
  SLA_KINDS,
  TRIGGERS,
  VALUE_KIND,
  type ValueKind,
} from '../../rule-engine/index.ts';
import { ChannelSchema, PrioritySchema, StatusSchema } from '../tickets/schemas.ts';

// The contract publishes the real shape of conditions and actions, derived from the rule
// engine's own tables (fields, operators by field type, value kinds), so a generated client
// catches a wrong operator or a malformed action. Requests are still checked by the engine's
// validateRule(), not by these schemas: it knows what a JSON schema cannot (departments and
// agents that exist, contact field types, safe patterns) and answers 422 `invalid_rule` with a
// pointer to the offending node, which clients and tests rely on. So the body validator sees
// loose stand-ins under the same $ids (RULE_STAND_INS, wired in app.ts), and so does the response
// serializer. Every rule validateRule() accepts fits these schemas (test/rule-schemas.test.ts),
// so responses do too; the suite's contract check validates them against the real ones.

export const TriggerSchema = Type.Enum(TRIGGERS, {
  description:
    "ticket.created; ticket.updated (any field change); ticket.customer_replied; ticket.agent_replied; ticket.transferred; ticket.status_changed; sla.warning and sla.breached (an SLA target of the ticket warned or breached: sla.kind and sla.policy_id say which); ticket.idle (no activity on a new, open or answered ticket for the rule's `idle` time, once per quiet spell).",
});

const IDLE_DESCRIPTION =
  "With the ticket.idle trigger (and only then): how long the ticket must have gone without activity (a message, or a change by an agent, a contact or an integration; not what rules or the SLA clock do). minutes: whole minutes from 1 to 525600; business: count only the working hours of the ticket's department (else calendar time).";

export const IdleAfterSchema = Type.Object(
  {
    minutes: Type.Integer({ minimum: 1, maximum: LIMITS.maxIdleMinutes }),
    business: Type.Boolean({ description: "true: minutes of the department's working hours." }),
  },
  { $id: 'RuleIdleAfter', additionalProperties: false, description: IDLE_DESCRIPTION },
);

// The body's shape only (400 on wrong types and unknown keys): the range and whether the rule
// listens to ticket.idle are validateRule's, answered 422 with the pointer body/idle/minutes.
const IdleBody = Type.Union(
  [
    Type.Object({ minutes: Type.Integer(), business: Type.Boolean() }, { additionalProperties: false }),
    Type.Null(),
  ],
  { description: IDLE_DESCRIPTION, examples: [{ minutes: 480, business: true }] },
);

type JsonSchema = Record<string, unknown>;

const text = (maxLength: number): JsonSchema => ({ type: 'string', minLength: 1, maxLength, pattern: '\\S' });
const TAG = { ...text(LIMITS.maxTagLength), description: 'A tag; compared folded (case and accents).' };
const UUID = { type: 'string', format: 'uuid' };

/** The constant a leaf compares a field of this type with. */
function scalarOf(spec: FieldSpec): JsonSchema {
  switch (spec.type) {
    case 'text':
    case 'choice':
      return text(LIMITS.maxTextValue);
    case 'enum':
    case 'priority':
      return { type: 'string', enum: [...(spec.enumValues ?? [])] };
    case 'department':
      return { ...UUID, description: 'A department id.' };
    case 'agent':
      return { ...UUID, description: 'An agent id.' };
    case 'number':
      return { type: 'number' };
    case 'date':
      return { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'A date, YYYY-MM-DD.' };
    case 'boolean':
      return { type: 'boolean' };
    case 'tags':
      return TAG;
  }
}

function leafValue(kind: ValueKind, spec: FieldSpec): JsonSchema | null {
  switch (kind) {
    case 'none':
      return null;
    case 'scalar':
      return scalarOf(spec);
    case 'scalar_or_null':
      return { anyOf: [scalarOf(spec), { type: 'null' }] };
    case 'list':
      return { type: 'array', items: scalarOf(spec), minItems: 1, maxItems: LIMITS.maxListValues };
    case 'text':
      return text(LIMITS.maxTextValue);
    case 'pattern':
      return { type: 'string', minLength: 1, description: 'An RE2 pattern, matched case-insensitively.' };
    case 'tags':
      return { type: 'array', items: TAG, minItems: 1, maxItems: LIMITS.maxListValues };
  }
}

function leaf(
  field: JsonSchema,
  operators: readonly Operator[],
  value: JsonSchema | null,
  valueRequired = value !== null,
): JsonSchema {
  return {
    type: 'object',
    properties: {
      field,
      operator: { type: 'string', enum: [...operators] },
      ...(value ? { value } : {}),
    },
    required: valueRequired ? ['field', 'operator', 'value'] : ['field', 'operator'],
    additionalProperties: false,
  };
}

/**
 * One leaf shape per group of fields that take the same operators and values, and per kind of
 * value those operators take: {"field": "priority", "operator": "greater_than", "value": "low"}.
 */
function fieldLeaves(): JsonSchema[] {
  const groups = new Map<string, { spec: FieldSpec; operators: readonly Operator[]; names: string[] }>();
  for (const [name, spec] of Object.entries(FIELDS)) {
    const variants = [{ name, spec, previous: false }];
    if (spec.tracked) variants.push({ name: `${PREVIOUS_PREFIX}${name}`, spec, previous: true });
    for (const field of variants) {
      const operators = operatorsFor(field);
      const key = JSON.stringify([spec.type, spec.enumValues ?? null, operators]);
      const group = groups.get(key) ?? { spec, operators, names: [] };
      group.names.push(field.name);
      groups.set(key, group);
    }
  }
  const leaves: JsonSchema[] = [];
  for (const { spec, operators, names } of groups.values()) {
    const byKind = new Map<ValueKind, Operator[]>();
    for (const op of operators) byKind.set(VALUE_KIND[op], [...(byKind.get(VALUE_KIND[op]) ?? []), op]);
    for (const [kind, ops] of byKind) {
      leaves.push(leaf({ type: 'string', enum: names }, ops, leafValue(kind, spec)));
    }
  }
  return leaves;
}

const CUSTOM_SCALAR = { type: ['string', 'number', 'boolean'] };

/** Contact fields are the help desk's own: their type is known when the rule is written. */
const customLeaf = leaf(
  {
    type: 'string',
    pattern: `^(${PREVIOUS_PREFIX.replace('.', '\\.')})?${CUSTOM_PREFIX.replaceAll('.', '\\.')}[a-z][a-z0-9_]{0,62}$`,
    description:
      'contact.custom.<key> (or previous.contact.custom.<key>): the operators and value follow the contact field type (text, number, date YYYY-MM-DD, boolean, choice).',
  },
  OPERATORS.filter((op) => VALUE_KIND[op] !== 'tags'),
  {
    anyOf: [
      { ...CUSTOM_SCALAR, maxLength: LIMITS.maxTextValue },
      { type: 'null' },
      { type: 'array', items: CUSTOM_SCALAR, minItems: 1, maxItems: LIMITS.maxListValues },
    ],
    description: 'Left out for is_empty, is_not_empty and has_changed.',
  },
  false,
);

export const ConditionLeafSchema = Type.Unsafe<ConditionLeaf>({
  $id: 'RuleConditionLeaf',
  description:
    'Compares one field of the ticket (or of the event) with a constant. The operators a field takes, and the value they need, depend on the field: is_empty, is_not_empty and has_changed take no value; is_one_of / is_none_of take a list; contains / starts_with / ends_with take text; matches an RE2 pattern; contains_any / contains_all / contains_none a list of tags. See docs/rules.md.',
  anyOf: [...fieldLeaves(), customLeaf],
});

const CONDITION = { $ref: 'RuleCondition#' };

export const ConditionSchema = Type.Unsafe<Condition>({
  $id: 'RuleCondition',
  description: `A boolean tree: {"all": [...]}, {"any": [...]}, {"not": {...}} or a leaf {"field", "operator", "value"}. Condition groups are {"any": [{"all": [...]}, {"all": [...]}]}; {"all": []} matches every ticket. At most ${LIMITS.maxNodes} nodes, nested at most ${LIMITS.maxDepth} deep; larger trees answer 422 \`invalid_rule\`.`,
  anyOf: [
    {
      type: 'object',
      properties: { all: { type: 'array', items: CONDITION, description: 'Every condition holds.' } },
      required: ['all'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: {
        any: { type: 'array', items: CONDITION, minItems: 1, description: 'At least one condition holds.' },
      },
      required: ['any'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: { not: CONDITION },
      required: ['not'],
      additionalProperties: false,
    },
    { $ref: 'RuleConditionLeaf#' },
  ],
  examples: [
    {
      any: [{ all: [{ field: 'channel', operator: 'is_one_of', value: ['facebook', 'twitter'] }] }],
    },
  ],
});

function action(type: string | readonly string[], properties: JsonSchema = {}, description?: string) {
  return {
    type: 'object',
    properties: {
      type: typeof type === 'string' ? { type: 'string', const: type } : { type: 'string', enum: [...type] },
      ...properties,
    },
    required: ['type', ...Object.keys(properties)],
    additionalProperties: false,
    ...(description ? { description } : {}),
  };
}

const tagList = (minItems: number) => ({
  type: 'array',
  items: TAG,
  minItems,
  maxItems: LIMITS.maxTicketTags,
});

export const ActionSchema = Type.Unsafe<Action>({
  $id: 'RuleAction',
  description: 'What a matching rule does; actions apply in the order written.',
  anyOf: [
    action('transfer', { department_id: UUID }),
    action('assign', { to: { type: 'string', const: 'agent' }, agent_id: UUID }),
    action('assign', { to: { type: 'string', const: 'nobody' } }, 'Unassigns the ticket.'),
    {
      ...action(
        'assign',
        {
          to: { type: 'string', enum: ['round_robin', 'least_busy'] },
          available_only: {
            type: 'boolean',
            default: false,
            description:
              'Only agents whose presence is online now (their last confirmation within PRESENCE_TIMEOUT_SECONDS) and who hold fewer new, open and answered tickets than their capacity (null: no limit). False: presence and capacity are ignored.',
          },
          level: {
            type: 'integer',
            minimum: 1,
            maximum: 3,
            description: 'Only members of this level of the department (tier 1 to 3). Default: every level.',
          },
        },
        'round_robin takes turns (one ring per department) and least_busy picks the agent with the fewest new, open and answered tickets, among the active solvers, supervisors and managers of the ticket’s department, narrowed by available_only and level. When nobody qualifies the ticket is left unassigned and the run’s effect says why (`reason`).',
      ),
      required: ['type', 'to'],
    },
    action(['add_tags', 'remove_tags'], { tags: tagList(1) }),
    action('replace_tags', { tags: tagList(0) }),
    action('set_priority', { priority: { type: 'string', enum: [...PRIORITIES] } }),
    action('set_status', { status: { type: 'string', enum: ['open', 'answered', 'resolved'] } }),
    action('set_status', {
      status: { type: 'string', const: 'postponed' },
      postpone_seconds: { type: 'integer', minimum: 60, maximum: LIMITS.maxPostponeSeconds },
    }),
    action('mark_spam'),
    action('add_note', { body: text(LIMITS.maxNoteLength) }),
  ],
  examples: [{ type: 'transfer', department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11' }],
});

/**
 * What the request body validator and the response serializer know under the same $ids:
 * validateRule() judges what comes in, and what goes out is what it accepted.
 */
export const RULE_STAND_INS = [
  { $id: 'RuleCondition', type: 'object', additionalProperties: true },
  { $id: 'RuleConditionLeaf', type: 'object', additionalProperties: true },
  { $id: 'RuleAction', type: 'object', additionalProperties: true },
];

const Name = Type.String({ minLength: 1, maxLength: LIMITS.maxNameLength, pattern: '\\S' });
const Note = Type.Union([Type.String({ maxLength: LIMITS.maxRuleNoteLength }), Type.Null()], {
  description: 'Free text for the people who maintain the rule.',
});
const Position = Type.Integer({
  minimum: -1_000_000_000,
  maximum: 1_000_000_000,
  description: 'Rules run in ascending position; equal positions run in id order.',
});

const definitionFields = {
  name: Type.String(),
  note: Type.Union([Type.String(), Type.Null()]),
  active: Type.Boolean(),
  position: Type.Integer(),
  stop_processing: Type.Boolean({ description: 'When the rule matches, later rules do not run.' }),
  department_id: Type.Union([Uuid(), Type.Null()], {
    description:
      "The owning department: the rule only matches and changes tickets of that department, and the department's managers may edit it.",
  }),
  triggers: Type.Array(TriggerSchema),
  // Optional: rules stored in settings events and webhook payloads before ticket.idle lack it.
  idle: Type.Optional(
    Type.Union([ref(IdleAfterSchema), Type.Null()], {
      description:
        'The ticket.idle parameter; null for other rules (absent from rules recorded before it existed).',
    }),
  ),
  conditions: ref(ConditionSchema),
  actions: Type.Array(ref(ActionSchema)),
};

export const AutomationRuleSchema = Type.Object(
  {
    id: Uuid(),
    ...definitionFields,
    version: Type.Integer({
      minimum: 1,
      description: 'Grows with every change; ticket history names the version that acted.',
    }),
    created_at: Timestamp(),
    updated_at: Timestamp(),
    created_by: Type.Union([Uuid(), Type.Null()]),
    updated_by: Type.Union([Uuid(), Type.Null()]),
  },
  { $id: 'AutomationRule', additionalProperties: false },
);
export type AutomationRule = Static<typeof AutomationRuleSchema>;

const MARKETING_EXAMPLE = {
  name: 'Marketing ticket routing',
  note: 'Social media conversations go to Marketing, unassigned.',
  active: true,
  triggers: ['ticket.created'],
  conditions: {
    any: [
      {
        all: [
          { field: 'channel', operator: 'is_one_of', value: ['facebook', 'twitter', 'instagram', 'viber'] },
        ],
      },
    ],
  },
  actions: [
    { type: 'transfer', department_id: '6f1c2b7e-9a4d-4c1e-8f00-2b9d7c1a5e11' },
    { type: 'assign', to: 'nobody' },
  ],
};

export const CreateRuleBody = Type.Object(
  {
    name: Name,
    note: Type.Optional(Note),
    active: Type.Optional(Type.Boolean({ description: 'Default true.' })),
    position: Type.Optional(Position),
    stop_processing: Type.Optional(Type.Boolean({ description: 'Default false.' })),
    department_id: Type.Optional(
      Type.Union([Uuid(), Type.Null()], {
        description: 'Owning department; department managers may only create rules of their departments.',
      }),
    ),
    triggers: Type.Array(TriggerSchema, { minItems: 1, maxItems: TRIGGERS.length }),
    idle: Type.Optional(IdleBody),
    conditions: ref(ConditionSchema),
    actions: Type.Array(ref(ActionSchema), { maxItems: LIMITS.maxActions }),
  },
  { additionalProperties: false, examples: [MARKETING_EXAMPLE] },
);
export type CreateRuleInput = Static<typeof CreateRuleBody>;

export const UpdateRuleBody = Type.Object(
  {
    name: Type.Optional(Name),
    note: Type.Optional(Note),
    active: Type.Optional(Type.Boolean()),
    position: Type.Optional(Position),
    stop_processing: Type.Optional(Type.Boolean()),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    triggers: Type.Optional(Type.Array(TriggerSchema, { minItems: 1, maxItems: TRIGGERS.length })),
    idle: Type.Optional(IdleBody),
    conditions: Type.Optional(ref(ConditionSchema)),
    actions: Type.Optional(Type.Array(ref(ActionSchema), { maxItems: LIMITS.maxActions })),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ active: false }, { name: 'Marketing routing', stop_processing: true }],
  },
);
export type UpdateRuleInput = Static<typeof UpdateRuleBody>;

export const RuleListQuery = {
  department_id: Type.Optional(
    Type.Union([Uuid(), Type.Literal('none')], {
      description: 'Rules owned by this department, or none for rules without one.',
    }),
  ),
  active: Type.Optional(Type.Boolean()),
};

export const RuleVersionSchema = Type.Object(
  {
    rule_id: Uuid(),
    version: Type.Integer({ minimum: 1 }),
    change: Type.Enum(['created', 'updated', 'reordered', 'deleted'] as const),
    definition: Type.Object(definitionFields, { additionalProperties: false }),
    changed_by: Type.Union([Uuid(), Type.Null()], { description: 'The agent; null for system changes.' }),
    changed_at: Timestamp(),
  },
  { $id: 'AutomationRuleVersion', additionalProperties: false },
);
export type RuleVersion = Static<typeof RuleVersionSchema>;

export const ReorderBody = Type.Object(
  {
    rule_ids: Type.Array(Uuid(), {
      maxItems: 10_000,
      description: 'Every rule, each once, in the order they should run.',
    }),
  },
  {
    additionalProperties: false,
    examples: [
      { rule_ids: ['0b6f8a52-4d0e-4a53-9c1a-33d4f1e2a7b9', '9a1e4c3d-7f2b-4e8a-b5c6-1d2e3f4a5b6c'] },
    ],
  },
);

export const RuleOrderSchema = Type.Object(
  { data: Type.Array(ref(AutomationRuleSchema), { description: 'Every rule, in running order.' }) },
  { $id: 'AutomationRuleOrder', additionalProperties: false },
);

// What the rules see and what they do: the shapes of the engine (src/rule-engine/types.ts).

const SnapshotContact = Type.Object(
  {
    name: Type.String(),
    email: Type.Union([Type.String(), Type.Null()]),
    custom: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

export const TicketSnapshotSchema = Type.Object(
  {
    id: Type.String(),
    channel: ChannelSchema,
    subject: Type.String(),
    status: StatusSchema,
    priority: PrioritySchema,
    department_id: Type.Union([Type.String(), Type.Null()]),
    assignee_id: Type.Union([Type.String(), Type.Null()]),
    tags: Type.Array(Type.String()),
    support_address: Type.Union([Type.String(), Type.Null()]),
    postponed_until: Type.Union([Type.String(), Type.Null()]),
    contact: SnapshotContact,
    created_in_working_hours: Type.Union([Type.Boolean(), Type.Null()]),
    outside_working_hours: Type.Optional(
      Type.Union([Type.Boolean(), Type.Null()], {
        description:
          "The ticket's department was closed when the event happened (absent from runs recorded before working hours).",
      }),
    ),
    pending_assignment: Type.Optional(
      Type.Union([
        Type.Object(
          {
            strategy: Type.String(),
            department_id: Type.Union([Type.String(), Type.Null()]),
            available_only: Type.Optional(Type.Boolean()),
            level: Type.Optional(Type.Integer()),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ]),
    ),
  },
  {
    $id: 'RuleTicketSnapshot',
    additionalProperties: false,
    description: 'The ticket as rules see it.',
  },
);

const ConditionTraceSchema = Type.Object(
  {
    pointer: Type.String({ description: 'JSON pointer into the rule, e.g. /conditions/any/0/all/1.' }),
    result: Type.Boolean(),
    value: Type.Optional(Type.Unknown({ description: 'Leaves only: the value the leaf read.' })),
  },
  { additionalProperties: false },
);

const ActionTraceSchema = Type.Object(
  {
    pointer: Type.String(),
    type: Type.String(),
    outcome: Type.Enum(['applied', 'unchanged', 'skipped'] as const),
    reason: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

export const RuleTraceEntrySchema = Type.Object(
  {
    rule_id: Type.String({ description: 'The rule id; draft rules of a simulation have draft-<n> ids.' }),
    name: Type.String(),
    version: Type.Union([Type.Integer(), Type.Null()], { description: 'Null for a draft.' }),
    position: Type.Integer(),
    considered: Type.Boolean({ description: 'False when the rule never looked at the ticket.' }),
    skipped: Type.Union([Type.Enum(['inactive', 'trigger', 'department', 'stopped'] as const), Type.Null()], {
      description:
        'Why it was not considered: inactive; trigger (it does not listen to this event); department (the ticket is not in its department); stopped (an earlier rule stopped processing).',
    }),
    matched: Type.Boolean(),
    conditions: Type.Union([Type.Array(ConditionTraceSchema), Type.Null()], {
      description: 'The condition nodes evaluated, in order, with the values leaves read.',
    }),
    actions: Type.Union([Type.Array(ActionTraceSchema), Type.Null()]),
  },
  { $id: 'RuleTraceEntry', additionalProperties: false },
);

export const EffectSchema = Type.Object(
  {
    rule_id: Type.String(),
    rule_version: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
    action_index: Type.Integer(),
    type: Type.String({
      description:
        'transfer, assign, assign_intent (round_robin / least_busy, with its available_only and level, the agent chosen, and when nobody qualified `agent_id: null` and the `reason`), set_tags, set_priority, set_status, mark_spam or add_note; the other fields depend on it.',
    }),
  },
  { $id: 'RuleEffect', additionalProperties: true },
);

export const SlaFactsSchema = Type.Object(
  {
    kind: Type.Enum(SLA_KINDS, { description: 'The target that warned or breached (sla.kind).' }),
    policy_id: Type.Union([Uuid(), Type.Null()], { description: 'The policy it ran under (sla.policy_id).' }),
  },
  {
    $id: 'RuleSlaFacts',
    additionalProperties: false,
    description: 'The SLA event behind sla.warning and sla.breached, as rules read it.',
  },
);

export const RuleRunSchema = Type.Object(
  {
    id: Type.String(),
    events: Type.Array(TriggerSchema, { description: 'The events of the change; rules ran once for all.' }),
    rules_version: Type.Integer({ description: 'The rule set as it stood then.' }),
    occurred_at: Timestamp(),
    ticket: ref(TicketSnapshotSchema),
    previous: Type.Record(Type.String(), Type.Unknown(), {
      description: 'The values changed fields had before the change.',
    }),
    message_id: Type.Union([Uuid(), Type.Null()], { description: 'The triggering message.' }),
    sla: Type.Optional(ref(SlaFactsSchema)),
    idle_rules: Type.Optional(
      Type.Array(Uuid(), {
        description:
          'ticket.idle runs: the rules whose idle time was reached, the only ones the run considered.',
      }),
    ),
    failure: Type.Optional(
      Type.Object(
        { code: Type.String(), message: Type.String() },
        {
          additionalProperties: false,
          description:
            'A run on a time-based trigger (sla.warning, sla.breached) whose actions could not apply: nothing it planned was written, and the write that carried it went through.',
        },
      ),
    ),
    rules: Type.Array(ref(RuleTraceEntrySchema), {
      description: 'Every rule of the set, in running order, with what it saw and did or why it did not.',
    }),
    stopped_by: Type.Union([Type.String(), Type.Null()]),
    effects: Type.Array(ref(EffectSchema), { description: 'What was applied to the ticket, in order.' }),
  },
  { $id: 'RuleRun', additionalProperties: false },
);
export type RuleRun = Static<typeof RuleRunSchema>;

const DraftRule = Type.Object(
  {
    id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description: 'A saved rule’s id to stand in for it (with include_saved_rules); else left out.',
      }),
    ),
    name: Name,
    note: Type.Optional(Note),
    active: Type.Optional(Type.Boolean()),
    position: Type.Optional(Position),
    stop_processing: Type.Optional(Type.Boolean()),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    triggers: Type.Array(TriggerSchema, { minItems: 1, maxItems: TRIGGERS.length }),
    idle: Type.Optional(IdleBody),
    conditions: ref(ConditionSchema),
    actions: Type.Array(ref(ActionSchema), { maxItems: LIMITS.maxActions }),
  },
  { additionalProperties: false },
);

/**
 * Draft rules of one simulation hold at most this many condition nodes in all: compiling and
 * tracing them runs on the event loop, and a 1 MB body of `matches` leaves would hold it for
 * seconds.
 */
export const MAX_SIMULATED_NODES = 4 * LIMITS.maxNodes;

// A snapshot's contact fields and previous values are plain values, as tickets and contacts
// carry them: anything deeper would only be echoed back (and could not be, past a few thousand
// levels).
const SimulatedCustomFields = Type.Record(
  Type.String({ maxLength: 63 }),
  Type.Union([Type.String({ maxLength: 10_000 }), Type.Number(), Type.Boolean(), Type.Null()]),
  {
    maxProperties: 200,
    description: 'Contact field values by key: text, number, date (YYYY-MM-DD) or boolean.',
  },
);

const SimulatedPrevious = Type.Object(
  {
    channel: Type.Optional(ChannelSchema),
    subject: Type.Optional(Type.String({ maxLength: 500 })),
    status: Type.Optional(StatusSchema),
    priority: Type.Optional(PrioritySchema),
    department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    assignee_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
    tags: Type.Optional(Type.Array(Type.String({ maxLength: 50 }), { maxItems: 50 })),
    support_address: Type.Optional(Type.Union([Type.String({ maxLength: 254 }), Type.Null()])),
    contact: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ maxLength: 200 })),
          email: Type.Optional(Type.Union([Type.String({ maxLength: 254 }), Type.Null()])),
          custom: Type.Optional(SimulatedCustomFields),
        },
        { additionalProperties: false },
      ),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Values before the event, for previous.<field> and the change operators, e.g. {"priority": "low"} or {"contact": {"custom": {"plan": "Free"}}}; a field left out had the value the ticket has.',
  },
);

export const SimulateBody = Type.Object(
  {
    event: Type.Object(
      {
        type: TriggerSchema,
        message: Type.Optional(
          Type.Object(
            {
              body: Type.String({ maxLength: 100_000 }),
              sender_email: Type.Optional(Type.Union([Type.String({ maxLength: 254 }), Type.Null()])),
            },
            { additionalProperties: false },
          ),
        ),
        previous: Type.Optional(SimulatedPrevious),
        sla: Type.Optional(
          Type.Object(
            {
              kind: Type.Enum(SLA_KINDS),
              policy_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
            },
            {
              additionalProperties: false,
              description:
                "For sla.warning and sla.breached: the target (sla.kind) and policy (sla.policy_id) rules read. A ticket.idle simulation runs every ticket.idle rule, as if each one's time had come.",
            },
          ),
        ),
      },
      { additionalProperties: false },
    ),
    ticket_id: Type.Optional(
      Uuid('An existing ticket to simulate on (its first message for ticket.created).'),
    ),
    ticket: Type.Optional(
      Type.Object(
        {
          subject: Type.Optional(Type.String({ maxLength: 500 })),
          channel: Type.Optional(ChannelSchema),
          status: Type.Optional(StatusSchema),
          priority: Type.Optional(PrioritySchema),
          department_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
          assignee_id: Type.Optional(Type.Union([Uuid(), Type.Null()])),
          tags: Type.Optional(Type.Array(Type.String({ maxLength: 50 }), { maxItems: 50 })),
          support_address: Type.Optional(Type.Union([Type.String({ maxLength: 254 }), Type.Null()])),
          contact: Type.Optional(
            Type.Object(
              {
                name: Type.Optional(Type.String({ maxLength: 200 })),
                email: Type.Optional(Type.Union([Type.String({ maxLength: 254 }), Type.Null()])),
                custom: Type.Optional(SimulatedCustomFields),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false, description: 'A ticket snapshot instead of ticket_id.' },
      ),
    ),
    rules: Type.Optional(
      Type.Array(DraftRule, {
        maxItems: 1000,
        description: `Draft rules to run instead of the saved ones; nothing is saved. Each is checked like a rule being written (422 \`invalid_rule\`), and together they hold at most ${MAX_SIMULATED_NODES} condition nodes (422 \`simulation_too_large\`).`,
      }),
    ),
    include_saved_rules: Type.Optional(
      Type.Boolean({
        description:
          'With rules: run the saved rules too (a draft with a saved rule’s id stands in for it). Default false with rules, true without.',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [
      {
        event: { type: 'ticket.created', message: { body: 'Loved your post!' } },
        ticket: { subject: 'Hello from Instagram', channel: 'instagram' },
      },
    ],
  },
);
export type SimulateInput = Static<typeof SimulateBody>;

export const SimulationSchema = Type.Object(
  {
    event: TriggerSchema,
    rules_version: Type.Union([Type.Integer(), Type.Null()], {
      description: 'The saved rule set simulated; null for drafts alone.',
    }),
    ticket: ref(TicketSnapshotSchema),
    result: ref(TicketSnapshotSchema),
    changes: Type.Array(
      Type.Object(
        { field: Type.String(), from: Type.Unknown(), to: Type.Unknown() },
        { additionalProperties: false },
      ),
      {
        description:
          'What would change on the ticket; round robin and least busy show the agent they would pick.',
      },
    ),
    notes: Type.Array(Type.String(), { description: 'Internal notes the rules would add.' }),
    effects: Type.Array(ref(EffectSchema)),
    rules: Type.Array(ref(RuleTraceEntrySchema)),
    stopped_by: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'RuleSimulation', additionalProperties: false },
);
export type Simulation = Static<typeof SimulationSchema>;

export const RulePage = PageOf(ref(AutomationRuleSchema), 'AutomationRulePage');
export const RuleVersionPage = PageOf(ref(RuleVersionSchema), 'AutomationRuleVersionPage');
export const RuleRunPage = PageOf(ref(RuleRunSchema), 'RuleRunPage');
