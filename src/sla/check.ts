// Write-time checks of an SLA policy, with JSON pointers into it like validateRule gives for
// rules, so the API can answer 422 with every problem at once. The conditions go through the
// rule engine's own validator; on top of it, a policy may only look at the ticket as it stands
// (selection happens on any write, where no message or previous value is in play).

import {
  type Catalog,
  CHANGE_OPERATORS,
  isEventField,
  LIMITS,
  PREVIOUS_PREFIX,
  PRIORITIES,
  pointerToken,
  type ValidationError,
  validateRule,
} from '../rule-engine/index.ts';
import { ESCALATION_ACTIONS, ESCALATION_MOMENTS, SLA_KINDS, type SlaKind, TRANSFER_MODES } from './types.ts';

/** A year: long enough for any resolution goal, short enough to stay within business time's horizon for a plain office calendar. */
export const MAX_TARGET_MINUTES = 525_600;
const POLICY_KEYS = new Set([
  'id',
  'version',
  'name',
  'position',
  'active',
  'conditions',
  'targets',
  'pause_when_answered',
  'on_transfer',
  'warn_before_minutes',
  'escalations',
]);
/** A policy needs a few (warning, then breach; per kind): a bound keeps the check and the list short. */
export const MAX_ESCALATIONS = 8;
const ESCALATION_KEYS = new Set(['on', 'kinds', 'action', 'notify_supervisors']);

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function minutes(value: unknown, pointer: string, errors: ValidationError[]): void {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_TARGET_MINUTES) {
    errors.push({ pointer, message: `must be a whole number of minutes from 1 to ${MAX_TARGET_MINUTES}` });
  }
}

// Too deep a tree is validateRule's error already; stopping there also bounds the recursion.
function stateOnly(node: unknown, pointer: string, errors: ValidationError[], depth = 1): void {
  if (!isObject(node) || depth > LIMITS.maxDepth) return;
  for (const group of ['all', 'any'] as const) {
    const children = node[group];
    if (Array.isArray(children)) {
      children.forEach((child, i) => {
        stateOnly(child, `${pointer}/${group}/${i}`, errors, depth + 1);
      });
    }
  }
  if (node.not !== undefined) stateOnly(node.not, `${pointer}/not`, errors, depth + 1);
  const { field, operator } = node as { field?: unknown; operator?: unknown };
  if (typeof field === 'string' && (isEventField(field) || field.startsWith(PREVIOUS_PREFIX))) {
    errors.push({
      pointer: `${pointer}/field`,
      message: `"${field}" describes an event; an SLA policy matches the ticket as it stands`,
    });
  }
  if (typeof operator === 'string' && CHANGE_OPERATORS.has(operator as never)) {
    errors.push({
      pointer: `${pointer}/operator`,
      message: `"${operator}" describes a change; an SLA policy matches the ticket as it stands`,
    });
  }
}

/**
 * Every problem of a policy about to be stored, each with a JSON pointer into it
 * (/targets/urgent/first_answer/minutes, /conditions/all/0/value); [] when it is fine. Departments,
 * agents, contact fields and tags its conditions name must exist in the catalog.
 */
export function checkPolicy(policy: unknown, catalog: Catalog): ValidationError[] {
  if (!isObject(policy)) return [{ pointer: '', message: 'must be an object' }];
  const errors: ValidationError[] = [];
  for (const key of Object.keys(policy)) {
    if (!POLICY_KEYS.has(key))
      errors.push({ pointer: `/${pointerToken(key)}`, message: 'is not a known property' });
  }
  // The rule validator checks id, name, position, active and the conditions with the same words
  // and pointers a rule gets; the rule-only parts are filled in so they cannot complain.
  const asRule = {
    id: policy.id,
    name: policy.name,
    position: policy.position,
    active: policy.active,
    stop_processing: true,
    triggers: ['ticket.updated'],
    conditions: policy.conditions,
    actions: [],
  };
  errors.push(...validateRule(asRule, catalog));
  stateOnly(policy.conditions, '/conditions', errors);
  if (!Number.isSafeInteger(policy.version) || (policy.version as number) < 1) {
    errors.push({ pointer: '/version', message: 'must be a positive integer' });
  }
  if (typeof policy.pause_when_answered !== 'boolean') {
    errors.push({ pointer: '/pause_when_answered', message: 'must be a boolean' });
  }
  if (!(TRANSFER_MODES as readonly unknown[]).includes(policy.on_transfer)) {
    errors.push({ pointer: '/on_transfer', message: `must be one of: ${TRANSFER_MODES.join(', ')}` });
  }
  if (policy.warn_before_minutes !== null)
    minutes(policy.warn_before_minutes, '/warn_before_minutes', errors);
  const targets = policy.targets;
  if (!isObject(targets)) {
    errors.push({ pointer: '/targets', message: 'must be an object of targets by priority' });
    return errors;
  }
  let count = 0;
  for (const [priority, kinds] of Object.entries(targets)) {
    const at = `/targets/${pointerToken(priority)}`;
    if (!(PRIORITIES as readonly string[]).includes(priority)) {
      errors.push({ pointer: at, message: `is not a priority (${PRIORITIES.join(', ')})` });
      continue;
    }
    if (!isObject(kinds)) {
      errors.push({ pointer: at, message: 'must be an object of targets by kind' });
      continue;
    }
    for (const [kind, target] of Object.entries(kinds)) {
      const here = `${at}/${pointerToken(kind)}`;
      if (!(SLA_KINDS as readonly string[]).includes(kind)) {
        errors.push({ pointer: here, message: `is not a target kind (${SLA_KINDS.join(', ')})` });
        continue;
      }
      if (!isObject(target)) {
        errors.push({ pointer: here, message: 'must be an object with minutes and business' });
        continue;
      }
      count++;
      for (const key of Object.keys(target)) {
        if (key !== 'minutes' && key !== 'business') {
          errors.push({ pointer: `${here}/${pointerToken(key)}`, message: 'is not a known property' });
        }
      }
      minutes(target.minutes, `${here}/minutes`, errors);
      if (typeof target.business !== 'boolean')
        errors.push({ pointer: `${here}/business`, message: 'must be a boolean' });
    }
  }
  if (count === 0) errors.push({ pointer: '/targets', message: 'must set at least one target' });
  checkEscalations(policy, targets, errors);
  return errors;
}

/**
 * The escalations, each with a pointer. Besides the shape, an escalation that could never act is
 * refused: on warnings of a policy that never warns, for a kind the policy sets no target of, or
 * behind earlier escalations that already answer every event it would (the first match applies).
 */
function checkEscalations(
  policy: Record<string, unknown>,
  targets: Record<string, unknown>,
  errors: ValidationError[],
): void {
  const escalations = policy.escalations;
  if (!Array.isArray(escalations)) {
    errors.push({ pointer: '/escalations', message: 'must be an array of escalations' });
    return;
  }
  if (escalations.length > MAX_ESCALATIONS) {
    errors.push({ pointer: '/escalations', message: `must have at most ${MAX_ESCALATIONS} escalations` });
    return;
  }
  const targeted = new Set<string>();
  for (const kinds of Object.values(targets))
    if (isObject(kinds)) for (const k of Object.keys(kinds)) targeted.add(k);
  const answered: Record<string, Set<SlaKind>> = { warning: new Set(), breach: new Set() };
  escalations.forEach((escalation: unknown, i) => {
    const at = `/escalations/${i}`;
    if (!isObject(escalation)) {
      errors.push({
        pointer: at,
        message: 'must be an object with on, kinds, action and notify_supervisors',
      });
      return;
    }
    const before = errors.length;
    for (const key of Object.keys(escalation)) {
      if (!ESCALATION_KEYS.has(key))
        errors.push({ pointer: `${at}/${pointerToken(key)}`, message: 'is not a known property' });
    }
    const { on, kinds, action, notify_supervisors } = escalation;
    if (!(ESCALATION_MOMENTS as readonly unknown[]).includes(on)) {
      errors.push({ pointer: `${at}/on`, message: `must be one of: ${ESCALATION_MOMENTS.join(', ')}` });
    } else if (on === 'warning' && policy.warn_before_minutes === null) {
      errors.push({
        pointer: `${at}/on`,
        message: 'never happens: the policy sets no warn_before_minutes, so it never warns',
      });
    }
    if (!Array.isArray(kinds)) {
      errors.push({
        pointer: `${at}/kinds`,
        message: 'must be an array of target kinds (empty: every kind)',
      });
    } else {
      kinds.forEach((kind: unknown, j) => {
        const here = `${at}/kinds/${j}`;
        if (!(SLA_KINDS as readonly unknown[]).includes(kind))
          errors.push({ pointer: here, message: `is not a target kind (${SLA_KINDS.join(', ')})` });
        else if (kinds.indexOf(kind) !== j) errors.push({ pointer: here, message: 'appears more than once' });
        else if (!targeted.has(kind as string))
          errors.push({ pointer: here, message: 'the policy sets no target of this kind' });
      });
    }
    if (!(ESCALATION_ACTIONS as readonly unknown[]).includes(action)) {
      errors.push({ pointer: `${at}/action`, message: `must be one of: ${ESCALATION_ACTIONS.join(', ')}` });
    }
    if (typeof notify_supervisors !== 'boolean')
      errors.push({ pointer: `${at}/notify_supervisors`, message: 'must be a boolean' });
    if (errors.length > before) return;
    // Empty kinds answer every kind the policy has a target of.
    const covers =
      (kinds as SlaKind[]).length > 0 ? (kinds as SlaKind[]) : SLA_KINDS.filter((k) => targeted.has(k));
    const seen = answered[on as string]!;
    if (covers.length > 0 && covers.every((k) => seen.has(k))) {
      errors.push({
        pointer: at,
        message: `never applies: an earlier escalation already answers every ${on} it would (the first that matches applies)`,
      });
    }
    for (const k of covers) seen.add(k);
  });
}
