import { type Kysely, sql } from 'kysely';
import type { TicketAccess } from '../../access/tickets.ts';
import type { Database } from '../../db/types.ts';
import { type ContactFilter, contactsMatching } from '../contacts/repository.ts';
import { listedTicketsMatching } from '../tickets/repository.ts';
import type { TicketFilter } from '../tickets/schemas.ts';
import type {
  HistoryCall,
  HistoryChat,
  HistoryEvent,
  HistoryMessage,
  TicketHistory,
} from './import-records.ts';

type Executor = Kysely<Database>;

/**
 * The export's horizon: every change stamped before it has committed. A contact's updated_at and
 * a ticket's changed_at are their writing transaction's start (now()), so a transaction still
 * running, whatever it writes, stamps at or after its own start; the oldest start of the
 * transactions running in this database, truncated to the stored millisecond, bounds what may
 * still appear below it (the event feed's horizon, src/domains/events/repository.ts, in time
 * instead of transaction ids). Read in a statement of its own before the rows: a transaction
 * that had ended when this ran is visible to the later reads. (A ticket's updated_at is its own
 * time, which an import sets in the past: tickets are windowed on changed_at, migrations/0041.)
 */
export async function exportHorizon(db: Executor): Promise<Date> {
  const { rows } = await sql<{ horizon: Date }>`
    select date_trunc('milliseconds', least(coalesce(min(xact_start), now()), now())) as horizon
      from pg_stat_activity
      where datname = current_database() and xact_start is not null`.execute(db);
  return rows[0]!.horizon;
}

export type TicketExportRow = Awaited<
  ReturnType<ReturnType<typeof listedTicketsMatching>['execute']>
>[number];
export type ContactExportRow = Awaited<ReturnType<ReturnType<typeof contactsMatching>['execute']>>[number];

export interface Window {
  /** Inclusive; null: from the beginning. */
  from: Date | null;
  /** Exclusive: the horizon. */
  to: Date;
}

/**
 * Runs a batch's reads: the routes pass one that waits for a turn among the exports reading the
 * database, and pauses the stall clock meanwhile.
 */
export type BatchReader = <T>(read: () => Promise<T[]>) => Promise<T[]>;

export const readAtOnce: BatchReader = (read) => read();

type After = { at: Date; id: string } | null;

/** Rows in (key, id) order, a batch at a time, each read after the last one's key. */
async function* keysetBatches<R extends { id: string }>(
  read: (after: After) => Promise<R[]>,
  key: (row: R) => Date,
  batchSize: number,
  reader: BatchReader,
): AsyncGenerator<R[]> {
  let after: After = null;
  for (;;) {
    const last: After = after;
    const rows: R[] = await reader(() => read(last));
    if (rows.length === 0) return;
    yield rows;
    if (rows.length < batchSize) return;
    const tail: R = rows[rows.length - 1]!;
    after = { at: key(tail), id: tail.id };
  }
}

/**
 * When a ticket last changed here: changed_at, or for a row last written before migrations/0041,
 * its updated_at (the expression tickets_changed_idx is on).
 */
const CHANGED_KEY = sql<Date>`coalesce(t.changed_at, t.updated_at)`;

/**
 * The export's statement: the visible tickets matching the filter that changed in the window,
 * in (changed, id) order. The export reads it in keyset batches (ticketBatches); bench:export
 * copies it whole as its baseline.
 */
export function ticketsChangedIn(db: Executor, access: TicketAccess, filter: TicketFilter, window: Window) {
  return listedTicketsMatching(db, access, filter)
    .select(CHANGED_KEY.as('changed_key'))
    .where(CHANGED_KEY, '<', window.to)
    .$if(window.from !== null, (qb) => qb.where(CHANGED_KEY, '>=', window.from!))
    .orderBy(CHANGED_KEY, 'asc')
    .orderBy('t.id', 'asc');
}

/** The visible tickets matching the filter that changed in the window, in keyset batches. */
export function ticketBatches(
  db: Executor,
  access: TicketAccess,
  filter: TicketFilter,
  window: Window,
  batchSize: number,
  reader: BatchReader,
): AsyncGenerator<TicketExportRow[]> {
  return keysetBatches(
    (last) =>
      ticketsChangedIn(db, access, filter, window)
        .$if(last !== null, (qb) =>
          qb.where(
            sql<boolean>`(${CHANGED_KEY}, t.id) > (${last!.at.toISOString()}::timestamptz, ${last!.id}::uuid)`,
          ),
        )
        .limit(batchSize)
        .execute(),
    (row) => row.changed_key,
    batchSize,
    reader,
  );
}

/** The contacts matching the filter whose updated_at falls in the window, in keyset batches. */
export function contactBatches(
  db: Executor,
  filter: ContactFilter,
  window: Window,
  batchSize: number,
  reader: BatchReader,
): AsyncGenerator<ContactExportRow[]> {
  return keysetBatches(
    (last) =>
      contactsMatching(db, filter)
        .where('contacts.updated_at', '<', window.to)
        .$if(window.from !== null, (qb) => qb.where('contacts.updated_at', '>=', window.from!))
        .$if(last !== null, (qb) =>
          qb.where(
            sql<boolean>`(contacts.updated_at, contacts.id) > (${last!.at.toISOString()}::timestamptz, ${last!.id}::uuid)`,
          ),
        )
        .orderBy('contacts.updated_at', 'asc')
        .orderBy('contacts.id', 'asc')
        .limit(batchSize)
        .execute(),
    (row) => row.updated_at,
    batchSize,
    reader,
  );
}

/** The histories of these tickets, for the import format: six statements per batch. */
export async function ticketHistories(
  db: Executor,
  tickets: { id: string; channel: string; contact_id: string; created_at: Date; subject: string }[],
): Promise<TicketHistory[]> {
  if (tickets.length === 0) return [];
  const ids = tickets.map((t) => t.id);
  // One after another: an export holds one pooled connection at a time.
  const events = await db
    .selectFrom('ticket_events')
    .select(['id', 'ticket_id', 'type', 'actor_type', 'actor_agent_id', 'data', 'occurred_at'])
    .where('ticket_id', 'in', ids)
    .orderBy('ticket_id')
    .orderBy('occurred_at')
    .orderBy('id')
    .execute();
  const messages = await db
    .selectFrom('ticket_messages')
    .select(['id', 'ticket_id', 'kind', 'body', 'author_agent_id', 'chat_id', 'created_at'])
    .where('ticket_id', 'in', ids)
    .execute();
  // The files sent with messages (staged ones, on no message yet, are not history).
  const attachments = await db
    .selectFrom('attachments')
    .select(['id', 'message_id'])
    .where('ticket_id', 'in', ids)
    .where('message_id', 'is not', null)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  const filesOf = new Map<string, string[]>();
  for (const f of attachments) {
    const list = filesOf.get(f.message_id!);
    if (list) list.push(f.id);
    else filesOf.set(f.message_id!, [f.id]);
  }
  const calls = await db
    .selectFrom('calls')
    .select([
      'id',
      'ticket_id',
      'direction',
      'outcome',
      'agent_id',
      'from_number',
      'to_number',
      'started_at',
      'answered_at',
      'ended_at',
    ])
    .where('ticket_id', 'in', ids)
    .execute();
  const chats = await db
    .selectFrom('chats')
    .select(['id', 'ticket_id', 'agent_id', 'started_at', 'picked_up_at', 'missed', 'ended_at'])
    .where('ticket_id', 'in', ids)
    .execute();
  const ratings = await db
    .selectFrom('ratings')
    .select(['id', 'ticket_id', 'value', 'comment'])
    .where('ticket_id', 'in', ids)
    .execute();
  const date = (d: Date | string) => new Date(d);
  const dateOrNull = (d: Date | string | null) => (d === null ? null : new Date(d));
  const histories = new Map<string, TicketHistory>(
    tickets.map((ticket) => [
      ticket.id,
      { ticket, events: [], messages: new Map(), calls: new Map(), chats: new Map(), ratings: new Map() },
    ]),
  );
  for (const e of events) {
    (histories.get(e.ticket_id)!.events as HistoryEvent[]).push({ ...e, id: String(e.id) });
  }
  for (const m of messages) {
    (histories.get(m.ticket_id)!.messages as Map<string, HistoryMessage>).set(m.id, {
      ...m,
      attachment_ids: filesOf.get(m.id) ?? [],
    });
  }
  for (const c of calls) {
    (histories.get(c.ticket_id)!.calls as Map<string, HistoryCall>).set(c.id, {
      ...c,
      started_at: date(c.started_at),
      answered_at: dateOrNull(c.answered_at),
      ended_at: dateOrNull(c.ended_at),
    });
  }
  for (const c of chats) {
    (histories.get(c.ticket_id)!.chats as Map<string, HistoryChat>).set(c.id, {
      ...c,
      started_at: date(c.started_at),
      picked_up_at: dateOrNull(c.picked_up_at),
      ended_at: dateOrNull(c.ended_at),
    });
  }
  for (const r of ratings) {
    (
      histories.get(r.ticket_id)!.ratings as Map<
        string,
        { value: 'positive' | 'negative'; comment: string | null }
      >
    ).set(r.id, r);
  }
  return ids.map((id) => histories.get(id)!);
}
