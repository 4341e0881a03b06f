import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Transaction } from 'kysely';
import { canManageDepartment, isAdmin, type Principal } from '../../access/policy.ts';
import { can } from '../../access/tickets.ts';
import type { MailConfig } from '../../config.ts';
import type { Db } from '../../db/database.ts';
import { describe, isDatabaseUnreachable } from '../../db/outage.ts';
import type { Database, NotificationChannelName, NotificationKind } from '../../db/types.ts';
import { DomainError, forbidden, invalid, notFound } from '../../errors.ts';
import type { JobQueue } from '../../jobs/queue.ts';
import { departmentsExist, lockDepartment, roleInDepartment } from '../departments/repository.ts';
import { consumeFeedBatch } from '../events/consumer.ts';
import type { FeedRow } from '../events/repository.ts';
import { recordSettingsChange } from '../events/settings.ts';
import { feedHorizon } from '../stream/repository.ts';
import {
  type Delivery,
  type EmailChannelDeps,
  inboxChannel,
  type NotificationChannel,
  notificationChannels,
} from './channels.ts';
import {
  activeMembersOf,
  type Candidate,
  findCandidates,
  isOpeningMessage,
  listNotifications,
  markAllNotificationsRead,
  markNotificationRead,
  type NewNotification,
  readAgentPreferences,
  readChoices,
  readDepartmentDefaults,
  writeAgentPreferences,
  writeDepartmentDefaults,
} from './repository.ts';
import { NOTIFICATION_KINDS, notificationView } from './schemas.ts';

export const CONSUMER = 'notifications';
const BATCH = 200;
/** A note naming more agents than this notifies the first ones only. */
const MAX_MENTIONS = 50;

// `@ann@example.com`: an @ right before an address, not inside a word (so a plain address is
// no mention). Trailing punctuation of the sentence is not part of the address.
const MENTION = /(?<![\w@.])@([^\s@]+@[^\s@]+\.[^\s@]+)/g;

const SENTENCE_END = new Set('.,;:!?)]}>\'"');

/**
 * `text` without the run of `chars` it ends with, trimmed by hand: /[...]+$/ backtracks
 * quadratically over such a run that does not end the text, and a note may be 100,000 characters.
 */
function withoutTrailing(text: string, chars: ReadonlySet<string>): string {
  let end = text.length;
  while (end > 0 && chars.has(text[end - 1]!)) end--;
  return text.slice(0, end);
}

export function mentionedEmails(body: string): string[] {
  const found = new Set<string>();
  for (const match of body.matchAll(MENTION)) {
    const email = withoutTrailing(match[1] as string, SENTENCE_END).toLowerCase();
    if (email.length <= 254 && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) found.add(email);
    if (found.size >= MAX_MENTIONS) break;
  }
  return [...found];
}

interface TicketNow {
  id: string;
  subject: string;
  department_id: string | null;
  assignee_id: string | null;
}

/** Who a ticket event concerns, and as which kind, before preferences and visibility. */
interface Plan {
  kind: NotificationKind;
  /** The department whose preferences apply (null: the help desk default, all on). */
  departmentId: string | null;
  agentIds?: string[];
  emails?: string[];
}

/** Read once per batch: a department's active members (several events of a batch share one). */
type Members = (departmentId: string) => Promise<string[]>;

function membersOnce(trx: Transaction<Database>): Members {
  const read = new Map<string, Promise<string[]>>();
  return (departmentId) => {
    let members = read.get(departmentId);
    if (!members) {
      members = activeMembersOf(trx, departmentId);
      read.set(departmentId, members);
    }
    return members;
  };
}

async function plan(
  trx: Transaction<Database>,
  row: FeedRow,
  ticket: TicketNow,
  membersOf: Members,
): Promise<Plan | null> {
  const { event } = row;
  const payload = event.payload as Record<string, unknown>;
  switch (event.type) {
    case 'ticket.created': {
      if (!event.department_id) return null;
      return {
        kind: 'ticket_created',
        departmentId: event.department_id,
        agentIds: await membersOf(event.department_id),
      };
    }
    case 'ticket.customer_replied': {
      const message = payload.message as { created_at?: unknown } | null | undefined;
      if (
        typeof message?.created_at === 'string' &&
        (await isOpeningMessage(trx, ticket.id, message.created_at))
      )
        return null;
      if (ticket.assignee_id)
        return {
          kind: 'customer_replied',
          departmentId: ticket.department_id,
          agentIds: [ticket.assignee_id],
        };
      if (!ticket.department_id) return null;
      return {
        kind: 'customer_replied',
        departmentId: ticket.department_id,
        agentIds: await membersOf(ticket.department_id),
      };
    }
    case 'ticket.assigned': {
      const to = typeof payload.to === 'string' ? payload.to : null;
      // An escalation's assignment is told by its sla.escalated event, once, saying why.
      if (!to || payload.reason === 'sla_escalated') return null;
      return { kind: 'ticket_assigned', departmentId: event.department_id, agentIds: [to] };
    }
    case 'ticket.transferred': {
      const to = typeof payload.to_department_id === 'string' ? payload.to_department_id : null;
      if (!to) return null;
      return { kind: 'ticket_transferred', departmentId: to, agentIds: await membersOf(to) };
    }
    case 'sla.escalated': {
      const recipients = Array.isArray(payload.recipients)
        ? payload.recipients.filter((id): id is string => typeof id === 'string')
        : [];
      if (recipients.length === 0) return null;
      return { kind: 'sla_escalated', departmentId: event.department_id, agentIds: recipients };
    }
    case 'ticket.note_added': {
      const message = payload.message as { body?: unknown } | null | undefined;
      const emails = typeof message?.body === 'string' ? mentionedEmails(message.body) : [];
      if (emails.length === 0) return null;
      return { kind: 'mentioned', departmentId: ticket.department_id, emails };
    }
    default:
      return null;
  }
}

/** The help desk's own default per channel: the inbox on, email off (mail only where chosen). */
export const CHANNEL_DEFAULTS: Record<NotificationChannelName, boolean> = { inbox: true, email: false };

function enabledFor(
  choices: Awaited<ReturnType<typeof readChoices>> | null,
  channel: NotificationChannelName,
  agentId: string,
  kind: NotificationKind,
): boolean {
  if (choices === null) return CHANNEL_DEFAULTS[channel];
  return (
    choices.own.get(`${channel}:${agentId}:${kind}`) ??
    choices.defaults.get(`${channel}:${kind}`) ??
    CHANNEL_DEFAULTS[channel]
  );
}

/**
 * The notifications one feed event causes. Never the agent who caused it, never an agent who
 * cannot see the ticket now (it may have moved on since), never one who turned the kind off.
 */
export async function notificationsFor(
  trx: Transaction<Database>,
  row: FeedRow,
  membersOf: Members = membersOnce(trx),
): Promise<Delivery[]> {
  if (row.visibility === null || row.event.ticket_id === null) return [];
  const payload = row.event.payload as { ticket?: { subject?: unknown } };
  const ticket: TicketNow = {
    id: row.event.ticket_id,
    subject: typeof payload.ticket?.subject === 'string' ? payload.ticket.subject : '',
    department_id: row.visibility.department_id,
    assignee_id: row.visibility.assignee_id,
  };
  const wanted = await plan(trx, row, ticket, membersOf);
  if (!wanted) return [];
  const actor = row.event.actor.agent_id;
  const ids = (wanted.agentIds ?? []).filter((id) => id !== actor);
  const candidates = (await findCandidates(trx, { ids, emails: wanted.emails ?? [] })).filter(
    (c) => c.id !== actor && canSee(c, ticket),
  );
  if (candidates.length === 0) return [];
  const choices =
    wanted.departmentId === null
      ? null
      : await readChoices(
          trx,
          candidates.map((c) => c.id),
          wanted.departmentId,
        );
  return candidates.flatMap((c) => {
    const inbox = enabledFor(choices, 'inbox', c.id, wanted.kind);
    const email = enabledFor(choices, 'email', c.id, wanted.kind);
    if (!inbox && !email) return [];
    const notification: NewNotification = {
      id: randomUUID(),
      agent_id: c.id,
      kind: wanted.kind,
      event_id: row.event.id,
      ticket_id: ticket.id,
      department_id: row.event.department_id,
      actor_agent_id: actor,
      subject: ticket.subject,
    };
    return [{ notification, inbox, email: email ? c.email : null }];
  });
}

function canSee(candidate: Candidate, ticket: TicketNow): boolean {
  const principal: Principal = {
    agentId: candidate.id,
    role: candidate.role,
    scopes: ['read'],
    via: 'session',
    tokenId: null,
    departments: candidate.departments,
  };
  return can({ principal, memberships: candidate.departments }, ticket, 'read');
}

/** Handles one batch of the feed: decides, then hands each channel what it must deliver. */
export async function handleBatch(
  trx: Transaction<Database>,
  rows: readonly FeedRow[],
  channels: readonly NotificationChannel[] = [inboxChannel],
): Promise<void> {
  const all: Delivery[] = [];
  const membersOf = membersOnce(trx);
  for (const row of rows) all.push(...(await notificationsFor(trx, row, membersOf)));
  if (all.length === 0) return;
  for (const channel of channels) await channel.deliver(trx, all);
}

/**
 * Runs the consumer until the feed is drained. Returns how many live events it looked at (imported
 * history is passed by). Without
 * `mail`, only the inbox is delivered to (mail needs the job queue and the mail settings).
 */
export async function drainNotifications(db: Db, mail?: EmailChannelDeps): Promise<number> {
  const channels = notificationChannels(mail);
  let total = 0;
  for (;;) {
    const handled = await consumeFeedBatch(db, CONSUMER, BATCH, (trx, rows) =>
      handleBatch(trx, rows, channels),
    );
    total += handled;
    if (handled < BATCH) return total;
  }
}

/**
 * The notifications consumer, on every instance: the feed consumer's row lock lets one process
 * at a time take a batch, and each event is handled exactly once across processes and restarts.
 */
export function startNotifications(
  db: Db,
  log: FastifyBaseLogger,
  config: { notifications: { pollMs: number }; mail: MailConfig },
  queue: JobQueue | undefined,
): () => Promise<void> {
  const mail: EmailChannelDeps = {
    config: config.mail,
    queue,
    log: log.child({ component: 'notifications' }),
  };
  let running: Promise<void> | null = null;
  let drainedBelow: string | null = null;
  const tick = () => {
    running ??= (async () => {
      // Nothing new below an unmoved horizon: skip the consumer's transaction (stream/repository.ts).
      const horizon = await feedHorizon(db);
      if (horizon === drainedBelow) return;
      await drainNotifications(db, mail);
      drainedBelow = horizon;
    })()
      .catch((err: unknown) => {
        if (isDatabaseUnreachable(err))
          log.warn({ reason: describe(err) }, 'notifications: database unavailable');
        else log.error({ err }, 'notifications: handling the feed failed');
      })
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(tick, config.notifications.pollMs);
  timer.unref();
  tick();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

// ---- the inbox ---------------------------------------------------------------------------

export async function listMyNotifications(
  db: Db,
  principal: Principal,
  q: { unread_only: boolean; limit: number; cursor?: string | undefined },
) {
  const page = await listNotifications(db, principal.agentId, {
    unreadOnly: q.unread_only,
    limit: q.limit,
    cursor: q.cursor,
  });
  return { data: page.rows.map(notificationView), next_cursor: page.next_cursor };
}

export async function markRead(db: Db, principal: Principal, id: string) {
  const row = await markNotificationRead(db, principal.agentId, id);
  if (!row) throw notFound('notification');
  return notificationView(row);
}

export async function markAllRead(db: Db, principal: Principal) {
  return { marked: await markAllNotificationsRead(db, principal.agentId) };
}

// ---- preferences -------------------------------------------------------------------------

async function myDepartments(db: Db, principal: Principal): Promise<string[]> {
  if (principal.departments) return [...principal.departments.keys()];
  const rows = await db
    .selectFrom('department_members')
    .select('department_id')
    .where('agent_id', '=', principal.agentId)
    .execute();
  return rows.map((r) => r.department_id);
}

type Source = 'agent' | 'department' | 'default';

/** A channel's effective choice and where it comes from. */
function effective(
  mine: boolean | undefined,
  department: boolean | undefined,
  channel: NotificationChannelName,
): { on: boolean; source: Source } {
  if (mine !== undefined) return { on: mine, source: 'agent' };
  if (department !== undefined) return { on: department, source: 'department' };
  return { on: CHANNEL_DEFAULTS[channel], source: 'default' };
}

export async function myPreferences(db: Db, principal: Principal) {
  const departments = (await myDepartments(db, principal)).sort();
  const [own, defaults] = await Promise.all([
    readAgentPreferences(db, principal.agentId),
    readDepartmentDefaults(db, departments),
  ]);
  const key = (r: { channel: string; department_id: string; kind: string }) =>
    `${r.channel}:${r.department_id}:${r.kind}`;
  const ownBy = new Map(own.map((r) => [key(r), r.enabled]));
  const defaultBy = new Map(defaults.map((r) => [key(r), r.enabled]));
  const data = departments.flatMap((department_id) =>
    NOTIFICATION_KINDS.map((kind) => {
      const [inbox, email] = (['inbox', 'email'] as const).map((channel) =>
        effective(
          ownBy.get(key({ channel, department_id, kind })),
          defaultBy.get(key({ channel, department_id, kind })),
          channel,
        ),
      ) as [ReturnType<typeof effective>, ReturnType<typeof effective>];
      return {
        department_id,
        kind,
        enabled: inbox.on,
        source: inbox.source,
        email: email.on,
        email_source: email.source,
      };
    }),
  );
  return { data };
}

/** The channel choices of PUT items: `enabled` is the inbox's, `email` the mail's; absent: untouched. */
function channelChoices<
  T extends { kind: NotificationKind; enabled?: boolean | null; email?: boolean | null },
>(item: T): { kind: NotificationKind; channel: NotificationChannelName; enabled: boolean | null }[] {
  return [
    ...(item.enabled !== undefined
      ? [{ kind: item.kind, channel: 'inbox' as const, enabled: item.enabled }]
      : []),
    ...(item.email !== undefined
      ? [{ kind: item.kind, channel: 'email' as const, enabled: item.email }]
      : []),
  ];
}

/** Items that set no channel are the client's mistake (they would change nothing). */
function assertSomeChannel(items: readonly { enabled?: unknown; email?: unknown }[], at: string) {
  const empty = items.flatMap((item, i) =>
    item.enabled === undefined && item.email === undefined
      ? [{ field: `body/${at}/${i}`, message: 'sets neither enabled nor email' }]
      : [],
  );
  if (empty.length > 0) throw invalid('nothing_to_set', 'Each item sets enabled, email or both.', empty);
}

export async function setMyPreferences(
  db: Db,
  principal: Principal,
  body: {
    preferences: {
      department_id: string;
      kind: NotificationKind;
      enabled?: boolean | null | undefined;
      email?: boolean | null | undefined;
    }[];
  },
) {
  assertSomeChannel(body.preferences, 'preferences');
  const mine = new Set(await myDepartments(db, principal));
  const seen = new Set<string>();
  const twice = body.preferences.flatMap((p, i) => {
    const key = `${p.department_id}:${p.kind}`;
    if (seen.has(key))
      return [{ field: `body/preferences/${i}`, message: 'names a department and kind twice' }];
    seen.add(key);
    return [];
  });
  if (twice.length > 0)
    throw invalid('duplicate_preference', 'Each department and kind at most once.', twice);
  const errors = body.preferences.flatMap((p, i) =>
    mine.has(p.department_id)
      ? []
      : [{ field: `body/preferences/${i}/department_id`, message: 'is not one of your departments' }],
  );
  if (errors.length > 0) {
    const error = new DomainError(
      'unprocessable',
      'not_a_member',
      'Preferences are per department you belong to.',
    );
    error.errors = errors;
    throw error;
  }
  const choices = body.preferences.flatMap((p) =>
    channelChoices(p).map((c) => ({ ...c, department_id: p.department_id })),
  );
  await db.transaction().execute((trx) => writeAgentPreferences(trx, principal.agentId, choices));
  return myPreferences(db, principal);
}

async function assertDepartment(db: Db, departmentId: string) {
  if (!(await departmentsExist(db, [departmentId])).has(departmentId)) throw notFound('department');
}

export async function departmentDefaults(db: Db, principal: Principal, departmentId: string) {
  await assertDepartment(db, departmentId);
  // Members and admins may read them; others do not learn the department exists.
  if (!isAdmin(principal) && (await roleInDepartment(db, principal.agentId, departmentId)) === null)
    throw notFound('department');
  return { data: defaultsView(await readDepartmentDefaults(db, [departmentId])) };
}

/** Every kind as a department's members get it unless they chose otherwise. */
function defaultsView(
  rows: { kind: NotificationKind; channel: NotificationChannelName; enabled: boolean }[],
) {
  const by = new Map(rows.map((r) => [`${r.channel}:${r.kind}`, r.enabled]));
  return NOTIFICATION_KINDS.map((kind) => {
    const inbox = effective(undefined, by.get(`inbox:${kind}`), 'inbox');
    const email = effective(undefined, by.get(`email:${kind}`), 'email');
    return {
      kind,
      enabled: inbox.on,
      source: inbox.source as 'department' | 'default',
      email: email.on,
      email_source: email.source as 'department' | 'default',
    };
  });
}

export async function setDepartmentDefaults(
  db: Db,
  principal: Principal,
  departmentId: string,
  body: {
    defaults: { kind: NotificationKind; enabled?: boolean | undefined; email?: boolean | undefined }[];
  },
) {
  assertSomeChannel(body.defaults, 'defaults');
  await assertDepartment(db, departmentId);
  const role = isAdmin(principal) ? null : await roleInDepartment(db, principal.agentId, departmentId);
  if (!isAdmin(principal) && role === null) throw notFound('department');
  if (!canManageDepartment(principal, role)) {
    throw forbidden(
      'Only the department’s managers (or admins) set its notification defaults.',
      'manager_required',
    );
  }
  const kinds = body.defaults.map((d) => d.kind);
  if (new Set(kinds).size !== kinds.length) {
    throw invalid('duplicate_kind', 'Each kind at most once.', [
      { field: 'body/defaults', message: 'names a kind twice' },
    ]);
  }
  await db.transaction().execute(async (trx) => {
    // Writers take turns on the department, so each event's before and after are its own; a
    // department deleted meanwhile answers 404.
    if (!(await lockDepartment(trx, departmentId))) throw notFound('department');
    const before = await readDepartmentDefaults(trx, [departmentId]);
    await writeDepartmentDefaults(trx, departmentId, body.defaults.flatMap(channelChoices));
    const after = await readDepartmentDefaults(trx, [departmentId]);
    const was = new Map(before.map((r) => [`${r.channel}:${r.kind}`, r.enabled]));
    // The inbox's changes under `changes` (as before email existed), the mail's under `email_changes`.
    const changes: Record<string, { from: boolean | null; to: boolean }> = {};
    const emailChanges: Record<string, { from: boolean | null; to: boolean }> = {};
    for (const r of after) {
      const from = was.get(`${r.channel}:${r.kind}`) ?? null;
      if (from !== r.enabled)
        (r.channel === 'email' ? emailChanges : changes)[r.kind] = { from, to: r.enabled };
    }
    if (Object.keys(changes).length === 0 && Object.keys(emailChanges).length === 0) return;
    await recordSettingsChange(
      trx,
      principal,
      'notification_defaults.updated',
      { departmentId, subjectId: departmentId },
      { department_id: departmentId, defaults: defaultsView(after), changes, email_changes: emailChanges },
    );
  });
  return departmentDefaults(db, principal, departmentId);
}
