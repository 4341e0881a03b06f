import { compileChunks } from './codegen.ts';
import type {
  CompiledCondition,
  CompiledLeaf,
  CompiledRule,
  CompiledRules,
  EvalContext,
  LeafEmit,
  Predicate,
  Scratch,
  Watch,
} from './compiled.ts';
import {
  CHANGE_OPERATORS,
  type FieldSpec,
  inferCustomType,
  type ResolvedField,
  resolveField,
} from './fields.ts';
import { canonicalTag, matchInput, nfkc, PatternGroup } from './text.ts';
import type {
  Action,
  Condition,
  ConditionLeaf,
  Rule,
  Scalar,
  TicketSnapshot,
  Trigger,
  ValidationError,
} from './types.ts';
import { TRIGGERS } from './types.ts';
import { checkRuleStructure } from './validate.ts';
import {
  type Comparable,
  comparable,
  comparableConstant,
  DOMAIN_COUNT,
  DOMAINS,
  type DomainName,
  EMPTY,
  foldTag,
  isEmptyValue,
  MISMATCH,
  MISMATCH_SAMPLE,
  sameRaw,
} from './values.ts';

/** compileRules() refuses a rule set with structural problems; pointers start with the rule's index. */
export class RuleSetError extends Error {
  readonly errors: ValidationError[];

  constructor(errors: ValidationError[]) {
    super(
      `invalid rule set: ${errors.length} problem(s), first: ${errors[0]?.pointer} ${errors[0]?.message}`,
    );
    this.name = 'RuleSetError';
    this.errors = errors;
  }
}

const TRIGGER_BIT: ReadonlyMap<string, number> = new Map(TRIGGERS.map((t, i) => [t, 1 << i]));

/** The bit of a trigger in CompiledRule.triggerMask (0 for an unknown one). */
export function triggerBit(trigger: Trigger | string): number {
  return TRIGGER_BIT.get(trigger) ?? 0;
}

const TRACE_TEXT = 500;
const NO_HITS = new Uint8Array(0);

/** How the trace shows a value: long text cut, lists copied so later edits do not show. */
export function traceValue(value: unknown): unknown {
  if (typeof value === 'string' && value.length > TRACE_TEXT) return `${value.slice(0, TRACE_TEXT)}…`;
  if (Array.isArray(value)) return value.slice();
  return value === undefined ? null : value;
}

type Reader = (ctx: EvalContext) => unknown;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function readPath(root: unknown, path: readonly string[]): { found: boolean; value: unknown } {
  let node = root;
  for (const key of path) {
    if (!isRecord(node) || !Object.hasOwn(node, key)) return { found: false, value: undefined };
    node = node[key];
  }
  return { found: true, value: node };
}

// One closure per field, each with its own property access, so V8 keeps every read monomorphic
// (a shared `t[key]` closure would go megamorphic across fields).
const TICKET_READERS: Readonly<Record<string, (t: TicketSnapshot) => unknown>> = Object.freeze({
  channel: (t) => t.channel,
  subject: (t) => t.subject,
  status: (t) => t.status,
  priority: (t) => t.priority,
  department_id: (t) => t.department_id,
  assignee_id: (t) => t.assignee_id,
  tags: (t) => t.tags,
  support_address: (t) => t.support_address,
  created_in_working_hours: (t) => t.created_in_working_hours,
  outside_working_hours: (t) => t.outside_working_hours,
  'contact.name': (t) => (isRecord(t.contact) ? t.contact.name : undefined),
  'contact.email': (t) => (isRecord(t.contact) ? t.contact.email : undefined),
});

function ticketReader(path: readonly string[]): (t: TicketSnapshot) => unknown {
  const known = TICKET_READERS[path.join('.')];
  if (known) return known;
  if (path.length === 3 && path[0] === 'contact' && path[1] === 'custom') {
    const key = path[2]!;
    return (t) => {
      const custom = isRecord(t.contact) ? t.contact.custom : undefined;
      return isRecord(custom) && Object.hasOwn(custom, key) ? custom[key] : undefined;
    };
  }
  return (t) => readPath(t, path).value;
}

function currentReader(spec: FieldSpec): Reader {
  const source = spec.source;
  switch (source.from) {
    case 'ticket': {
      const read = ticketReader(source.path);
      return (ctx) => read(ctx.t);
    }
    case 'message_body':
      return (ctx) => (isRecord(ctx.event.message) ? ctx.event.message.body : null);
    case 'sender_email':
      return (ctx) => (isRecord(ctx.event.message) ? ctx.event.message.sender_email : null);
    case 'sender_domain':
      return (ctx) => {
        const email = isRecord(ctx.event.message) ? ctx.event.message.sender_email : null;
        if (typeof email !== 'string') return email;
        const at = email.lastIndexOf('@');
        return at < 0 ? null : email.slice(at + 1).trim();
      };
    case 'sla':
      return source.key === 'kind'
        ? (ctx) => (isRecord(ctx.event.sla) ? ctx.event.sla.kind : null)
        : (ctx) => (isRecord(ctx.event.sla) ? ctx.event.sla.policy_id : null);
  }
}

/** The value before the event: what event.previous says, else the ticket as it came in. */
function previousReader(spec: FieldSpec): Reader {
  if (spec.source.from !== 'ticket') throw new Error('only ticket fields have previous values');
  const path = spec.source.path;
  const read = ticketReader(path);
  return (ctx) => {
    const previous = readPath(ctx.event.previous, path);
    return previous.found ? previous.value : read(ctx.input);
  };
}

interface FieldAccess {
  /** Type and name: one access per way a field is read. */
  readonly key: string;
  readonly field: ResolvedField;
  readonly read: Reader;
  readonly comparable: (ctx: EvalContext) => Comparable;
  /** The field's `matches` patterns, all run in one pass; null for fields actions can change. */
  readonly patterns: PatternGroup | null;
  readonly patternHits: (ctx: EvalContext) => Uint8Array;
}

/** Per-compile state: slots and memo cells shared by equal fields and equal leaves across rules. */
class CompileState {
  private readonly accesses = new Map<string, FieldAccess>();
  private readonly leaves = new Map<string, CompiledLeaf>();
  private readonly batches = new Map<string, Batch>();
  readonly groups: PatternGroup[] = [];
  slotCount = 0;
  memoSize = 0;

  /** Builds the per-field pattern sets once every rule is compiled. */
  seal(): void {
    for (const group of this.groups) group.seal();
    for (const batch of this.batches.values()) batch.seal?.();
  }

  access(field: ResolvedField): FieldAccess {
    // A contact field's type is inferred per leaf, so one name may be read as two types.
    const key = `${field.spec.type}:${field.name}`;
    const known = this.accesses.get(key);
    if (known) return known;
    const spec = field.spec;
    const read = field.previous ? previousReader(spec) : currentReader(spec);
    const type = spec.type;
    const enumValues = spec.enumValues;
    let access: FieldAccess;
    if (spec.mutable && !field.previous) {
      const compute =
        type === 'tags'
          ? (ctx: EvalContext): Comparable => {
              const raw = read(ctx);
              if (raw !== ctx.tagsRaw) {
                ctx.tagsRaw = raw;
                ctx.tagsComparable = comparable('tags', raw);
              }
              return ctx.tagsComparable;
            }
          : (ctx: EvalContext): Comparable => comparable(type, read(ctx), enumValues);
      access = {
        key,
        field,
        read,
        comparable: compute,
        patterns: null,
        patternHits: () => NO_HITS,
      };
    } else {
      const slot = this.slotCount++;
      const patterns = new PatternGroup();
      const stable = (ctx: EvalContext): Comparable => {
        let value = ctx.stable[slot];
        if (value === undefined) {
          value = comparable(type, read(ctx), enumValues);
          ctx.stable[slot] = value;
        }
        return value;
      };
      access = {
        key,
        field,
        read,
        comparable: stable,
        patterns,
        patternHits: (ctx) => {
          let hits = ctx.patternHits[slot];
          if (hits === undefined) {
            const raw = read(ctx);
            hits =
              typeof raw === 'string' && !isEmptyValue(raw) ? patterns.run(matchInput(nfkc(raw))) : NO_HITS;
            ctx.patternHits[slot] = hits;
          }
          return hits;
        },
      };
      this.groups.push(patterns);
    }
    this.accesses.set(key, access);
    return access;
  }

  /** One compiled test per distinct leaf; leaves on fields no action changes are memoised per call. */
  leaf(leaf: ConditionLeaf): CompiledLeaf {
    const key = `${leaf.field}\u0000${leaf.operator}\u0000${JSON.stringify(leaf.value)}`;
    const known = this.leaves.get(key);
    if (known) return known;
    const lookup = resolveField(leaf.field, () => inferCustomType(leaf.operator, leaf.value));
    if (!lookup.ok) throw new Error(`unreachable: ${lookup.message}`);
    const field = lookup.field;
    const access = this.access(field);
    let test = this.test(leaf, access);
    let observe: Reader = (ctx) => traceValue(access.read(ctx));
    const changeOp = CHANGE_OPERATORS.has(leaf.operator);
    if (changeOp) {
      const before = this.access({ ...field, name: `previous.${field.name}`, previous: true });
      observe = (ctx) => ({ from: traceValue(before.read(ctx)), to: traceValue(access.read(ctx)) });
    }
    if (field.spec.type === 'agent' && !field.previous) {
      // An assignee the caller has yet to pick is unknown: no condition on it holds.
      const decided = test;
      const shown = observe;
      test = (ctx) => !ctx.t.pending_assignment && decided(ctx);
      observe = (ctx) =>
        ctx.t.pending_assignment ? { pending: ctx.t.pending_assignment.strategy } : shown(ctx);
    }
    let emit: LeafEmit;
    const domain = !field.previous && !changeOp && Object.hasOwn(DOMAINS, field.name) ? field.name : null;
    if (domain !== null) {
      emit = {
        kind: 'table',
        domain: domain as DomainName,
        mask: this.truthTable(domain as DomainName, test),
      };
    } else if (!field.spec.mutable || field.previous) {
      const cell = this.memoSize++;
      const compute = test;
      const fill =
        this.batch(leaf, access, cell) ??
        ((ctx: EvalContext) => {
          ctx.memo[cell] = compute(ctx) ? 1 : 2;
        });
      emit = { kind: 'memo', cell, fill };
      test = (ctx) => {
        if (ctx.memo[cell] === 0) fill(ctx);
        return ctx.memo[cell] === 1;
      };
    } else {
      emit = { kind: 'call', test };
    }
    const compiled = { test, observe, emit };
    this.leaves.set(key, compiled);
    return compiled;
  }

  /**
   * Leaves with the same operator on the same unchangeable field are decided together, the first
   * time any of them is needed: one lookup for every `is` / `is_one_of` constant, one loop over
   * the needles of `contains` and the like in one scan of the folded text, one RE2 set
   * pass for `matches`. Returns the batch's fill, or null for operators decided one by one.
   */
  private batch(leaf: ConditionLeaf, access: FieldAccess, cell: number): ((ctx: EvalContext) => void) | null {
    const operator = leaf.operator;
    if (!BATCHED.has(operator)) return null;
    const key = `${access.key}\u0000${operator}`;
    let batch = this.batches.get(key);
    if (!batch) {
      batch = createBatch(operator, access);
      this.batches.set(key, batch);
    }
    batch.add(leaf.value, cell);
    return batch.fill;
  }

  /**
   * A leaf on a field with a few fixed values is a function of the value's index: evaluate it
   * once per index now (with the leaf's own test, so the semantics cannot drift) and keep the
   * results as bits.
   */
  private truthTable(domain: DomainName, test: Predicate): number {
    const samples = [...DOMAINS[domain].values, null, MISMATCH_SAMPLE];
    let mask = 0;
    samples.forEach((value, index) => {
      const t = { [domain]: value } as unknown as TicketSnapshot;
      const ctx: EvalContext = {
        t,
        input: t,
        event: { type: 'ticket.created', occurred_at: '' },
        bit: 0,
        stable: [],
        patternHits: [],
        memo: new Int8Array(0),
        tagsRaw: undefined,
        tagsComparable: EMPTY,
        tagState: null,
        domains: new Int32Array(DOMAIN_COUNT),
        domainsOf: null,
      };
      if (test(ctx)) mask |= 1 << index;
    });
    return mask;
  }

  private test(leaf: ConditionLeaf, access: FieldAccess): Predicate {
    const type = access.field.spec.type;
    const value = leaf.value;
    const get = access.comparable;
    const constant = (v: unknown) => comparableConstant(type, v);
    switch (leaf.operator) {
      case 'is': {
        const k = constant(value);
        return (ctx) => get(ctx) === k;
      }
      case 'is_not': {
        const k = constant(value);
        return (ctx) => {
          const c = get(ctx);
          return c !== MISMATCH && c !== k;
        };
      }
      case 'is_one_of': {
        const set = new Set((value as Scalar[]).map(constant));
        return (ctx) => {
          const c = get(ctx);
          return typeof c !== 'symbol' && set.has(c as Scalar);
        };
      }
      case 'is_none_of': {
        const set = new Set((value as Scalar[]).map(constant));
        return (ctx) => {
          const c = get(ctx);
          return c === EMPTY || (c !== MISMATCH && !set.has(c as Scalar));
        };
      }
      case 'contains': {
        const k = constant(value) as string;
        return (ctx) => {
          const c = get(ctx);
          return typeof c === 'string' && c.includes(k);
        };
      }
      case 'does_not_contain': {
        const k = constant(value) as string;
        return (ctx) => {
          const c = get(ctx);
          return c === EMPTY || (typeof c === 'string' && !c.includes(k));
        };
      }
      case 'starts_with': {
        const k = constant(value) as string;
        return (ctx) => {
          const c = get(ctx);
          return typeof c === 'string' && c.startsWith(k);
        };
      }
      case 'ends_with': {
        const k = constant(value) as string;
        return (ctx) => {
          const c = get(ctx);
          return typeof c === 'string' && c.endsWith(k);
        };
      }
      case 'matches': {
        // Text fields are never mutable, so every `matches` leaf has a pattern group.
        const index = access.patterns!.add(value as string);
        const hits = access.patternHits;
        return (ctx) => hits(ctx)[index] === 1;
      }
      case 'greater_than':
      case 'less_than': {
        const k = constant(value);
        const kind = typeof k;
        return leaf.operator === 'greater_than'
          ? (ctx) => {
              const c = get(ctx);
              return typeof c === kind && (c as number | string) > (k as number | string);
            }
          : (ctx) => {
              const c = get(ctx);
              return typeof c === kind && (c as number | string) < (k as number | string);
            };
      }
      case 'is_empty': {
        const read = access.read;
        return (ctx) => isEmptyValue(read(ctx));
      }
      case 'is_not_empty': {
        const read = access.read;
        return (ctx) => !isEmptyValue(read(ctx));
      }
      case 'contains_any':
      case 'contains_all':
      case 'contains_none': {
        const wanted = [...new Set((value as string[]).map(foldTag))];
        if (leaf.operator === 'contains_any') {
          return (ctx) => {
            const c = get(ctx);
            if (!(c instanceof Set)) return false;
            for (const tag of wanted) if (c.has(tag)) return true;
            return false;
          };
        }
        if (leaf.operator === 'contains_all') {
          return (ctx) => {
            const c = get(ctx);
            if (!(c instanceof Set)) return false;
            for (const tag of wanted) if (!c.has(tag)) return false;
            return true;
          };
        }
        return (ctx) => {
          const c = get(ctx);
          if (c === EMPTY) return true;
          if (!(c instanceof Set)) return false;
          for (const tag of wanted) if (c.has(tag)) return false;
          return true;
        };
      }
      case 'has_changed':
      case 'changed_from':
      case 'changed_to': {
        const before = this.access({
          ...access.field,
          name: `previous.${access.field.name}`,
          previous: true,
        });
        const readNow = access.read;
        const readBefore = before.read;
        if (leaf.operator === 'has_changed') return (ctx) => !sameRaw(readBefore(ctx), readNow(ctx));
        const side = leaf.operator === 'changed_from' ? before : access;
        const equals: Predicate =
          value === null
            ? (ctx) => isEmptyValue(side.read(ctx))
            : (
                (k) => (ctx: EvalContext) =>
                  side.comparable(ctx) === k
              )(constant(value));
        return (ctx) => !sameRaw(readBefore(ctx), readNow(ctx)) && equals(ctx);
      }
    }
  }
}

interface Batch {
  add(value: unknown, cell: number): void;
  /** Builds what fill() reads, once every leaf is added. */
  seal?(): void;
  readonly fill: (ctx: EvalContext) => void;
}

const BATCHED: ReadonlySet<string> = new Set([
  'is',
  'is_one_of',
  'contains',
  'does_not_contain',
  'starts_with',
  'ends_with',
  'matches',
]);

/** Same semantics as CompileState.test for these operators, decided for many constants at once. */
function createBatch(operator: string, access: FieldAccess): Batch {
  const type = access.field.spec.type;
  const cells: number[] = [];
  const get = access.comparable;
  if (operator === 'is' || operator === 'is_one_of') {
    const byValue = new Map<unknown, number[]>();
    return {
      add(value, cell) {
        cells.push(cell);
        const values = operator === 'is' ? [value] : (value as Scalar[]);
        for (const v of new Set(values.map((x) => comparableConstant(type, x)))) {
          const list = byValue.get(v);
          if (list) list.push(cell);
          else byValue.set(v, [cell]);
        }
      },
      fill(ctx) {
        const memo = ctx.memo;
        for (const cell of cells) memo[cell] = 2;
        const c = get(ctx);
        if (typeof c === 'symbol') return;
        const hits = byValue.get(c);
        if (hits) for (const cell of hits) memo[cell] = 1;
      },
    };
  }
  if (operator === 'matches') {
    const indexes: number[] = [];
    return {
      add(value, cell) {
        cells.push(cell);
        indexes.push(access.patterns!.add(value as string));
      },
      fill(ctx) {
        const memo = ctx.memo;
        const hits = access.patternHits(ctx);
        for (let i = 0; i < cells.length; i++) memo[cells[i]!] = hits[indexes[i]!] === 1 ? 1 : 2;
      },
    };
  }
  const needles: string[] = [];
  const negate = operator === 'does_not_contain';
  // Most needles are absent, and proving it one needle at a time costs a scan of the text each.
  // Instead the text is scanned once: a needle can only start where the text's next three code
  // units are the needle's first three (contains), and only match the text's first (starts_with)
  // or last (ends_with) code unit; an index from those keys to the needles visits just the
  // needles that can be there, and each is confirmed with startsWith/endsWith.
  const contains = operator === 'contains' || negate;
  const hit = negate ? 2 : 1;
  const miss = negate ? 1 : 2;
  let index: NeedleIndex | null = null;
  return {
    add(value, cell) {
      cells.push(cell);
      needles.push(comparableConstant(type, value) as string);
      index = null;
    },
    seal() {
      index = contains ? needleIndex(needles, trigramKeyOf) : needleIndex(needles, edgeKeyOf(operator));
    },
    // fill() runs only after compileRules has sealed every batch.
    fill(ctx) {
      const memo = ctx.memo;
      const c = get(ctx);
      if (typeof c !== 'string') {
        const result = negate && c === EMPTY ? 1 : 2;
        for (const cell of cells) memo[cell] = result;
        return;
      }
      for (let i = 0; i < cells.length; i++) memo[cells[i]!] = miss;
      const { short, start, members } = index!;
      for (let i = 0; i < short.length; i++) {
        const n = short[i]!;
        const needle = needles[n]!;
        const found =
          operator === 'starts_with'
            ? c.startsWith(needle)
            : operator === 'ends_with'
              ? c.endsWith(needle)
              : c.includes(needle);
        if (found) memo[cells[n]!] = hit;
      }
      if (c.length === 0) return;
      if (!contains) {
        const key =
          operator === 'starts_with' ? c.charCodeAt(0) & KEY_MASK : c.charCodeAt(c.length - 1) & KEY_MASK;
        for (let j = start[key]!; j < start[key + 1]!; j++) {
          const n = members[j]!;
          const found = operator === 'starts_with' ? c.startsWith(needles[n]!) : c.endsWith(needles[n]!);
          if (found) memo[cells[n]!] = hit;
        }
        return;
      }
      let a = c.charCodeAt(0);
      let b = c.charCodeAt(1);
      for (let at = 2; at < c.length; at++) {
        const code = c.charCodeAt(at);
        const key = trigram(a, b, code);
        a = b;
        b = code;
        const end = start[key + 1]!;
        for (let j = start[key]!; j < end; j++) {
          const n = members[j]!;
          if (memo[cells[n]!] !== hit && c.startsWith(needles[n]!, at - 2)) memo[cells[n]!] = hit;
        }
      }
    },
  };
}

const KEY_MASK = 4095;

/**
 * Needles grouped by a key (KEY_MASK + 1 buckets, as offsets into one array); needles too short
 * to have a key are listed apart and tested directly.
 */
interface NeedleIndex {
  readonly short: Int32Array;
  readonly start: Int32Array;
  readonly members: Int32Array;
}

function trigram(a: number, b: number, c: number): number {
  return (((a * 31 + b) * 31 + c) >>> 0) & KEY_MASK;
}

function trigramKeyOf(needle: string): number {
  return needle.length < 3 ? -1 : trigram(needle.charCodeAt(0), needle.charCodeAt(1), needle.charCodeAt(2));
}

function edgeKeyOf(operator: string): (needle: string) => number {
  return (needle) =>
    needle.length === 0
      ? -1
      : (operator === 'starts_with' ? needle.charCodeAt(0) : needle.charCodeAt(needle.length - 1)) & KEY_MASK;
}

function needleIndex(needles: readonly string[], keyOf: (needle: string) => number): NeedleIndex {
  const short: number[] = [];
  const buckets: number[][] = Array.from({ length: KEY_MASK + 1 }, () => []);
  needles.forEach((needle, n) => {
    const key = keyOf(needle);
    if (key < 0) short.push(n);
    else buckets[key]!.push(n);
  });
  const start = new Int32Array(KEY_MASK + 2);
  buckets.forEach((bucket, key) => {
    start[key + 1] = start[key]! + bucket.length;
  });
  return { short: Int32Array.from(short), start, members: Int32Array.from(buckets.flat()) };
}

function compileCondition(node: Condition, pointer: string, state: CompileState): CompiledCondition {
  if ('all' in node) {
    return {
      kind: 'all',
      pointer,
      children: node.all.map((child, i) => compileCondition(child, `${pointer}/all/${i}`, state)),
    };
  }
  if ('any' in node) {
    return {
      kind: 'any',
      pointer,
      children: node.any.map((child, i) => compileCondition(child, `${pointer}/any/${i}`, state)),
    };
  }
  if ('not' in node)
    return { kind: 'not', pointer, child: compileCondition(node.not, `${pointer}/not`, state) };
  return { kind: 'leaf', pointer, ...state.leaf(node) };
}

/**
 * Memo cells such that the condition implies at least one of them is true, or null. An `all`
 * needs only one child's guard (the smallest), an `any` needs every child's; `not` and leaves on
 * fields actions change give none.
 */
function guardOf(node: CompiledCondition, fills: Map<number, (ctx: EvalContext) => void>): number[] | null {
  switch (node.kind) {
    case 'leaf':
      if (node.emit.kind !== 'memo') return null;
      fills.set(node.emit.cell, node.emit.fill);
      return [node.emit.cell];
    case 'not':
      return null;
    case 'all': {
      let best: number[] | null = null;
      for (const child of node.children) {
        const guard = guardOf(child, fills);
        if (guard && (!best || guard.length < best.length)) best = guard;
      }
      return best;
    }
    case 'any': {
      const cells = new Set<number>();
      for (const child of node.children) {
        const guard = guardOf(child, fills);
        if (!guard) return null;
        for (const cell of guard) cells.add(cell);
      }
      return [...cells];
    }
  }
}

function buildWatches(
  rules: readonly CompiledRule[],
  fills: Map<number, (ctx: EvalContext) => void>,
): Watch[] {
  return TRIGGERS.map((trigger) => {
    const bit = triggerBit(trigger);
    const always = new Int32Array(candidateWords(rules.length));
    const byCell = new Map<number, number[]>();
    rules.forEach((rule, index) => {
      if (!rule.active || (rule.triggerMask & bit) === 0) return;
      if (!rule.guard) {
        always[index >>> 5]! |= 1 << (index & 31);
        return;
      }
      for (const cell of rule.guard) {
        const list = byCell.get(cell);
        if (list) list.push(index);
        else byCell.set(cell, [index]);
      }
    });
    const cells = [...byCell.keys()];
    return Object.freeze({
      always,
      cells: Int32Array.from(cells),
      fills: cells.map((cell) => fills.get(cell)!),
      rules: cells.map((cell) => Int32Array.from(byCell.get(cell)!)),
    });
  });
}

/** Words of a candidate bit set over `rules` rules. */
export function candidateWords(rules: number): number {
  return (rules + 31) >>> 5;
}

/**
 * The rules that can match this event, as a bit set in `into`: rule i is a candidate when bit
 * (i & 31) of word (i >>> 5) is set. Bits let the fast pass skip 32 non-candidates at a time.
 */
export function candidatesOf(ctx: EvalContext, compiled: CompiledRules, into: Int32Array): Int32Array {
  const index = TRIGGERS.indexOf(ctx.event.type);
  if (index < 0) {
    into.fill(0);
    return into;
  }
  const watch = compiled.watches[index]!;
  into.set(watch.always);
  const memo = ctx.memo;
  for (let i = 0; i < watch.cells.length; i++) {
    const cell = watch.cells[i]!;
    if (memo[cell] === 0) watch.fills[i]!(ctx);
    if (memo[cell] === 1) {
      const rules = watch.rules[i]!;
      for (let j = 0; j < rules.length; j++) {
        const rule = rules[j]!;
        into[rule >>> 5]! |= 1 << (rule & 31);
      }
    }
  }
  return into;
}

/** Turns a condition tree into nested closures; groups of one or two children skip the loop. */
function predicateOf(node: CompiledCondition): Predicate {
  switch (node.kind) {
    case 'leaf':
      return node.test;
    case 'not': {
      const child = predicateOf(node.child);
      return (ctx) => !child(ctx);
    }
    case 'all':
    case 'any': {
      const children = node.children.map(predicateOf);
      const all = node.kind === 'all';
      if (children.length === 0) return () => all;
      if (children.length === 1) return children[0]!;
      if (children.length === 2) {
        const [a, b] = children as [Predicate, Predicate];
        return all ? (ctx) => a(ctx) && b(ctx) : (ctx) => a(ctx) || b(ctx);
      }
      return all
        ? (ctx) => {
            for (const child of children) if (!child(ctx)) return false;
            return true;
          }
        : (ctx) => {
            for (const child of children) if (child(ctx)) return true;
            return false;
          };
    }
  }
}

function compileActions(actions: readonly Action[]): Action[] {
  return actions.map((action) => {
    if (action.type === 'add_tags' || action.type === 'remove_tags' || action.type === 'replace_tags') {
      return { type: action.type, tags: [...new Set(action.tags.map(canonicalTag))] };
    }
    return action;
  });
}

export interface CompileOptions {
  /** The rule set's version, echoed in every trace. */
  version: number;
  /**
   * false: evaluate with closures only, no generated code (for runtimes that forbid code
   * generation from strings; the results are the same, tests check it). Default true.
   */
  codegen?: boolean;
}

/**
 * Compiles a rule set once into closures for evaluate(). It runs the catalog-free part of
 * validation first and throws a RuleSetError (pointers prefixed with the rule's index in
 * `rules`) when any rule is malformed or two rules share an id: rules are meant to be validated
 * with validateRule() when written, so this only guards against stored data that went bad.
 * References to departments, agents or tags that no longer exist are not checked here; the
 * caller applying the effects handles them. Pure: the result depends only on the arguments.
 */
export function compileRules(rules: readonly Rule[], options: CompileOptions): CompiledRules {
  const errors: ValidationError[] = [];
  const ids = new Set<string>();
  rules.forEach((rule, i) => {
    for (const error of checkRuleStructure(rule)) {
      errors.push({ pointer: `/${i}${error.pointer}`, message: error.message });
    }
    if (typeof rule?.id === 'string') {
      if (ids.has(rule.id)) errors.push({ pointer: `/${i}/id`, message: `repeats rule id "${rule.id}"` });
      ids.add(rule.id);
    }
  });
  if (errors.length > 0) throw new RuleSetError(errors);

  const ordered = [...rules].sort((a, b) =>
    a.position !== b.position ? a.position - b.position : a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  );
  const state = new CompileState();
  const fills = new Map<number, (ctx: EvalContext) => void>();
  const compiled = ordered.map((rule): CompiledRule => {
    const condition = compileCondition(rule.conditions, '/conditions', state);
    return Object.freeze({
      rule,
      id: rule.id,
      position: rule.position,
      active: rule.active,
      stopProcessing: rule.stop_processing,
      departmentId: rule.department_id ?? null,
      triggerMask: rule.triggers.reduce((mask, trigger) => mask | triggerBit(trigger), 0),
      condition,
      matches: predicateOf(condition),
      actions: compileActions(rule.actions),
      actionPointers: rule.actions.map((_, i) => `/actions/${i}`),
      guard: guardOf(condition, fills),
    });
  });
  state.seal();
  const chunks = compileChunks(compiled, options.codegen !== false);
  const chunkOf = new Uint32Array(compiled.length);
  chunks.forEach((chunk, i) => {
    chunkOf.fill(i, chunk.start, chunk.end);
  });
  return Object.freeze({
    version: options.version,
    rules: Object.freeze(compiled),
    chunks: Object.freeze(chunks),
    chunkOf,
    watches: Object.freeze(buildWatches(compiled, fills)),
    slotCount: state.slotCount,
    memoSize: state.memoSize,
    scratch: { spare: null },
  });
}

export type {
  CompiledCondition,
  CompiledRule,
  CompiledRules,
  EvalContext,
  LeafEmit,
  Predicate,
  Scratch,
  Watch,
};
// Re-exported for evaluate.ts, which shows the same values in traces.
export { EMPTY, MISMATCH };
