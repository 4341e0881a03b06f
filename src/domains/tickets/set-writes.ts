import { type Kysely, sql, type Transaction } from 'kysely';
import { withNext } from '../../db/prepared.ts';
import type { Database, Priority } from '../../db/types.ts';
import { scheduleKeyFor } from '../schedules/repository.ts';
import type { ScheduleKeys } from './business-times.ts';
import {
  type ActorEvent,
  type EventSetRow,
  eventRow,
  lockTicketForChange,
  type MessageSetRow,
  messageColumns,
  type OpeningMessage,
  type OpeningTicket,
  type SlaRead,
  sameValue,
  type TicketRecord,
  type TicketSetRow,
  type TicketWrite,
  writeTicketSet,
} from './repository.ts';

// Replayed history written as a set (docs/import.md, "Scale"). An import's batch replays its
// records through the write path (write.ts) as live changes are made: the same commands, checks,
// events and messages, at each record's own time. What differs is only when the rows reach
// PostgreSQL: the write path hands each opening and change to SetWrites, which applies it to the
// ticket held in memory, and the batch ends with one statement that inserts every ticket it opened
// and updates every ticket it changed, each once, in its final state, with all their messages and
// events. A record-by-record replay cost PostgreSQL a statement per record, more than the whole
// budget of an import (docs/import.md, floor probes); a set costs it a seventh of that.
//
// The figures are those of a record-by-record replay: every report counts events (each stamped
// with the department, assignee and channel of its moment, its tags replayed from the history)
// and the current state of tickets, which is the same once the batch's statement has run. Only
// what a record reads of the database while it is replayed could differ, so records that read
// what the batch has not written yet (attachments name messages; calls, chats and ratings are
// written by their own domains) go the ordinary way, after the batch's writes so far have been
// written (flush). One difference stays: the words a ticket's changes add to its search vector
// go in together, so a ticket that passes the vector's cap (100,000 lexemes, updateSet) within
// one batch keeps all of that batch's words, where a replay record by record stops at the cap.

const PRIORITY_RANK: Record<Priority, number> = { urgent: 4, high: 3, normal: 2, low: 1 };

/** A ticket the batch holds: as it stands after the batch's changes so far. */
interface Held {
  row: TicketRecord;
  /** Opened by this batch: inserted by the flush (else updated). */
  fresh: boolean;
  /** The order it was opened in: ticket numbers follow it. */
  ord: number;
  /** Its row is to be written (the changes so far would have updated it). */
  dirty: boolean;
  /** A change others see: changed_at moves to the transaction's real time (updated only). */
  changed: boolean;
  /** The words its changes add to its search vector, in order. */
  words: string[];
  /** Timer columns the changes set (not in TicketRecord). */
  timers: { sla_next_at?: Date | null; sla_planned_key?: string };
  /** The latest of its events written by this batch (events never go back in time). */
  lastEventAt: number | null;
}

/** A record time the set can stamp exactly: ISO 8601 with at most milliseconds (timestamptz(3)). */
const EXACT_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:[0-5]\d(\.\d{1,3})?(Z|[+-]\d\d:\d\d)$/;

/** The instant of a record's time when the set can stamp it exactly, else null. */
export function exactInstant(text: string): Date | null {
  if (!EXACT_TIME.test(text)) return null;
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? null : at;
}

let written = 0;
/** Ticket rows this process wrote as sets (for the tests: the sets are taken, not worked around). */
export const ticketsWrittenAsSets = () => written;

export class SetWrites {
  /** The time of the record being replayed: what deskroute_now() would be in its transaction. */
  now = new Date(0);
  /** The schedule key of each department, read once per batch (business times). */
  readonly scheduleKeys: ScheduleKeys = new Map();
  readonly #held = new Map<string, Held>();
  #events: EventSetRow[] = [];
  #messages: MessageSetRow[] = [];
  #ord = 0;
  readonly #importId: string;

  constructor(importId: string) {
    this.#importId = importId;
  }

  readonly #reads = new Map<string, Promise<unknown>>();

  /**
   * A read of the setup the batch's records repeat (replay.ts readOncePerBatch): its first
   * answer serves the whole batch, as it would a record-by-record replay in the same transaction
   * unless another transaction changed it meanwhile (the next batch reads it again).
   */
  readOnce<T>(key: string, read: () => Promise<T>): Promise<T> {
    let answer = this.#reads.get(key) as Promise<T> | undefined;
    if (!answer) {
      answer = read();
      this.#reads.set(key, answer);
    }
    return answer;
  }

  /** Whether anything waits for the flush. */
  get pending(): boolean {
    return this.#held.size > 0;
  }

  /**
   * The ticket to change, locked: held by the batch, or locked now (and held from then on). Its
   * time is the record's.
   */
  async lock(
    trx: Transaction<Database>,
    id: string,
  ): Promise<{ ticket: TicketRecord; sla: SlaRead } | undefined> {
    let held = this.#held.get(id);
    if (!held) {
      const locked = await lockTicketForChange(trx, id);
      if (!locked) return undefined;
      this.scheduleKeys.set(locked.ticket.department_id, locked.scheduleKey);
      held = this.#hold(locked.ticket, false);
    }
    return { ticket: held.row, sla: { key: null, now: this.now } };
  }

  /** The schedule key of a department, read once per batch. */
  async scheduleKeyOf(db: Kysely<Database>, departmentId: string | null): Promise<string | null> {
    let key = this.scheduleKeys.get(departmentId);
    if (key === undefined) {
      key = await scheduleKeyFor(db, departmentId);
      this.scheduleKeys.set(departmentId, key);
    }
    return key;
  }

  #hold(row: TicketRecord, fresh: boolean): Held {
    const held: Held = {
      row,
      fresh,
      ord: this.#ord++,
      dirty: fresh,
      changed: false,
      words: [],
      timers: {},
      lastEventAt: null,
    };
    this.#held.set(row.id, held);
    return held;
  }

  #stamp(held: Held, events: ActorEvent[]) {
    for (const event of events) {
      const at = Math.max(this.now.getTime(), held.lastEventAt ?? Number.NEGATIVE_INFINITY);
      held.lastEventAt = at;
      this.#events.push({
        ...eventRow(event, this.#ord++),
        occurred_at: new Date(at).toISOString(),
        fresh: held.fresh,
      });
    }
  }

  /**
   * Opens a ticket as insertOpenedTicket's statement would, at the record's time. Its number is
   * drawn by the flush (0 until then): the importer reads only the id.
   */
  open(values: OpeningTicket, message: OpeningMessage | null, events: ActorEvent[]): TicketRecord {
    const now = this.now;
    const row: TicketRecord = {
      id: values.id,
      number: 0,
      subject: values.subject,
      channel: values.channel,
      status: values.status,
      priority: values.priority,
      priority_rank: PRIORITY_RANK[values.priority],
      department_id: values.department_id,
      assignee_id: values.assignee_id,
      contact_id: values.contact_id,
      tags: values.tags,
      support_address: values.support_address,
      postponed_until: values.postponed_until ?? null,
      status_before_delete: null,
      created_at: now,
      updated_at: now,
      first_answered_at: message?.kind === 'agent' ? now : null,
      last_customer_message_at: message?.kind === 'customer' ? now : null,
      last_agent_message_at: message?.kind === 'agent' ? now : null,
      resolved_at: values.resolved_at ?? null,
      first_resolved_at: values.first_resolved_at ?? null,
      waiting_since: now,
      created_in_working_hours: values.created_in_working_hours,
      sla_state: values.sla_state ?? null,
      sla_policy_id: values.sla_policy_id ?? null,
      sla_due_at: values.sla_due_at ?? null,
      sla_breached: values.sla_breached ?? false,
      last_activity_at: now,
    };
    const held = this.#hold(row, true);
    held.words.push([values.subject, message?.body ?? ''].join(' '));
    held.timers = {
      sla_next_at: values.sla_next_at ?? null,
      ...(values.sla_planned_key && { sla_planned_key: values.sla_planned_key }),
    };
    if (message) {
      this.#messages.push({
        ...message,
        ticket_id: row.id,
        channel: row.channel,
        chat_id: null,
        department_id: row.department_id,
        created_at: now.toISOString(),
      });
    }
    this.#stamp(held, events);
    return row;
  }

  /** A change of a held ticket, as writeTicketChanges's statement would make it. */
  write(ticket: TicketRecord, change: TicketWrite): { ticket: TicketRecord; at: Date } {
    const held = this.#held.get(ticket.id);
    if (!held || change.alongside) throw new Error('SetWrites: a change the set cannot hold');
    const { patch, touch, events, messages } = change;
    const now = this.now;
    const { sla_next_at, sla_planned_key, ...columns } = patch;
    const changed =
      touch ||
      events.length > 0 ||
      messages.length > 0 ||
      Object.entries(columns).some(
        ([column, value]) => !sameValue(value, ticket[column as keyof TicketRecord]),
      );
    const row: TicketRecord = { ...held.row, ...columns };
    if (columns.priority !== undefined) row.priority_rank = PRIORITY_RANK[columns.priority];
    if (touch) row.updated_at = now;
    if (change.activity) row.last_activity_at = now;
    if (sla_next_at !== undefined) held.timers.sla_next_at = sla_next_at;
    if (sla_planned_key !== undefined) held.timers.sla_planned_key = sla_planned_key;
    // As updateSet: the words a change adds, else its new subject's.
    const words = change.search ?? columns.subject;
    if (words !== undefined) held.words.push(words);
    held.dirty ||= touch || Object.keys(patch).length > 0 || (changed && !change.changedAlready);
    held.changed ||= changed;
    held.row = row;
    for (const m of messages) {
      this.#messages.push({
        ...messageColumns(m),
        ticket_id: ticket.id,
        created_at: (m.created_at ?? new Date(now.getTime() + (m.after_ms ?? 0))).toISOString(),
      });
    }
    this.#stamp(held, events);
    return { ticket: row, at: now };
  }

  /**
   * Writes what the batch holds in one statement, and lets go of it: a later change of the same
   * tickets in this transaction locks them again (they are still locked) and reads them back.
   */
  async flush(trx: Transaction<Database>): Promise<void> {
    // The record that follows a flush may change the setup (a membership, say): what the batch
    // read of it is read again.
    this.#reads.clear();
    if (this.#held.size === 0) return;
    const rows = (fresh: boolean): TicketSetRow[] =>
      [...this.#held.values()]
        .filter((h) => h.fresh === fresh && h.dirty)
        .map((h) => ({
          ...h.row,
          ord: h.ord,
          words: h.words.length > 0 ? h.words.join(' ') : null,
          changed: h.changed,
          set_next: h.timers.sla_next_at !== undefined,
          sla_next_at: h.timers.sla_next_at ?? null,
          sla_planned_key: h.timers.sla_planned_key ?? null,
        }));
    // The events' import mark (migrations/0037) is the transaction's setting, as for live writes.
    await withNext(sql`select set_config('deskroute.import_id', ${this.#importId}, true)`).execute(trx);
    const opened = rows(true);
    const changed = rows(false);
    await writeTicketSet(trx, { opened, changed, messages: this.#messages, events: this.#events });
    written += opened.length + changed.length;
    this.#held.clear();
    this.#events = [];
    this.#messages = [];
  }
}
