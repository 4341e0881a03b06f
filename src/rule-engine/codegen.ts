// The fast path: a rule set compiled to plain JavaScript, a chunk of rules per function.
//
// Closures (one per condition node) cost a call per node; over hundreds of rules per event that
// call overhead dominates. Like Ajv and fast-json-stringify, we generate source instead: each
// rule's condition becomes one boolean expression (&&, ||, !), leaves on channel / status /
// priority / working hours become bit tests on a precomputed truth table, leaves on fields no
// action changes read their memoised result inline, and the rest call the leaf's compiled test.
// No value from a rule ever enters the source: strings and tests are passed in arrays and the
// source only holds integers and fixed identifiers. If code generation is not allowed
// (--disallow-code-generation-from-strings), the same protocol runs on the closures.

import type { Chunk, ChunkFunction, CompiledCondition, CompiledRule, EvalContext } from './compiled.ts';
import type { TicketSnapshot } from './types.ts';
import { DOMAINS, type DomainName, domainIndexer } from './values.ts';

export type { Chunk, ChunkFunction } from './compiled.ts';

/** A leaf test or a batch fill, called from generated code through the `T` array. */
type Callable = (ctx: EvalContext) => unknown;

/** Rule status codes a chunk writes, one per rule. 0 means never reached (processing stopped). */
export const STATUS = Object.freeze({
  inactive: 1,
  trigger: 2,
  department: 3,
  unmatched: 4,
  matched: 5,
});

/** Chunks close at this many condition nodes, so each generated function stays optimisable. */
const CHUNK_NODES = 400;
const CHUNK_RULES = 64;

const DOMAIN_NAMES = Object.keys(DOMAINS) as DomainName[];
const INDEXERS = DOMAIN_NAMES.map((name) => domainIndexer(name));
const READ_DOMAIN: readonly ((t: TicketSnapshot) => unknown)[] = DOMAIN_NAMES.map(
  (name) => (t: TicketSnapshot) => (t as unknown as Record<string, unknown>)[name],
);

/** The indices of the snapshot's channel, status, priority and working hours, once per snapshot. */
function domainIndices(ctx: EvalContext): Int32Array {
  if (ctx.domainsOf !== ctx.t) {
    for (let i = 0; i < INDEXERS.length; i++) ctx.domains[i] = INDEXERS[i]!(READ_DOMAIN[i]!(ctx.t));
    ctx.domainsOf = ctx.t;
  }
  return ctx.domains;
}

function countNodes(node: CompiledCondition): number {
  if (node.kind === 'leaf') return 1;
  if (node.kind === 'not') return 1 + countNodes(node.child);
  return node.children.reduce((sum, child) => sum + countNodes(child), 1);
}

/** Splits rules into chunks and compiles each, generated where possible. */
export function compileChunks(rules: readonly CompiledRule[], generate: boolean): Chunk[] {
  const chunks: Chunk[] = [];
  let start = 0;
  while (start < rules.length) {
    let end = start;
    let nodes = 0;
    while (end < rules.length && end - start < CHUNK_RULES && (end === start || nodes < CHUNK_NODES)) {
      nodes += countNodes(rules[end]!.condition);
      end += 1;
    }
    const members = rules.slice(start, end);
    const generated = generate ? generateChunk(members, start) : null;
    chunks.push(Object.freeze({ start, end, ...(generated ?? closureChunk(members, start)) }));
    start = end;
  }
  return chunks;
}

/** The same protocol on the closures: the fallback, and a reference for tests. */
export function closureChunk(rules: readonly CompiledRule[], start: number): Pick<Chunk, 'run' | 'one'> {
  const one = (ctx: EvalContext, k: number) => rules[k]!.matches(ctx);
  const run: ChunkFunction = (ctx, from, status, candidates) => {
    const department = ctx.t.department_id;
    for (let k = from; k < rules.length; k++) {
      const rule = rules[k]!;
      const index = start + k;
      if (!rule.active) status[index] = STATUS.inactive;
      else if ((rule.triggerMask & ctx.bit) === 0) status[index] = STATUS.trigger;
      else if (rule.departmentId !== null && department !== rule.departmentId)
        status[index] = STATUS.department;
      else if ((candidates[index >>> 5]! & (1 << (index & 31))) !== 0 && rule.matches(ctx)) {
        status[index] = STATUS.matched;
        return index;
      } else status[index] = STATUS.unmatched;
    }
    return -1;
  };
  return { run, one };
}

function generateChunk(rules: readonly CompiledRule[], start: number): Pick<Chunk, 'run' | 'one'> | null {
  const tests: Callable[] = [];
  const testIndex = new Map<Callable, number>();
  const constants: unknown[] = [];
  const testRef = (test: Callable): number => {
    let i = testIndex.get(test);
    if (i === undefined) {
      i = tests.length;
      tests.push(test);
      testIndex.set(test, i);
    }
    return i;
  };

  const expression = (node: CompiledCondition): string => {
    switch (node.kind) {
      case 'all':
        return node.children.length === 0 ? 'true' : `(${node.children.map(expression).join(' && ')})`;
      case 'any':
        return node.children.length === 0 ? 'false' : `(${node.children.map(expression).join(' || ')})`;
      case 'not':
        return `!(${expression(node.child)})`;
      case 'leaf': {
        const emit = node.emit;
        if (emit.kind === 'table') {
          return `(((${emit.mask} >>> d[${DOMAIN_NAMES.indexOf(emit.domain)}]) & 1) === 1)`;
        }
        if (emit.kind === 'memo') {
          return `(M[${emit.cell}] === 0 ? fill(${testRef(emit.fill)}, ${emit.cell}, ctx) : M[${emit.cell}] === 1)`;
        }
        return `(T[${testRef(emit.test)}](ctx))`;
      }
    }
  };

  const conditions = rules.map((rule) => expression(rule.condition));
  const cases = rules.map((rule, k) => {
    const index = start + k;
    let body: string;
    if (!rule.active) body = `S[${index}] = ${STATUS.inactive};`;
    else {
      const matched = `if ((C[${index >>> 5}] & ${1 << (index & 31)}) !== 0 && ${conditions[k]}) { S[${index}] = ${STATUS.matched}; return ${index}; } S[${index}] = ${STATUS.unmatched};`;
      let scoped = matched;
      if (rule.departmentId !== null) {
        constants.push(rule.departmentId);
        scoped = `if (dep !== K[${constants.length - 1}]) { S[${index}] = ${STATUS.department}; } else { ${matched} }`;
      }
      body = `if ((bit & ${rule.triggerMask}) === 0) { S[${index}] = ${STATUS.trigger}; } else { ${scoped} }`;
    }
    return `    case ${k}: { ${body} }`;
  });

  const source = `"use strict";
function fill(j, cell, ctx) {
  T[j](ctx);
  return ctx.memo[cell] === 1;
}
function run(ctx, from, S, C) {
  const M = ctx.memo;
  const bit = ctx.bit;
  const dep = ctx.t.department_id;
  const d = D(ctx);
  switch (from) {
${cases.join('\n')}
  }
  return -1;
}
function one(ctx, k) {
  const M = ctx.memo;
  const d = D(ctx);
  switch (k) {
${conditions.map((condition, k) => `    case ${k}: return ${condition};`).join('\n')}
  }
  return false;
}
return { run, one };`;
  try {
    const factory = new Function('T', 'K', 'D', source) as (
      tests: Callable[],
      constants: unknown[],
      domains: typeof domainIndices,
    ) => Pick<Chunk, 'run' | 'one'>;
    return factory(tests, constants, domainIndices);
  } catch {
    return null;
  }
}
