// How raw field values become comparable, shared by the compiler and the evaluator. A raw value
// is normalised once per field type into a "comparable": a folded string, a number, a rank, a
// boolean, a tag set, or one of two markers. EMPTY is a legitimate absence (null, a blank
// string, no tags): negative operators (is_not, is_none_of, does_not_contain, contains_none)
// hold for it and positive ones do not. MISMATCH is a value of the wrong type (a string in a
// number field, a tag list that is not an array): every value-comparing operator is false on
// it, negative ones included, so bad data never makes a rule fire.

import type { FieldType } from './fields.ts';
import { canonicalTag, foldText, isDateString, isPlainTag } from './text.ts';
import { CHANNELS, PRIORITIES, STATUSES } from './types.ts';

export const EMPTY: unique symbol = Symbol('empty');
export const MISMATCH: unique symbol = Symbol('mismatch');
export type Comparable = string | number | boolean | ReadonlySet<string> | typeof EMPTY | typeof MISMATCH;

/** null, undefined, a blank string and an empty list are empty, whatever the field's type. */
export function isEmptyValue(value: unknown): boolean {
  if (value === null || value === undefined) return true;
  if (typeof value === 'string') return value.trim().length === 0;
  if (Array.isArray(value)) return value.length === 0;
  return false;
}

const PRIORITY_RANK: ReadonlyMap<string, number> = new Map(PRIORITIES.map((p, i) => [p, i]));

export function priorityRank(value: string): number | undefined {
  return PRIORITY_RANK.get(value);
}

/** A tag as conditions compare it: trimmed, then folded like any text. */
export function foldTag(tag: string): string {
  if (isPlainTag(tag)) return tag;
  return foldText(canonicalTag(tag));
}

/** Normalises a raw value of a field of the given type (enumValues picks channel or status). */
export function comparable(type: FieldType, raw: unknown, enumValues?: readonly string[]): Comparable {
  if (isEmptyValue(raw)) return EMPTY;
  switch (type) {
    case 'text':
    case 'choice':
      return typeof raw === 'string' ? foldText(raw) : MISMATCH;
    case 'enum':
      return typeof raw === 'string' && enumValues!.includes(raw) ? raw : MISMATCH;
    case 'priority':
      return typeof raw === 'string' ? (PRIORITY_RANK.get(raw) ?? MISMATCH) : MISMATCH;
    case 'department':
    case 'agent':
      return typeof raw === 'string' ? raw : MISMATCH;
    case 'number':
      return typeof raw === 'number' && Number.isFinite(raw) ? raw : MISMATCH;
    case 'date':
      return isDateString(raw) ? raw : MISMATCH;
    case 'boolean':
      return typeof raw === 'boolean' ? raw : MISMATCH;
    case 'tags': {
      if (!Array.isArray(raw)) return MISMATCH;
      const set = new Set<string>();
      for (const tag of raw) {
        if (typeof tag !== 'string') return MISMATCH;
        set.add(foldTag(tag));
      }
      return set;
    }
  }
}

/** Normalises a constant from a (validated) rule the same way as field values. */
export function comparableConstant(type: FieldType, value: unknown): string | number | boolean {
  switch (type) {
    case 'text':
    case 'choice':
      return foldText(value as string);
    case 'priority':
      return PRIORITY_RANK.get(value as string) ?? -1;
    default:
      return value as string | number | boolean;
  }
}

/**
 * Whether a field changed between two raw values: both empty is no change; tag lists compare as
 * sets of canonical tags; anything else must be identical (so a subject edited only in case has
 * changed).
 */
export function sameRaw(a: unknown, b: unknown): boolean {
  const aEmpty = isEmptyValue(a);
  const bEmpty = isEmptyValue(b);
  if (aEmpty || bEmpty) return aEmpty && bEmpty;
  if (Array.isArray(a) && Array.isArray(b)) {
    const left = new Set(a.map((t) => (typeof t === 'string' ? canonicalTag(t) : t)));
    const right = new Set(b.map((t) => (typeof t === 'string' ? canonicalTag(t) : t)));
    if (left.size !== right.size) return false;
    for (const t of left) if (!right.has(t)) return false;
    return true;
  }
  return a === b;
}

/** Fields with a few fixed values: a leaf on one compiles to a bit test on the value's index. */
export const DOMAINS = Object.freeze({
  channel: { values: CHANNELS as readonly unknown[] },
  status: { values: STATUSES as readonly unknown[] },
  priority: { values: PRIORITIES as readonly unknown[] },
  created_in_working_hours: { values: [true, false] as readonly unknown[] },
  outside_working_hours: { values: [true, false] as readonly unknown[] },
});
export type DomainName = keyof typeof DOMAINS;
export const DOMAIN_COUNT = Object.keys(DOMAINS).length;
/** Any non-empty value outside a domain (a wrong type, an unknown channel) behaves like this one. */
export const MISMATCH_SAMPLE = Object.freeze({});

/**
 * The index of a raw value in a domain: its position, then one index for every empty value and
 * one for every value of the wrong type (leaves give the same result within each class).
 */
export function domainIndexer(domain: DomainName): (raw: unknown) => number {
  const values = DOMAINS[domain].values;
  const index = new Map(values.map((v, i) => [v, i]));
  const empty = values.length;
  return (raw) => index.get(raw) ?? (isEmptyValue(raw) ? empty : empty + 1);
}
