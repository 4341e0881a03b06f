// A deliberately plain interpreter of the rule semantics in docs/rules.md, for the property test:
// it walks the rule JSON directly on every call (no compilation, no memo, no truth tables, no
// pattern sets, no fast paths) and shares no code with src/rule-engine beyond the public types.

import { RE2JS } from 're2js';
import type { Condition, Rule, RuleEvent, TicketSnapshot } from '../../src/rule-engine/types.ts';

const CHANNEL_VALUES = [
  'email',
  'contact_form',
  'chat',
  'call',
  'facebook',
  'twitter',
  'instagram',
  'viber',
  'whatsapp',
  'api',
];
const STATUS_VALUES = ['new', 'open', 'answered', 'postponed', 'resolved', 'spam', 'deleted'];
const PRIORITY_VALUES = ['low', 'normal', 'high', 'urgent'];
const SLA_KIND_VALUES = ['first_answer', 'next_answer', 'first_assignment', 'resolution'];

type Kind = 'text' | 'enum' | 'priority' | 'id' | 'tags' | 'number' | 'date' | 'boolean';

const KIND: Record<string, Kind> = {
  channel: 'enum',
  subject: 'text',
  'message.body': 'text',
  'sender.email': 'text',
  'sender.domain': 'text',
  support_address: 'text',
  department_id: 'id',
  status: 'enum',
  priority: 'priority',
  assignee_id: 'id',
  tags: 'tags',
  'contact.name': 'text',
  'contact.email': 'text',
  created_in_working_hours: 'boolean',
  outside_working_hours: 'boolean',
  'sla.kind': 'enum',
  'sla.policy_id': 'text',
};

function fold(s: string): string {
  return s.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC').replace(/ς/g, 'σ');
}

function empty(v: unknown): boolean {
  return (
    v === null ||
    v === undefined ||
    (typeof v === 'string' && v.trim() === '') ||
    (Array.isArray(v) && v.length === 0)
  );
}

function own(obj: unknown, key: string): { has: boolean; value: unknown } {
  if (typeof obj !== 'object' || obj === null || !Object.hasOwn(obj, key))
    return { has: false, value: undefined };
  return { has: true, value: (obj as Record<string, unknown>)[key] };
}

function pathOf(field: string): string[] {
  if (field.startsWith('contact.custom.'))
    return ['contact', 'custom', field.slice('contact.custom.'.length)];
  if (field === 'contact.name' || field === 'contact.email') return field.split('.');
  return [field];
}

function readPath(root: unknown, path: string[]): { has: boolean; value: unknown } {
  let node: { has: boolean; value: unknown } = { has: true, value: root };
  for (const key of path) {
    node = own(node.value, key);
    if (!node.has) return node;
  }
  return node;
}

interface Scope {
  ticket: TicketSnapshot;
  input: TicketSnapshot;
  event: RuleEvent;
}

function current(field: string, s: Scope): unknown {
  const message = s.event.message;
  const m = typeof message === 'object' && message !== null ? message : null;
  if (field === 'message.body') return m ? m.body : null;
  const sla = typeof s.event.sla === 'object' && s.event.sla !== null ? s.event.sla : null;
  if (field === 'sla.kind') return sla ? sla.kind : null;
  if (field === 'sla.policy_id') return sla ? sla.policy_id : null;
  if (field === 'sender.email') return m ? m.sender_email : null;
  if (field === 'sender.domain') {
    const email = m ? m.sender_email : null;
    if (typeof email !== 'string') return email;
    return email.includes('@') ? email.slice(email.lastIndexOf('@') + 1).trim() : null;
  }
  return readPath(s.ticket, pathOf(field)).value;
}

function previous(field: string, s: Scope): unknown {
  const found = readPath(s.event.previous, pathOf(field));
  return found.has ? found.value : readPath(s.input, pathOf(field)).value;
}

function kindOf(field: string, operator: string, value: unknown): Kind {
  const base = field.startsWith('previous.') ? field.slice('previous.'.length) : field;
  if (KIND[base]) return KIND[base]!;
  const sample = Array.isArray(value) ? value[0] : value;
  if (typeof sample === 'number') return 'number';
  if (typeof sample === 'boolean') return 'boolean';
  if (operator === 'greater_than' || operator === 'less_than') return 'date';
  return 'text';
}

const MIS = 'MISMATCH';
const EMP = 'EMPTY';

function validDate(v: unknown): boolean {
  if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(v)) return false;
  const d = new Date(`${v}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === v;
}

/** [state, comparable]: state is EMPTY, MISMATCH or 'ok'. */
function norm(kind: Kind, v: unknown, field: string): [string, unknown] {
  if (empty(v)) return [EMP, null];
  switch (kind) {
    case 'text':
      return typeof v === 'string' ? ['ok', fold(v)] : [MIS, null];
    case 'enum': {
      const values = field.endsWith('channel')
        ? CHANNEL_VALUES
        : field === 'sla.kind'
          ? SLA_KIND_VALUES
          : STATUS_VALUES;
      return typeof v === 'string' && values.includes(v) ? ['ok', v] : [MIS, null];
    }
    case 'priority':
      return typeof v === 'string' && PRIORITY_VALUES.includes(v)
        ? ['ok', PRIORITY_VALUES.indexOf(v)]
        : [MIS, null];
    case 'id':
      return typeof v === 'string' ? ['ok', v] : [MIS, null];
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? ['ok', v] : [MIS, null];
    case 'date':
      return validDate(v) ? ['ok', v] : [MIS, null];
    case 'boolean':
      return typeof v === 'boolean' ? ['ok', v] : [MIS, null];
    case 'tags':
      return Array.isArray(v) && v.every((t) => typeof t === 'string')
        ? ['ok', (v as string[]).map((t) => fold(t.trim().replace(/\s+/g, ' ')))]
        : [MIS, null];
  }
}

function constant(kind: Kind, value: unknown): unknown {
  if (kind === 'text') return fold(value as string);
  if (kind === 'priority') return PRIORITY_VALUES.indexOf(value as string);
  return value;
}

function same(a: unknown, b: unknown): boolean {
  if (empty(a) || empty(b)) return empty(a) && empty(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    const canon = (x: unknown[]) =>
      new Set(x.map((t) => (typeof t === 'string' ? t.trim().replace(/\s+/g, ' ').toLowerCase() : t)));
    const l = canon(a);
    const r = canon(b);
    return l.size === r.size && [...l].every((t) => r.has(t));
  }
  return a === b;
}

function matchText(s: string): string {
  let t = s.normalize('NFKC');
  if (t.length > 20_000) {
    const code = t.charCodeAt(19_999);
    t = t.slice(0, code >= 0xd800 && code <= 0xdbff ? 19_999 : 20_000);
  }
  return t;
}

export interface NodeResult {
  pointer: string;
  result: boolean;
}

/** Evaluates a condition tree, recording nodes in evaluation order (short-circuit like the engine). */
export function referenceCondition(node: Condition, pointer: string, s: Scope, out: NodeResult[]): boolean {
  const entry = { pointer, result: false };
  out.push(entry);
  if ('all' in node) {
    entry.result = true;
    for (let i = 0; i < node.all.length; i++) {
      if (!referenceCondition(node.all[i]!, `${pointer}/all/${i}`, s, out)) {
        entry.result = false;
        break;
      }
    }
  } else if ('any' in node) {
    for (let i = 0; i < node.any.length; i++) {
      if (referenceCondition(node.any[i]!, `${pointer}/any/${i}`, s, out)) {
        entry.result = true;
        break;
      }
    }
  } else if ('not' in node) {
    entry.result = !referenceCondition(node.not, `${pointer}/not`, s, out);
  } else {
    entry.result = referenceLeaf(node.field, node.operator, node.value, s);
  }
  return entry.result;
}

function referenceLeaf(field: string, op: string, value: unknown, s: Scope): boolean {
  const isPrevious = field.startsWith('previous.');
  const base = isPrevious ? field.slice('previous.'.length) : field;
  if (base === 'assignee_id' && !isPrevious && s.ticket.pending_assignment) return false;
  const raw = isPrevious ? previous(base, s) : current(base, s);
  const kind = kindOf(field, op, value);
  const [state, c] = norm(kind, raw, base);
  const k =
    value === undefined || value === null ? value : Array.isArray(value) ? null : constant(kind, value);
  switch (op) {
    case 'is':
      return state === 'ok' && c === k;
    case 'is_not':
      return state === EMP || (state === 'ok' && c !== k);
    case 'is_one_of':
      return state === 'ok' && (value as unknown[]).some((v) => constant(kind, v) === c);
    case 'is_none_of':
      return state === EMP || (state === 'ok' && !(value as unknown[]).some((v) => constant(kind, v) === c));
    case 'contains':
      return state === 'ok' && kind === 'text' && (c as string).includes(k as string);
    case 'does_not_contain':
      return state === EMP || (state === 'ok' && kind === 'text' && !(c as string).includes(k as string));
    case 'starts_with':
      return state === 'ok' && kind === 'text' && (c as string).startsWith(k as string);
    case 'ends_with':
      return state === 'ok' && kind === 'text' && (c as string).endsWith(k as string);
    case 'matches':
      return (
        typeof raw === 'string' &&
        !empty(raw) &&
        RE2JS.compile((value as string).normalize('NFKC'), RE2JS.CASE_INSENSITIVE).test(matchText(raw))
      );
    case 'is_empty':
      return empty(raw);
    case 'is_not_empty':
      return !empty(raw);
    case 'greater_than':
      return state === 'ok' && typeof c === typeof k && (c as number) > (k as number);
    case 'less_than':
      return state === 'ok' && typeof c === typeof k && (c as number) < (k as number);
    case 'contains_any':
    case 'contains_all':
    case 'contains_none': {
      if (op === 'contains_none' && state === EMP) return true;
      if (state !== 'ok') return false;
      const have = c as string[];
      const wanted = (value as string[]).map((t) => fold(t.trim().replace(/\s+/g, ' ')));
      if (op === 'contains_any') return wanted.some((t) => have.includes(t));
      if (op === 'contains_all') return wanted.every((t) => have.includes(t));
      return !wanted.some((t) => have.includes(t));
    }
    case 'has_changed':
    case 'changed_from':
    case 'changed_to': {
      const before = previous(base, s);
      const now = current(base, s);
      if (same(before, now)) return false;
      if (op === 'has_changed') return true;
      const side = op === 'changed_from' ? before : now;
      if (value === null) return empty(side);
      const [st, cv] = norm(kind, side, base);
      return st === 'ok' && cv === constant(kind, value);
    }
  }
  throw new Error(`reference: unknown operator ${op}`);
}

export interface ReferenceResult {
  /** Per rule, in evaluation order: [id, matched]. */
  rules: [string, boolean][];
  ticket: TicketSnapshot;
  effects: Record<string, unknown>[];
  stoppedBy: string | null;
  /** Condition nodes of each considered rule, in evaluation order. */
  nodes: Map<string, NodeResult[]>;
}

/** Runs rules the way docs/rules.md says, acting on a plain copy of the ticket. */
export function referenceEvaluate(event: RuleEvent, input: TicketSnapshot, rules: Rule[]): ReferenceResult {
  const ordered = [...rules].sort(
    (a, b) => a.position - b.position || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  let ticket = input;
  const effects: Record<string, unknown>[] = [];
  const out: [string, boolean][] = [];
  let stoppedBy: string | null = null;
  const nodes = new Map<string, NodeResult[]>();
  for (const rule of ordered) {
    const dept = rule.department_id ?? null;
    if (
      stoppedBy !== null ||
      !rule.active ||
      !rule.triggers.includes(event.type) ||
      (dept !== null && ticket.department_id !== dept)
    ) {
      out.push([rule.id, false]);
      continue;
    }
    const visited: NodeResult[] = [];
    const matched = referenceCondition(rule.conditions, '/conditions', { ticket, input, event }, visited);
    nodes.set(rule.id, visited);
    out.push([rule.id, matched]);
    if (!matched) continue;
    rule.actions.forEach((action, index) => {
      if (dept !== null && ticket.department_id !== dept) return;
      const before = ticket;
      const tags = Array.isArray(before.tags) ? before.tags.filter((t) => typeof t === 'string') : [];
      const canon = tags.map((t) => t.trim().replace(/\s+/g, ' ').toLowerCase());
      const base = { rule_id: rule.id, action_index: index };
      switch (action.type) {
        case 'transfer':
          if (before.department_id === action.department_id) return;
          ticket = {
            ...before,
            department_id: action.department_id,
            pending_assignment:
              before.assignee_id !== null || before.pending_assignment
                ? { strategy: 'keep_if_member', department_id: action.department_id }
                : (before.pending_assignment ?? null),
          };
          effects.push({ ...base, type: 'transfer' });
          return;
        case 'assign':
          if (action.to === 'round_robin' || action.to === 'least_busy') {
            if (before.department_id === null) return;
            const p = before.pending_assignment;
            if (p && p.strategy === action.to && p.department_id === before.department_id) return;
            ticket = {
              ...before,
              pending_assignment: { strategy: action.to, department_id: before.department_id },
            };
            effects.push({ ...base, type: 'assign_intent' });
          } else {
            const agent = action.to === 'agent' ? action.agent_id : null;
            if (before.assignee_id === agent && !before.pending_assignment) return;
            ticket = { ...before, assignee_id: agent, pending_assignment: null };
            effects.push({ ...base, type: 'assign' });
          }
          return;
        case 'add_tags': {
          const wanted = [...new Set(action.tags.map((t) => t.trim().replace(/\s+/g, ' ').toLowerCase()))];
          const missing = wanted.filter((t) => !canon.includes(t));
          const room = Math.max(0, 50 - tags.length);
          // 50 tags and 2,000 UTF-8 bytes together at most.
          let bytes = tags.reduce((n, t) => n + Buffer.byteLength(t), 0);
          const added: string[] = [];
          for (const t of missing) {
            bytes += Buffer.byteLength(t);
            if (added.length === room || bytes > 2000) break;
            added.push(t);
          }
          if (added.length === 0) return;
          ticket = { ...before, tags: tags.concat(added) };
          effects.push({ ...base, type: 'set_tags' });
          return;
        }
        case 'remove_tags': {
          const drop = action.tags.map((t) => t.trim().replace(/\s+/g, ' ').toLowerCase());
          const next = tags.filter((_, i) => !drop.includes(canon[i]!));
          if (next.length === tags.length) return;
          ticket = { ...before, tags: next };
          effects.push({ ...base, type: 'set_tags' });
          return;
        }
        case 'replace_tags': {
          let bytes = 0;
          const next = [
            ...new Set(action.tags.map((t) => t.trim().replace(/\s+/g, ' ').toLowerCase())),
          ].filter((t) => {
            bytes += Buffer.byteLength(t);
            return bytes <= 2000;
          });
          const sameSet =
            next.length === new Set(canon).size &&
            next.every((t) => canon.includes(t)) &&
            canon.length === next.length;
          if (sameSet) return;
          ticket = { ...before, tags: next };
          effects.push({ ...base, type: 'set_tags' });
          return;
        }
        case 'set_priority':
          if (before.priority === action.priority) return;
          ticket = { ...before, priority: action.priority };
          effects.push({ ...base, type: 'set_priority' });
          return;
        case 'set_status': {
          const until =
            action.status === 'postponed'
              ? new Date(Date.parse(event.occurred_at) + action.postpone_seconds * 1000).toISOString()
              : null;
          if (before.status === action.status && before.postponed_until === until) return;
          ticket = { ...before, status: action.status, postponed_until: until };
          effects.push({ ...base, type: 'set_status' });
          return;
        }
        case 'mark_spam':
          if (before.status === 'spam') return;
          ticket = { ...before, status: 'spam', postponed_until: null };
          effects.push({ ...base, type: 'mark_spam' });
          return;
        case 'add_note':
          effects.push({ ...base, type: 'add_note' });
          return;
      }
    });
    if (rule.stop_processing) stoppedBy = rule.id;
  }
  return { rules: out, ticket, effects, stoppedBy, nodes };
}
