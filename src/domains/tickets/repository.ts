import { isDeepStrictEqual } from 'node:util';
import { type Expression, type Kysely, type RawBuilder, type SqlBool, sql, type Transaction } from 'kysely';
import { isAdmin, type Principal } from '../../access/policy.ts';
import {
  type TicketAccess,
  type TicketCondition,
  visibleTicketParts,
  visibleTickets,
} from '../../access/tickets.ts';
import { dbNow, dbNowMs } from '../../db/clock.ts';
import { final, prepared, preparedQuery, preparedWhileFew, shapedStatement } from '../../db/prepared.ts';
import type {
  ActorType,
  Channel,
  Database,
  DeliveryState,
  MessageKind,
  Priority,
  TicketEventType,
  TicketRow,
  TicketStatus,
} from '../../db/types.ts';
import { afterCursor, decodeCursor, type Keyset, orderBy, toPage } from '../../plugins/pagination.ts';
import type { SlaState } from '../../sla/index.ts';
import { attachmentsOfMessages } from '../attachments/repository.ts';
import { contactByEmailCtes, contactSummaries, firstEmailOf, firstPhoneOf } from '../contacts/repository.ts';
import { scheduleKeySql } from '../schedules/repository.ts';
import { NO_POLICIES_KEY, policiesKeySql } from '../sla-policies/repository.ts';
import type { Message, Ticket, TicketEvent, TicketFilter, TicketListQueryType } from './schemas.ts';

type Executor = Kysely<Database>;

/** Who caused a change. Stored on every event; rules fill rule_id and rule_version. */
export interface Actor {
  type: ActorType;
  agentId: string | null;
  contactId: string | null;
  ruleId?: string | null;
  ruleVersion?: number | null;
  tokenId?: string | null;
}

export const reference = (number: number | string) => `T-${number}`;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toTicket(row: TicketRow, contact: Ticket['contact']): Ticket {
  return {
    id: row.id,
    reference: reference(row.number),
    subject: row.subject,
    channel: row.channel,
    status: row.status,
    priority: row.priority,
    department_id: row.department_id,
    assignee_id: row.assignee_id,
    contact,
    tags: row.tags,
    support_address: row.support_address,
    postponed_until: iso(row.postponed_until),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    first_answered_at: iso(row.first_answered_at),
    last_customer_message_at: iso(row.last_customer_message_at),
    resolved_at: iso(row.resolved_at),
    created_in_working_hours: row.created_in_working_hours,
    sla: slaOf(row),
  };
}

const msIso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function slaOf(row: TicketRow): Ticket['sla'] {
  const state = row.sla_state;
  if (!state || (state.policy_id === null && state.targets.length === 0 && !state.breached)) return null;
  return {
    policy_id: row.sla_policy_id,
    due_at: iso(row.sla_due_at),
    breached: row.sla_breached,
    targets: state.targets.map((t) => ({
      kind: t.kind,
      cycle: t.cycle,
      status: t.status,
      minutes: t.minutes,
      business: t.business,
      started_at: new Date(t.started_at).toISOString(),
      due_at: msIso(t.due_at),
      breached_at: msIso(t.breached_at),
      fulfilled_at: msIso(t.fulfilled_at),
    })),
  };
}

// Every column but the search vector, which is large and never leaves the database.
export const TICKET_COLUMNS = [
  't.id',
  't.number',
  't.subject',
  't.channel',
  't.status',
  't.priority',
  't.priority_rank',
  't.department_id',
  't.assignee_id',
  't.contact_id',
  't.tags',
  't.support_address',
  't.postponed_until',
  't.status_before_delete',
  't.created_at',
  't.updated_at',
  't.first_answered_at',
  't.last_customer_message_at',
  't.last_agent_message_at',
  't.resolved_at',
  't.first_resolved_at',
  't.waiting_since',
  't.created_in_working_hours',
  't.sla_state',
  't.sla_policy_id',
  't.sla_due_at',
  't.sla_breached',
  't.last_activity_at',
] as const;

// sla_next_at and sla_planned_key are the timers' (written with the clock's state, read only by
// the timer's own query).
export type TicketRecord = Omit<TicketRow, 'search' | 'sla_next_at' | 'sla_planned_key' | 'changed_at'>;

export async function withContacts(db: Executor, rows: TicketRecord[]): Promise<Ticket[]> {
  const contacts = await contactSummaries(db, [...new Set(rows.map((r) => r.contact_id))]);
  return rows.map((row) =>
    toTicket(
      row as TicketRow,
      contacts.get(row.contact_id) ?? { id: row.contact_id, name: '', email: null, phone: null },
    ),
  );
}

export function findTicketRecord(db: Executor, id: string): Promise<TicketRecord | undefined> {
  return db.selectFrom('tickets as t').select(TICKET_COLUMNS).where('t.id', '=', id).executeTakeFirst();
}

/** What the SLA clock needs of a write's transaction, read by the statement that locks the ticket. */
export interface SlaRead {
  /** The SLA policies' key, null while no policy is active. */
  key: string | null;
  /** The transaction's time (every event's occurred_at), rounded like the stored columns. */
  now: Date;
}

/**
 * Columns a ticket-locking statement adds so the write path needs no round trip of its own to
 * learn whether any SLA policy is active (splitSlaRead takes them off again).
 */
export const SLA_READ_COLUMNS = [policiesKeySql.as('sla_policies_key'), dbNowMs.as('tx_now')] as const;

export function splitSlaRead<R extends { sla_policies_key: string | null; tx_now: Date }>(
  row: R,
): { ticket: Omit<R, 'sla_policies_key' | 'tx_now'>; sla: SlaRead } {
  const { sla_policies_key, tx_now, ...ticket } = row;
  return { ticket, sla: { key: sla_policies_key, now: tx_now } };
}

/**
 * Locks a ticket for a change, reading the SLA_READ_COLUMNS along, and the key of the schedule its
 * department follows (schedules/calendar.ts): a change that records a sample (an answer, a first
 * resolve) needs the department's calendar for its business time (tickets/business-times.ts).
 * Both ride on the lock rather than in round trips of their own.
 */
export async function lockTicketForChange(
  trx: Transaction<Database>,
  id: string,
): Promise<{ ticket: TicketRecord; sla: SlaRead; scheduleKey: string | null } | undefined> {
  const query = trx
    .selectFrom('tickets as t')
    .select(TICKET_COLUMNS)
    .select(SLA_READ_COLUMNS)
    .select(scheduleKeySql(sql.ref('t.department_id')).as('schedule_key'))
    .where('t.id', '=', id)
    .forUpdate();
  // Every change of a ticket starts here, its text always the same: planning it each time cost
  // PostgreSQL four times its execution (an import of 50,000 records: 4.0 s of plans, 0.9 s run).
  const [row] = (await preparedQuery(query).execute(trx)).rows;
  if (!row) return undefined;
  const { schedule_key, ...rest } = row;
  return { ...splitSlaRead(rest), scheduleKey: schedule_key };
}

/**
 * What a one-statement opening (one-statement.ts) stakes, as a condition: the rules' key is
 * still `rulesKey`, no SLA policy is active, and the department follows no schedule.
 */
export function openingStakes(rulesKey: string, departmentId: string | null): RawBuilder<boolean> {
  return sql<boolean>`(select rules_key::text from automation_rules_state) = ${rulesKey}::text
    and ${policiesKeySql} is null and ${scheduleKeySql(departmentId)} is null`;
}

/** TICKET_COLUMNS as an insert's RETURNING names them, built once (a creation's hot path). */
const RETURNED_TICKET_COLUMNS = sql.join(TICKET_COLUMNS.map((c) => sql.ref(c.replace('t.', ''))));

/** A contact found or made by the opening statement itself (contactByEmailCtes). */
export interface OpeningContact {
  /** What was given, for a contact the statement makes (its id: the ticket's contact_id). */
  name: string;
  email: string;
  /** What the statement checks still holds (openingStakes). */
  rulesKey: string;
  departmentId: string | null;
}

/** What an opening statement's text depends on (openingStatement). */
interface OpeningShape {
  /** The contact is found or made by the statement (one-statement.ts). */
  contact: boolean;
  /** The first message's author is the ticket's contact (matters only with `contact`). */
  authorIsContact: boolean;
  notes: boolean;
  final: boolean;
  /** Written in the same statement (rule runs): its text varies, so the statement is built each run. */
  alongside: RawBuilder<unknown> | undefined;
}

/** The first message of a ticket as insertOpenedTicket writes it. */
export interface OpeningMessage {
  id: string;
  kind: MessageKind;
  author_agent_id: string | null;
  author_contact_id: string | null;
  body: string;
}

/** A ticket as insertOpenedTicket opens it. */
export interface OpeningTicket {
  id: string;
  subject: string;
  channel: Channel;
  status: TicketStatus;
  priority: Priority;
  department_id: string | null;
  assignee_id: string | null;
  contact_id: string;
  tags: string[];
  support_address: string | null;
  postponed_until?: Date | null;
  resolved_at?: Date | null;
  first_resolved_at?: Date | null;
  created_in_working_hours: boolean | null;
  sla_state?: SlaState | null;
  sla_policy_id?: string | null;
  sla_due_at?: Date | null;
  sla_breached?: boolean;
  sla_next_at?: Date | null;
  sla_planned_key?: string;
}

/** The values of an opening statement: each goes into it as a parameter. */
interface OpeningParams
  extends Pick<
    OpeningTicket,
    | 'id'
    | 'subject'
    | 'channel'
    | 'status'
    | 'priority'
    | 'department_id'
    | 'assignee_id'
    | 'contact_id'
    | 'tags'
    | 'support_address'
    | 'created_in_working_hours'
  > {
  searchable: string;
  from_agent: boolean;
  from_contact: boolean;
  postponed_until: Date | null;
  resolved_at: Date | null;
  first_resolved_at: Date | null;
  sla_state: string | null;
  sla_policy_id: string | null;
  sla_due_at: Date | null;
  sla_breached: boolean;
  sla_next_at: Date | null;
  sla_planned_key: string;
  has_message: boolean;
  message_id: string | null;
  message_kind: MessageKind;
  message_author_agent_id: string | null;
  message_author_contact_id: string | null;
  message_body: string;
  events: string;
  notes: string;
  contact_name: string;
  contact_email: string;
  rules_key: string;
  stake_department_id: string | null;
}

type OpenedRow = TicketRecord & {
  contact_name: string;
  contact_email: string | null;
  contact_phone: string | null;
};

/** The opening statement (insertOpenedTicket), compiled once per shape. */
const openingStatement = shapedStatement(
  (shape: OpeningShape) =>
    shape.alongside
      ? null
      : // Who wrote the first message matters only to a statement that finds the contact.
        `${Number(shape.contact)}${Number(shape.contact && shape.authorIsContact)}${Number(shape.notes)}${Number(shape.final)}`,
  (shape: OpeningShape, v: OpeningParams) => {
    const resolved = sql<string>`(select id from resolved_contact)`;
    const statement = sql<OpenedRow>`
    with ${
      shape.contact
        ? sql`${contactByEmailCtes(v.contact_name, v.contact_email, v.contact_id, openingStakes(v.rules_key, v.stake_department_id))}, `
        : sql``
    }t as (
      insert into tickets (id, subject, channel, status, priority, department_id, assignee_id, contact_id, tags,
        support_address, search, first_answered_at, last_agent_message_at, last_customer_message_at,
        postponed_until, resolved_at, first_resolved_at, created_in_working_hours, sla_state, sla_policy_id,
        sla_due_at, sla_breached, sla_next_at, sla_planned_key)
      values (${v.id}, ${v.subject}, ${v.channel}, ${v.status}, ${v.priority},
        ${v.department_id}, ${v.assignee_id}, ${shape.contact ? resolved : sql`${v.contact_id}::uuid`}, ${v.tags}::text[],
        ${v.support_address}, to_tsvector('simple', ${v.searchable}),
        case when ${v.from_agent} then deskroute_now() end, case when ${v.from_agent} then deskroute_now() end,
        case when ${v.from_contact} then deskroute_now() end, ${v.postponed_until}::timestamptz,
        ${v.resolved_at}::timestamptz, ${v.first_resolved_at}::timestamptz,
        ${v.created_in_working_hours}::boolean,
        ${v.sla_state}::jsonb, ${v.sla_policy_id}::uuid,
        ${v.sla_due_at}::timestamptz, ${v.sla_breached}::boolean,
        ${v.sla_next_at}::timestamptz, ${v.sla_planned_key}::uuid)
      returning ${RETURNED_TICKET_COLUMNS}
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id, body,
        department_id, created_at)
      select ${v.message_id}::uuid, t.id, ${v.message_kind}, t.channel,
        ${v.message_author_agent_id}::uuid, ${shape.contact && shape.authorIsContact ? resolved : sql`${v.message_author_contact_id}::uuid`},
        ${v.message_body}, t.department_id, t.created_at
      from t where ${v.has_message}
    ), e as (${insertEventRowsOf(v.events, { opening: true, contact: shape.contact ? { stand: v.contact_id, for: resolved } : undefined })})${
      shape.notes ? sql`, n as (${insertMessageRowsOf(v.id, v.notes)})` : sql``
    }${shape.alongside ? sql`, alongside as (${shape.alongside})` : sql``}
    ${
      shape.contact
        ? // A contact made by this statement is not in its snapshot: it holds what was given.
          sql`select t.*, coalesce(f.name, ${v.contact_name}) as contact_name,
            coalesce(f.email, ${v.contact_email}) as contact_email, f.phone as contact_phone
          from t left join found_contact f on true`
        : sql`select t.*, c.name as contact_name, ${firstEmailOf('c.id')} as contact_email,
            ${firstPhoneOf('c.id')} as contact_phone
          from t join contacts c on c.id = t.contact_id`
    }`;
    return prepared(shape.final ? final(statement) : statement);
  },
);

/**
 * Opens a ticket in one statement: the ticket row, its first message (if any), its first events
 * and the notes automation rules add, returning the ticket and its contact summary. Creation is
 * the hottest write of a help desk, and each round trip to PostgreSQL costs more than the work
 * it carries, so the pieces travel together (data-modifying CTEs; ids are generated by the
 * caller so the events can name them). Events come stamped by the caller, who knows the
 * department and assignee the ticket had at each of them.
 */
export async function insertOpenedTicket(
  trx: Executor,
  values: OpeningTicket,
  message: OpeningMessage | null,
  events: ActorEvent[],
  extra: {
    notes?: NewMessage[];
    /** Written in the same statement: see Alongside. */
    alongside?: Alongside | undefined;
    /** The last statement of its transaction: COMMIT goes with it (db/prepared.ts). */
    final?: boolean;
    /**
     * The contact is found or made in this statement (one-statement.ts): `values.contact_id` is
     * the id it gets when made, and every actor or author that names it stands for
     * `resolved_contact`'s id.
     */
    contact?: OpeningContact | undefined;
  } = {},
): Promise<{ ticket: TicketRecord; contact: Ticket['contact'] }> {
  const notes = extra.notes ?? [];
  const opening = extra.contact;
  const result = await openingStatement(
    trx,
    {
      contact: opening !== undefined,
      authorIsContact: message !== null && message.author_contact_id === values.contact_id,
      notes: notes.length > 0,
      final: extra.final ?? false,
      alongside: extra.alongside?.statement,
    },
    {
      id: values.id,
      subject: values.subject,
      channel: values.channel,
      status: values.status,
      priority: values.priority,
      department_id: values.department_id,
      assignee_id: values.assignee_id,
      contact_id: values.contact_id,
      tags: values.tags,
      support_address: values.support_address,
      searchable: [values.subject, message?.body ?? '', ...notes.map((n) => n.body)].join(' '),
      from_agent: message?.kind === 'agent',
      from_contact: message?.kind === 'customer',
      postponed_until: values.postponed_until ?? null,
      resolved_at: values.resolved_at ?? null,
      first_resolved_at: values.first_resolved_at ?? null,
      created_in_working_hours: values.created_in_working_hours,
      sla_state: values.sla_state ? JSON.stringify(values.sla_state) : null,
      sla_policy_id: values.sla_policy_id ?? null,
      sla_due_at: values.sla_due_at ?? null,
      sla_breached: values.sla_breached ?? false,
      sla_next_at: values.sla_next_at ?? null,
      sla_planned_key: values.sla_planned_key ?? NO_POLICIES_KEY,
      has_message: message !== null,
      message_id: message?.id ?? null,
      message_kind: message?.kind ?? 'customer',
      message_author_agent_id: message?.author_agent_id ?? null,
      message_author_contact_id: message?.author_contact_id ?? null,
      message_body: message?.body ?? '',
      events: JSON.stringify(events.map(eventRow)),
      notes: notes.length > 0 ? messageRowsJson(notes) : '[]',
      contact_name: opening?.name ?? '',
      contact_email: opening?.email ?? '',
      rules_key: opening?.rulesKey ?? '',
      stake_department_id: opening?.departmentId ?? null,
    },
  );
  const row = result.rows[0]!;
  const { contact_name, contact_email, contact_phone, ...ticket } = row;
  return {
    ticket: ticket as TicketRecord,
    contact: { id: ticket.contact_id, name: contact_name, email: contact_email, phone: contact_phone },
  };
}

export type TicketPatch = Partial<
  Pick<
    TicketRow,
    | 'subject'
    | 'status'
    | 'priority'
    | 'department_id'
    | 'assignee_id'
    | 'tags'
    | 'postponed_until'
    | 'status_before_delete'
    | 'first_answered_at'
    | 'last_customer_message_at'
    | 'last_agent_message_at'
    | 'resolved_at'
    | 'first_resolved_at'
    | 'waiting_since'
    | 'sla_state'
    | 'sla_policy_id'
    | 'sla_due_at'
    | 'sla_breached'
    | 'sla_next_at'
    | 'sla_planned_key'
  >
>;

/**
 * Columns only the SLA timer reads (when it is next due, under which policies it was planned):
 * rewriting them alone is no change of the ticket anyone sees, so it does not move changed_at.
 */
const TIMER_COLUMNS: ReadonlySet<string> = new Set(['sla_next_at', 'sla_planned_key']);

/** Whether a patched value is the one the row holds (dates by instant, JSON by content). */
export function sameValue(patched: unknown, held: unknown): boolean {
  const plain = (v: unknown) => (v === undefined ? null : JSON.parse(JSON.stringify(v)));
  return isDeepStrictEqual(plain(patched), plain(held));
}

function updateSet(
  patch: TicketPatch,
  flags: { touch: boolean; changed: boolean; activity?: boolean | undefined },
  appendToSearch?: string,
) {
  // In the columns' order, not the patch's (steps and rule effects merge in the order they came):
  // the statement's text depends on which columns change only, and is prepared once for them.
  const set: Record<string, unknown> = {
    ...Object.fromEntries(Object.entries(patch).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    ...(flags.touch && { updated_at: dbNow }),
    ...(flags.changed && { changed_at: sql`now()` }),
  };
  const activity = flags.activity;
  if (activity) set.last_activity_at = dbNow;
  if (patch.tags) set.tags = sql`${patch.tags}::text[]`;
  if (patch.sla_state !== undefined) set.sla_state = sql`${JSON.stringify(patch.sla_state)}::jsonb`;
  if (patch.subject !== undefined) set.search = sql`search || to_tsvector('simple', ${patch.subject})`;
  // A tsvector is capped at 1 MB; long threads stop adding words rather than failing the write.
  if (appendToSearch !== undefined) {
    set.search = sql`case when length(search) < 100000 then search || to_tsvector('simple', ${appendToSearch}) else search end`;
  }
  return set;
}

export interface NewEvent {
  type: TicketEventType;
  data?: Record<string, unknown>;
  /**
   * Durations whose business-hours twin the write path adds to `data` before writing, in the
   * calendar of the department the event carries (tickets/business-times.ts). Not stored.
   */
  business?: BusinessSpan[];
}

/** A sample's two instants, and the field of `data` that receives its business seconds. */
export interface BusinessSpan {
  field: 'wait_business_seconds' | 'resolution_business_seconds' | 'pickup_business_seconds';
  from: Date;
  to: Date;
}

export interface ActorEvent extends NewEvent {
  actor: Actor;
  /** The ticket as it stood right after the event: its department, assignee and channel. */
  ticket: Pick<TicketRecord, 'id' | 'department_id' | 'assignee_id' | 'channel'>;
}

/** A message written with a change; created now, unless it says when (or how long after now). */
export interface NewMessage {
  id: string;
  kind: MessageKind;
  channel: Channel;
  author_agent_id: string | null;
  author_contact_id: string | null;
  chat_id?: string | null;
  body: string;
  department_id: string | null;
  created_at?: Date;
  /** Created this many milliseconds after the transaction's time: notes follow what caused them. */
  after_ms?: number;
}

/**
 * Another domain's statement that travels in the ticket's own statement (one round trip): the
 * write path (write.ts) puts the rules' record of a run here, built by the rules' repository.
 */
export interface Alongside {
  statement: RawBuilder<unknown>;
}

// The one mapping of an event to its ticket_events row. Rows travel as one JSON parameter, so
// every insert of events is one fixed text, whatever the number of events.
export const eventRow = (e: ActorEvent, ord: number) => ({
  ord,
  ticket_id: e.ticket.id,
  type: e.type,
  actor_type: e.actor.type,
  actor_agent_id: e.actor.agentId,
  actor_contact_id: e.actor.contactId,
  actor_rule_id: e.actor.ruleId ?? null,
  actor_rule_version: e.actor.ruleVersion ?? null,
  via_token_id: e.actor.tokenId ?? null,
  department_id: e.ticket.department_id,
  agent_id: e.ticket.assignee_id,
  channel: e.ticket.channel,
  data: e.data ?? {},
});

/**
 * The insert of events, in order (their ids follow it).
 *
 * A ticket's changes are serialized by its row lock, but a change that waited for the ticket
 * began (and took its transaction id) before the change it waited for wrote. Its events are
 * therefore raised to the ticket's latest event, so a ticket's history is in order by both:
 *
 * - `tx` orders the event feed: the writing transaction's id, or the `tx` of the ticket's latest
 *   event when that is higher (PostgreSQL assigns an id when a transaction first writes or locks,
 *   before a row lock waits). Without it a change that waited came out of the feed (and to
 *   webhooks) before the one it waited for. Never below the writer's own id, so the feed's
 *   horizon (no running transaction below it) still holds the row back until it commits.
 * - `occurred_at`: the transaction's time (deskroute_now(), its start), or the latest event's
 *   time when that is later. The reports' not_rated correction reads a ticket's resolves and
 *   ratings in time order (docs/metrics.md): a rating that waited for a resolve must not come
 *   before it.
 *
 * The events of an opening (the statement opens their ticket) have no earlier event to follow,
 * and skip the look-up.
 */
function insertEventRows(events: ActorEvent[], options: Parameters<typeof insertEventRowsOf>[1] = {}) {
  return insertEventRowsOf(JSON.stringify(events.map(eventRow)), options);
}

/** insertEventRows with the events given as their JSON (eventRow's rows): a statement's value. */
function insertEventRowsOf(
  json: string,
  options: {
    /** The events' ticket is opened by the same statement: it has no earlier event to follow. */
    opening?: boolean;
    /** The contact id that stands for `for` (the opening's resolved_contact). */
    contact?: { stand: string; for: RawBuilder<string> } | undefined;
  } = {},
) {
  const { contact, opening = false } = options;
  const actorContact = contact
    ? sql`case when x.actor_contact_id = ${contact.stand}::uuid then ${contact.for} else x.actor_contact_id end`
    : sql`x.actor_contact_id`;
  const rows = sql`jsonb_to_recordset(${json}::jsonb) as x(ord int, ticket_id uuid,
      type text, actor_type text, actor_agent_id uuid, actor_contact_id uuid, actor_rule_id uuid,
      actor_rule_version int, via_token_id uuid, department_id uuid, agent_id uuid, channel text, data jsonb)`;
  return sql`insert into ticket_events (ticket_id, type, actor_type, actor_agent_id, actor_contact_id,
      actor_rule_id, actor_rule_version, via_token_id, department_id, agent_id, channel, data, tx,
      occurred_at)
    select x.ticket_id, x.type, x.actor_type, x.actor_agent_id, ${actorContact}, x.actor_rule_id,
      x.actor_rule_version, x.via_token_id, x.department_id, x.agent_id, x.channel, x.data, ${
        opening
          ? sql`pg_current_xact_id(), deskroute_now()
    from ${rows}`
          : sql`greatest(pg_current_xact_id(), p.tx), greatest(deskroute_now(), p.occurred_at)
    from ${rows}
    left join lateral (select p.tx, p.occurred_at from ticket_events p where p.ticket_id = x.ticket_id
      order by p.id desc limit 1) p on true`
      }
    order by x.ord`;
}

/** The insert of messages of one ticket. */
function insertMessageRows(ticketId: string, messages: NewMessage[]) {
  return insertMessageRowsOf(ticketId, messageRowsJson(messages));
}

/** The columns of a message's row that the message names itself (not its ticket or time). */
export const messageColumns = (m: NewMessage) => ({
  id: m.id,
  kind: m.kind,
  channel: m.channel,
  author_agent_id: m.author_agent_id,
  author_contact_id: m.author_contact_id,
  chat_id: m.chat_id ?? null,
  body: m.body,
  department_id: m.department_id,
});

/** The JSON of messages as insertMessageRowsOf reads it. */
function messageRowsJson(messages: NewMessage[]): string {
  const rows = messages.map((m) => ({
    ...messageColumns(m),
    created_at: m.created_at?.toISOString() ?? null,
    after_ms: m.after_ms ?? 0,
  }));
  return JSON.stringify(rows);
}

/** insertMessageRows with the messages given as their JSON (messageRowsJson): a statement's value. */
function insertMessageRowsOf(ticketId: string, json: string) {
  return sql`insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id,
      chat_id, body, department_id, created_at)
    select x.id, ${ticketId}::uuid, x.kind, x.channel, x.author_agent_id, x.author_contact_id, x.chat_id,
      x.body, x.department_id, coalesce(x.created_at, deskroute_now() + x.after_ms * interval '1 millisecond')
    from jsonb_to_recordset(${json}::jsonb) as x(id uuid, kind text, channel text,
      author_agent_id uuid, author_contact_id uuid, chat_id uuid, body text, department_id uuid,
      created_at timestamptz, after_ms int)`;
}

export interface TicketWrite {
  patch: TicketPatch;
  /**
   * Whether the change is the ticket's activity (updated_at moves), and its row is updated even
   * when the patch is empty. A patch without touch (the SLA timer's) leaves updated_at alone.
   */
  touch: boolean;
  /** The change is activity: last_activity_at moves to now (ticket.idle rules wait anew). */
  activity?: boolean | undefined;
  /** Text added to the ticket's search vector. */
  search?: string | undefined;
  events: ActorEvent[];
  messages: NewMessage[];
  alongside?: Alongside | undefined;
  /**
   * An earlier write of this transaction moved changed_at already (to the same now()): events
   * alone then add no update of the row.
   */
  changedAlready?: boolean | undefined;
}

/**
 * Writes a change of one ticket in one statement: the ticket row, its messages and its events
 * (each stamped by the caller with the ticket as it stood right after it, so several actors,
 * automation rules one after another, can share a statement) and what travels alongside.
 * Returns the ticket as it now stands and the transaction's time (when its messages were made).
 */
export async function writeTicketChanges(
  trx: Executor,
  ticket: TicketRecord,
  change: TicketWrite,
): Promise<{ ticket: TicketRecord; at: Date }> {
  const { patch, touch, events, messages, alongside } = change;
  const parts: RawBuilder<unknown>[] = [];
  // What changes a ticket as an export shows it (a field's value, its history) moves changed_at,
  // so an incremental export gives the ticket again: an SLA warning or breach, a call's record,
  // an escalation, even where updated_at stays (touch: false). A re-plan of the SLA clock that
  // writes its columns as they were (after any policy edit, every live ticket) does not.
  const changed =
    touch ||
    events.length > 0 ||
    messages.length > 0 ||
    Object.entries(patch).some(
      ([column, value]) =>
        !TIMER_COLUMNS.has(column) && !sameValue(value, ticket[column as keyof TicketRecord]),
    );
  const update = touch || Object.keys(patch).length > 0 || (changed && !change.changedAlready);
  if (update) {
    parts.push(
      sql`changed as (${trx
        .updateTable('tickets as t')
        .set(updateSet(patch, { touch, changed, activity: change.activity }, change.search))
        .where('t.id', '=', ticket.id)
        .returning(TICKET_COLUMNS)})`,
    );
  }
  if (messages.length > 0) parts.push(sql`m as (${insertMessageRows(ticket.id, messages)})`);
  if (events.length > 0) parts.push(sql`e as (${insertEventRows(events)})`);
  if (alongside) parts.push(sql`alongside as (${alongside.statement})`);
  const select = update
    ? sql`select changed.*, deskroute_now() as written_at from changed`
    : sql`select deskroute_now() as written_at`;
  // Prepared: a change's text follows the fields it sets (a handful of shapes in practice), and
  // parsing and planning it anew was over a quarter of PostgreSQL's CPU per imported record.
  const { rows } = await preparedWhileFew(
    sql<TicketRecord & { written_at: Date }>`${
      parts.length > 0 ? sql`with ${sql.join(parts)} ` : sql``
    }${select}`,
  ).execute(trx);
  const { written_at, ...row } = rows[0]!;
  return { ticket: update ? (row as TicketRecord) : ticket, at: written_at };
}

/** A ticket row as writeTicketSet inserts or updates it (JSON: dates as ISO strings). */
export interface TicketSetRow extends TicketRecord {
  ord: number;
  words: string | null;
  changed: boolean;
  set_next: boolean;
  sla_next_at: Date | null;
  sla_planned_key: string | null;
}

export interface MessageSetRow {
  id: string;
  ticket_id: string;
  kind: MessageKind;
  channel: string;
  author_agent_id: string | null;
  author_contact_id: string | null;
  chat_id: string | null;
  body: string;
  department_id: string | null;
  created_at: string;
}

export type EventSetRow = ReturnType<typeof eventRow> & { occurred_at: string; fresh: boolean };

/** The rows of a replayed batch written as a set (set-writes.ts). */
export interface TicketSet {
  opened: TicketSetRow[];
  changed: TicketSetRow[];
  messages: MessageSetRow[];
  events: EventSetRow[];
}

const TICKET_SET_ROW = sql.raw(`ord int, id uuid, subject text, channel text, status text, priority text,
  department_id uuid, assignee_id uuid, contact_id uuid, tags text[], support_address text,
  postponed_until timestamptz, status_before_delete text, created_at timestamptz, updated_at timestamptz,
  first_answered_at timestamptz, last_customer_message_at timestamptz, last_agent_message_at timestamptz,
  resolved_at timestamptz, first_resolved_at timestamptz, waiting_since timestamptz,
  created_in_working_hours boolean, sla_state jsonb, sla_policy_id uuid, sla_due_at timestamptz,
  sla_breached boolean, sla_next_at timestamptz, sla_planned_key uuid, last_activity_at timestamptz,
  words text, changed boolean, set_next boolean`);

/**
 * Writes a replayed batch (set-writes.ts) in one statement: the tickets it opened inserted, in the
 * order they were opened (their numbers follow it), those it changed updated, each in its final
 * state, then all their messages and events, stamped as writeTicketChanges stamps them (an event
 * of a ticket written before the batch follows its latest event, in time and in tx).
 */
export async function writeTicketSet(trx: Executor, set: TicketSet): Promise<void> {
  await prepared(sql`with opened as (
      insert into tickets (id, subject, channel, status, priority, department_id, assignee_id, contact_id,
        tags, support_address, postponed_until, status_before_delete, created_at, updated_at,
        first_answered_at, last_customer_message_at, last_agent_message_at, resolved_at, first_resolved_at,
        waiting_since, search, created_in_working_hours, sla_state, sla_policy_id, sla_due_at, sla_breached,
        sla_next_at, sla_planned_key, last_activity_at)
      select x.id, x.subject, x.channel, x.status, x.priority, x.department_id, x.assignee_id, x.contact_id,
        x.tags, x.support_address, x.postponed_until, x.status_before_delete, x.created_at, x.updated_at,
        x.first_answered_at, x.last_customer_message_at, x.last_agent_message_at, x.resolved_at,
        x.first_resolved_at, x.waiting_since, to_tsvector('simple', coalesce(x.words, '')),
        x.created_in_working_hours, x.sla_state, x.sla_policy_id, x.sla_due_at, x.sla_breached, x.sla_next_at,
        coalesce(x.sla_planned_key, ${NO_POLICIES_KEY}::uuid), x.last_activity_at
      from jsonb_to_recordset(${JSON.stringify(set.opened)}::jsonb) as x(${TICKET_SET_ROW})
      order by x.ord
    ), changed as (
      update tickets t set subject = x.subject, channel = x.channel, status = x.status, priority = x.priority,
        department_id = x.department_id, assignee_id = x.assignee_id, tags = x.tags,
        support_address = x.support_address, postponed_until = x.postponed_until,
        status_before_delete = x.status_before_delete, updated_at = x.updated_at,
        first_answered_at = x.first_answered_at, last_customer_message_at = x.last_customer_message_at,
        last_agent_message_at = x.last_agent_message_at, resolved_at = x.resolved_at,
        first_resolved_at = x.first_resolved_at, waiting_since = x.waiting_since, sla_state = x.sla_state,
        sla_policy_id = x.sla_policy_id, sla_due_at = x.sla_due_at, sla_breached = x.sla_breached,
        last_activity_at = x.last_activity_at,
        sla_next_at = case when x.set_next then x.sla_next_at else t.sla_next_at end,
        sla_planned_key = coalesce(x.sla_planned_key, t.sla_planned_key),
        changed_at = case when x.changed then now() else t.changed_at end,
        search = case when x.words is null or length(t.search) >= 100000 then t.search
          else t.search || to_tsvector('simple', x.words) end
      from jsonb_to_recordset(${JSON.stringify(set.changed)}::jsonb) as x(${TICKET_SET_ROW})
      where t.id = x.id
    ), m as (
      insert into ticket_messages (id, ticket_id, kind, channel, author_agent_id, author_contact_id, chat_id,
        body, department_id, created_at)
      select x.id, x.ticket_id, x.kind, x.channel, x.author_agent_id, x.author_contact_id, x.chat_id, x.body,
        x.department_id, x.created_at
      from jsonb_to_recordset(${JSON.stringify(set.messages)}::jsonb) as x(id uuid, ticket_id uuid, kind text,
        channel text, author_agent_id uuid, author_contact_id uuid, chat_id uuid, body text, department_id uuid,
        created_at timestamptz)
    ), e as (
      insert into ticket_events (ticket_id, type, actor_type, actor_agent_id, actor_contact_id, actor_rule_id,
        actor_rule_version, via_token_id, department_id, agent_id, channel, data, tx, occurred_at)
      select x.ticket_id, x.type, x.actor_type, x.actor_agent_id, x.actor_contact_id, x.actor_rule_id,
        x.actor_rule_version, x.via_token_id, x.department_id, x.agent_id, x.channel, x.data,
        greatest(pg_current_xact_id(), p.tx), greatest(x.occurred_at, p.occurred_at)
      from jsonb_to_recordset(${JSON.stringify(set.events)}::jsonb) as x(ord int, ticket_id uuid, type text,
        actor_type text, actor_agent_id uuid, actor_contact_id uuid, actor_rule_id uuid, actor_rule_version int,
        via_token_id uuid, department_id uuid, agent_id uuid, channel text, data jsonb, occurred_at timestamptz,
        fresh boolean)
      left join lateral (select p.tx, p.occurred_at from ticket_events p
        where not x.fresh and p.ticket_id = x.ticket_id order by p.id desc limit 1) p on true
      order by x.ord
    )
    select 1`).execute(trx);
}

export async function insertMessage(
  trx: Executor,
  values: {
    id?: string;
    ticket_id: string;
    kind: MessageKind;
    channel: Channel;
    author_agent_id: string | null;
    author_contact_id: string | null;
    chat_id?: string | null;
    body: string;
    department_id: string | null;
    created_at?: Date | string;
  },
): Promise<Message> {
  const row = await trx.insertInto('ticket_messages').values(values).returningAll().executeTakeFirstOrThrow();
  return toMessage(row);
}

function toMessage(row: {
  id: string;
  ticket_id: string;
  kind: MessageKind;
  channel: Channel;
  author_agent_id: string | null;
  author_contact_id: string | null;
  chat_id: string | null;
  body: string;
  created_at: Date;
  html_body?: string | null;
  mail_message_id?: string | null;
  mail_address?: string | null;
  mail_auto_submitted?: boolean;
  raw_blob_key?: string | null;
  delivery_state?: DeliveryState | null;
  delivery_error?: string | null;
}): Message {
  return {
    id: row.id,
    ticket_id: row.ticket_id,
    kind: row.kind,
    channel: row.channel,
    author_agent_id: row.author_agent_id,
    author_contact_id: row.author_contact_id,
    chat_id: row.chat_id,
    body: row.body,
    created_at: row.created_at.toISOString(),
    attachments: [],
    ...(row.mail_auto_submitted !== undefined && {
      html_body: row.html_body ?? null,
      mail_message_id: row.mail_message_id ?? null,
      mail_address: row.mail_address ?? null,
      mail_auto_submitted: row.mail_auto_submitted,
      raw_available: (row.raw_blob_key ?? null) !== null,
    }),
    ...(row.delivery_state !== undefined && {
      delivery_state: row.delivery_state,
      delivery_error: row.delivery_error ?? null,
    }),
  };
}

export async function listMessages(
  db: Executor,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<{ created_at: Date; id: string }> = {
    list: `messages:${ticketId}`,
    columns: [sql`created_at`, sql`id`],
    key: (row) => [row.created_at.toISOString(), row.id],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('ticket_messages')
    .select([
      'id',
      'ticket_id',
      'kind',
      'channel',
      'author_agent_id',
      'author_contact_id',
      'chat_id',
      'body',
      'created_at',
      'html_body',
      'mail_message_id',
      'mail_address',
      'mail_auto_submitted',
      'raw_blob_key',
      'delivery_state',
      'delivery_error',
    ])
    .where('ticket_id', '=', ticketId)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  const found = toPage(keyset, rows, page.limit, toMessage);
  const files = await attachmentsOfMessages(
    db,
    found.data.map((m) => m.id),
  );
  for (const message of found.data) message.attachments = files.get(message.id) ?? [];
  return found;
}

export function findMessage(db: Executor, ticketId: string, messageId: string) {
  return db
    .selectFrom('ticket_messages')
    .select(['id', 'kind', 'author_agent_id'])
    .where('ticket_id', '=', ticketId)
    .where('id', '=', messageId)
    .executeTakeFirst();
}

export async function listEvents(
  db: Executor,
  ticketId: string,
  page: { limit: number; cursor?: string | undefined },
) {
  const keyset: Keyset<{ id: number }> = {
    list: `history:${ticketId}`,
    columns: [sql`id`],
    key: (row) => [String(row.id)],
    direction: 'asc',
  };
  const after = afterCursor(keyset, page.cursor);
  const rows = await db
    .selectFrom('ticket_events')
    .selectAll()
    .where('ticket_id', '=', ticketId)
    .$if(after !== null, (qb) => qb.where(after!))
    .orderBy(orderBy(keyset))
    .limit(page.limit + 1)
    .execute();
  return toPage(
    keyset,
    rows,
    page.limit,
    (row): TicketEvent => ({
      id: String(row.id),
      // Written through insertEventRows, whose events take only a TicketEventType.
      type: row.type as TicketEventType,
      actor: {
        type: row.actor_type,
        agent_id: row.actor_agent_id,
        contact_id: row.actor_contact_id,
        rule_id: row.actor_rule_id,
        rule_version: row.actor_rule_version,
      },
      department_id: row.department_id,
      agent_id: row.agent_id,
      data: row.data,
      occurred_at: row.occurred_at.toISOString(),
      import_id: row.import_id,
    }),
  );
}

const SORTS = {
  created_at: { column: sql`t.created_at`, key: (r: TicketRecord) => r.created_at.toISOString() },
  updated_at: { column: sql`t.updated_at`, key: (r: TicketRecord) => r.updated_at.toISOString() },
  priority: { column: sql`t.priority_rank`, key: (r: TicketRecord) => r.priority_rank },
  // Tickets without a due come last: infinity keeps them in the keyset without a null.
  sla_due_at: {
    column: sql`coalesce(t.sla_due_at, 'infinity'::timestamptz)`,
    key: (r: TicketRecord) => r.sla_due_at?.toISOString() ?? 'infinity',
  },
} as const;

/**
 * The tickets the caller may see that match the list's filters, selected as the list shows them
 * (every column and the contact summary; map rows with toListedTicket). The list and the export
 * read it, so the two filter alike.
 */
export function listedTicketsMatching(db: Executor, access: TicketAccess, filter: TicketFilter) {
  return (
    ticketsMatching(db, access, filter)
      .select(TICKET_COLUMNS)
      // The contact summaries come in the same statement (a round trip costs more than these).
      .select([
        sql<string>`(select c.name from contacts c where c.id = t.contact_id)`.as('contact_name'),
        firstEmailOf('t.contact_id').as('contact_email'),
        firstPhoneOf('t.contact_id').as('contact_phone'),
      ])
  );
}

type ListedTicketRow = TicketRecord & {
  contact_name: string | null;
  contact_email: string | null;
  contact_phone: string | null;
};

/** A row of ticketsMatching as the API shows a ticket. */
export function toListedTicket({
  contact_name,
  contact_email,
  contact_phone,
  ...row
}: ListedTicketRow): Ticket {
  return toTicket(row as TicketRow, {
    id: row.contact_id,
    name: contact_name ?? '',
    email: contact_email,
    phone: contact_phone,
  });
}

/** The tickets the caller may see, filtered, sorted and paged by keyset. */
export async function listTickets(db: Executor, access: TicketAccess, query: TicketListQueryType) {
  const { limit, cursor, sort, ...filter } = query;
  const descending = sort.startsWith('-');
  const field = SORTS[sort.replace('-', '') as keyof typeof SORTS];
  const columns: RawBuilder<unknown>[] =
    field === SORTS.priority ? [field.column, sql`t.created_at`, sql`t.id`] : [field.column, sql`t.id`];
  const keyset: Keyset<TicketRecord> = {
    list: `tickets:${access.principal.agentId}:${JSON.stringify({ sort, ...filter })}`,
    columns,
    key: (r) =>
      field === SORTS.priority ? [r.priority_rank, r.created_at.toISOString(), r.id] : [field.key(r), r.id],
    direction: descending ? 'desc' : 'asc',
  };
  const filtered = listedTicketsMatching(db, access, filter);
  let rows: Awaited<ReturnType<typeof filtered.execute>>;
  if (field === SORTS.sla_due_at) {
    // No index serves an order on coalesce(sla_due_at, infinity), so that order sorted every
    // visible ticket for each page (bench:sla: 100+ ms at 100,000 open tickets). Read instead the
    // tickets with a due in the order of tickets_sla_due_idx (migrations/0020), and those without
    // one (the infinity ties, by id) only once they run out before the page is full. Same order,
    // same cursors; a second statement only on the page where the dues end.
    const [due, id] = cursor === undefined ? [null, null] : decodeCursor(keyset.list, cursor, 2);
    rows = [];
    if (due !== 'infinity') {
      // Conditions the planner can estimate: "is not null" beside a bound on the due (which
      // implies it) would count the same tickets out twice, and a row comparison is estimated
      // loosely; estimated ten times too few, the due-soon list was bitmap-read and sorted
      // (10 ms; in index order 0.4 ms, bench:sla part c).
      rows = await filtered
        .$if(due === null && filter.sla_due_before === undefined, (qb) =>
          qb.where('t.sla_due_at', 'is not', null),
        )
        .$if(due !== null, (qb) =>
          qb.where(
            sql<boolean>`t.sla_due_at >= ${due}::timestamptz and (t.sla_due_at > ${due}::timestamptz or t.id > ${id}::uuid)`,
          ),
        )
        .orderBy('t.sla_due_at', 'asc')
        .orderBy('t.id', 'asc')
        .limit(limit + 1)
        .execute();
    }
    // sla_due_before keeps only tickets with a due.
    if (rows.length <= limit && filter.sla_due_before === undefined) {
      const undue = await filtered
        .where('t.sla_due_at', 'is', null)
        .$if(due === 'infinity', (qb) => qb.where(sql<boolean>`t.id > ${id}::uuid`))
        .orderBy('t.id', 'asc')
        .limit(limit + 1 - rows.length)
        .execute();
      rows.push(...undue);
    }
  } else {
    const after = afterCursor(keyset, cursor);
    rows = await filtered
      .$if(after !== null, (qb) => qb.where(after!))
      .orderBy(orderBy(keyset))
      .limit(limit + 1)
      .execute();
  }
  const page = toPage(keyset, rows, limit, toListedTicket);
  return { data: page.data, next_cursor: page.next_cursor };
}

const emptyList = (values: readonly unknown[] | undefined) => values !== undefined && values.length === 0;

/**
 * The tickets the caller may see that match the filters, as a query over `tickets as t` with
 * nothing selected yet: the list pages it, saved views page and count it.
 */
export function ticketsMatching(
  db: Executor,
  access: TicketAccess,
  filter: TicketFilter,
  visible: TicketCondition = visibleTickets(access),
) {
  const departments = filter.department_id?.filter((d) => d !== 'none') ?? [];
  // me: the caller, whoever reads the list (a shared view's "mine" is each reader's own).
  const assignees =
    filter.assignee_id?.filter((a) => a !== 'none').map((a) => (a === 'me' ? access.principal.agentId : a)) ??
    [];
  return (
    db
      .selectFrom('tickets as t')
      .where(visible)
      .$if(filter.status === undefined, (qb) => qb.where('t.status', '!=', 'deleted'))
      // An empty list matches no ticket (PostgreSQL refuses `in ()`): the API refuses one now, but a
      // view saved before may hold it. department_id and assignee_id get false from an empty or().
      .$if(emptyList(filter.status) || emptyList(filter.channel) || emptyList(filter.priority), (qb) =>
        qb.where(sql<boolean>`false`),
      )
      .$if(filter.status !== undefined && filter.status.length > 0, (qb) =>
        qb.where('t.status', 'in', filter.status!),
      )
      .$if(filter.department_id !== undefined, (qb) =>
        qb.where((eb) => {
          const ors = [];
          if (departments.length > 0) ors.push(eb('t.department_id', 'in', departments));
          if (filter.department_id!.includes('none')) ors.push(eb('t.department_id', 'is', null));
          return eb.or(ors);
        }),
      )
      .$if(filter.assignee_id !== undefined, (qb) =>
        qb.where((eb) => {
          const ors = [];
          if (assignees.length > 0) ors.push(eb('t.assignee_id', 'in', assignees));
          if (filter.assignee_id!.includes('none')) ors.push(eb('t.assignee_id', 'is', null));
          return eb.or(ors);
        }),
      )
      .$if(filter.channel !== undefined && filter.channel.length > 0, (qb) =>
        qb.where('t.channel', 'in', filter.channel!),
      )
      .$if(filter.priority !== undefined && filter.priority.length > 0, (qb) =>
        qb.where('t.priority', 'in', filter.priority!),
      )
      .$if(filter.tag !== undefined, (qb) =>
        qb.where(sql<boolean>`t.tags @> ${filter.tag!.map((tag) => normaliseTag(tag))}::text[]`),
      )
      .$if(filter.contact_id !== undefined, (qb) => qb.where('t.contact_id', '=', filter.contact_id!))
      .$if(filter.created_from !== undefined, (qb) =>
        qb.where('t.created_at', '>=', new Date(filter.created_from!)),
      )
      .$if(filter.created_to !== undefined, (qb) =>
        qb.where('t.created_at', '<', new Date(filter.created_to!)),
      )
      .$if(filter.updated_from !== undefined, (qb) =>
        qb.where('t.updated_at', '>=', new Date(filter.updated_from!)),
      )
      .$if(filter.updated_to !== undefined, (qb) =>
        qb.where('t.updated_at', '<', new Date(filter.updated_to!)),
      )
      .$if(filter.sla_breached !== undefined, (qb) => qb.where('t.sla_breached', '=', filter.sla_breached!))
      .$if(filter.sla_due_before !== undefined, (qb) =>
        qb.where('t.sla_due_at', '<', new Date(filter.sla_due_before!)),
      )
      .$if(filter.q !== undefined, (qb) =>
        qb.where(sql<boolean>`t.search @@ websearch_to_tsquery('simple', ${filter.q!})`),
      )
  );
}

/**
 * Filters counted per statement, and statements in flight at once. bench:views (1M tickets, 20
 * views, an agent in 3 departments, before the visibility parts) gave 81 ms for one statement of
 * 20 counts, 62 ms for two of 10 (one held every slow count), 37 ms for statements of 4 on two
 * connections, no better with 3 or 4 on this 2-CPU machine. Each statement is planned and sent on
 * its own, so one view per statement spent a round trip per view.
 */
const COUNTS_PER_STATEMENT = 4;
const COUNT_LANES = 2;

/**
 * Planner settings of a capped count, for its transaction only. Parallel workers cost more to
 * start than a capped count takes. A bitmap scan reads every match of its index before the first
 * row (a channel on 30 % of 1M tickets: 250,000 entries for 1,001 rows), so it is off where a walk
 * is bounded anyway: a filter without a word or a tag walks indexes that carry what it checks
 * and stops at the cap, and one kept to unfinished tickets walks a few percent of the help desk.
 * A word or a tag over every status keeps the planner's choice: its GIN index, read through a
 * bitmap, is then the bound (a rare word would otherwise walk every ticket the caller sees).
 */
export const cappedCountSettings = (walk: boolean) =>
  walk
    ? sql`select set_config('enable_bitmapscan', 'off', true),
        set_config('max_parallel_workers_per_gather', '0', true)`
    : sql`select set_config('max_parallel_workers_per_gather', '0', true)`;

const UNFINISHED: readonly string[] = ['new', 'open', 'answered', 'postponed'];

/** Whether the capped count of `filter` walks with bitmap scans off (see cappedCountSettings). */
export const walksCapped = (filter: TicketFilter) =>
  (filter.q === undefined && filter.tag === undefined) ||
  filter.status?.every((s) => UNFINISHED.includes(s)) === true;

/**
 * The caller's tickets matching `filter`, at most `cap` + 1 rows, read as the disjoint parts of
 * their visibility one after the other (src/access/tickets.ts visibleTicketParts): the part of
 * their departments walks the department index, which carries what views filter on, and stops.
 */
export function cappedMatching(db: Executor, access: TicketAccess, filter: TicketFilter, cap: number) {
  return visibleTicketParts(access, walksCapped(filter))
    .map((part) => ticketsMatching(db, access, filter, part).select(sql`1`.as('one')))
    .reduce((all, part) => all.unionAll(part))
    .limit(cap + 1);
}

/**
 * How many of the caller's tickets match each filter; each count stops at `cap` + 1 rows, so a
 * broad filter costs no more than that (a count above `cap` means "more"). The filters go a few
 * per statement, two statements at once on their own connections (one after the other on a
 * one-connection database): the counts are each exact when read, not read at one instant.
 */
export async function countMatching(
  db: Executor,
  access: TicketAccess,
  filters: TicketFilter[],
  cap: number,
): Promise<number[]> {
  const counts: number[] = new Array(filters.length);
  // Statements of a few filters that take the same settings.
  const statements: { walk: boolean; indexes: number[] }[] = [];
  for (const walk of [true, false]) {
    const indexes = filters.flatMap((filter, i) => (walksCapped(filter) === walk ? [i] : []));
    for (let i = 0; i < indexes.length; i += COUNTS_PER_STATEMENT) {
      statements.push({ walk, indexes: indexes.slice(i, i + COUNTS_PER_STATEMENT) });
    }
  }
  const count = async ({ walk, indexes }: { walk: boolean; indexes: number[] }) => {
    const columns = indexes.map((i) =>
      sql<string>`(select count(*) from (${cappedMatching(db, access, filters[i]!, cap)}) m)`.as(`c${i}`),
    );
    const row = (await db.transaction().execute(async (trx) => {
      await cappedCountSettings(walk).execute(trx);
      return trx.selectNoFrom(columns).executeTakeFirstOrThrow();
    })) as Record<string, string>;
    for (const i of indexes) counts[i] = Number(row[`c${i}`]);
  };
  let next = 0;
  let failed = false;
  const lane = async () => {
    // A failed lane stops the other: the request answers with the error, nothing runs after it.
    while (!failed && next < statements.length) {
      await count(statements[next++]!).catch((error: unknown) => {
        failed = true;
        throw error;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(COUNT_LANES, statements.length) }, lane));
  return counts;
}

export function normaliseTag(tag: string): string {
  return tag.trim().replace(/\s+/g, ' ').toLowerCase();
}

const COUNTED = ['new', 'open', 'answered', 'postponed', 'resolved'] as const;

/** Tickets per status in each department the caller sees, and in no department, in one query. */
export async function countTickets(db: Executor, access: TicketAccess) {
  const rows = await db
    .selectFrom('tickets as t')
    .select(['t.department_id', 't.status', (eb) => eb.fn.countAll<number>().as('n')])
    .where(visibleTickets(access))
    .where('t.status', 'in', COUNTED)
    .groupBy(['t.department_id', 't.status'])
    .execute();
  const departments = await db
    .selectFrom('departments')
    .select(['id', 'name'])
    .orderBy(sql`lower(name)`)
    .execute();
  const empty = () => ({ new: 0, open: 0, answered: 0, postponed: 0, resolved: 0 });
  const byDepartment = new Map<string | null, ReturnType<typeof empty>>();
  for (const r of rows) {
    const counts = byDepartment.get(r.department_id) ?? empty();
    counts[r.status as (typeof COUNTED)[number]] = Number(r.n);
    byDepartment.set(r.department_id, counts);
  }
  return {
    departments: departments
      .filter((d) => isAdmin(access.principal) || access.memberships.has(d.id) || byDepartment.has(d.id))
      .map((d) => ({ department_id: d.id, name: d.name, counts: byDepartment.get(d.id) ?? empty() })),
    no_department: byDepartment.get(null) ?? empty(),
  };
}

// What departments and agents hand over, or are blocked by, when they are deleted.

export async function countTicketsOfDepartment(trx: Executor, departmentId: string) {
  const row = await trx
    .selectFrom('tickets')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('department_id', '=', departmentId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Locks every ticket of a department, in id order (a deletion's first lock: departments/service.ts). */
export async function lockTicketsOfDepartment(trx: Executor, departmentId: string) {
  // Counted where they are locked: the ids of a department of a million tickets stay in PostgreSQL.
  await sql`select count(*) from (
      select 1 from tickets where department_id = ${departmentId} order by id for update
    ) locked`.execute(trx);
}

/**
 * Moves every ticket of one department to another, as a system transfer in each history. As with
 * a transfer, the assignee stays only when they may work tickets there (solver or more); one who
 * may not is unassigned, and the history says so too.
 */
/** A department's tickets taken over by another as it is deleted, by whoever deletes it. */
export async function moveTicketsOfDepartment(trx: Executor, fromId: string, toId: string, by: Principal) {
  const before = await trx
    .selectFrom('tickets')
    .select(['id', 'assignee_id'])
    .where('department_id', '=', fromId)
    .orderBy('id')
    .forUpdate()
    .execute();
  if (before.length === 0) return;
  const assigneeBefore = new Map(before.map((t) => [t.id, t.assignee_id]));
  const moved = await trx
    .updateTable('tickets')
    .set({
      department_id: toId,
      updated_at: dbNow,
      changed_at: sql`now()`,
      assignee_id: sql`case when exists (select 1 from department_members m where m.department_id = ${toId} and m.agent_id = tickets.assignee_id and m.role in ('solver', 'supervisor', 'manager')) then assignee_id end`,
    })
    .where('department_id', '=', fromId)
    .returning(['id', 'assignee_id', 'channel'])
    .execute();
  const actor: Actor = { type: 'agent', agentId: by.agentId, contactId: null, tokenId: by.tokenId };
  const events = moved.flatMap((t): ActorEvent[] => {
    const ticket = { id: t.id, department_id: toId, assignee_id: t.assignee_id, channel: t.channel };
    const from = assigneeBefore.get(t.id) ?? null;
    return [
      {
        type: 'transferred',
        actor,
        ticket,
        data: { from_department_id: fromId, to_department_id: toId, reason: 'department_deleted' },
      },
      ...(from !== t.assignee_id
        ? [{ type: 'assigned' as const, actor, ticket, data: { from, to: t.assignee_id } }]
        : []),
    ];
  });
  await insertEventRows(events).execute(trx);
}

export async function countTicketReferencesToAgent(trx: Executor, agentId: string) {
  const row = await trx
    .selectFrom('tickets')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('assignee_id', '=', agentId)
    .executeTakeFirstOrThrow();
  const authored = await trx
    .selectFrom('ticket_messages')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('author_agent_id', '=', agentId)
    .executeTakeFirstOrThrow();
  return Number(row.n) + Number(authored.n);
}

// What the write path checks about the people and departments a change names.

// The three look-ups below check an assignment or a transfer, each a key look-up of one text:
// prepared, they are parsed and planned once per connection (an import replays thousands).

export async function agentStatus(db: Executor, agentId: string) {
  const query = db.selectFrom('agents').select(['id', 'status']).where('id', '=', agentId);
  const { rows } = await preparedQuery(query).execute(db);
  return rows[0];
}

export async function memberRole(db: Executor, agentId: string, departmentId: string) {
  const query = db
    .selectFrom('department_members')
    .select('role')
    .where('agent_id', '=', agentId)
    .where('department_id', '=', departmentId);
  const { rows } = await preparedQuery(query).execute(db);
  return rows[0]?.role;
}

export async function departmentExists(db: Executor, departmentId: string): Promise<boolean> {
  const query = db.selectFrom('departments').select('id').where('id', '=', departmentId);
  const { rows } = await preparedQuery(query).execute(db);
  return rows.length > 0;
}

/** Postponed tickets whose time has come, locked; rows another instance holds are skipped. */
export async function lockDuePostponedTickets(
  trx: Transaction<Database>,
  limit: number,
): Promise<{ ticket: TicketRecord; sla: SlaRead }[]> {
  const rows = await trx
    .selectFrom('tickets as t')
    .select(TICKET_COLUMNS)
    .select(SLA_READ_COLUMNS)
    .where('t.status', '=', 'postponed')
    .where('t.postponed_until', '<=', dbNow)
    .orderBy('t.postponed_until')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
  return rows.map(splitSlaRead);
}

/**
 * Puts off a ticket's SLA timer after its plan failed: due again in `minutes`, and counted as
 * planned under the current policies (else a stale key would bring it back every turn).
 */
export async function deferSlaTimer(trx: Transaction<Database>, id: string, minutes: number): Promise<void> {
  await trx
    .updateTable('tickets')
    .set({
      sla_next_at: sql`${dbNow} + make_interval(mins => ${minutes})`,
      sla_planned_key: sql`coalesce(${policiesKeySql}, ${NO_POLICIES_KEY}::uuid)`,
    })
    .where('id', '=', id)
    .execute();
}

/**
 * Live tickets whose SLA clock was planned under an older policy list (tickets.sla_planned_key
 * below the current key; while none is active, any but none): each a range scan of
 * tickets_sla_planned_idx.
 */
const PLANNED_UNDER_OLD_POLICIES = [
  sql<SqlBool>`t.status in ('new', 'open', 'answered', 'postponed') and t.sla_planned_key < ${policiesKeySql}`,
  sql<SqlBool>`t.status in ('new', 'open', 'answered', 'postponed')
    and t.sla_planned_key > ${NO_POLICIES_KEY}::uuid and ${policiesKeySql} is null`,
];

/**
 * Tickets whose SLA timer has come (tickets.sla_next_at, docs/sla.md "Timers"), earliest first,
 * then live tickets planned under an older policy list, up to `limit`, locked; rows another
 * instance holds are skipped, so each is planned in one process.
 */
export async function lockDueSlaTimers(
  trx: Transaction<Database>,
  limit: number,
): Promise<{ ticket: TicketRecord; sla: SlaRead }[]> {
  const locked = (n: number, where: Expression<SqlBool>) =>
    trx
      .selectFrom('tickets as t')
      .select(TICKET_COLUMNS)
      .select(SLA_READ_COLUMNS)
      .where(where)
      .limit(n)
      .forUpdate()
      .skipLocked();
  const rows = await locked(limit, sql<SqlBool>`t.sla_next_at <= ${dbNow}`)
    .orderBy('t.sla_next_at')
    .execute();
  for (const where of PLANNED_UNDER_OLD_POLICIES) {
    if (rows.length >= limit) break;
    // Our own locks do not make SKIP LOCKED skip: a ticket both due and stale would come twice.
    const taken = new Set(rows.map((row) => row.id));
    rows.push(...(await locked(limit - rows.length, where).execute()).filter((row) => !taken.has(row.id)));
  }
  return rows.map(splitSlaRead);
}

export async function insertRating(
  trx: Executor,
  values: {
    ticket_id: string;
    message_id: string | null;
    agent_id: string | null;
    department_id: string | null;
    value: 'positive' | 'negative';
    comment: string | null;
  },
) {
  return trx.insertInto('ratings').values(values).returningAll().executeTakeFirstOrThrow();
}

/**
 * The customer message a ticket just opened with (its id is chosen by the write path): where mail
 * in and the contact form put the files that came with it.
 */
export async function openingMessageId(trx: Executor, ticketId: string): Promise<string> {
  const row = await trx
    .selectFrom('ticket_messages')
    .select('id')
    .where('ticket_id', '=', ticketId)
    .where('kind', '=', 'customer')
    .orderBy('created_at')
    .orderBy('id')
    .limit(1)
    .executeTakeFirstOrThrow();
  return row.id;
}
