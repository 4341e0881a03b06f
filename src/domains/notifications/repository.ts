import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database, DepartmentRole, NotificationChannelName, NotificationKind } from '../../db/types.ts';
import { invalid } from '../../errors.ts';
import { decodeCursor, encodeCursor } from '../../plugins/pagination.ts';
import { feedHorizon } from '../events/repository.ts';

type Executor = Kysely<Database> | Transaction<Database>;

export interface NotificationRecord {
  id: string;
  kind: NotificationKind;
  event_id: string;
  ticket_id: string;
  department_id: string | null;
  actor_agent_id: string | null;
  subject: string;
  created_at: Date;
  read_at: Date | null;
}

const COLUMNS = [
  'id',
  'kind',
  'event_id',
  'ticket_id',
  'department_id',
  'actor_agent_id',
  'subject',
  'created_at',
  'read_at',
] as const;

export interface NewNotification {
  id: string;
  agent_id: string;
  kind: NotificationKind;
  event_id: string;
  ticket_id: string;
  department_id: string | null;
  actor_agent_id: string | null;
  subject: string;
}

/** One row per agent and feed event: a replayed batch adds nothing twice. */
export async function insertNotifications(trx: Transaction<Database>, rows: NewNotification[]) {
  // A statement takes at most 65,535 parameters (8 a row): a batch may decide more rows than that.
  for (let i = 0; i < rows.length; i += 1000) {
    await trx
      .insertInto('notifications')
      .values(rows.slice(i, i + 1000))
      .onConflict((oc) => oc.columns(['agent_id', 'event_id']).doNothing())
      .execute();
  }
}

/** Where a live stream starts reading the inbox: after every notification already committed. */
export interface InboxPosition {
  tx: string;
  seq: number;
}

export async function inboxHead(db: Executor): Promise<InboxPosition> {
  const horizon = await feedHorizon(db);
  const row = await sql<{ tx: string; seq: number }>`
    select tx::text as tx, seq from notifications
    where tx < ${horizon}::xid8
    order by tx desc, seq desc limit 1`.execute(db);
  return row.rows[0] ?? { tx: '0', seq: 0 };
}

/**
 * Notifications written after `after`, in commit-safe order: only rows of transactions below the
 * oldest one of this database still running (feedHorizon), so a row that commits late is never
 * passed over.
 */
export async function readInboxAfter(db: Executor, after: InboxPosition, limit: number) {
  const horizon = await feedHorizon(db);
  const result = await sql<NotificationRecord & { agent_id: string; tx: string; seq: number }>`
    select id, agent_id, kind, event_id, ticket_id, department_id, actor_agent_id, subject,
      created_at, read_at, tx::text as tx, seq
    from notifications
    where (tx, seq) > (${after.tx}::xid8, ${after.seq})
      and tx < ${horizon}::xid8
    order by tx, seq
    limit ${limit}`.execute(db);
  return result.rows;
}

/** The inbox: unread first, then newest first. */
export async function listNotifications(
  db: Executor,
  agentId: string,
  q: { unreadOnly: boolean; limit: number; cursor?: string | undefined },
) {
  // Cursors are bound to the agent and the filter: another inbox's cursor answers 400.
  const list = `notifications:${agentId}:${q.unreadOnly}`;
  // Unread before read, then newest: directions differ, so the keyset condition is spelt out
  // instead of one row comparison.
  const after = q.cursor === undefined ? null : decodeCursor(list, q.cursor, 3);
  if (
    after &&
    (typeof after[0] !== 'boolean' ||
      typeof after[1] !== 'string' ||
      !Number.isFinite(Date.parse(after[1])) ||
      !Number.isSafeInteger(after[2]))
  ) {
    throw invalid('invalid_cursor', 'The cursor is not one this list handed out.', [
      { field: 'querystring/cursor', message: 'is not a valid cursor for this list' },
    ]);
  }
  // Notifications of one batch share their created_at: seq (insertion order, which is feed
  // order) breaks the tie.
  const rows = await db
    .selectFrom('notifications')
    .select([...COLUMNS, 'seq'])
    .where('agent_id', '=', agentId)
    .$if(q.unreadOnly, (qb) => qb.where('read_at', 'is', null))
    .$if(after !== null, (qb) => {
      const [read, at, seq] = after as unknown as [boolean, string, number];
      return qb.where(
        sql<boolean>`((read_at is not null) > ${read}
          or ((read_at is not null) = ${read} and (created_at, seq) < (${at}::timestamptz, ${seq}::bigint)))`,
      );
    })
    .orderBy(sql`(read_at is not null)`)
    .orderBy('created_at', 'desc')
    .orderBy('seq', 'desc')
    .limit(q.limit + 1)
    .execute();
  const more = rows.length > q.limit;
  const kept = more ? rows.slice(0, q.limit) : rows;
  const last = kept[kept.length - 1];
  return {
    rows: kept,
    next_cursor:
      more && last
        ? encodeCursor(list, [last.read_at !== null, last.created_at.toISOString(), Number(last.seq)])
        : null,
  };
}

export async function markNotificationRead(db: Executor, agentId: string, id: string) {
  return db
    .updateTable('notifications')
    .set({ read_at: sql`coalesce(read_at, now())` })
    .where('agent_id', '=', agentId)
    .where('id', '=', id)
    .returning(COLUMNS)
    .executeTakeFirst();
}

export async function markAllNotificationsRead(db: Executor, agentId: string): Promise<number> {
  const result = await db
    .updateTable('notifications')
    .set({ read_at: sql`now()` })
    .where('agent_id', '=', agentId)
    .where('read_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Active agents and their role in each department, for the consumer's recipient choices. */
export interface Candidate {
  id: string;
  email: string;
  role: 'owner' | 'admin' | 'agent';
  departments: Map<string, DepartmentRole>;
}

export async function activeMembersOf(db: Executor, departmentId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('department_members as m')
    .innerJoin('agents as a', 'a.id', 'm.agent_id')
    .select('a.id')
    .where('m.department_id', '=', departmentId)
    .where('a.status', '=', 'active')
    .execute();
  return rows.map((r) => r.id);
}

/** Active agents by id or by email (lower-cased), with their memberships. */
export async function findCandidates(
  db: Executor,
  by: { ids?: readonly string[]; emails?: readonly string[] },
): Promise<Candidate[]> {
  const ids = by.ids ?? [];
  const emails = by.emails ?? [];
  if (ids.length === 0 && emails.length === 0) return [];
  const agents = await db
    .selectFrom('agents')
    .select(['id', 'email', 'role'])
    .where('status', '=', 'active')
    .where((eb) => {
      const ors = [];
      if (ids.length > 0) ors.push(eb('id', 'in', ids));
      if (emails.length > 0) ors.push(eb(sql`lower(email)`, 'in', emails));
      return eb.or(ors);
    })
    .execute();
  if (agents.length === 0) return [];
  const members = await db
    .selectFrom('department_members')
    .select(['agent_id', 'department_id', 'role'])
    .where(
      'agent_id',
      'in',
      agents.map((a) => a.id),
    )
    .execute();
  const byId = new Map<string, Candidate>(
    agents.map((a) => [a.id, { id: a.id, email: a.email, role: a.role, departments: new Map() }]),
  );
  for (const m of members) byId.get(m.agent_id)?.departments.set(m.department_id, m.role);
  return [...byId.values()];
}

/**
 * Explicit choices per channel: the agents' own, then their department's default (keyed
 * `channel:agent:kind` and `channel:kind`). Absent = the help desk's default.
 */
export async function readChoices(db: Executor, agentIds: readonly string[], departmentId: string) {
  const [own, defaults] = await Promise.all([
    agentIds.length === 0
      ? []
      : db
          .selectFrom('notification_preferences')
          .select(['agent_id', 'kind', 'channel', 'enabled'])
          .where('department_id', '=', departmentId)
          .where('agent_id', 'in', agentIds)
          .execute(),
    db
      .selectFrom('notification_defaults')
      .select(['kind', 'channel', 'enabled'])
      .where('department_id', '=', departmentId)
      .execute(),
  ]);
  return {
    own: new Map(own.map((r) => [`${r.channel}:${r.agent_id}:${r.kind}`, r.enabled])),
    defaults: new Map(defaults.map((r) => [`${r.channel}:${r.kind}`, r.enabled])),
  };
}

export async function readAgentPreferences(db: Executor, agentId: string) {
  return db
    .selectFrom('notification_preferences')
    .select(['department_id', 'kind', 'channel', 'enabled'])
    .where('agent_id', '=', agentId)
    .execute();
}

export async function readDepartmentDefaults(db: Executor, departmentIds: readonly string[]) {
  if (departmentIds.length === 0) return [];
  return db
    .selectFrom('notification_defaults')
    .select(['department_id', 'kind', 'channel', 'enabled'])
    .where('department_id', 'in', departmentIds)
    .execute();
}

/** One channel's choice: true or false is kept, null forgets it (the default applies again). */
export interface ChannelChoice {
  kind: NotificationKind;
  channel: NotificationChannelName;
  enabled: boolean | null;
}

/** An agent's choices in their departments; null removes the choice: the department's default applies. */
export async function writeAgentPreferences(
  trx: Transaction<Database>,
  agentId: string,
  choices: (ChannelChoice & { department_id: string })[],
) {
  for (const c of choices) {
    if (c.enabled === null) {
      await trx
        .deleteFrom('notification_preferences')
        .where('agent_id', '=', agentId)
        .where('department_id', '=', c.department_id)
        .where('kind', '=', c.kind)
        .where('channel', '=', c.channel)
        .execute();
    } else {
      await trx
        .insertInto('notification_preferences')
        .values({
          agent_id: agentId,
          department_id: c.department_id,
          kind: c.kind,
          channel: c.channel,
          enabled: c.enabled,
        })
        .onConflict((oc) =>
          oc
            .columns(['agent_id', 'department_id', 'kind', 'channel'])
            .doUpdateSet({ enabled: c.enabled as boolean, updated_at: sql`now()` }),
        )
        .execute();
    }
  }
}

/** A department's defaults; null removes one: the help desk's default applies again. */
export async function writeDepartmentDefaults(
  trx: Transaction<Database>,
  departmentId: string,
  choices: ChannelChoice[],
) {
  for (const c of choices) {
    if (c.enabled === null) {
      await trx
        .deleteFrom('notification_defaults')
        .where('department_id', '=', departmentId)
        .where('kind', '=', c.kind)
        .where('channel', '=', c.channel)
        .execute();
      continue;
    }
    await trx
      .insertInto('notification_defaults')
      .values({ department_id: departmentId, kind: c.kind, channel: c.channel, enabled: c.enabled })
      .onConflict((oc) =>
        oc
          .columns(['department_id', 'kind', 'channel'])
          .doUpdateSet({ enabled: c.enabled as boolean, updated_at: sql`now()` }),
      )
      .execute();
  }
}

/** The ticket's opening message is part of its creation, not a reply: it has the ticket's time. */
export async function isOpeningMessage(db: Executor, ticketId: string, messageCreatedAt: string) {
  const row = await db
    .selectFrom('tickets')
    .select('created_at')
    .where('id', '=', ticketId)
    .executeTakeFirst();
  return row !== undefined && row.created_at.getTime() === Date.parse(messageCreatedAt);
}
