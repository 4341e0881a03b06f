import { type Kysely, type RawBuilder, sql, type Transaction } from 'kysely';
import { isAdmin } from '../../access/policy.ts';
import { type TicketAccess, visibleTickets } from '../../access/tickets.ts';
import { prepared } from '../../db/prepared.ts';
import type { Database } from '../../db/types.ts';
import { invalid } from '../../errors.ts';
import { afterCursor, type Keyset, toPage } from '../../plugins/pagination.ts';
import { SLA_ESCALATED, SLA_EVENT_TYPES, type SlaEventType } from '../../sla/index.ts';
import {
  type Event,
  type EventActor,
  type EventType,
  isEventType,
  SETTINGS_EVENT_TYPES,
  type SettingsEventType,
  type TicketFeedType,
} from './catalogue.ts';

/**
 * The event feed: ticket_events (read in place, no copy) and settings_events, in the order
 * (tx, source, id) where tx is the writing transaction's id. Only rows of transactions below
 * the horizon (feedHorizon: the oldest transaction of this database still running) are returned: every transaction below it
 * has ended, and every transaction yet to commit has an id at or above it, so a row can never
 * commit behind a cursor a reader already holds (an id or a timestamp order can: the writer that
 * took id 5 may commit after the one that took id 6 was read). No gaps, no repeats, across
 * processes and restarts. The price: one long transaction anywhere in the cluster holds the
 * feed back until it ends.
 */

type Executor = Kysely<Database>;

export interface SettingsEventInput {
  type: SettingsEventType;
  actor: { type: 'agent' | 'token' | 'system'; agentId?: string | null; tokenId?: string | null };
  departmentId?: string | null;
  subjectId?: string | null;
  payload: Record<string, unknown>;
}

/** Appends a settings event; call it in the transaction of the change it tells about. */
export async function recordSettingsEvent(trx: Transaction<Database>, e: SettingsEventInput): Promise<void> {
  await trx
    .insertInto('settings_events')
    .values({
      type: e.type,
      actor_type: e.actor.type,
      actor_agent_id: e.actor.agentId ?? null,
      actor_token_id: e.actor.tokenId ?? null,
      department_id: e.departmentId ?? null,
      subject_id: e.subjectId ?? null,
      payload: JSON.stringify(e.payload),
    })
    .execute();
}

/** The actor of a settings event made by a principal: its agent, through a token when one was used. */
export function settingsActor(principal: {
  agentId: string;
  via: 'session' | 'api_token';
  tokenId: string | null;
}): SettingsEventInput['actor'] {
  return principal.via === 'api_token'
    ? { type: 'token', agentId: principal.agentId, tokenId: principal.tokenId }
    : { type: 'agent', agentId: principal.agentId, tokenId: null };
}

export interface FeedRow {
  cursor: string;
  event: Event;
  /** The ticket as it is now, for the visibility policy; null = settings event: admins only. */
  visibility: { department_id: string | null; assignee_id: string | null } | null;
  /**
   * Replayed by an import (history brought in, not happening now): the feed and the audit log
   * show it; what reacts to events now (webhooks, mail, notifications, the stream) passes it by.
   */
  imported: boolean;
}

// ---- cursors ----------------------------------------------------------------------------

export interface Position {
  tx: bigint;
  source: 0 | 1;
  id: bigint;
}

const CURSOR_PATTERN = /^f1\.(\d{1,20})\.([01])\.(\d{1,19})$/;
const MAX_BIGINT = 9223372036854775807n;

export function encodeCursor(p: Position): string {
  return Buffer.from(`f1.${p.tx}.${p.source}.${p.id}`).toString('base64url');
}

/** Null when the text is not a cursor of this feed (garbled, foreign, or out of range). */
export function decodeCursor(cursor: string): Position | null {
  if (cursor.length > 80 || !/^[A-Za-z0-9_-]+$/.test(cursor)) return null;
  const match = CURSOR_PATTERN.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  if (!match) return null;
  const tx = BigInt(match[1]!);
  const id = BigInt(match[3]!);
  if (tx > 18446744073709551615n || id > MAX_BIGINT) return null;
  return { tx, source: match[2] === '0' ? 0 : 1, id };
}

function compare(a: Position, b: Position): number {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  if (a.source !== b.source) return a.source - b.source;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}

const BEGINNING: Position = { tx: 0n, source: 0, id: 0n };

function notACursor(field: string) {
  return invalid(
    'invalid_cursor',
    'This cursor is not one of this feed; start without one or use a next_cursor.',
    [{ field, message: 'not a cursor of this feed' }],
  );
}

function parseCursor(cursor: string | undefined, field: string): Position {
  if (cursor === undefined || cursor === '') return BEGINNING;
  const position = decodeCursor(cursor);
  if (!position) throw notACursor(field);
  return position;
}

/**
 * The feed's horizon as text: the oldest transaction still running IN THIS DATABASE (or the next
 * transaction id when none is). Transaction ids are server-wide, and pg_snapshot_xmin counts
 * every database's transactions, so a long transaction in another database (or a DROP DATABASE)
 * would hold the feed back; a session of another database cannot write our tables, so only ours
 * count. Prepared (two-phase) transactions of this database count too.
 *
 * Read it in a statement of its own, BEFORE the statement that reads rows below it: a
 * transaction below the horizon had ended when this statement ran, so the later statement's
 * snapshot sees its rows. (In one statement, a transaction ending between the snapshot and the
 * read of pg_stat_activity could be passed over.)
 */
export async function feedHorizon(db: Executor): Promise<string> {
  // Prepared: every wake of every feed consumer (webhooks, notifications, mail, the stream) reads
  // it, and PostgreSQL planned it each time (0.57 ms of planning for 0.16 ms of running, measured
  // during an import).
  const { rows } = await prepared(sql<{ h: string }>`select ${FEED_HORIZON}::text as h`).execute(db);
  return rows[0]!.h;
}

/** feedHorizon as an xid8 expression, for a statement that stores it (webhooks.active_since_tx). */
export const FEED_HORIZON = sql<string>`(select coalesce(
    (select min(x) from pg_snapshot_xip(pg_current_snapshot()) as x
      where x::xid in (
        select backend_xid from pg_stat_activity
          where datname = current_database() and backend_xid is not null
        union all
        select transaction from pg_prepared_xacts where database = current_database())),
    pg_snapshot_xmax(pg_current_snapshot())))`;

async function horizon(db: Executor): Promise<bigint> {
  return BigInt(await feedHorizon(db));
}

/**
 * The cursor of "now": everything committed before the horizon counts as history. A consumer
 * that starts here sees every event of transactions still running or yet to come (and perhaps a
 * few that committed just before, above the horizon: never fewer).
 */
export async function feedHead(db: Executor): Promise<string> {
  return encodeCursor({ tx: await horizon(db), source: 0, id: 0n });
}

// ---- types --------------------------------------------------------------------------------

/** ticket_events.type (and data) → feed type, in SQL so filters and pages run in the database. */
const feedTypeOfTicketEvent = sql<string>`case e.type
  when 'message_added' then case e.data->>'kind'
    when 'customer' then 'ticket.customer_replied'
    when 'agent' then 'ticket.agent_replied'
    else 'ticket.note_added' end
  when 'status_changed' then case
    when e.data->>'to' = 'deleted' then 'ticket.deleted'
    when e.data->>'from' = 'deleted' then 'ticket.restored'
    else 'ticket.status_changed' end
  when 'priority_changed' then 'ticket.updated'
  when 'subject_changed' then 'ticket.updated'
  when 'call_recorded' then 'call.recorded'
  when 'chat_recorded' then 'chat.recorded'
  when 'sla.applied' then e.type when 'sla.removed' then e.type when 'sla.started' then e.type
  when 'sla.target_changed' then e.type when 'sla.paused' then e.type when 'sla.resumed' then e.type
  when 'sla.warning' then e.type when 'sla.breached' then e.type when 'sla.fulfilled' then e.type
  when 'sla.escalated' then e.type
  else 'ticket.' || e.type end`;

/** The ticket_events types a feed type can come from (narrows the scan before the case above). */
const STORED_TYPES: Record<TicketFeedType, string> = {
  'ticket.created': 'created',
  'ticket.updated': 'priority_changed,subject_changed',
  'ticket.customer_replied': 'message_added',
  'ticket.agent_replied': 'message_added',
  'ticket.note_added': 'message_added',
  'ticket.assigned': 'assigned',
  'ticket.transferred': 'transferred',
  'ticket.status_changed': 'status_changed',
  'ticket.tags_changed': 'tags_changed',
  'ticket.rated': 'rated',
  'ticket.deleted': 'status_changed',
  'ticket.restored': 'status_changed',
  'call.recorded': 'call_recorded',
  'chat.recorded': 'chat_recorded',
  ...(Object.fromEntries(SLA_EVENT_TYPES.map((t) => [t, t])) as Record<SlaEventType, string>),
  [SLA_ESCALATED]: SLA_ESCALATED,
};

const SETTINGS_SET: ReadonlySet<string> = new Set(SETTINGS_EVENT_TYPES);

const settingsColumns = [
  sql<number>`1`.as('source'),
  sql<string>`s.id::text`.as('id'),
  sql<string>`s.tx::text`.as('tx'),
  's.type',
  's.type as stored_type',
  's.occurred_at',
  's.actor_type',
  's.actor_agent_id',
  sql<null>`null::uuid`.as('actor_contact_id'),
  sql<null>`null::uuid`.as('actor_rule_id'),
  sql<null>`null::int`.as('actor_rule_version'),
  's.actor_token_id as token_id',
  's.department_id',
  sql<null>`null::uuid`.as('ticket_id'),
  's.payload as data',
  sql<null>`null::bigint`.as('t_number'),
  sql<null>`null::text`.as('t_subject'),
  sql<null>`null::text`.as('t_status'),
  sql<null>`null::text`.as('t_priority'),
  sql<null>`null::text`.as('t_channel'),
  sql<null>`null::uuid`.as('t_department_id'),
  sql<null>`null::uuid`.as('t_assignee_id'),
  sql<null>`null::uuid`.as('t_contact_id'),
  sql<null>`null::uuid`.as('m_id'),
  sql<null>`null::text`.as('m_kind'),
  sql<null>`null::text`.as('m_body'),
  sql<null>`null::uuid`.as('m_author_agent_id'),
  sql<null>`null::uuid`.as('m_author_contact_id'),
  sql<null>`null::timestamptz`.as('m_created_at'),
  sql<boolean>`false`.as('imported'),
] as const;

// ---- reading ------------------------------------------------------------------------------

export interface RawFeedRow {
  source: number;
  id: string;
  tx: string;
  type: string;
  stored_type: string;
  occurred_at: Date | string;
  actor_type: string;
  actor_agent_id: string | null;
  actor_contact_id: string | null;
  actor_rule_id: string | null;
  actor_rule_version: number | null;
  token_id: string | null;
  department_id: string | null;
  ticket_id: string | null;
  data: Record<string, unknown>;
  t_number: number | string | null;
  t_subject: string | null;
  t_status: string | null;
  t_priority: string | null;
  t_channel: string | null;
  t_department_id: string | null;
  t_assignee_id: string | null;
  t_contact_id: string | null;
  m_id: string | null;
  m_kind: string | null;
  m_body: string | null;
  m_author_agent_id: string | null;
  m_author_contact_id: string | null;
  m_created_at: Date | string | null;
  imported: boolean;
}

export interface FeedQuery {
  after?: string | undefined;
  limit: number;
  types?: readonly string[] | undefined;
  departmentId?: string | undefined;
  /** Only what this viewer may see (the ticket policy; settings events to admins), in SQL. */
  viewer?: TicketAccess | undefined;
  /**
   * Only what happens now: history an import replayed is passed over in the statement (the
   * consumers that react to events, consumer.ts). An import of a million records writes some two
   * million events; read, joined and sent to be dropped, they cost each consumer more than the
   * import's own writes.
   */
  live?: boolean | undefined;
  /**
   * Set when `after` comes from a client: the field its errors name. Such a cursor may not lie
   * ahead of the horizon: the feed never hands one out (the horizon never moves back), and
   * reading from it would answer empty pages, and the same cursor, until the database's
   * transaction ids caught up with it.
   */
  cursorField?: string | undefined;
}

/**
 * The next page of the feed after `after` (the beginning when absent). `next` is where to
 * resume: the last row's cursor, or, when the page is not full, the horizon (every row below it
 * has been looked at, so rows filtered out are not scanned again on the next call).
 */
export async function readFeed(db: Executor, q: FeedQuery): Promise<{ rows: FeedRow[]; next: string }> {
  const after = parseCursor(q.after, q.cursorField ?? 'cursor');
  const h = await horizon(db);
  if (q.cursorField !== undefined && after.tx > h) throw notACursor(q.cursorField);
  const statement = feedPage(db, q, after, h);
  const raw = statement ? (await statement.execute(db)).rows : [];
  const limit = q.limit;
  const rows = raw.map(toFeedRow);
  let next = after;
  const last = raw.at(-1);
  if (last) next = { tx: BigInt(last.tx), source: last.source === 0 ? 0 : 1, id: BigInt(last.id) };
  if (raw.length < limit) {
    const atHorizon: Position = { tx: h, source: 0, id: 0n };
    if (compare(atHorizon, next) > 0) next = atHorizon;
  }
  return { rows, next: encodeCursor(next) };
}

/**
 * The statement that reads a page of the feed after `after`, below the horizon `h` (null: the
 * query wants nothing). Exported for test/feed-plan.test.ts, which reads its plan.
 */
export function feedPage(
  db: Executor,
  q: FeedQuery,
  after: Position,
  h: bigint,
): RawBuilder<RawFeedRow> | null {
  const types = q.types && q.types.length > 0 ? q.types.filter(isEventType) : undefined;
  const wantTickets = !types || types.some((t) => !SETTINGS_SET.has(t));
  const wantSettings =
    (!types || types.some((t) => SETTINGS_SET.has(t))) && (!q.viewer || isAdmin(q.viewer.principal));
  const limit = q.limit;

  const branches = [];
  if (wantTickets) {
    // (tx, 0, id) > (after): in tx order, ticket rows come before settings rows of the same tx.
    const bound = after.source === 0 ? after.id : MAX_BIGINT;
    const ticketTypes = types?.filter((t): t is TicketFeedType => !SETTINGS_SET.has(t));
    const stored = ticketTypes ? [...new Set(ticketTypes.flatMap((t) => STORED_TYPES[t].split(',')))] : [];
    let query = db
      .selectFrom('ticket_events as e')
      .innerJoin('tickets as t', 't.id', 'e.ticket_id')
      // Lateral: a look-up by primary key per row of the page. A plain join let the planner hash
      // the whole ticket_messages table for a page of 200 (bench:events saw it scanned each page).
      // `limit 1` keeps it a look-up: a plain lateral subquery is pulled up into a join, and the
      // planner then hashed the table all the same whenever it guessed the page large (its guess
      // for a cursor's window is rough): 20 ms for a page of 10 at 14,000 messages, on every
      // poll of the live stream and every batch of the feed's consumers.
      .leftJoinLateral(
        (eb) =>
          eb
            .selectFrom('ticket_messages as mm')
            .select([
              'mm.id',
              'mm.kind',
              'mm.body',
              'mm.author_agent_id',
              'mm.author_contact_id',
              'mm.created_at',
            ])
            .where(sql<boolean>`e.type = 'message_added' and mm.id = (e.data->>'message_id')::uuid`)
            .limit(1)
            .as('m'),
        (join) => join.onTrue(),
      )
      .select([
        sql<number>`0`.as('source'),
        sql<string>`e.id::text`.as('id'),
        sql<string>`e.tx::text`.as('tx'),
        feedTypeOfTicketEvent.as('type'),
        'e.type as stored_type',
        'e.occurred_at',
        'e.actor_type',
        'e.actor_agent_id',
        'e.actor_contact_id',
        'e.actor_rule_id',
        'e.actor_rule_version',
        'e.via_token_id as token_id',
        'e.department_id',
        'e.ticket_id',
        'e.data',
        't.number as t_number',
        't.subject as t_subject',
        't.status as t_status',
        't.priority as t_priority',
        't.channel as t_channel',
        't.department_id as t_department_id',
        't.assignee_id as t_assignee_id',
        't.contact_id as t_contact_id',
        'm.id as m_id',
        'm.kind as m_kind',
        'm.body as m_body',
        'm.author_agent_id as m_author_agent_id',
        'm.author_contact_id as m_author_contact_id',
        'm.created_at as m_created_at',
        sql<boolean>`e.import_id is not null`.as('imported'),
      ])
      .where(sql<boolean>`e.tx < ${h.toString()}::xid8`)
      .where(sql<boolean>`(e.tx, e.id) > (${after.tx.toString()}::xid8, ${bound.toString()}::bigint)`)
      .orderBy('e.tx')
      .orderBy('e.id')
      .limit(limit);
    if (ticketTypes) {
      query = query
        .where('e.type', 'in', stored)
        .where(sql<boolean>`(${feedTypeOfTicketEvent}) in (${sql.join(ticketTypes)})`);
    }
    if (q.departmentId) query = query.where('e.department_id', '=', q.departmentId);
    if (q.viewer) query = query.where(visibleTickets(q.viewer));
    if (q.live) query = query.where('e.import_id', 'is', null);
    branches.push(query);
  }
  if (wantSettings) {
    const bound = after.source === 1 ? after.id : 0n;
    const settingsTypes = types?.filter((t) => SETTINGS_SET.has(t));
    let query = db
      .selectFrom('settings_events as s')
      .select(settingsColumns)
      .where(sql<boolean>`s.tx < ${h.toString()}::xid8`)
      .where(sql<boolean>`(s.tx, s.id) > (${after.tx.toString()}::xid8, ${bound.toString()}::bigint)`)
      .orderBy('s.tx')
      .orderBy('s.id')
      .limit(limit);
    if (settingsTypes) query = query.where('s.type', 'in', settingsTypes);
    if (q.departmentId) query = query.where('s.department_id', '=', q.departmentId);
    branches.push(query);
  }

  if (branches.length === 0) return null;
  const union = sql.join(
    branches.map((b) => sql`(${b})`),
    sql` union all `,
  );
  // Each branch walks its (tx, id) index and stops at `limit`; the merge takes the first `limit`.
  // EXPLAIN ANALYZE on PostgreSQL 15, 600k ticket_events, 100k tickets and messages (analysed):
  // an admin page of 100 is an Index Scan on ticket_events_tx_idx (Index Cond: tx < horizon
  // and (tx, id) > cursor) with nested-loop index lookups of the ticket and message, 8-20 ms
  // mid-feed. A member of a department holding 1 ticket in 1000 gets a plan from the tickets
  // side (bitmap on the department, then ticket_events_ticket_idx), 100 rows in ~115 ms instead
  // of walking 600k rows. A `types` filter nothing matches scans the table once (~0.8 s) and
  // then `next` starts at the horizon, so the next call is cheap.
  return sql<RawFeedRow>`select * from (${union}) u
    order by u.tx::xid8, u.source, u.id::bigint limit ${limit}`;
}

const iso = (v: Date | string) => (v instanceof Date ? v : new Date(v)).toISOString();

function pick(data: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) if (data[key] !== undefined) out[key] = data[key];
  return out;
}

const SLA_DATA_KEYS = ['at', 'policy_id', 'policy_version', 'kind', 'cycle', 'due_at', 'reason', 'late'];

/** What each ticket feed type copies from ticket_events.data (only keys that were written). */
const DATA_KEYS: Record<Exclude<TicketFeedType, 'ticket.updated'>, readonly string[]> = {
  'ticket.created': ['subject', 'status', 'priority', 'department_id', 'tags'],
  'ticket.customer_replied': [],
  'ticket.agent_replied': ['first_answer', 'wait_seconds', 'wait_business_seconds'],
  'ticket.note_added': [],
  'ticket.assigned': ['from', 'to', 'reason'],
  'ticket.transferred': ['from_department_id', 'to_department_id', 'reason'],
  'ticket.status_changed': [
    'from',
    'to',
    'postponed_until',
    'reopened',
    'first_resolution',
    'resolution_seconds',
    'resolution_business_seconds',
  ],
  'ticket.tags_changed': ['added', 'removed'],
  'ticket.rated': ['rating_id', 'value', 'rated_agent_id', 'message_id'],
  'ticket.deleted': ['from', 'to', 'postponed_until', 'reopened'],
  'ticket.restored': ['from', 'to', 'postponed_until', 'reopened'],
  'call.recorded': ['call_id', 'direction', 'outcome', 'agent_id', 'duration_seconds'],
  ...(Object.fromEntries(SLA_EVENT_TYPES.map((t) => [t, SLA_DATA_KEYS])) as unknown as Record<
    SlaEventType,
    readonly string[]
  >),
  [SLA_ESCALATED]: [
    'policy_id',
    'policy_version',
    'on',
    'kind',
    'cycle',
    'action',
    'from',
    'to',
    'level',
    'recipients',
  ],
  'chat.recorded': [
    'chat_id',
    'agent_id',
    'missed',
    'pickup_seconds',
    'pickup_business_seconds',
    'duration_seconds',
    'customer_messages',
    'agent_messages',
  ],
};

const MESSAGE_TYPES: ReadonlySet<string> = new Set([
  'ticket.customer_replied',
  'ticket.agent_replied',
  'ticket.note_added',
]);

function ticketPayload(r: RawFeedRow, type: TicketFeedType, storedType: string): Record<string, unknown> {
  const payload: Record<string, unknown> = {
    ticket: {
      id: r.ticket_id,
      number: Number(r.t_number),
      subject: r.t_subject,
      status: r.t_status,
      priority: r.t_priority,
      channel: r.t_channel,
      department_id: r.t_department_id,
      assignee_id: r.t_assignee_id,
      contact_id: r.t_contact_id,
    },
  };
  if (type === 'ticket.updated') {
    const field = storedType === 'subject_changed' ? 'subject' : 'priority';
    payload.changes = { [field]: { from: r.data.from ?? null, to: r.data.to ?? null } };
    return payload;
  }
  if (MESSAGE_TYPES.has(type)) {
    payload.message =
      r.m_id === null
        ? null
        : {
            id: r.m_id,
            kind: r.m_kind,
            body: r.m_body,
            author_agent_id: r.m_author_agent_id,
            author_contact_id: r.m_author_contact_id,
            created_at: iso(r.m_created_at!),
          };
  }
  return Object.assign(payload, pick(r.data, DATA_KEYS[type]));
}

function toFeedRow(r: RawFeedRow): FeedRow {
  const source = r.source === 0 ? 0 : 1;
  const cursor = encodeCursor({ tx: BigInt(r.tx), source, id: BigInt(r.id) });
  const actor: EventActor = {
    type: r.actor_type === 'agent' && r.token_id !== null ? 'token' : (r.actor_type as EventActor['type']),
    agent_id: r.actor_agent_id,
    contact_id: r.actor_contact_id,
    rule_id: r.actor_rule_id,
    rule_version: r.actor_rule_version,
    token_id: r.token_id,
  };
  if (source === 1) {
    const event = {
      id: `se_${r.id}`,
      type: r.type as EventType,
      occurred_at: iso(r.occurred_at),
      actor,
      department_id: r.department_id,
      ticket_id: null,
      payload: r.data,
    } as Event;
    return { cursor, event, visibility: null, imported: false };
  }
  const type = r.type as TicketFeedType;
  const event = {
    id: `te_${r.id}`,
    type,
    occurred_at: iso(r.occurred_at),
    actor,
    department_id: r.department_id,
    ticket_id: r.ticket_id,
    payload: ticketPayload(r, type, r.stored_type),
  } as Event;
  return {
    cursor,
    event,
    visibility: { department_id: r.t_department_id, assignee_id: r.t_assignee_id },
    imported: r.imported === true,
  };
}

export interface AuditLogQuery {
  actorAgentId?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  types?: readonly SettingsEventType[] | undefined;
  limit: number;
  cursor?: string | undefined;
}

/**
 * Settings events, newest first. Unlike the feed this is a history to browse, not a stream to
 * follow: rows still being written may appear later above the reader's position, which is what
 * newest-first lists always do.
 */
export async function readAuditLog(db: Executor, q: AuditLogQuery) {
  const keyset: Keyset<RawFeedRow> = {
    list: `audit-log:${q.actorAgentId ?? ''}:${q.from ?? ''}:${q.to ?? ''}:${(q.types ?? []).join(',')}`,
    columns: [sql`s.occurred_at`, sql`s.id`],
    key: (row) => [iso(row.occurred_at), row.id],
    direction: 'desc',
  };
  const after = afterCursor(keyset, q.cursor);
  let query = db
    .selectFrom('settings_events as s')
    .select(settingsColumns)
    .orderBy('s.occurred_at', 'desc')
    .orderBy('s.id', 'desc')
    .limit(q.limit + 1);
  if (after) query = query.where(after);
  if (q.actorAgentId) query = query.where('s.actor_agent_id', '=', q.actorAgentId);
  if (q.from) query = query.where('s.occurred_at', '>=', new Date(q.from));
  if (q.to) query = query.where('s.occurred_at', '<', new Date(q.to));
  if (q.types && q.types.length > 0) query = query.where('s.type', 'in', q.types);
  const rows = (await query.execute()) as RawFeedRow[];
  return toPage(keyset, rows, q.limit, (row) => toFeedRow(row).event);
}
