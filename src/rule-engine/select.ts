// Condition-only matching for things that are not rules but use their condition language (SLA
// policies): an ordered list of conditions, first active match wins. Built on compileRules and
// evaluate so there is one condition language with one implementation; each entry becomes a rule
// without actions that stops processing, so the fast path stops at the first match.

import { type CompiledRules, compileRules } from './compile.ts';
import { evaluate } from './evaluate.ts';
import type { Condition, RuleEvent, TicketSnapshot } from './types.ts';

/** What can be selected by condition: rules order by position, ties by id. */
export interface Selectable {
  id: string;
  position: number;
  active: boolean;
  conditions: Condition;
}

/** A compiled selection list; immutable apart from the evaluation scratch, safe to cache and share. */
export interface CompiledSelection {
  readonly rules: CompiledRules;
}

// Selection looks at the ticket as it stands, not at an event: message and previous-value
// fields read as absent, so conditions on them never hold (callers refuse them at write time).
const STATE_EVENT: RuleEvent = Object.freeze({
  type: 'ticket.updated',
  occurred_at: '1970-01-01T00:00:00.000Z',
});

/**
 * Compiles entries for firstMatch(). Throws a RuleSetError (pointers start with the entry's
 * index) when a condition is malformed or two entries share an id, like compileRules.
 */
export function compileSelection(entries: readonly Selectable[]): CompiledSelection {
  const rules = compileRules(
    entries.map((entry) => ({
      id: entry.id,
      name: entry.id,
      active: entry.active,
      position: entry.position,
      stop_processing: true,
      triggers: [STATE_EVENT.type],
      conditions: entry.conditions,
      actions: [],
    })),
    { version: 0 },
  );
  return Object.freeze({ rules });
}

/** The id of the first active entry (by position, then id) whose conditions hold for the ticket; null when none. */
export function firstMatch(selection: CompiledSelection, ticket: TicketSnapshot): string | null {
  return evaluate(STATE_EVENT, ticket, selection.rules, { trace: 'matches' }).trace.stopped_by;
}
