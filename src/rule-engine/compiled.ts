// The shapes of a compiled rule set, apart from the code that builds (compile.ts) and runs
// (codegen.ts, evaluate.ts) them, so those modules depend on the shapes and not on each other.

import type { Action, Rule, RuleEvent, TicketSnapshot } from './types.ts';
import type { Comparable, DomainName } from './values.ts';

/**
 * The mutable state of one evaluate() call (compiled rules hold no per-call state, so one
 * compiled set serves any number of evaluations). Its buffers come from a Scratch, cleared for
 * each call.
 */
export interface EvalContext {
  /** The snapshot as it stands now; actions replace it, never mutate it. */
  t: TicketSnapshot;
  readonly input: TicketSnapshot;
  readonly event: RuleEvent;
  /** The event's trigger bit (see triggerBit). */
  readonly bit: number;
  /** Comparables of fields that no action can change, by slot. */
  readonly stable: (Comparable | undefined)[];
  /** Which of the field's `matches` patterns hit, by slot (one RE2 set pass per field). */
  readonly patternHits: (Uint8Array | undefined)[];
  /** Results of leaves on unchangeable fields: 0 not yet, 1 true, 2 false. */
  readonly memo: Int8Array;
  /** The current tags' comparable, valid while `t.tags` is `tagsRaw`. */
  tagsRaw: unknown;
  tagsComparable: Comparable;
  /** The current tags and their canonical forms, for tag actions; valid while `t.tags` is `raw`. */
  tagState: { raw: unknown; list: string[]; known: string[] } | null;
  /** Indices of channel, status, priority, working hours in their domains, for `domainsOf`. */
  readonly domains: Int32Array;
  domainsOf: TicketSnapshot | null;
}

/**
 * The buffers behind an EvalContext. Allocating them (typed arrays especially) cost more than the
 * rest of a typical evaluate() call, so each compiled set keeps the last call's set for the next
 * one (see takeScratch in evaluate.ts). Nothing in a result points into them.
 */
export interface Scratch {
  readonly memo: Int8Array;
  readonly candidates: Int32Array;
  /** Rule statuses of the 'rules' trace level, allocated the first time that level runs. */
  status: Uint8Array | null;
  readonly stable: (Comparable | undefined)[];
  readonly patternHits: (Uint8Array | undefined)[];
  readonly domains: Int32Array;
}

export type Predicate = (ctx: EvalContext) => boolean;

/** How the generated fast path evaluates a leaf (see codegen.ts). */
export type LeafEmit =
  | { kind: 'table'; domain: DomainName; mask: number }
  | { kind: 'memo'; cell: number; fill: (ctx: EvalContext) => void }
  | { kind: 'call'; test: Predicate };

export interface CompiledLeaf {
  /** The leaf's test, memoised per call where the field cannot change. */
  test: Predicate;
  observe: (ctx: EvalContext) => unknown;
  emit: LeafEmit;
}

export type CompiledCondition =
  | { kind: 'all' | 'any'; pointer: string; children: CompiledCondition[] }
  | { kind: 'not'; pointer: string; child: CompiledCondition }
  | ({ kind: 'leaf'; pointer: string } & CompiledLeaf);

export interface CompiledRule {
  readonly rule: Rule;
  readonly id: string;
  readonly position: number;
  readonly active: boolean;
  readonly stopProcessing: boolean;
  readonly departmentId: string | null;
  readonly triggerMask: number;
  readonly condition: CompiledCondition;
  readonly matches: Predicate;
  readonly actions: readonly Action[];
  readonly actionPointers: readonly string[];
  /**
   * Memo cells of which at least one is true whenever the condition is (null: no such set).
   * They read only fields no action changes, so they are decided once per evaluation.
   */
  readonly guard: readonly number[] | null;
}

/**
 * For one trigger: which rules can possibly match, decided before the pass from the rules'
 * guards. Rules without a guard are always candidates; the others only when one of their guard
 * cells is true. Most rules in a large set fail on a selective leaf (a keyword, a sender, a
 * pattern), so this spares the pass from touching them at all.
 */
export interface Watch {
  /** Bit per rule (see candidatesOf): the rules without a guard. */
  readonly always: Int32Array;
  readonly cells: Int32Array;
  readonly fills: readonly ((ctx: EvalContext) => void)[];
  readonly rules: readonly Int32Array[];
}

/** A rule set ready for evaluate(); immutable, safe to cache by version and share. */
export interface CompiledRules {
  readonly version: number;
  readonly rules: readonly CompiledRule[];
  /** The rules again, grouped into generated functions (codegen.ts) for the fast path. */
  readonly chunks: readonly Chunk[];
  /** For each rule index, the index of its chunk. */
  readonly chunkOf: Uint32Array;
  /** Candidate computation per trigger, indexed like TRIGGERS. */
  readonly watches: readonly Watch[];
  readonly slotCount: number;
  readonly memoSize: number;
  /** evaluate()'s buffers, left here between calls; the only part of a compiled set that changes. */
  readonly scratch: { spare: Scratch | null };
}

/**
 * Evaluates rules `from` (an offset into the chunk) onwards, with the snapshot as it stands,
 * writing each rule's status into `status` (indexed by rule position in the set). Rules whose
 * bit in `candidates` is 0 cannot match (see candidatesOf in compile.ts) and are not evaluated.
 * Returns the index of the first rule that matched, so the caller can run its actions, or -1.
 */
export type ChunkFunction = (
  ctx: EvalContext,
  from: number,
  status: Uint8Array,
  candidates: Int32Array,
) => number;

export interface Chunk {
  readonly start: number;
  readonly end: number;
  readonly run: ChunkFunction;
  /** Whether the condition of rule `start + k` holds (no scope checks, no status). */
  readonly one: (ctx: EvalContext, k: number) => boolean;
}
