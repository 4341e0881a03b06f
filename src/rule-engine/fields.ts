import { CHANNELS, type CustomFieldType, type Operator, PRIORITIES, SLA_KINDS, STATUSES } from './types.ts';

/** How a field's values compare. */
export type FieldType =
  | 'text'
  | 'choice'
  | 'enum'
  | 'priority'
  | 'department'
  | 'agent'
  | 'tags'
  | 'number'
  | 'date'
  | 'boolean';

/** How the value of a leaf is shaped, by operator. */
export type ValueKind = 'none' | 'scalar' | 'scalar_or_null' | 'list' | 'text' | 'pattern' | 'tags';

export const VALUE_KIND: Readonly<Record<Operator, ValueKind>> = Object.freeze({
  is: 'scalar',
  is_not: 'scalar',
  is_one_of: 'list',
  is_none_of: 'list',
  contains: 'text',
  does_not_contain: 'text',
  starts_with: 'text',
  ends_with: 'text',
  matches: 'pattern',
  is_empty: 'none',
  is_not_empty: 'none',
  greater_than: 'scalar',
  less_than: 'scalar',
  has_changed: 'none',
  changed_from: 'scalar_or_null',
  changed_to: 'scalar_or_null',
  contains_any: 'tags',
  contains_all: 'tags',
  contains_none: 'tags',
});

export const CHANGE_OPERATORS: ReadonlySet<Operator> = new Set(['has_changed', 'changed_from', 'changed_to']);

const EQUALITY = ['is', 'is_not', 'is_one_of', 'is_none_of'] as const;
const EMPTINESS = ['is_empty', 'is_not_empty'] as const;
const CHANGES = ['has_changed', 'changed_from', 'changed_to'] as const;
const ORDER = ['greater_than', 'less_than'] as const;

/**
 * Operators by field type. The change operators apply only to fields the event can carry a
 * previous value for (FieldSpec.tracked), and never to previous.<field> itself.
 */
export const OPERATORS_BY_TYPE: Readonly<Record<FieldType, readonly Operator[]>> = Object.freeze({
  text: [
    ...EQUALITY,
    'contains',
    'does_not_contain',
    'starts_with',
    'ends_with',
    'matches',
    ...EMPTINESS,
    ...CHANGES,
  ],
  choice: [...EQUALITY, ...EMPTINESS, ...CHANGES],
  enum: [...EQUALITY, ...CHANGES],
  priority: [...EQUALITY, ...ORDER, ...CHANGES],
  department: [...EQUALITY, ...EMPTINESS, ...CHANGES],
  agent: [...EQUALITY, ...EMPTINESS, ...CHANGES],
  tags: ['contains_any', 'contains_all', 'contains_none', ...EMPTINESS, 'has_changed'],
  number: [...EQUALITY, ...ORDER, ...EMPTINESS, ...CHANGES],
  date: [...EQUALITY, ...ORDER, ...EMPTINESS, ...CHANGES],
  boolean: ['is', 'is_not', ...EMPTINESS, ...CHANGES],
});

/** Where a field's value comes from. */
export type FieldSource =
  | { from: 'ticket'; path: readonly string[] }
  | { from: 'message_body' }
  | { from: 'sender_email' }
  | { from: 'sender_domain' }
  | { from: 'sla'; key: 'kind' | 'policy_id' };

export interface FieldSpec {
  type: FieldType;
  enumValues?: readonly string[];
  source: FieldSource;
  /** Actions can change it during a pass, so results on it cannot be reused across actions. */
  mutable: boolean;
  /** The event can say what it was before (previous.<field>, has_changed, changed_*). */
  tracked: boolean;
}

const ticket = (...path: string[]): FieldSource => ({ from: 'ticket', path });

/** Every field a condition may name, apart from contact.custom.<key> and previous.<field>. */
export const FIELDS: Readonly<Record<string, FieldSpec>> = Object.freeze({
  channel: { type: 'enum', enumValues: CHANNELS, source: ticket('channel'), mutable: false, tracked: true },
  subject: { type: 'text', source: ticket('subject'), mutable: false, tracked: true },
  'message.body': { type: 'text', source: { from: 'message_body' }, mutable: false, tracked: false },
  'sender.email': { type: 'text', source: { from: 'sender_email' }, mutable: false, tracked: false },
  'sender.domain': { type: 'text', source: { from: 'sender_domain' }, mutable: false, tracked: false },
  support_address: { type: 'text', source: ticket('support_address'), mutable: false, tracked: true },
  department_id: { type: 'department', source: ticket('department_id'), mutable: true, tracked: true },
  status: { type: 'enum', enumValues: STATUSES, source: ticket('status'), mutable: true, tracked: true },
  priority: {
    type: 'priority',
    enumValues: PRIORITIES,
    source: ticket('priority'),
    mutable: true,
    tracked: true,
  },
  assignee_id: { type: 'agent', source: ticket('assignee_id'), mutable: true, tracked: true },
  tags: { type: 'tags', source: ticket('tags'), mutable: true, tracked: true },
  'contact.name': { type: 'text', source: ticket('contact', 'name'), mutable: false, tracked: true },
  'contact.email': { type: 'text', source: ticket('contact', 'email'), mutable: false, tracked: true },
  created_in_working_hours: {
    type: 'boolean',
    source: ticket('created_in_working_hours'),
    mutable: false,
    tracked: false,
  },
  outside_working_hours: {
    type: 'boolean',
    source: ticket('outside_working_hours'),
    mutable: false,
    tracked: false,
  },
  // The SLA event of sla.warning and sla.breached; empty for every other event.
  'sla.kind': {
    type: 'enum',
    enumValues: SLA_KINDS,
    source: { from: 'sla', key: 'kind' },
    mutable: false,
    tracked: false,
  },
  'sla.policy_id': {
    type: 'text',
    source: { from: 'sla', key: 'policy_id' },
    mutable: false,
    tracked: false,
  },
});

/** Whether a field describes the event rather than the ticket (message, sender, SLA event). */
export function isEventField(name: string): boolean {
  const spec = Object.hasOwn(FIELDS, name) ? FIELDS[name] : undefined;
  return spec !== undefined && spec.source.from !== 'ticket';
}

export const CUSTOM_PREFIX = 'contact.custom.';
export const PREVIOUS_PREFIX = 'previous.';
const CUSTOM_KEY = /^[a-z][a-z0-9_]{0,62}$/;

/** A field name resolved against the table. */
export interface ResolvedField {
  name: string;
  spec: FieldSpec;
  /** previous.<field>: the value before the event. */
  previous: boolean;
}

export type FieldLookup = { ok: true; field: ResolvedField } | { ok: false; message: string };

/**
 * Resolves a field name. `customType` tells the type of a contact.custom.<key> field: from the
 * catalog when validating, inferred from the leaf when compiling (see inferCustomType).
 */
export function resolveField(
  name: string,
  customType: (key: string) => CustomFieldType | undefined,
): FieldLookup {
  let base = name;
  let previous = false;
  if (name.startsWith(PREVIOUS_PREFIX)) {
    base = name.slice(PREVIOUS_PREFIX.length);
    previous = true;
  }
  let spec: FieldSpec | undefined = Object.hasOwn(FIELDS, base) ? FIELDS[base] : undefined;
  if (!spec && base.startsWith(CUSTOM_PREFIX)) {
    const key = base.slice(CUSTOM_PREFIX.length);
    if (!CUSTOM_KEY.test(key)) return { ok: false, message: `"${key}" is not a contact field key` };
    const type = customType(key);
    if (!type) return { ok: false, message: `unknown contact field "${key}"` };
    spec = { type, source: ticket('contact', 'custom', key), mutable: false, tracked: true };
  }
  if (!spec) return { ok: false, message: `unknown field "${name}"` };
  if (previous && !spec.tracked) {
    return { ok: false, message: `"${base}" has no previous value` };
  }
  return { ok: true, field: { name, spec, previous } };
}

/** Operators that fit a resolved field. */
export function operatorsFor(field: ResolvedField): readonly Operator[] {
  const all = OPERATORS_BY_TYPE[field.spec.type];
  if (field.previous || !field.spec.tracked) return all.filter((op) => !CHANGE_OPERATORS.has(op));
  return all;
}

/**
 * The type a contact.custom.<key> leaf implies when no catalog is at hand (compileRules). A
 * validated rule's values already have the catalog type, so this recovers it: numbers mean a
 * number field, booleans a boolean field, a string ordered with greater_than / less_than a date
 * field, and any other string a text field (a choice or date field compared with is / is_one_of
 * behaves the same as text). Operators without a value need no type.
 */
export function inferCustomType(operator: unknown, value: unknown): CustomFieldType {
  const sample = Array.isArray(value) ? value[0] : value;
  if (typeof sample === 'number') return 'number';
  if (typeof sample === 'boolean') return 'boolean';
  if (operator === 'greater_than' || operator === 'less_than') return 'date';
  return 'text';
}
