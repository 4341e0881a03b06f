import {
  type FieldSpec,
  inferCustomType,
  operatorsFor,
  type ResolvedField,
  resolveField,
  VALUE_KIND,
} from './fields.ts';
import { canonicalTag, compilePattern, foldText, isDateString, LIMITS } from './text.ts';
import {
  type Catalog,
  type CustomFieldType,
  OPERATORS,
  type Operator,
  PRIORITIES,
  TRIGGERS,
  type ValidationError,
} from './types.ts';

const RULE_KEYS = new Set([
  'id',
  'name',
  'note',
  'active',
  'position',
  'stop_processing',
  'department_id',
  'triggers',
  'idle',
  'conditions',
  'actions',
]);
const IDLE_KEYS = new Set(['minutes', 'business']);
const LEAF_KEYS = new Set(['field', 'operator', 'value']);
const GROUP_KEYS = ['all', 'any', 'not'] as const;
const OPERATOR_SET: ReadonlySet<string> = new Set(OPERATORS);
const TRIGGER_SET: ReadonlySet<string> = new Set(TRIGGERS);
const PRIORITY_SET: ReadonlySet<string> = new Set(PRIORITIES);
const SETTABLE_STATUSES = ['open', 'answered', 'resolved', 'postponed'] as const;
const ASSIGN_TARGETS = ['agent', 'nobody', 'round_robin', 'least_busy'] as const;

const ACTION_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  transfer: ['department_id'],
  assign: ['to', 'agent_id', 'available_only', 'level'],
  add_tags: ['tags'],
  remove_tags: ['tags'],
  replace_tags: ['tags'],
  set_priority: ['priority'],
  set_status: ['status', 'postpone_seconds'],
  mark_spam: [],
  add_note: ['body'],
});

/** Escapes one reference token of a JSON pointer (RFC 6901). */
export function pointerToken(key: string | number): string {
  return String(key).replaceAll('~', '~0').replaceAll('/', '~1');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isBlank(value: string): boolean {
  return value.trim().length === 0;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function list(values: readonly string[]): string {
  return values.join(', ');
}

function customTypeOf(
  entry: CustomFieldType | { type: CustomFieldType } | undefined,
): CustomFieldType | undefined {
  return typeof entry === 'object' ? entry.type : entry;
}

/**
 * Walks one rule and collects every problem. With a catalog it also checks that departments,
 * agents, tags and contact fields exist; without one (compileRules) it checks structure only,
 * inferring contact field types from the leaves as the compiler does.
 */
class RuleChecker {
  readonly errors: ValidationError[] = [];
  private nodes = 0;
  private readonly catalog: Catalog | null;

  constructor(catalog: Catalog | null) {
    this.catalog = catalog;
  }

  error(pointer: string, message: string): void {
    this.errors.push({ pointer, message });
  }

  unknownKeys(value: Record<string, unknown>, allowed: ReadonlySet<string>, pointer: string): void {
    for (const key of Object.keys(value)) {
      if (!allowed.has(key)) this.error(`${pointer}/${pointerToken(key)}`, 'is not a known property');
    }
  }

  rule(rule: unknown): void {
    if (!isObject(rule)) {
      this.error('', `must be an object, not ${describe(rule)}`);
      return;
    }
    this.unknownKeys(rule, RULE_KEYS, '');
    this.text(rule.id, '/id', LIMITS.maxNameLength, true);
    this.text(rule.name, '/name', LIMITS.maxNameLength, true);
    if (rule.note !== undefined && rule.note !== null)
      this.text(rule.note, '/note', LIMITS.maxRuleNoteLength, false);
    if (typeof rule.active !== 'boolean') this.error('/active', 'must be a boolean');
    if (!Number.isSafeInteger(rule.position)) this.error('/position', 'must be an integer');
    if (typeof rule.stop_processing !== 'boolean') this.error('/stop_processing', 'must be a boolean');
    if (rule.department_id !== undefined && rule.department_id !== null) {
      this.department(rule.department_id, '/department_id');
    }
    this.triggers(rule.triggers);
    this.idle(rule.idle, Array.isArray(rule.triggers) && rule.triggers.includes('ticket.idle'));
    if (rule.conditions === undefined)
      this.error('/conditions', 'is required (use {"all": []} to match every ticket)');
    else this.condition(rule.conditions, '/conditions', 1);
    this.actions(rule.actions, rule.stop_processing === true);
  }

  text(value: unknown, pointer: string, max: number, required: boolean): value is string {
    if (typeof value !== 'string') {
      this.error(pointer, required && value === undefined ? 'is required' : 'must be a string');
      return false;
    }
    if (isBlank(value)) {
      this.error(pointer, 'must not be blank');
      return false;
    }
    if (value.length > max) {
      this.error(pointer, `must be at most ${max} characters`);
      return false;
    }
    return true;
  }

  triggers(triggers: unknown): void {
    if (!Array.isArray(triggers)) {
      this.error('/triggers', 'must be an array of triggers');
      return;
    }
    if (triggers.length === 0) this.error('/triggers', 'must name at least one trigger');
    const seen = new Set<unknown>();
    triggers.forEach((trigger, i) => {
      if (typeof trigger !== 'string' || !TRIGGER_SET.has(trigger)) {
        this.error(`/triggers/${i}`, `must be one of: ${list(TRIGGERS)}`);
      } else if (seen.has(trigger)) {
        this.error(`/triggers/${i}`, `repeats "${trigger}"`);
      }
      seen.add(trigger);
    });
  }

  /** ticket.idle needs to know how long; no other trigger takes a parameter. */
  idle(idle: unknown, listens: boolean): void {
    if (idle === undefined || idle === null) {
      if (listens)
        this.error(
          '/idle',
          'is required with the ticket.idle trigger: {"minutes": 1 to 525600, "business": true or false}',
        );
      return;
    }
    if (!listens) {
      this.error('/idle', 'is only allowed with the ticket.idle trigger (set it to null)');
      return;
    }
    if (!isObject(idle)) {
      this.error('/idle', `must be an object {"minutes", "business"}, not ${describe(idle)}`);
      return;
    }
    this.unknownKeys(idle, IDLE_KEYS, '/idle');
    const minutes = idle.minutes;
    if (
      !Number.isSafeInteger(minutes) ||
      (minutes as number) < 1 ||
      (minutes as number) > LIMITS.maxIdleMinutes
    ) {
      this.error(
        '/idle/minutes',
        minutes === undefined
          ? 'is required'
          : `must be a whole number of minutes from 1 to ${LIMITS.maxIdleMinutes}`,
      );
    }
    if (typeof idle.business !== 'boolean') {
      this.error(
        '/idle/business',
        idle.business === undefined
          ? 'is required (true: minutes of the department’s working hours; false: calendar minutes)'
          : 'must be a boolean',
      );
    }
  }

  condition(node: unknown, pointer: string, depth: number): void {
    this.nodes += 1;
    if (this.nodes === LIMITS.maxNodes + 1) {
      this.error('/conditions', `must have at most ${LIMITS.maxNodes} condition nodes`);
    }
    if (!isObject(node)) {
      this.error(pointer, `must be an object, not ${describe(node)}`);
      return;
    }
    if (depth > LIMITS.maxDepth) {
      this.error(pointer, `nests deeper than ${LIMITS.maxDepth} levels`);
      return;
    }
    const groupKeys = GROUP_KEYS.filter((key) => key in node);
    const keys = Object.keys(node);
    if (groupKeys.length === 1 && keys.length === 1) {
      const key = groupKeys[0]!;
      const children = node[key];
      const at = `${pointer}/${key}`;
      if (key === 'not') {
        this.condition(children, at, depth + 1);
        return;
      }
      if (!Array.isArray(children)) {
        this.error(at, 'must be an array of conditions');
        return;
      }
      if (key === 'any' && children.length === 0) this.error(at, 'must have at least one condition');
      children.forEach((child, i) => {
        this.condition(child, `${at}/${i}`, depth + 1);
      });
      return;
    }
    if (groupKeys.length > 0 || !('field' in node || 'operator' in node)) {
      this.error(
        pointer,
        'must be exactly one of {"all": [...]}, {"any": [...]}, {"not": {...}} or a leaf {"field", "operator", "value"}',
      );
      return;
    }
    this.leaf(node, pointer);
  }

  leaf(node: Record<string, unknown>, pointer: string): void {
    this.unknownKeys(node, LEAF_KEYS, pointer);
    const { operator, value } = node;
    let operatorOk = true;
    if (typeof operator !== 'string' || !OPERATOR_SET.has(operator)) {
      this.error(
        `${pointer}/operator`,
        operator === undefined ? 'is required' : `must be one of: ${list(OPERATORS)}`,
      );
      operatorOk = false;
    }
    if (typeof node.field !== 'string') {
      this.error(`${pointer}/field`, node.field === undefined ? 'is required' : 'must be a string');
      return;
    }
    const lookup = resolveField(node.field, (key) => this.customType(key, operator, value));
    if (!lookup.ok) {
      this.error(`${pointer}/field`, lookup.message);
      return;
    }
    if (!operatorOk) return;
    const field = lookup.field;
    const op = operator as Operator;
    const allowed = operatorsFor(field);
    if (!allowed.includes(op)) {
      this.error(
        `${pointer}/operator`,
        `"${op}" does not apply to ${field.name} (${typeLabel(field)}); use one of: ${list(allowed)}`,
      );
      return;
    }
    this.leafValue(node, field, op, `${pointer}/value`);
  }

  customType(key: string, operator: unknown, value: unknown): CustomFieldType | undefined {
    if (!this.catalog) return inferCustomType(operator, value);
    return customTypeOf(this.catalog.customFields.get(key));
  }

  leafValue(node: Record<string, unknown>, field: ResolvedField, op: Operator, pointer: string): void {
    const value = node.value;
    switch (VALUE_KIND[op]) {
      case 'none':
        if ('value' in node) this.error(pointer, `must be omitted for ${op}`);
        return;
      case 'scalar':
        this.scalar(value, field, pointer);
        return;
      case 'scalar_or_null':
        if (value !== null) this.scalar(value, field, pointer);
        return;
      case 'list':
        if (this.array(value, pointer, 1, LIMITS.maxListValues)) {
          value.forEach((item, i) => {
            this.scalar(item, field, `${pointer}/${i}`);
          });
        }
        return;
      case 'text':
        this.text(value, pointer, LIMITS.maxTextValue, true);
        return;
      case 'pattern': {
        if (typeof value !== 'string') {
          this.error(pointer, value === undefined ? 'is required' : 'must be a string (an RE2 pattern)');
          return;
        }
        const compiled = compilePattern(value);
        if (!compiled.ok) this.error(pointer, `pattern ${compiled.message}`);
        return;
      }
      case 'tags':
        if (this.array(value, pointer, 1, LIMITS.maxListValues)) {
          value.forEach((tag, i) => {
            this.tag(tag, `${pointer}/${i}`);
          });
        }
        return;
    }
  }

  array(value: unknown, pointer: string, min: number, max: number): value is unknown[] {
    if (!Array.isArray(value)) {
      this.error(pointer, value === undefined ? 'is required' : 'must be an array');
      return false;
    }
    if (value.length < min) {
      this.error(pointer, `must have at least ${min} item${min === 1 ? '' : 's'}`);
      return false;
    }
    if (value.length > max) {
      this.error(pointer, `must have at most ${max} items`);
      return false;
    }
    return true;
  }

  scalar(value: unknown, field: ResolvedField, pointer: string): void {
    const spec: FieldSpec = field.spec;
    if (value === undefined) {
      this.error(pointer, 'is required');
      return;
    }
    switch (spec.type) {
      case 'text':
        this.text(value, pointer, LIMITS.maxTextValue, true);
        return;
      case 'choice': {
        if (!this.text(value, pointer, LIMITS.maxTextValue, true)) return;
        const entry = this.catalog?.customFields.get(field.name.slice(field.name.lastIndexOf('.') + 1));
        const options = typeof entry === 'object' ? entry.options : undefined;
        if (options && !options.some((option) => foldText(option) === foldText(value))) {
          this.error(pointer, `must be one of the field's options: ${list(options)}`);
        }
        return;
      }
      case 'enum':
      case 'priority':
        if (typeof value !== 'string' || !spec.enumValues!.includes(value)) {
          this.error(pointer, `must be one of: ${list(spec.enumValues!)}`);
        }
        return;
      case 'department':
        this.department(value, pointer);
        return;
      case 'agent':
        this.agent(value, pointer);
        return;
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value))
          this.error(pointer, 'must be a finite number');
        return;
      case 'date':
        if (!isDateString(value)) this.error(pointer, 'must be a date written YYYY-MM-DD');
        return;
      case 'boolean':
        if (typeof value !== 'boolean') this.error(pointer, 'must be a boolean');
        return;
      case 'tags':
        this.error(pointer, 'tags take a list of tags');
        return;
    }
  }

  department(value: unknown, pointer: string): void {
    if (typeof value !== 'string' || value.length === 0) this.error(pointer, 'must be a department id');
    else if (this.catalog && !this.catalog.departmentIds.has(value)) {
      this.error(pointer, `department "${value}" does not exist`);
    }
  }

  agent(value: unknown, pointer: string): void {
    if (typeof value !== 'string' || value.length === 0) this.error(pointer, 'must be an agent id');
    else if (this.catalog && !this.catalog.agentIds.has(value)) {
      this.error(pointer, `agent "${value}" does not exist`);
    }
  }

  tag(value: unknown, pointer: string): void {
    if (!this.text(value, pointer, LIMITS.maxTagLength, true)) return;
    const tags = this.catalog?.tags;
    if (tags && !tags.has(canonicalTag(value)))
      this.error(pointer, `tag "${canonicalTag(value)}" does not exist`);
  }

  actions(actions: unknown, stops: boolean): void {
    if (!Array.isArray(actions)) {
      this.error('/actions', 'must be an array of actions');
      return;
    }
    if (actions.length === 0 && !stops) {
      this.error('/actions', 'must have at least one action (or the rule must stop processing)');
    }
    if (actions.length > LIMITS.maxActions)
      this.error('/actions', `must have at most ${LIMITS.maxActions} actions`);
    actions.forEach((action, i) => {
      this.action(action, `/actions/${i}`);
    });
  }

  action(action: unknown, pointer: string): void {
    if (!isObject(action)) {
      this.error(pointer, `must be an object, not ${describe(action)}`);
      return;
    }
    const type = action.type;
    if (typeof type !== 'string' || !Object.hasOwn(ACTION_KEYS, type)) {
      this.error(`${pointer}/type`, `must be one of: ${list(Object.keys(ACTION_KEYS))}`);
      return;
    }
    this.unknownKeys(action, new Set(['type', ...ACTION_KEYS[type]!]), pointer);
    switch (type) {
      case 'transfer':
        if (action.department_id === undefined) this.error(`${pointer}/department_id`, 'is required');
        else this.department(action.department_id, `${pointer}/department_id`);
        return;
      case 'assign':
        if (typeof action.to !== 'string' || !(ASSIGN_TARGETS as readonly string[]).includes(action.to)) {
          this.error(`${pointer}/to`, `must be one of: ${list(ASSIGN_TARGETS)}`);
        } else if (action.to === 'agent') {
          if (action.agent_id === undefined)
            this.error(`${pointer}/agent_id`, 'is required when to is agent');
          else this.agent(action.agent_id, `${pointer}/agent_id`);
        } else if ('agent_id' in action) {
          this.error(`${pointer}/agent_id`, 'is only allowed when to is agent');
        }
        if (action.to === 'round_robin' || action.to === 'least_busy') {
          if ('available_only' in action && typeof action.available_only !== 'boolean')
            this.error(
              `${pointer}/available_only`,
              `must be true or false, not ${describe(action.available_only)}`,
            );
          if ('level' in action && !(action.level === 1 || action.level === 2 || action.level === 3))
            this.error(`${pointer}/level`, 'must be 1, 2 or 3');
        } else {
          for (const key of ['available_only', 'level'] as const) {
            if (key in action)
              this.error(`${pointer}/${key}`, 'is only allowed when to is round_robin or least_busy');
          }
        }
        return;
      case 'add_tags':
      case 'remove_tags':
      case 'replace_tags':
        if (
          this.array(action.tags, `${pointer}/tags`, type === 'replace_tags' ? 0 : 1, LIMITS.maxTicketTags)
        ) {
          action.tags.forEach((tag, i) => {
            this.tag(tag, `${pointer}/tags/${i}`);
          });
        }
        return;
      case 'set_priority':
        if (typeof action.priority !== 'string' || !PRIORITY_SET.has(action.priority)) {
          this.error(`${pointer}/priority`, `must be one of: ${list(PRIORITIES)}`);
        }
        return;
      case 'set_status':
        if (
          typeof action.status !== 'string' ||
          !(SETTABLE_STATUSES as readonly string[]).includes(action.status)
        ) {
          this.error(
            `${pointer}/status`,
            `must be one of: ${list(SETTABLE_STATUSES)} (use mark_spam for spam; new is never set)`,
          );
        } else if (action.status === 'postponed') {
          const seconds = action.postpone_seconds;
          if (
            !Number.isSafeInteger(seconds) ||
            (seconds as number) < 60 ||
            (seconds as number) > LIMITS.maxPostponeSeconds
          ) {
            this.error(
              `${pointer}/postpone_seconds`,
              `must be a whole number of seconds from 60 to ${LIMITS.maxPostponeSeconds}`,
            );
          }
        } else if ('postpone_seconds' in action) {
          this.error(`${pointer}/postpone_seconds`, 'is only allowed when status is postponed');
        }
        return;
      case 'add_note':
        this.text(action.body, `${pointer}/body`, LIMITS.maxNoteLength, true);
        return;
    }
  }
}

function typeLabel(field: ResolvedField): string {
  const type = field.spec.type;
  if (type === 'department' || type === 'agent') return `a ${type} id`;
  if (type === 'tags') return 'a tag list';
  return `a ${type} field`;
}

/**
 * Checks a rule before it is stored: shape, operators that fit their fields, value types,
 * safe patterns, and that every department, agent, contact field and (when the catalog lists
 * tags) tag it names exists. Returns every problem found, each with a JSON pointer into the
 * rule (e.g. /conditions/any/0/all/2/value); an empty list means the rule is valid.
 */
export function validateRule(rule: unknown, catalog: Catalog): ValidationError[] {
  const checker = new RuleChecker(catalog);
  checker.rule(rule);
  return checker.errors;
}

/** The catalog-free part of validateRule: what compileRules insists on. */
export function checkRuleStructure(rule: unknown): ValidationError[] {
  const checker = new RuleChecker(null);
  checker.rule(rule);
  return checker.errors;
}
